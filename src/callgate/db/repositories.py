"""Queries and writes, one small repository per table, on an ``AsyncSession``.

Every write method commits its own transaction (a caller cannot leave a call record or a host
setting half-written by forgetting to); reads do not. Use the sessions of
``callgate.db.engine.make_sessionmaker`` (objects stay readable after commit), one session per
unit of work, and do not hold one across an SSH round trip: a pooled database connection would
sit idle for seconds.

Nothing is cached here: the service reads ``enterprises`` and ``pbx_hosts`` per call, so CLI
changes apply to the next call without a restart.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Required, TypedDict, Unpack

from sqlalchemy import bindparam, case, func, insert, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from callgate.db.models import (
    CALLS,
    ENTERPRISES,
    PBX_HOSTS,
    CallOutcome,
    CallRecord,
    Enterprise,
    PbxHost,
    utcnow,
)
from callgate.domain.states import CallState
from callgate.errors import ConfigurationError, InvalidInput
from callgate.hosts import HostOverrides, host_address, normalize_public_key, validate_overrides

_NUMBER = re.compile(r"[A-Za-z0-9_-]{1,32}", re.ASCII)
# Printable ASCII without spaces: a secret travels as a query parameter and in shell commands.
_SECRET = re.compile(r"[!-~]{1,255}", re.ASCII)
MAX_RECENT = 1000
_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


@dataclass(frozen=True, slots=True)
class TenantRow:
    """The per-call read's enterprise: what a call needs of it (never the secret)."""

    number: str
    name: str
    ip: str
    active: bool


@dataclass(frozen=True, slots=True)
class HostRow:
    """The per-call read's ``pbx_hosts`` row (see `hosts.HostSettings`)."""

    address: str
    ssh_port: int | None
    ssh_user: str | None
    ssh_password: str | None
    ssh_key_file: str | None
    host_key_policy: str | None
    dial_context: str | None
    transport: str | None
    host_key: str | None


HOST_ROW_COLUMNS = tuple(field.name for field in fields(HostRow))

# The per-call statements, built once: a statement object caches its own cache key, so running
# it again costs neither SQL compilation nor cache-key generation; the values travel as
# parameters. Core, on the tables: the per-call writes need no unit of work or identity map.
BY_SECRET_WITH_HOST = (
    select(
        *(ENTERPRISES.c[name] for name in ("number", "name", "ip", "active")),
        *(PBX_HOSTS.c[name] for name in HOST_ROW_COLUMNS),
    )
    .select_from(ENTERPRISES.outerjoin(PBX_HOSTS, PBX_HOSTS.c.address == ENTERPRISES.c.ip))
    .where(ENTERPRISES.c.secret == bindparam("secret"), ENTERPRISES.c.active == true())
    .order_by(ENTERPRISES.c.number)
    .limit(1)
)
INSERT_CALL = insert(CALLS)
# Without .values(): the parameters that name columns are SET, `call_id` is the WHERE's.
FINISH_CALL = update(CALLS).where(CALLS.c.id == bindparam("call_id"))


class AlreadyExists(ValueError):
    """An enterprise with this number or secret is already there."""


def _address(value: str, field: str = "address") -> str:
    try:
        return host_address(value)
    except ConfigurationError as exc:
        raise InvalidInput(field, exc.message) from None


async def write_connection(session: AsyncSession) -> AsyncConnection:
    """The session's connection for a write that is one statement (atomic by itself).

    Outside a transaction it is in autocommit mode: the statement commits itself, one round
    trip instead of three (BEGIN, the statement, COMMIT), which is most of such a write's cost
    in the asyncpg driver and the event loop. Inside a transaction the session already holds
    (the caller read or wrote first) the write joins it, and the caller's commit covers both,
    as before. The pool resets the isolation level when the connection goes back.
    """
    if session.in_transaction():
        return await session.connection()
    return await session.connection(execution_options=_AUTOCOMMIT)


def _insert_for(session: AsyncSession) -> Any:
    """The dialect's INSERT with ON CONFLICT support (PostgreSQL's and SQLite's are alike)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def tenant_from(found: Mapping[Any, Any]) -> tuple[TenantRow, HostRow | None]:
    """The rows of one result of `BY_SECRET_WITH_HOST`, by column name (any driver's row).

    Plain frozen objects, not ORM instances: building two instrumented objects cost a third
    of the read's CPU, and callers only read them.
    """
    tenant = TenantRow(
        number=found["number"], name=found["name"], ip=found["ip"], active=found["active"]
    )
    if found["address"] is None:  # no host row: the defaults apply
        return tenant, None
    return tenant, HostRow(*(found[name] for name in HOST_ROW_COLUMNS))


async def tenant_with_host(
    connection: AsyncConnection, secret: str
) -> tuple[TenantRow, HostRow | None] | None:
    """The active enterprise with this secret and its ``pbx_hosts`` row: the per-call read.

    `EnterpriseRepo.by_secret`'s rules, and the host row in the same round trip. Read fresh
    every time, as one Core row.
    """
    if not plausible_secret(secret):
        return None  # no such secret can be stored; spare the database
    row = (await connection.execute(BY_SECRET_WITH_HOST, {"secret": secret})).first()
    return None if row is None else tenant_from(row._mapping)


def plausible_secret(secret: str | None) -> bool:
    """Whether ``secret`` could be stored at all (1 to 255 characters)."""
    return bool(secret) and len(secret or "") <= 255


class EnterpriseRepo:
    """The legacy ``enterprises`` table (five columns; see models.Enterprise)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_secret(self, secret: str) -> Enterprise | None:
        """The active enterprise with this secret, or None.

        A parameterised ``... WHERE secret = :secret AND active = true`` like the old service's.
        A legacy table may lack a unique constraint on ``secret``; the lowest number then wins,
        deterministically.
        """
        if not secret or len(secret) > 255:
            return None  # no such secret can be stored; spare the database
        stmt = (
            select(Enterprise)
            .where(Enterprise.secret == secret, Enterprise.active == true())
            .order_by(Enterprise.number)
            .limit(1)
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(stmt)).first()

    async def by_secret_with_host(self, secret: str) -> tuple[TenantRow, HostRow | None] | None:
        """`by_secret` and the row of its PBX host in one round trip (see `tenant_with_host`)."""
        if not secret or len(secret) > 255:
            return None
        return await tenant_with_host(await self.session.connection(), secret)

    async def get(self, number: str) -> Enterprise | None:
        """The enterprise with this number, active or not."""
        return await self.session.get(Enterprise, number, populate_existing=True)

    async def add(self, number: str, name: str, ip: str, secret: str) -> Enterprise:
        """Insert an active enterprise; InvalidInput for a bad field, AlreadyExists on a clash."""
        if not _NUMBER.fullmatch(number):
            raise InvalidInput("number", "must be 1 to 32 of A-Z a-z 0-9 _ -")
        if not name.strip() or len(name) > 255 or not name.isprintable():
            raise InvalidInput("name", "must be 1 to 255 printable characters")
        ip = _address(ip, "ip")
        if not _SECRET.fullmatch(secret):
            raise InvalidInput("secret", "must be 1 to 255 printable ASCII characters, no spaces")
        # A legacy table may have no constraints, so the clash checks are made here too.
        clash = await self.session.scalar(
            select(Enterprise.number)
            .where((Enterprise.number == number) | (Enterprise.secret == secret))
            .limit(1)
        )
        if clash is not None:
            raise AlreadyExists("an enterprise with this number or secret already exists")
        enterprise = Enterprise(number=number, name=name, ip=ip, secret=secret, active=True)
        self.session.add(enterprise)
        try:
            await self.session.commit()
        except IntegrityError:
            await self.session.rollback()
            raise AlreadyExists("an enterprise with this number or secret already exists") from None
        return enterprise

    async def list_all(self) -> list[Enterprise]:
        """Every enterprise, by number."""
        return list(await self.session.scalars(select(Enterprise).order_by(Enterprise.number)))

    async def set_active(self, number: str, active: bool) -> bool:
        """Enable or disable an enterprise; False if there is no such number."""
        result = await self.session.execute(
            update(Enterprise)
            .where(Enterprise.number == number)
            .values(active=active)
            .execution_options(synchronize_session=False)
        )
        await self.session.commit()
        return bool(getattr(result, "rowcount", 0))


class HostRepo:
    """Per-host SSH settings and pinned host keys (``pbx_hosts``)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, address: str) -> PbxHost | None:
        """The row of this host, or None (then the defaults apply)."""
        return await self.session.get(PbxHost, _address(address), populate_existing=True)

    async def list_all(self) -> list[PbxHost]:
        """Every host row, by address."""
        return list(await self.session.scalars(select(PbxHost).order_by(PbxHost.address)))

    async def set(self, address: str, **overrides: Unpack[HostOverrides]) -> PbxHost:
        """Create or update the host's row; only the given fields change (``None`` clears one).

        One ``INSERT ... ON CONFLICT DO UPDATE``: two operators setting different fields at
        once both get their change, and neither overwrites the other's.
        """
        key = _address(address)
        values = validate_overrides(overrides)
        now = utcnow()
        insert = _insert_for(self.session)
        stmt = insert(PbxHost).values(address=key, updated_at=now, **values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[PbxHost.address], set_={**values, "updated_at": now}
        )
        await self.session.execute(stmt)
        await self.session.commit()
        row = await self.get(key)
        assert row is not None  # just written in a committed transaction
        return row

    async def pin_host_key(self, address: str, public_key: str) -> str:
        """Store ``public_key`` unless a key is already pinned; return the key pinned now.

        A single ``INSERT ... ON CONFLICT DO UPDATE SET host_key = COALESCE(host_key, new)
        RETURNING host_key``: atomic on PostgreSQL (row lock, re-checked after a concurrent
        writer commits) and on SQLite (one writer at a time), so of many concurrent first
        contacts exactly one key wins and every caller learns which.
        """
        key = _address(address)
        try:
            line = normalize_public_key(public_key)
        except ValueError as exc:
            raise InvalidInput("public_key", str(exc)) from None
        now = utcnow()
        insert = _insert_for(self.session)
        stmt = insert(PbxHost).values(address=key, host_key=line, updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[PbxHost.address],
            set_={
                "host_key": func.coalesce(PbxHost.host_key, stmt.excluded.host_key),
                "updated_at": case(
                    (PbxHost.host_key.is_(None), stmt.excluded.updated_at),
                    else_=PbxHost.updated_at,
                ),
            },
        ).returning(PbxHost.host_key)
        pinned = (await self.session.execute(stmt)).scalar_one()
        await self.session.commit()
        return str(pinned)

    async def forget_host_key(self, address: str) -> bool:
        """Clear the pinned key (after an intended key change); False if none was pinned."""
        result = await self.session.execute(
            update(PbxHost)
            .where(PbxHost.address == _address(address), PbxHost.host_key.is_not(None))
            .values(host_key=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        await self.session.commit()
        return bool(getattr(result, "rowcount", 0))


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
    column name: `INSERT_CALL`'s parameters."""
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
    """`FINISH_CALL`'s parameters for a call's outcome; ``pending`` is refused."""
    result_outcome = CallOutcome(outcome)
    if result_outcome is CallOutcome.PENDING:
        raise ValueError("finish() needs a final outcome, not 'pending'")
    return {
        "call_id": call_id,
        "outcome": result_outcome.value,
        "error_code": details.get("error_code"),
        "error": details.get("error"),
        "channel": details.get("channel"),
        "response_time_ms": details.get("response_time_ms"),
        "finished_at": details.get("finished_at") or utcnow(),
    }


class CallRepo:
    """One ``calls`` row per call request."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, **fields: Unpack[NewCall]) -> CallRecord:
        """Record an incoming call request (outcome ``pending``) and commit it.

        One Core INSERT with every column given (so one compiled form serves every call), in
        autocommit mode (see `write_connection`). The record returned is built from the same
        values and is not in the session. A second row with the same (enterprise, idempotency
        key) raises IntegrityError.
        """
        values = new_call_values(**fields)
        record = CallRecord(
            **{key: value for key, value in values.items() if key != "metadata"},
            call_metadata=values["metadata"],
        )
        connection = await write_connection(self.session)
        try:
            await connection.execute(INSERT_CALL, values)
        except IntegrityError:
            await self.session.rollback()  # the session stays usable, as after a failed flush
            raise
        await self.session.commit()
        return record

    async def finish(
        self, call_id: str, outcome: CallOutcome | str, **details: Unpack[OutcomeDetails]
    ) -> bool:
        """Store a call's outcome; False if there is no such call. ``pending`` is refused."""
        values = finish_values(call_id, outcome, **details)
        connection = await write_connection(self.session)
        result = await connection.execute(FINISH_CALL, values)
        await self.session.commit()
        return bool(result.rowcount)

    async def get(self, call_id: str) -> CallRecord | None:
        """One call, freshly read (not a stale copy from this session)."""
        return await self.session.get(CallRecord, call_id, populate_existing=True)

    async def recent(
        self, limit: int = 50, *, enterprise_number: str | None = None
    ) -> Sequence[CallRecord]:
        """The newest calls first, at most ``limit`` (capped at 1000), optionally of one tenant."""
        stmt = select(CallRecord).order_by(CallRecord.created_at.desc(), CallRecord.id)
        if enterprise_number is not None:
            stmt = stmt.where(CallRecord.enterprise_number == enterprise_number)
        stmt = stmt.limit(max(1, min(limit, MAX_RECENT)))
        return list(await self.session.scalars(stmt.execution_options(populate_existing=True)))
