"""``pbx_hosts``: per-host SSH settings and pinned host keys, as `HostRow`s.

Nothing is cached: the service reads a host's row per call, so CLI changes apply to the next
call without a restart. Addresses are stored and looked up in `host_address`'s canonical form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql

from callgate.db.executor import Executor, Row
from callgate.db.models import PBX_HOSTS, utcnow
from callgate.domain.hosts import (
    HOST_FIELDS,
    HostRow,
    check_host_fields,
    host_address,
    normalize_public_key,
)
from callgate.errors import ConfigurationError, InvalidInput

HOST_COLUMNS = tuple(PBX_HOSTS.c[name] for name in ("address", *HOST_FIELDS))
_BY_ADDRESS = select(*HOST_COLUMNS).where(PBX_HOSTS.c.address == bindparam("address"))
_ALL = select(*HOST_COLUMNS).order_by(PBX_HOSTS.c.address)
_REPLACE_PASSWORD = (
    update(PBX_HOSTS)
    .where(
        PBX_HOSTS.c.address == bindparam("p_address"),
        PBX_HOSTS.c.ssh_password == bindparam("p_old"),
    )
    .values(ssh_password=bindparam("p_new"), updated_at=bindparam("p_at"))
    .returning(*HOST_COLUMNS)
)
_FORGET_KEY = (
    update(PBX_HOSTS)
    .where(PBX_HOSTS.c.address == bindparam("p_address"), PBX_HOSTS.c.host_key.is_not(None))
    .values(host_key=None, updated_at=bindparam("p_at"))
)


def _upsert() -> Any:
    """``INSERT ... ON CONFLICT``: the same SQL on PostgreSQL and SQLite, and SQLAlchemy's
    SQLite compiler renders PostgreSQL's construct (both backends run every statement here)."""
    return postgresql.insert(PBX_HOSTS)


def _pin() -> Any:
    """Store a key unless one is pinned; the key pinned afterwards (see `pin_host_key`)."""
    stmt = _upsert().values(
        address=bindparam("address"), host_key=bindparam("host_key"), updated_at=bindparam("at")
    )
    return stmt.on_conflict_do_update(
        index_elements=[PBX_HOSTS.c.address],
        set_={
            "host_key": func.coalesce(PBX_HOSTS.c.host_key, stmt.excluded.host_key),
            "updated_at": case(
                (PBX_HOSTS.c.host_key.is_(None), stmt.excluded.updated_at),
                else_=PBX_HOSTS.c.updated_at,
            ),
        },
    ).returning(PBX_HOSTS.c.host_key)


_PIN = _pin()


def host_row(found: Row) -> HostRow:
    """A `HostRow` from a result row holding `HOST_COLUMNS` (by name)."""
    return HostRow(*(found[column.name] for column in HOST_COLUMNS))


def address_of(value: str, field: str = "address") -> str:
    """`host_address`, its failure an InvalidInput naming ``field``."""
    try:
        return host_address(value)
    except ConfigurationError as exc:
        raise InvalidInput(field, exc.message) from None


async def get_host(database: Executor, address: str) -> HostRow | None:
    """The row of this host, or None (then the defaults apply)."""
    found = await database.row(_BY_ADDRESS, {"address": address_of(address)})
    return None if found is None else host_row(found)


async def list_hosts(database: Executor) -> list[HostRow]:
    """Every host row, by address."""
    return [host_row(found) for found in await database.rows(_ALL)]


async def set_host(database: Executor, address: str, changes: Mapping[str, Any]) -> HostRow:
    """Create or update the host's row; only the given fields change (``None`` clears one).

    One ``INSERT ... ON CONFLICT DO UPDATE``: two operators setting different fields at once
    both get their change, and neither overwrites the other's.
    """
    key = address_of(address)
    values = check_host_fields(changes)
    now = utcnow()
    stmt = _upsert().values(address=key, updated_at=now, **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[PBX_HOSTS.c.address], set_={**values, "updated_at": now}
    ).returning(*HOST_COLUMNS)
    found = await database.row(stmt)
    assert found is not None  # an upsert returns its row
    return host_row(found)


async def replace_password(database: Executor, address: str, old: str, new: str) -> HostRow | None:
    """Store ``new`` as the host's password if it still holds ``old`` (a concurrent change
    wins); the row as stored, or None if the password had changed meanwhile."""
    found = await database.row(
        _REPLACE_PASSWORD,
        {"p_address": address_of(address), "p_old": old, "p_new": new, "p_at": utcnow()},
    )
    return None if found is None else host_row(found)


async def pin_host_key(database: Executor, address: str, public_key: str) -> str:
    """Store ``public_key`` unless a key is already pinned; return the key pinned now.

    A single ``INSERT ... ON CONFLICT DO UPDATE SET host_key = COALESCE(host_key, new)
    RETURNING host_key``: atomic on PostgreSQL (row lock, re-checked after a concurrent writer
    commits) and on SQLite (one writer at a time), so of many concurrent first contacts
    exactly one key wins and every caller learns which.
    """
    key = address_of(address)
    try:
        line = normalize_public_key(public_key)
    except ValueError as exc:
        raise InvalidInput("public_key", str(exc)) from None
    pinned = await database.value(_PIN, {"address": key, "host_key": line, "at": utcnow()})
    return str(pinned)


async def forget_host_key(database: Executor, address: str) -> bool:
    """Clear the pinned key (after an intended key change); False if none was pinned."""
    changed = await database.rowcount(
        _FORGET_KEY, {"p_address": address_of(address), "p_at": utcnow()}
    )
    return changed > 0
