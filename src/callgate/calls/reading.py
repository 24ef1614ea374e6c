"""Reading an enterprise's calls: one call with its timeline, the history page by page.

Every database read of the v1 API and the CLI goes through here, so the HTTP layer and the
shell only ever see `CallView`s: what a call is, with its durations and why each side ended
already worked out. Another enterprise's call is exactly as absent as one that never existed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from callgate import errors
from callgate.db import calls as call_rows
from callgate.db.call_tracking import CallEvent, call_events, sides_of
from callgate.db.calls import CallRecord
from callgate.db.executor import Executor
from callgate.db.guard import db_step
from callgate.domain.outcomes import Sides
from callgate.domain.states import CallState, durations
from callgate.validation import normalize_phone, validate_extension

ALL_STATES = frozenset(state.value for state in CallState)
FILTER_EXTENSION_LENGTH = 32  # the longest extension a history filter takes


class CallNotFound(errors.CallgateError):
    code = "call_not_found"

    def __init__(self) -> None:
        super().__init__("no such call")


@dataclass(frozen=True, slots=True)
class CallView:
    """A call as callgate knows it, for an answer or a shell's line."""

    id: str
    state: str
    outcome: str
    extension: str
    phone: str
    host: str
    created_at: datetime
    # agent_ringing_s, ringing_s, talk_s, total_s; empty when only the placing is known
    durations: dict[str, float | None]
    state_changed_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    ring_timeout: int | None = None
    metadata: dict[str, Any] | None = None
    channel: str | None = None  # the first leg
    customer_channel: str | None = None
    bridge_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    sides: Sides | None = None  # why each side ended; None while the call is live
    timeline: Sequence[CallEvent] = field(default_factory=tuple)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def view_of(record: CallRecord, events: Sequence[CallEvent] = ()) -> CallView:
    spans = durations(
        record.created_at, record.agent_answered_at, record.customer_answered_at, record.ended_at
    )
    return CallView(
        id=record.id,
        state=record.state,
        outcome=record.outcome,
        extension=record.extension,
        phone=record.phone,
        host=record.host,
        created_at=record.created_at,
        durations={
            "agent_ringing_s": _rounded(spans.agent_ringing),
            "ringing_s": _rounded(spans.customer_ringing),
            "talk_s": _rounded(spans.talk),
            "total_s": _rounded(spans.total),
        },
        state_changed_at=record.state_changed_at,
        ended_at=record.ended_at,
        end_reason=record.end_reason,
        ring_timeout=record.ring_timeout,
        metadata=record.call_metadata,
        channel=record.channel,
        customer_channel=record.customer_channel,
        bridge_id=record.bridge_id,
        error_code=record.error_code,
        error=record.error,
        sides=sides_of(record),
        timeline=tuple(events),
    )


@dataclass(frozen=True, slots=True)
class Page:
    calls: list[CallView]
    next_cursor: str | None  # pass as `cursor` for the next page


class CallReads:
    """The enterprise's calls as stored; every read is time-bounded."""

    def __init__(self, database: Executor) -> None:
        self._database = database

    async def call(self, enterprise_number: str, call_id: str) -> CallView:
        """The call with its timeline; `CallNotFound` for an id of no call of this enterprise."""
        async with db_step("reading the call"):
            record = await _read(self._database, enterprise_number, call_id)
            events = await call_events(self._database, call_id)
        return view_of(record, events)

    async def current(self, enterprise_number: str, call_id: str) -> CallView:
        """The call without its timeline (one query): its state and outcome as they are now."""
        async with db_step("reading the call"):
            return view_of(await _read(self._database, enterprise_number, call_id))

    async def by_key(self, enterprise_number: str, key: str) -> tuple[CallView, str | None] | None:
        """The call an `Idempotency-Key` placed, with the fingerprint of its request."""
        async with db_step("reading the idempotency key"):
            record = await call_rows.by_idempotency_key(self._database, enterprise_number, key)
        return None if record is None else (view_of(record), record.request_hash)

    async def owns(self, enterprise_number: str, call_id: str) -> bool:
        found = await call_rows.enterprise_call(self._database, enterprise_number, call_id)
        return found is not None

    async def page(
        self,
        enterprise_number: str,
        *,
        state: str | None = None,
        extension: str | None = None,
        phone: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """The history, newest first, filtered; each value is checked (`InvalidInput`) first."""
        if state is not None and state not in ALL_STATES:
            raise errors.InvalidInput("state", "must be one of " + ", ".join(sorted(ALL_STATES)))
        where = call_rows.CallFilter(
            enterprise_number=enterprise_number,
            state=state,
            extension=(
                validate_extension(extension, FILTER_EXTENSION_LENGTH, field="extension")
                if extension
                else None
            ),
            phone=normalize_phone(phone) if phone else None,
            since=_utc(since, "since"),
            until=_utc(until, "until"),
        )
        try:
            async with db_step("listing calls"):
                rows, next_cursor = await call_rows.list_calls(
                    self._database, where, limit=limit, cursor=cursor
                )
        except ValueError as exc:
            raise errors.InvalidInput("cursor", str(exc)) from None
        return Page([view_of(row) for row in rows], next_cursor)


async def _read(database: Executor, enterprise_number: str, call_id: str) -> CallRecord:
    """The enterprise's call; ids that are no UUID never reach a query."""
    try:
        uuid.UUID(call_id)
    except ValueError:
        raise CallNotFound() from None
    record = await call_rows.enterprise_call(database, enterprise_number, call_id)
    if record is None:
        raise CallNotFound()
    return record


def _utc(moment: datetime | None, name: str) -> datetime | None:
    """A filter time in UTC; one without a zone is taken as UTC (the API's times are UTC)."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        raise errors.InvalidInput(name, "is out of range") from None
