"""The old service's production ``enterprises`` table survives ``upgrade`` untouched and works.

The table is made by hand as production has it: the five columns, no primary key, no unique
constraint, nullable, other types than callgate would choose.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from callgate.db.engine import make_engine
from callgate.db.enterprises import (
    add_enterprise,
    by_secret_with_host,
    list_enterprises,
    set_active,
)
from callgate.db.executor import Database
from callgate.db.migrate import upgrade
from callgate.errors import AlreadyExists
from tests.support.database import opened

pytestmark = pytest.mark.postgres

LEGACY_DDL = """
CREATE TABLE enterprises (
    number varchar(10),
    name   text,
    ip     varchar(64),
    secret text,
    active boolean DEFAULT true
)
"""
ACTIVE_SECRET = "legacy-active-secret-0001"
INACTIVE_SECRET = "legacy-inactive-secret-02"

# Everything that describes the table: columns (name, type, length, nullability, default),
# constraints and indexes.
COLUMNS_SQL = """
SELECT column_name, data_type, character_maximum_length, is_nullable, column_default
FROM information_schema.columns WHERE table_name = 'enterprises' ORDER BY ordinal_position
"""
CONSTRAINTS_SQL = """
SELECT conname, contype FROM pg_constraint WHERE conrelid = 'enterprises'::regclass
ORDER BY conname
"""
INDEXES_SQL = "SELECT indexname FROM pg_indexes WHERE tablename = 'enterprises'"


@asynccontextmanager
async def raw(url: str) -> AsyncIterator[AsyncConnection]:
    """A plain connection that commits at the end, for what the old service's admins did."""
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            yield connection
    finally:
        await engine.dispose()


async def _describe(url: str) -> dict[str, list[tuple[Any, ...]]]:
    async with raw(url) as connection:
        return {
            name: [tuple(row) for row in await connection.execute(text(sql))]
            for name, sql in (
                ("columns", COLUMNS_SQL),
                ("constraints", CONSTRAINTS_SQL),
                ("indexes", INDEXES_SQL),
            )
        }


@pytest.fixture
async def legacy_url(pg_url: str) -> str:
    """A database holding only the hand-made legacy table with an active and inactive row."""
    async with raw(pg_url) as connection:
        await connection.execute(text(LEGACY_DDL))
        await connection.execute(
            text("INSERT INTO enterprises VALUES (:number, :name, :ip, :secret, :active)"),
            [
                {"number": "0367", "name": "june", "ip": "10.0.0.19", "secret": ACTIVE_SECRET,
                 "active": True},
                {"number": "0280", "name": "april", "ip": "10.0.0.20", "secret": INACTIVE_SECRET,
                 "active": False},
            ],
        )  # fmt: skip
    return pg_url


@pytest.fixture
async def database(legacy_url: str) -> AsyncIterator[Database]:
    """The service's `Database` on the legacy database after ``upgrade``."""
    await asyncio.to_thread(upgrade, legacy_url)  # upgrade() is sync-only
    async with opened(legacy_url) as found:
        yield found


async def test_upgrade_leaves_the_legacy_table_unchanged(legacy_url: str) -> None:
    """Columns, types, defaults, constraints, indexes and rows are exactly as before."""
    before = await _describe(legacy_url)
    assert [column[0] for column in before["columns"]] == [
        "number",
        "name",
        "ip",
        "secret",
        "active",
    ]
    await asyncio.to_thread(upgrade, legacy_url)
    await asyncio.to_thread(upgrade, legacy_url)  # and again, as every deployment does
    after = await _describe(legacy_url)
    assert after == before
    async with raw(legacy_url) as connection:
        rows = list(
            await connection.execute(text("SELECT number, secret, active FROM enterprises"))
        )
        tables = set(
            await connection.scalars(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
        )
    assert sorted(tuple(r) for r in rows) == [
        ("0280", INACTIVE_SECRET, False),
        ("0367", ACTIVE_SECRET, True),
    ]
    assert {"pbx_hosts", "calls"} <= tables


async def test_the_per_call_read_finds_active_legacy_rows_only(database: Database) -> None:
    """The active row is found by its secret; the inactive one is not."""
    found = await by_secret_with_host(database, ACTIVE_SECRET)
    assert found is not None and found[1] is None
    assert (found[0].number, found[0].name, found[0].ip) == ("0367", "june", "10.0.0.19")
    assert await by_secret_with_host(database, INACTIVE_SECRET) is None
    assert await by_secret_with_host(database, "' OR '1'='1") is None


async def test_legacy_table_without_constraints_still_refuses_clashes(database: Database) -> None:
    """No unique constraint in production: the add itself refuses a reused number or secret."""
    with pytest.raises(AlreadyExists):
        await add_enterprise(database, "0999", "copy", "10.0.0.1", ACTIVE_SECRET)
    with pytest.raises(AlreadyExists):
        await add_enterprise(database, "0367", "copy", "10.0.0.1", "another-secret-abcdefgh")
    added = await add_enterprise(database, "0400", "may", "10.0.0.1", "a-fresh-secret-abcdefghij")
    assert added.number == "0400"
    assert await set_active(database, "0280", True) is True
    listed = await list_enterprises(database)
    assert [e.number for e, _ in listed] == ["0280", "0367", "0400"]
    assert await by_secret_with_host(database, INACTIVE_SECRET) is not None
