"""The call history as CSV: one row per call, for `GET /v1/calls?format=csv` and the CLI."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime

from callgate.calls.reading import CallView
from callgate.domain.outcomes import SideResult

COLUMNS = ["id", "state", "outcome", "from", "to", "host", "created_at", "ended_at"]
TIMES = ["ringing_s", "talk_s", "end_reason"]
# The last columns: agent_result, agent_ring_s, agent_reason, customer_result, …
SIDES = [
    f"{side}_{field}" for side in ("agent", "customer") for field in ("result", "ring_s", "reason")
]


def csv_text(calls: Sequence[CallView]) -> str:
    """The header row and a row per call; times as the JSON bodies write them (UTC as `Z`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*COLUMNS, *TIMES, *SIDES])
    for call in calls:
        sides = call.sides
        writer.writerow(
            [
                call.id,
                call.state,
                call.outcome,
                call.extension,
                call.phone,
                call.host,
                _when(call.created_at),
                _when(call.ended_at),
                call.durations.get("ringing_s"),
                call.durations.get("talk_s"),
                call.end_reason,
                *_side(sides.agent if sides else None),
                *_side(sides.customer if sides else None),
            ]
        )
    return buffer.getvalue()


def _when(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _side(result: SideResult | None) -> tuple[str | None, float | None, str | None]:
    if result is None:
        return None, None, None
    return result.outcome.value, side_ring_s(result), result.reason


def side_ring_s(result: SideResult) -> float | None:
    """How long a side rang, as every answer shows it (to the millisecond)."""
    return None if result.ring_s is None else round(result.ring_s, 3)
