"""What an event of a call sends: a webhook's body, RetailCRM's requests, and the outbox rows
an event makes for an endpoint (`calls.dispatcher` writes and sends them).

A webhook gets a JSON body ``{type, timestamp, data}``, ``data`` as the event of ``/v1/events``
says it; a RetailCRM account gets its telephony API's own requests (`retailcrm_requests`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from callgate.calls.export import side_ring_s
from callgate.calls.webhooks import RETAILCRM, WEBHOOK, iso_time
from callgate.db import webhooks as store
from callgate.db.executor import Row
from callgate.domain import webhooks as rules
from callgate.domain.outcomes import SideOutcome, SideResult, Sides
from callgate.domain.states import CallState


def _sides(row: Row) -> Sides:
    def side(name: str) -> SideResult | None:
        outcome = row[f"{name}_outcome"]
        if outcome is None:
            return None
        return SideResult(SideOutcome(outcome), row[f"{name}_ring_s"], row[f"{name}_reason"])

    return Sides(side("agent"), side("customer"))


def _sides_json(sides: Sides) -> dict[str, Any]:
    def side(result: SideResult | None) -> dict[str, Any] | None:
        if result is None:
            return None
        return {
            "result": result.outcome.value,
            "ring_s": side_ring_s(result),
            "reason": result.reason,
        }

    return {"agent": side(sides.agent), "customer": side(sides.customer)}


def webhook_body(row: Row) -> str:
    """An event as a webhook's body: ``{type, timestamp, data}``; ``data`` as the event of
    ``/v1/events`` says it, and ``sequence`` (the event id: it grows along each call, so a
    receiver drops an update older than one it has)."""
    state = CallState(row["state"])
    payload = {
        "type": f"call.{state.value}",
        "timestamp": iso_time(row["at"]),
        "data": {
            "call_id": row["call_id"],
            "state": state.value,
            "at": iso_time(row["at"]),
            "reason": row["detail"] or "",
            "sides": _sides_json(_sides(row)) if state.is_terminal else None,
            "sequence": row["id"],
        },
    }
    return json.dumps(payload, separators=(",", ":"))


def _crm_date(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def retailcrm_requests(row: Row) -> list[tuple[str, dict[str, str]]]:
    """RetailCRM's requests for an event (request name, form fields): a call's start is a
    ``type=out`` event; its end a ``type=hangup`` event and the call uploaded."""
    state = CallState(row["state"])
    phone, extension, call_id = row["phone"], row["extension"], row["call_id"]
    if state is CallState.INITIATED:
        event = {"phone": phone, "type": "out", "codes": [extension], "callExternalId": call_id}
        return [("crm.event", {"event": json.dumps(event)})]
    if not state.is_terminal:
        return []
    sides = _sides(row)
    hangup = {
        "phone": phone,
        "type": "hangup",
        "codes": [extension],
        "hangupStatus": rules.hangup_status(sides),
        "callExternalId": call_id,
    }
    answered, ended = row["customer_answered_at"], row["ended_at"] or row["at"]
    talked = max(0, round((ended - answered).total_seconds())) if answered is not None else 0
    call = {
        "date": _crm_date(row["created_at"]),
        "type": "out",
        "phone": phone,
        "code": extension,
        "result": rules.upload_result(sides),
        "duration": talked,
        "externalId": call_id,
    }
    return [
        ("crm.event", {"event": json.dumps(hangup)}),
        ("crm.upload", {"calls": json.dumps([call])}),
    ]


def deliveries_for(endpoint: store.EndpointRow, row: Row) -> list[dict[str, Any]]:
    """The outbox rows an event makes for an endpoint."""
    if endpoint.kind == RETAILCRM:
        made = [(name, json.dumps(form)) for name, form in retailcrm_requests(row)]
    elif rules.wanted(endpoint.event_types, row["state"]):
        made = [(WEBHOOK, webhook_body(row))]
    else:
        made = []
    return [
        {"endpoint_id": endpoint.id, "event_id": row["id"], "request": name, "body": body}
        for name, body in made
    ]
