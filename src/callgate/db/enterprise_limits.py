"""``enterprise_limits``: an enterprise's own rate and live-call limits (NULL: the default).

Read whole by the service every few seconds (`calls.rate_limits.Limits.refresh`), so the
per-call check reads no database; written by `callgate enterprise limits`.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql

from callgate.db.executor import Executor, Row
from callgate.db.models import ENTERPRISE_LIMITS, ENTERPRISES, utcnow
from callgate.errors import InvalidInput
from callgate.settings import ENTERPRISE_LIMITS as LIMIT_FIELDS

_COLUMNS = tuple(ENTERPRISE_LIMITS.c[name] for name in ("enterprise_number", *LIMIT_FIELDS))
_ALL = select(*_COLUMNS).order_by(ENTERPRISE_LIMITS.c.enterprise_number)
_ENTERPRISE = select(ENTERPRISES.c.number).where(ENTERPRISES.c.number == bindparam("n")).limit(1)


def _own(found: Row) -> dict[str, int]:
    return {name: found[name] for name in LIMIT_FIELDS if found[name] is not None}


async def list_limits(database: Executor) -> dict[str, dict[str, int]]:
    """Every enterprise's own limits by number (only the values it has)."""
    return {found["enterprise_number"]: _own(found) for found in await database.rows(_ALL)}


async def set_limits(
    database: Executor, number: str, changes: Mapping[str, int | None]
) -> dict[str, int] | None:
    """Change the given limits of ``number`` (None: the default again; InvalidInput naming a
    field that is not one, or a negative value); None when there is no such enterprise."""
    for name, value in changes.items():
        if name not in LIMIT_FIELDS:
            raise InvalidInput(name, f"is not one of {', '.join(LIMIT_FIELDS)}")
        if value is not None and value < 0:
            raise InvalidInput(name, "must be 0 (off) or more")
    if await database.value(_ENTERPRISE, {"n": number}) is None:
        return None
    now = utcnow()
    values = dict(changes)
    insert = postgresql.insert(ENTERPRISE_LIMITS).values(
        enterprise_number=number, updated_at=now, **values
    )
    upsert = insert.on_conflict_do_update(
        index_elements=[ENTERPRISE_LIMITS.c.enterprise_number],
        set_={**values, "updated_at": now},
    ).returning(*_COLUMNS)
    found = await database.row(upsert)
    assert found is not None  # an upsert returns its row
    return _own(found)
