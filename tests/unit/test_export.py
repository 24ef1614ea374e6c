"""calls.export.csv_text: the history's CSV, with the values the JSON bodies show."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from callgate.api.v1.render import call_out
from callgate.calls.export import COLUMNS, SIDES, TIMES, csv_text
from callgate.calls.reading import CallView
from callgate.domain.outcomes import SideOutcome, SideResult, Sides

START = datetime(2026, 3, 1, 10, 0, 0, 250000, tzinfo=UTC)


def _call(call_id: str, **changes: object) -> CallView:
    fields: dict[str, object] = {
        "id": call_id,
        "state": "completed",
        "outcome": "success",
        "extension": "150",
        "phone": "+375296254070",
        "host": "10.0.0.5",
        "created_at": START,
        "durations": {"ringing_s": 1.5, "talk_s": 12.25},
        "ended_at": START + timedelta(seconds=20),
        "end_reason": "hangup",
        "sides": Sides(
            SideResult(SideOutcome.ANSWERED, 2.12345),
            SideResult(SideOutcome.FAILED, None, "no route"),
        ),
    }
    return CallView(**(fields | changes))  # type: ignore[arg-type]


def test_rows_match_the_json_bodies() -> None:
    ended, live = _call("c1"), _call("c2", state="ringing", ended_at=None, sides=None, durations={})
    rows = list(csv.DictReader(io.StringIO(csv_text([ended, live]))))
    assert list(rows[0]) == [*COLUMNS, *TIMES, *SIDES]
    body = call_out(ended).model_dump(by_alias=True, mode="json")
    first = rows[0]
    for column in COLUMNS:
        assert first[column] == str(body[column]), column
    assert first["created_at"].endswith("Z")  # as the JSON writes UTC
    assert (first["ringing_s"], first["talk_s"], first["end_reason"]) == ("1.5", "12.25", "hangup")
    assert (first["agent_result"], first["agent_ring_s"]) == ("answered", "2.123")
    assert (first["customer_result"], first["customer_ring_s"]) == ("failed", "")
    assert first["customer_reason"] == "no route"
    second = rows[1]
    assert second["ended_at"] == second["ringing_s"] == second["agent_result"] == ""
