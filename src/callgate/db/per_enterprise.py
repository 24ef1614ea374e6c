"""Tables keyed by an enterprise's number beside the legacy ``enterprises`` table, whose five
columns stay as they are (e.g. ``enterprise_policies``): a row's upsert, and whether the
enterprise it names exists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Column, Table, bindparam, select
from sqlalchemy.dialects import postgresql

from callgate.db.executor import Executor, Row
from callgate.db.models import ENTERPRISES, utcnow

_ENTERPRISE = select(ENTERPRISES.c.number).where(ENTERPRISES.c.number == bindparam("n")).limit(1)


async def enterprise_exists(database: Executor, number: str) -> bool:
    return await database.value(_ENTERPRISE, {"n": number}) is not None


async def upsert(
    database: Executor,
    table: Table,
    number: str,
    values: Mapping[str, Any],
    returning: Sequence[Column[Any]],
) -> Row:
    """Set ``values`` in the row of ``number`` (created if missing), only those; the row's
    ``returning`` columns as stored. One ``INSERT ... ON CONFLICT DO UPDATE``, as
    `hosts.set_host`: two operators changing different fields at once both get their change."""
    now = utcnow()
    insert = postgresql.insert(table).values(enterprise_number=number, updated_at=now, **values)
    statement = insert.on_conflict_do_update(
        index_elements=[table.c.enterprise_number], set_={**values, "updated_at": now}
    ).returning(*returning)
    found = await database.row(statement)
    assert found is not None  # an upsert returns its row
    return found
