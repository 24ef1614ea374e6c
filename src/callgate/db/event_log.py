"""The event log's reads: ``call_events`` is it, its ``id`` the event id of every channel.

Every transition of a call is a ``call_events`` row, written with the move itself
(`call_tracking.move`), so the log costs no write of its own; ``id`` increases in the order
the rows are inserted, one counter for the whole database. A resume reads the rows of one
enterprise's calls after an id (`events_after`); whether it may (`position`), and what a
client that may not is given instead (`live_calls_of`), are the use case's
(`calls.event_log`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql

from callgate.db.executor import Executor, Row
from callgate.db.models import CALL_EVENTS, CALLS
from callgate.domain.states import LIVE

# The call row's columns that say why each side ended (an event's `sides`; a webhook's too).
SIDE_COLUMNS = (
    "agent_outcome",
    "agent_ring_s",
    "agent_reason",
    "customer_outcome",
    "customer_ring_s",
    "customer_reason",
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the log, with what its call's row says that an event carries."""

    event_id: int
    call_id: str
    state: str
    at: datetime
    detail: str | None
    extension: str
    sides: dict[str, Any]  # the call row's six side columns (meaningful once it ended)
    enterprise_number: str | None = None  # whose call


@dataclass(frozen=True, slots=True)
class Position:
    """Where the log stands for a resume after an id: the last id (0: empty log), and the
    time of the first event after that id (None: none after it)."""

    head: int
    next_at: datetime | None


@dataclass(frozen=True, slots=True)
class LiveCall:
    call_id: str
    state: str
    at: datetime
    extension: str


# Events with their call's columns (call_events has no enterprise column): each row joined to
# its call by the call's primary key, in the order of the log, read a range of ids at a time.
_EVENTS = (
    select(
        CALL_EVENTS.c.id,
        CALL_EVENTS.c.call_id,
        CALL_EVENTS.c.state,
        CALL_EVENTS.c.at,
        CALL_EVENTS.c.detail,
        CALLS.c.extension,
        CALLS.c.enterprise_number,
        *(CALLS.c[name] for name in SIDE_COLUMNS),
    )
    .join(CALLS, CALLS.c.id == CALL_EVENTS.c.call_id)
    .where(CALL_EVENTS.c.id > bindparam("p_after"))
    .order_by(CALL_EVENTS.c.id)
    .limit(bindparam("p_limit"))
)
# One enterprise's events after an id (a resume).
_AFTER = _EVENTS.where(CALLS.c.enterprise_number == bindparam("p_number"))
# Every enterprise's events in a range of ids (the events other instances stored, heard of by
# notification: `calls.shared_events`), with the enterprise each goes to.
_BETWEEN = _EVENTS.where(CALL_EVENTS.c.id <= bindparam("p_up_to"))
# The same, of some enterprises only (those with subscribers in this process). PostgreSQL's
# `= ANY(array)`: one statement text whatever the enterprises, where an IN list would be
# compiled and prepared anew for every set (`db.postgres`); only PostgreSQL notifies.
_BETWEEN_OF = _BETWEEN.where(
    CALLS.c.enterprise_number == any_(bindparam("p_numbers", type_=postgresql.ARRAY(String())))
)
_HEAD = select(func.coalesce(func.max(CALL_EVENTS.c.id), 0)).scalar_subquery()
_NEXT_AT = (
    select(CALL_EVENTS.c.at)
    .where(CALL_EVENTS.c.id > bindparam("p_after"))
    .order_by(CALL_EVENTS.c.id)
    .limit(1)
    .scalar_subquery()
)
_POSITION = select(_HEAD.label("head"), _NEXT_AT.label("next_at"))
_LIVE_OF = (
    select(
        CALLS.c.id, CALLS.c.state, CALLS.c.state_changed_at, CALLS.c.created_at, CALLS.c.extension
    )
    .where(
        # A default value: a statement with an IN list is compiled for asyncpg with its
        # values (`db.postgres`), and this one has none then.
        CALLS.c.enterprise_number == bindparam("p_number", "", type_=String()),
        CALLS.c.state.in_([state.value for state in LIVE]),
    )
    .order_by(CALLS.c.created_at, CALLS.c.id)
)


async def events_after(
    database: Executor, enterprise_number: str, after: int, limit: int
) -> list[StoredEvent]:
    """Up to ``limit`` events of the enterprise's calls with an id above ``after``, by id."""
    rows = await database.rows(
        _AFTER, {"p_number": enterprise_number, "p_after": after, "p_limit": limit}
    )
    return [_stored(row) for row in rows]


async def events_between(
    database: Executor,
    after: int,
    up_to: int,
    limit: int,
    enterprises: Collection[str] | None = None,
) -> list[StoredEvent]:
    """Up to ``limit`` events with ``after < id <= up_to``, by id: of every enterprise, or of
    ``enterprises`` only (PostgreSQL)."""
    values: dict[str, Any] = {"p_after": after, "p_up_to": up_to, "p_limit": limit}
    if enterprises is None:
        rows = await database.rows(_BETWEEN, values)
    else:
        rows = await database.rows(_BETWEEN_OF, values | {"p_numbers": list(enterprises)})
    return [_stored(row) for row in rows]


def _stored(row: Row) -> StoredEvent:
    return StoredEvent(
        row["id"],
        row["call_id"],
        row["state"],
        row["at"],
        row["detail"],
        row["extension"],
        {name: row[name] for name in SIDE_COLUMNS},
        row["enterprise_number"],
    )


async def position(database: Executor, after: int) -> Position:
    """The last id of the log and the time of the first event after ``after`` (one query)."""
    row = await database.row(_POSITION, {"p_after": after})
    if row is None:  # pragma: no cover - a SELECT without FROM has its one row
        return Position(0, None)
    next_at = row["next_at"]
    if isinstance(next_at, str):  # SQLite, should its scalar subquery lose the column's type
        next_at = datetime.fromisoformat(next_at)
    if next_at is not None and next_at.tzinfo is None:
        next_at = next_at.replace(tzinfo=UTC)  # SQLite stores naive UTC (`models.UtcDateTime`)
    return Position(int(row["head"]), next_at)


async def live_calls_of(database: Executor, enterprise_number: str) -> list[LiveCall]:
    """The enterprise's calls in a non-terminal state, oldest first."""
    return [
        LiveCall(
            row["id"], row["state"], row["state_changed_at"] or row["created_at"], row["extension"]
        )
        for row in await database.rows(_LIVE_OF, {"p_number": enterprise_number})
    ]
