"""Turning call rows into API bodies, and replaying an idempotent request's first outcome."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import Response
from sqlalchemy.ext.asyncio import AsyncSession

from callgate import errors
from callgate.api.deps import Services
from callgate.api.v1.problems import ApiProblem
from callgate.api.v1.schemas import CallError, CallEventOut, CallOut, SideOut, SidesOut
from callgate.calls.service import CallRequest, PlacedCall
from callgate.db import call_queries
from callgate.db.call_tracking import call_events, sides_of
from callgate.db.guard import db_step
from callgate.db.models import CallRecord
from callgate.domain.outcomes import SideResult, Sides

# How long a replayed request waits for the first one's outcome (verify window + timeouts).
REPLAY_WAIT = 30.0


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def sides_out(sides: Sides | None) -> SidesOut | None:
    """Why each side ended, as the API shows it (the call's body, its SSE events)."""
    if sides is None:
        return None

    def side(result: SideResult | None) -> SideOut | None:
        if result is None:
            return None
        ring_s = None if result.ring_s is None else round(result.ring_s, 3)
        return SideOut(result=result.outcome, ring_s=ring_s, reason=result.reason)

    return SidesOut(agent=side(sides.agent), customer=side(sides.customer))


def record_out(record: CallRecord, events: Sequence[Any]) -> CallOut:
    ringing_end = record.customer_answered_at or record.ended_at
    error = None
    if record.error_code or record.error:
        error = CallError(code=record.error_code, detail=record.error)
    return CallOut.model_validate(
        {
            "id": record.id,
            "state": record.state,
            "outcome": record.outcome,
            "from": record.extension,
            "to": record.phone,
            "host": record.host,
            "created_at": record.created_at,
            "state_changed_at": record.state_changed_at,
            "ended_at": record.ended_at,
            "end_reason": record.end_reason,
            "ring_timeout": record.ring_timeout,
            "metadata": record.call_metadata,
            "channels": {"agent": record.channel, "customer": record.customer_channel},
            "bridge_id": record.bridge_id,
            "error": error,
            "durations": {
                "agent_ringing_s": _seconds(record.created_at, record.agent_answered_at),
                "ringing_s": _seconds(record.agent_answered_at, ringing_end),
                "talk_s": _seconds(record.customer_answered_at, record.ended_at),
                "total_s": _seconds(record.created_at, record.ended_at),
            },
            "sides": sides_out(sides_of(record)),
            "timeline": [CallEventOut(state=e.state, at=e.at, detail=e.detail) for e in events],
        }
    )


def _not_found() -> ApiProblem:
    # Another tenant's call is exactly as absent as a call that never existed.
    return ApiProblem(404, "call_not_found", "no such call")


async def _read(session: AsyncSession, enterprise_number: str, call_id: str) -> CallRecord:
    """The tenant's call; ids that are no UUID never reach a query."""
    try:
        uuid.UUID(call_id)
    except ValueError:
        raise _not_found() from None
    record = await call_queries.tenant_call(session, enterprise_number, call_id)
    if record is None:
        raise _not_found()
    return record


async def tenant_record(svc: Services, enterprise_number: str, call_id: str) -> CallRecord:
    async with db_step("reading the call"), svc.sessions() as session:
        return await _read(session, enterprise_number, call_id)


async def call_out(svc: Services, enterprise_number: str, call_id: str) -> CallOut:
    async with db_step("reading the call"), svc.sessions() as session:
        record = await _read(session, enterprise_number, call_id)
        events = await call_events(session, call_id)
    return record_out(record, events)


def placed_out(placed: PlacedCall, request: CallRequest) -> CallOut:
    """The call as placed, for when the database cannot be read back right after dialling."""
    return CallOut.model_validate(
        {
            "id": placed.call_id,
            "state": "initiated",
            "outcome": "success",
            "from": placed.extension,
            "to": placed.phone,
            "host": placed.host,
            "created_at": datetime.now(UTC),
            "ring_timeout": request.ring_timeout,
            "metadata": request.metadata,
            "channels": {"agent": placed.channel, "customer": None},
            "durations": {},
        }
    )


async def find_by_key(svc: Services, enterprise_number: str, key: str) -> CallRecord | None:
    async with db_step("reading the idempotency key"), svc.sessions() as session:
        return await call_queries.by_idempotency_key(session, enterprise_number, key)


async def replay(
    svc: Services, earlier: CallRecord, fingerprint: str, response: Response
) -> CallOut:
    """Answer as the first request with this key did; another body with the key is a 422."""
    if earlier.request_hash != fingerprint:
        raise ApiProblem(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with another request body",
        )
    deadline = time.monotonic() + REPLAY_WAIT
    record = earlier
    while record.outcome == "pending" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # the first request is still dialling: wait for its outcome
        record = await tenant_record(svc, earlier.enterprise_number, earlier.id)
    if record.outcome in ("failed", "unknown") and record.error_code:
        failure = errors.error_class(record.error_code)(record.error or "call failed")
        raise failure
    response.headers["Idempotent-Replayed"] = "true"
    return await call_out(svc, earlier.enterprise_number, earlier.id)
