"""``calls``: one row per call request, written when it arrives and finished with its outcome.

The call row's insert and its outcome's update run on every call, as statements built once;
the reads give `CallRecord`s, plain frozen values.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Required, TypedDict, Unpack

from sqlalchemy import String, and_, any_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql

from callgate.db.advisory import AdvisoryLocks, Held, unlock
from callgate.db.executor import Database, Executor, Row
from callgate.db.hosts import HOST_COLUMNS
from callgate.db.models import CALLS, PBX_HOSTS, CallOutcome, utcnow
from callgate.domain.hosts import HostRow
from callgate.domain.states import CallState


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A ``calls`` row (``metadata`` is `call_metadata` here)."""

    id: str
    enterprise_number: str
    extension: str
    phone: str
    host: str
    outcome: str
    error_code: str | None
    error: str | None
    channel: str | None  # first leg, once verified
    request_id: str | None
    created_at: datetime
    finished_at: datetime | None
    response_time_ms: float | None
    state: str
    state_changed_at: datetime | None
    ring_timeout: int | None
    call_metadata: dict[str, Any] | None
    idempotency_key: str | None
    request_hash: str | None
    customer_channel: str | None
    bridge_id: str | None
    agent_answered_at: datetime | None
    customer_answered_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    agent_outcome: str | None
    agent_ring_s: float | None
    agent_reason: str | None
    customer_outcome: str | None
    customer_ring_s: float | None
    customer_reason: str | None
    hangup_requested_at: datetime | None


def call_record(found: Row) -> CallRecord:
    """A `CallRecord` from a row of every ``calls`` column (by name)."""
    return CallRecord(*(found[column.name] for column in CALLS.columns))


# The per-call writes, built once: a statement object caches its compiled form, so running it
# again costs no SQL compilation; the values travel as parameters.
INSERT_CALL = insert(CALLS)
# Without .values(): the parameters that name columns are SET, `call_id` is the WHERE's.
FINISH_CALL = update(CALLS).where(CALLS.c.id == bindparam("call_id"))
_BY_ID = select(CALLS).where(CALLS.c.id == bindparam("call_id"))
_OF_ENTERPRISE = select(CALLS).where(
    CALLS.c.id == bindparam("call_id"), CALLS.c.enterprise_number == bindparam("enterprise")
)
_BY_KEY = select(CALLS).where(
    CALLS.c.enterprise_number == bindparam("enterprise"),
    CALLS.c.idempotency_key == bindparam("key"),
)
_EXISTS = select(CALLS.c.id).where(CALLS.c.id == bindparam("call_id"))


class NewCall(TypedDict, total=False):
    """A new call row's fields (`new_call_values`); the first five are required."""

    enterprise_number: Required[str]
    extension: Required[str]
    phone: Required[str]
    host: Required[str]
    request_id: str | None
    id: str | None
    ring_timeout: int | None
    metadata: dict[str, Any] | None
    idempotency_key: str | None
    request_hash: str | None


def new_call_values(**fields: Unpack[NewCall]) -> dict[str, Any]:
    """Every column of a new ``calls`` row (outcome ``pending``, state ``initiated``), keyed by
    column name: `insert_call`'s values."""
    now = utcnow()
    return {
        "id": fields.get("id") or str(uuid.uuid4()),
        "enterprise_number": fields["enterprise_number"],
        "extension": fields["extension"],
        "phone": fields["phone"],
        "host": fields["host"],
        "outcome": CallOutcome.PENDING.value,
        "request_id": fields.get("request_id"),
        "created_at": now,
        "state": CallState.INITIATED.value,
        "state_changed_at": now,
        "ring_timeout": fields.get("ring_timeout"),
        "metadata": fields.get("metadata"),
        "idempotency_key": fields.get("idempotency_key"),
        "request_hash": fields.get("request_hash"),
    }


class OutcomeDetails(TypedDict, total=False):
    """What `finish_values` stores beside the outcome itself."""

    error_code: str | None
    error: str | None
    channel: str | None
    response_time_ms: float | None
    finished_at: datetime | None


def finish_values(
    call_id: str, outcome: CallOutcome | str, **details: Unpack[OutcomeDetails]
) -> dict[str, Any]:
    """`finish_call`'s values for a call's outcome; ``pending`` is refused."""
    result_outcome = CallOutcome(outcome)
    if result_outcome is CallOutcome.PENDING:
        raise ValueError("a call finishes with a final outcome, not 'pending'")
    return {
        "call_id": call_id,
        "outcome": result_outcome.value,
        "error_code": details.get("error_code"),
        "error": details.get("error"),
        "channel": details.get("channel"),
        "response_time_ms": details.get("response_time_ms"),
        "finished_at": details.get("finished_at") or utcnow(),
    }


async def insert_call(database: Executor, values: dict[str, Any]) -> None:
    """Insert a call row (`new_call_values`); IntegrityError if its id or its (enterprise,
    idempotency key) is taken."""
    await database.rowcount(INSERT_CALL, values)


async def finish_call(database: Executor, values: dict[str, Any]) -> bool:
    """Store an outcome (`finish_values`); False if there is no such call."""
    return await database.rowcount(FINISH_CALL, values) > 0


# `finish_call` on PostgreSQL with the originate lock let go in the same statement: the SET
# spelled out (`finish_values`' keys, bound as f_<key>), the lock's key bound as f_lock.
_OUTCOME_COLUMNS = ("outcome", *OutcomeDetails.__annotations__)
_FINISHED = (
    update(CALLS)
    .where(CALLS.c.id == bindparam("f_call_id"))
    .values({name: bindparam(f"f_{name}", type_=CALLS.c[name].type) for name in _OUTCOME_COLUMNS})
    .returning(CALLS.c.id)
    .cte("finished")
)
_FINISH_RELEASING = select(
    select(func.count()).select_from(_FINISHED).scalar_subquery().label("finished"),
    unlock("f_lock"),
)


async def finish_call_releasing(locks: AdvisoryLocks, values: dict[str, Any], held: Held) -> bool:
    """`finish_call` on ``locks``' connection, letting go of the originate lock ``held`` in the
    same round trip (`AdvisoryLocks.row_releasing`); stored alone when the lock was lost with
    its connection."""
    if locks.lost(held):
        return await finish_call(locks, values)
    bound = {f"f_{name}": value for name, value in values.items()} | {"f_lock": held.key}
    found = await locks.row_releasing(held, _FINISH_RELEASING, bound)
    return found is not None and found["finished"] > 0


async def get_call(database: Executor, call_id: str) -> CallRecord | None:
    """One call, read fresh."""
    found = await database.row(_BY_ID, {"call_id": call_id})
    return None if found is None else call_record(found)


# Several calls by id in one statement, each with its host's row: PostgreSQL's
# `= ANY(array)`, one statement text for any number of ids (an IN list is compiled with its
# values: `db.postgres`). The host's columns are labelled apart from the call's.
_HOST_LABELS = tuple(column.label(f"host_{column.name}") for column in HOST_COLUMNS)
# Calls, each with its host's row (`with_host` reads one): add a `where` (and joins) to it.
CALLS_WITH_HOSTS = select(CALLS, *_HOST_LABELS).select_from(
    CALLS.outerjoin(PBX_HOSTS, PBX_HOSTS.c.address == CALLS.c.host)
)
_WITH_HOSTS_BY_IDS = CALLS_WITH_HOSTS.where(
    CALLS.c.id == any_(bindparam("p_ids", type_=postgresql.ARRAY(String())))
)


async def get_calls_with_hosts(
    database: Executor, call_ids: Sequence[str]
) -> list[tuple[CallRecord, HostRow | None]]:
    """The calls of ``call_ids`` that exist, read fresh, in no particular order, each with its
    host's row (None: no row, the defaults apply), in one statement (PostgreSQL)."""
    found = await database.rows(_WITH_HOSTS_BY_IDS, {"p_ids": call_ids})
    return [with_host(row) for row in found]


def with_host(found: Row) -> tuple[CallRecord, HostRow | None]:
    """A row of `CALLS_WITH_HOSTS`: the call, and its host's row (None: no row)."""
    return call_record(found), _host_of(found)


def _host_of(found: Row) -> HostRow | None:
    if found[_HOST_LABELS[0].name] is None:  # the address: no row joined
        return None
    return HostRow(*(found[label.name] for label in _HOST_LABELS))


async def call_exists(database: Executor, call_id: str) -> bool:
    return await database.value(_EXISTS, {"call_id": call_id}) is not None


async def enterprise_call(
    database: Executor, enterprise_number: str, call_id: str
) -> CallRecord | None:
    """One call of this enterprise; another enterprise's call is as absent as a missing one."""
    found = await database.row(
        _OF_ENTERPRISE, {"call_id": call_id, "enterprise": enterprise_number}
    )
    return None if found is None else call_record(found)


async def by_idempotency_key(
    database: Executor, enterprise_number: str, key: str
) -> CallRecord | None:
    """The call this enterprise placed with this `Idempotency-Key`, if any."""
    found = await database.row(_BY_KEY, {"enterprise": enterprise_number, "key": key})
    return None if found is None else call_record(found)


@dataclass(frozen=True)
class CallFilter:
    enterprise_number: str
    state: str | None = None
    extension: str | None = None
    phone: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def encode_cursor(record: CallRecord) -> str:
    raw = f"{record.created_at.isoformat()}|{record.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a page ended at; ValueError when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, _, call_id = base64.urlsafe_b64decode(padded).decode().partition("|")
        return datetime.fromisoformat(at), call_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor returned by this API") from None


async def list_calls(
    database: Executor, where: CallFilter, *, limit: int, cursor: str | None = None
) -> tuple[Sequence[CallRecord], str | None]:
    """A page of calls (newest first) and the cursor of the next page, if any."""
    stmt = select(CALLS).where(CALLS.c.enterprise_number == where.enterprise_number)
    if where.state:
        stmt = stmt.where(CALLS.c.state == where.state)
    if where.extension:
        stmt = stmt.where(CALLS.c.extension == where.extension)
    if where.phone:
        stmt = stmt.where(CALLS.c.phone == where.phone)
    if where.since:
        stmt = stmt.where(CALLS.c.created_at >= where.since)
    if where.until:
        stmt = stmt.where(CALLS.c.created_at < where.until)
    if cursor:
        at, call_id = decode_cursor(cursor)
        stmt = stmt.where(
            or_(
                CALLS.c.created_at < at,
                and_(CALLS.c.created_at == at, CALLS.c.id < call_id),
            )
        )
    stmt = stmt.order_by(CALLS.c.created_at.desc(), CALLS.c.id.desc()).limit(limit + 1)
    rows = [call_record(found) for found in await database.rows(stmt)]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1]) if more and rows else None)


@dataclass(frozen=True, slots=True)
class Settled:
    """What `settle_pending` did: how many rows it marked each way, and the unknown ones."""

    success: int
    failed: int
    unknown: list[str]


async def settle_pending(
    database: Database,
    *,
    before: datetime,
    failed_reason: str,
    unknown_code: str,
    unknown_reason: str,
) -> Settled:
    """Give the calls created before ``before`` and still ``pending`` an outcome, from their
    rows: a first leg stored -> success; state failed -> failed (``failed_reason``); any
    other -> unknown (``unknown_code``, ``unknown_reason``). One transaction."""
    pending = (CALLS.c.outcome == CallOutcome.PENDING.value) & (CALLS.c.created_at <= before)
    now = utcnow()
    async with database.transaction() as writing:
        verified = await writing.rowcount(
            update(CALLS)
            .where(pending, CALLS.c.channel.is_not(None))
            .values(outcome=CallOutcome.SUCCESS.value, finished_at=now)
        )
        failed = await writing.rowcount(
            update(CALLS)
            .where(pending, CALLS.c.state == CallState.FAILED.value)
            .values(outcome=CallOutcome.FAILED.value, error=failed_reason, finished_at=now)
        )
        unknown = [found["id"] for found in await writing.rows(select(CALLS.c.id).where(pending))]
        if unknown:
            await writing.rowcount(
                update(CALLS)
                .where(pending, CALLS.c.id.in_(unknown))
                .values(
                    outcome=CallOutcome.UNKNOWN.value,
                    error_code=unknown_code,
                    error=unknown_reason,
                    finished_at=now,
                )
            )
    return Settled(verified, failed, unknown)
