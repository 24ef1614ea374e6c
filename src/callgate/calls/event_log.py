"""Resuming an event stream: what a client that comes back after an event id is given.

Every channel (SSE's ``id:``, the WebSocket's ``id``) numbers an event by its ``call_events.id``
(`db.event_log`). A client that comes back with the last id it got is given, in order:

1. the stored events of its enterprise's calls after that id (one query, at most
   ``REPLAY_LIMIT``), then
2. the live ones, without a gap or a repeat: the stream subscribes *before* the query (a
   transition stored meanwhile is in both) and `Handover` drops the live copy of an event
   already replayed.

A resume is honoured while every event after the id is younger than the retention
(``CALLGATE_EVENTS_RETENTION``) and there are at most ``REPLAY_LIMIT`` of them. Otherwise
(older, an id the log never had, a garbled one, too far behind) the client gets a `Reset`:
the last id of the log and a snapshot of the enterprise's live calls, then the live events
after that id. The rows themselves are kept (they are the calls' histories); the retention
only bounds how far back a resume may go.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from callgate.calls.history import Transition
from callgate.db import event_log
from callgate.db.executor import Executor
from callgate.db.guard import db_step
from callgate.db.models import utcnow
from callgate.domain.outcomes import SideOutcome, SideResult, Sides
from callgate.domain.states import CallState

REPLAY_LIMIT = 5000  # events replayed at most; a client further behind gets a reset
__all__ = ["REPLAY_LIMIT", "Handover", "Reset", "Snapshot", "catch_up", "parse_event_id"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A live call as the log's head leaves it."""

    call_id: str
    state: CallState
    at: datetime
    extension: str


@dataclass(frozen=True, slots=True)
class Reset:
    """The client cannot resume: here is where the log stands and what is live now.

    ``reason``: ``expired`` (events after the id are older than the retention), ``unknown``
    (an id the log never had, or not an id at all), ``too_far_behind`` (more than
    ``REPLAY_LIMIT`` events to replay)."""

    reason: str
    head: int
    calls: list[Snapshot]


@dataclass(eq=False)
class Handover:
    """Drops the live copy of what the replay already gave (see the module docstring).

    After a replay: the ids replayed (a set, not "at most the last id": on PostgreSQL two
    transactions may commit their ids out of order, and an event with a lower id committed
    after the query is not a repeat). After a reset: everything up to the head, which the
    snapshot stands for.
    """

    replayed: set[int] = field(default_factory=set)
    up_to: int = 0

    def fresh(self, transition: Transition) -> bool:
        event_id = transition.event_id
        if event_id is None:  # pragma: no cover - every published transition was stored
            return True
        return event_id > self.up_to and event_id not in self.replayed


def parse_event_id(value: object) -> int | None:
    """A client's event id as an int, None when it is not one (then it resets)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        digits = value.strip()
        return int(digits) if len(digits) <= 18 else None
    return None


async def catch_up(
    database: Executor,
    enterprise_number: str,
    after: int | None,
    *,
    retention: timedelta,
    limit: int = REPLAY_LIMIT,
) -> tuple[list[Transition] | Reset, Handover]:
    """What a client resuming after ``after`` gets before the live events (None: not an id).

    Two reads: where the log stands, then the events (or the live calls). Call it after the
    stream has subscribed. DatabaseUnavailable when the database fails.
    """
    async with db_step("resuming an event stream"):
        where = await event_log.position(database, after if after is not None else 0)
        reason = None
        if after is None or after > where.head:
            reason = "unknown"
        elif where.next_at is not None and where.next_at < utcnow() - retention:
            reason = "expired"
        else:
            stored = await event_log.events_after(database, enterprise_number, after, limit + 1)
            if len(stored) <= limit:
                replay = [_transition(event, enterprise_number) for event in stored]
                return replay, Handover(replayed={t.event_id for t in replay if t.event_id})
            reason = "too_far_behind"
        head = await event_log.position(database, 0)
        live = await event_log.live_calls_of(database, enterprise_number)
    calls = [Snapshot(c.call_id, CallState(c.state), c.at, c.extension) for c in live]
    return Reset(reason, head.head, calls), Handover(up_to=head.head)


def as_transition(event: event_log.StoredEvent, enterprise_number: str) -> Transition:
    """A stored event as the tracker publishes it (replays, and other instances' events)."""
    return _transition(event, enterprise_number)


def _transition(event: event_log.StoredEvent, enterprise_number: str) -> Transition:
    state = CallState(event.state)
    return Transition(
        event.call_id,
        state,
        event.at,
        event.detail or "",
        sides=_sides(event.sides) if state.is_terminal else None,
        enterprise_number=enterprise_number,
        extension=event.extension,
        event_id=event.event_id,
    )


def _sides(columns: Mapping[str, Any]) -> Sides:
    """The ended call's sides from its row's columns (as `call_tracking.sides_of` reads them)."""

    def side(name: str) -> SideResult | None:
        outcome = columns[f"{name}_outcome"]
        if outcome is None:
            return None
        ring = columns[f"{name}_ring_s"]
        reason = columns[f"{name}_reason"]
        return SideResult(SideOutcome(outcome), ring, reason)

    return Sides(side("agent"), side("customer"))
