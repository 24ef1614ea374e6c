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
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from callgate.db.engine import make_engine, make_sessionmaker
from callgate.db.migrate import upgrade
from callgate.db.repositories import AlreadyExists, EnterpriseRepo

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
async def sessions(legacy_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the legacy database after ``upgrade``."""
    await asyncio.to_thread(upgrade, legacy_url)  # upgrade() is sync-only
    engine = make_engine(legacy_url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


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


async def test_by_secret_finds_active_legacy_rows_only(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The active row is found by its secret; the inactive one is not."""
    async with sessions() as session:
        repo = EnterpriseRepo(session)
        found = await repo.by_secret(ACTIVE_SECRET)
        assert found is not None
        assert (found.number, found.name, found.ip) == ("0367", "june", "10.0.0.19")
        assert await repo.by_secret(INACTIVE_SECRET) is None
        assert await repo.by_secret("' OR '1'='1") is None


async def test_legacy_table_without_constraints_still_refuses_clashes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """No unique constraint in production: add() itself refuses a reused number or secret."""
    async with sessions() as session:
        repo = EnterpriseRepo(session)
        with pytest.raises(AlreadyExists):
            await repo.add("0999", "copy", "10.0.0.1", ACTIVE_SECRET)
        with pytest.raises(AlreadyExists):
            await repo.add("0367", "copy", "10.0.0.1", "another-secret-abcdefgh")
        added = await repo.add("0400", "may", "10.0.0.1", "a-fresh-secret-abcdefghij")
        assert added.number == "0400"
        assert await repo.set_active("0280", True) is True
    async with sessions() as session:
        assert [e.number for e in await EnterpriseRepo(session).list_all()] == [
            "0280",
            "0367",
            "0400",
        ]
        assert await EnterpriseRepo(session).by_secret(INACTIVE_SECRET) is not None
