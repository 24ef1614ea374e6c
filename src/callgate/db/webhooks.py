"""``webhook_endpoints`` and ``webhook_deliveries`` (the outbox): their statements.

The dispatcher (`calls.dispatcher`) only reads ``call_events`` (`new_events`, one bounded query
per poll, each row joined to its call by the call's primary key); the call path writes
nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql

from callgate.db.event_log import SIDE_COLUMNS
from callgate.db.executor import Database, Executor, Row
from callgate.db.models import (
    CALL_EVENTS,
    CALLS,
    ENTERPRISES,
    WEBHOOK_DELIVERIES,
    WEBHOOK_ENDPOINTS,
    utcnow,
)

E, D = WEBHOOK_ENDPOINTS, WEBHOOK_DELIVERIES


@dataclass(frozen=True, slots=True)
class EndpointRow:
    id: int
    enterprise_number: str
    kind: str
    url: str
    event_types: str | None
    secret: str  # as stored: sealed, or in clear when the service has no key
    cursor: int
    failures: int
    failing_since: datetime | None
    retry_at: datetime | None
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    endpoint_id: int
    event_id: int
    request: str
    body: str
    attempts: int


_ENDPOINT_COLUMNS = tuple(E.c[name] for name in EndpointRow.__slots__)
_HEAD = select(func.coalesce(func.max(CALL_EVENTS.c.id), 0))
_ENTERPRISE = select(ENTERPRISES.c.number).where(ENTERPRISES.c.number == bindparam("n")).limit(1)
# The call's columns an event's payload takes (`calls.webhook_messages`).
CALL_COLUMNS = (
    "enterprise_number",
    "extension",
    "phone",
    "created_at",
    "customer_answered_at",
    "ended_at",
    *SIDE_COLUMNS,
)


def _endpoint(found: Row) -> EndpointRow:
    return EndpointRow(*(found[name] for name in EndpointRow.__slots__))


async def head(database: Executor) -> int:
    """The last id of the event log (0: empty)."""
    return int(await database.value(_HEAD) or 0)


async def enterprise_exists(database: Executor, number: str) -> bool:
    return await database.value(_ENTERPRISE, {"n": number}) is not None


async def add_endpoint(
    database: Executor,
    number: str,
    kind: str,
    url: str,
    event_types: str | None,
    secret: str,
    cursor: int,
) -> EndpointRow:
    stmt = (
        E.insert()
        .values(
            enterprise_number=number,
            kind=kind,
            url=url,
            event_types=event_types,
            secret=secret,
            cursor=cursor,
            created_at=utcnow(),  # the backends do not run Python-side defaults
        )
        .returning(*_ENDPOINT_COLUMNS)
    )
    found = await database.row(stmt)
    assert found is not None  # an INSERT ... RETURNING returns its row
    return _endpoint(found)


async def list_endpoints(
    database: Executor, number: str | None = None, kind: str | None = None
) -> list[EndpointRow]:
    """Endpoints by id; of one enterprise and one kind when given."""
    stmt = select(*_ENDPOINT_COLUMNS).order_by(E.c.id)
    if number is not None:
        stmt = stmt.where(E.c.enterprise_number == number)
    if kind is not None:
        stmt = stmt.where(E.c.kind == kind)
    return [_endpoint(found) for found in await database.rows(stmt)]


async def remove_endpoints(
    database: Executor, *, endpoint_id: int | None = None, number: str | None, kind: str
) -> int:
    """Delete an endpoint (its deliveries go with it), only of ``number`` when given; how many."""
    stmt = delete(E).where(E.c.kind == kind)
    if endpoint_id is not None:
        stmt = stmt.where(E.c.id == endpoint_id)
    if number is not None:
        stmt = stmt.where(E.c.enterprise_number == number)
    return await database.rowcount(stmt)


async def enable_endpoint(database: Executor, endpoint_id: int) -> bool:
    """Clear an endpoint's disabling and back-off; False when there is no such endpoint."""
    stmt = (
        update(E)
        .where(E.c.id == endpoint_id)
        .values(
            disabled_at=None, disabled_reason=None, failures=0, failing_since=None, retry_at=None
        )
    )
    return await database.rowcount(stmt) > 0


async def endpoint(database: Executor, endpoint_id: int) -> EndpointRow | None:
    found = await database.row(select(*_ENDPOINT_COLUMNS).where(E.c.id == endpoint_id))
    return None if found is None else _endpoint(found)


# The dispatcher's polls run these twice a second on the instance that sends, whether or not
# there is anything to send: built once, so each is compiled once (`db.postgres` keeps a
# compiled form by statement object; built per poll, they were compiled at every poll).
_ACTIVE = select(*_ENDPOINT_COLUMNS).where(E.c.disabled_at.is_(None)).order_by(E.c.id)


async def active_endpoints(database: Executor) -> list[EndpointRow]:
    """The endpoints not disabled (read every poll: a CLI change applies within one)."""
    return [_endpoint(found) for found in await database.rows(_ACTIVE)]


async def new_events(
    database: Executor, numbers: Sequence[str], after: int, upto: int, limit: int
) -> Sequence[Row]:
    """Up to ``limit`` events of these enterprises' calls with an id in (after, upto], by id,
    each with its call's `CALL_COLUMNS`."""
    stmt = (
        select(
            CALL_EVENTS.c.id,
            CALL_EVENTS.c.call_id,
            CALL_EVENTS.c.state,
            CALL_EVENTS.c.at,
            CALL_EVENTS.c.detail,
            *(CALLS.c[name] for name in CALL_COLUMNS),
        )
        .join(CALLS, CALLS.c.id == CALL_EVENTS.c.call_id)
        .where(
            CALL_EVENTS.c.id > after,
            CALL_EVENTS.c.id <= upto,
            CALLS.c.enterprise_number.in_(list(numbers)),
        )
        .order_by(CALL_EVENTS.c.id)
        .limit(limit)
    )
    return await database.rows(stmt)


# Built once (a statement object keeps its compiled form), run once per row by the driver's
# executemany; without .values(): the columns are those given (`db.postgres`).
_ENQUEUE = postgresql.insert(D).on_conflict_do_nothing(
    index_elements=[D.c.endpoint_id, D.c.event_id, D.c.request]
)
_CURSOR = update(E).where(E.c.id == bindparam("p_id"), E.c.cursor < bindparam("p_cursor"))


async def enqueue(
    database: Database, deliveries: Sequence[Mapping[str, Any]], cursors: Mapping[int, int]
) -> None:
    """Write the deliveries (one already written is left as it is) and move the endpoints'
    cursors, in one transaction: an event is turned into deliveries exactly once. Each is one
    statement compiled once, run for all its rows at once (a statement built per poll was
    compiled per poll: `python -m bench.events`)."""
    now = utcnow()
    async with database.transaction() as tx:
        await tx.many(_ENQUEUE, [{**d, "created_at": now} for d in deliveries])
        await tx.many(
            _CURSOR,
            [{"p_id": i, "p_cursor": cursor, "cursor": cursor} for i, cursor in cursors.items()],
        )


_DUE = (
    select(D.c.id, D.c.endpoint_id, D.c.event_id, D.c.request, D.c.body, D.c.attempts)
    .join(E, E.c.id == D.c.endpoint_id)
    .where(
        D.c.delivered_at.is_(None),
        E.c.disabled_at.is_(None),
        or_(E.c.retry_at.is_(None), E.c.retry_at <= bindparam("p_now")),
    )
    .order_by(D.c.endpoint_id, D.c.id)
    .limit(bindparam("p_limit"))
)


async def due_deliveries(database: Executor, now: datetime, limit: int) -> list[Delivery]:
    """Undelivered rows of enabled endpoints not waiting out a back-off, by endpoint and id."""
    found = await database.rows(_DUE, {"p_now": now, "p_limit": limit})
    return [Delivery(**dict(row)) for row in found]


async def pending_count(database: Executor, endpoint_id: int) -> int:
    stmt = select(func.count()).where(D.c.endpoint_id == endpoint_id, D.c.delivered_at.is_(None))
    return int(await database.value(stmt) or 0)


# Built once (a statement object keeps its compiled form); without .values() for the
# parameters named like columns, which are SET (as `calls.FINISH_CALL`). A run of one
# endpoint's rows, by id: the dispatcher sends an endpoint's due rows as one batch, the first
# undelivered ones by id, and rows enqueued later get higher ids, so every undelivered row of
# the endpoint in the run's range is one the batch sent.
_DELIVERED = (
    update(D)
    .where(
        D.c.endpoint_id == bindparam("p_endpoint"),
        D.c.id >= bindparam("p_first"),
        D.c.id <= bindparam("p_last"),
        D.c.delivered_at.is_(None),
    )
    .values(attempts=D.c.attempts + 1)
)
_BACK_OFF_CLEARED = (
    update(E)
    .where(E.c.id == bindparam("p_id"))
    .values(failures=0, failing_since=None, retry_at=None)
)


async def delivered(
    database: Database,
    endpoint_id: int,
    done: Sequence[tuple[int, int]],
    now: datetime,
    reset_endpoint: bool,
) -> None:
    """A batch of one endpoint's deliveries done (``done``: the delivery ids in the order sent,
    each with its answer's status); the endpoint's back-off cleared when it had one. The usual
    case, a batch answered with one status by an endpoint that was not failing, is one
    statement without a transaction, whatever the batch's size."""
    runs: list[dict[str, Any]] = []
    for delivery_id, status in done:
        if runs and runs[-1]["last_status"] == status:
            runs[-1]["p_last"] = delivery_id
        else:
            runs.append(
                {
                    "p_endpoint": endpoint_id,
                    "p_first": delivery_id,
                    "p_last": delivery_id,
                    "delivered_at": now,
                    "last_status": status,
                    "last_error": None,
                }
            )
    if not reset_endpoint and len(runs) == 1:
        await database.rowcount(_DELIVERED, runs[0])
        return
    async with database.transaction() as tx:
        for values in runs:
            await tx.rowcount(_DELIVERED, values)
        if reset_endpoint:
            await tx.rowcount(_BACK_OFF_CLEARED, {"p_id": endpoint_id})


async def failed(
    database: Database,
    delivery: Delivery,
    status: int | None,
    error: str,
    *,
    failures: int,
    failing_since: datetime,
    retry_at: datetime | None,
    disabled_at: datetime | None,
    disabled_reason: str | None,
) -> None:
    """A failed attempt, and the endpoint's back-off (or its disabling) after it."""
    async with database.transaction() as tx:
        await tx.rowcount(
            update(D)
            .where(D.c.id == delivery.id)
            .values(attempts=D.c.attempts + 1, last_status=status, last_error=error[:500])
        )
        await tx.rowcount(
            update(E)
            .where(E.c.id == delivery.endpoint_id)
            .values(
                failures=failures,
                failing_since=failing_since,
                retry_at=retry_at,
                disabled_at=disabled_at,
                disabled_reason=disabled_reason,
            )
        )


_DISABLED = (
    select(E.c.kind, func.count().label("n")).where(E.c.disabled_at.is_not(None)).group_by(E.c.kind)
)
_WAITING = select(func.count()).select_from(D).where(D.c.delivered_at.is_(None))


async def summary(database: Executor) -> tuple[int, list[EndpointRow], int]:
    """How many endpoints there are, the disabled ones, and the deliveries waiting."""
    total = int(await database.value(select(func.count()).select_from(E)) or 0)
    disabled = select(*_ENDPOINT_COLUMNS).where(E.c.disabled_at.is_not(None)).order_by(E.c.id)
    rows = [_endpoint(found) for found in await database.rows(disabled)]
    return total, rows, int(await database.value(_WAITING) or 0)


async def outbox_counts(database: Executor) -> tuple[dict[str, int], int]:
    """Disabled endpoints by kind, and the rows not delivered yet (an index range: the
    pending index starts with ``delivered_at``)."""
    by_kind = {str(found["kind"]): int(found["n"]) for found in await database.rows(_DISABLED)}
    return by_kind, int(await database.value(_WAITING) or 0)


async def prune(database: Executor, before: datetime) -> int:
    """Delete the rows delivered before ``before``; how many."""
    return await database.rowcount(
        delete(D).where(D.c.delivered_at.is_not(None), D.c.delivered_at < before)
    )
