"""The per-call read accepts an enterprise only on its exact secret, whatever the legacy
table's column does with comparisons (a case-insensitive collation, ``char(n)`` padding)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from callgate.db.enterprises import by_secret_with_host
from callgate.db.migrate import upgrade
from tests.support.database import opened

pytestmark = pytest.mark.postgres

SECRET = "Legacy-Secret-0123456789abcdef"


async def legacy_table(pg_url: str, column: str) -> None:
    """A seed-shaped `enterprises` table whose secret column is ``column``, then callgate's."""
    connection = await asyncpg.connect(pg_url)
    try:
        await connection.execute(
            "CREATE COLLATION IF NOT EXISTS nocase"
            " (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
        )
        await connection.execute(
            "CREATE TABLE enterprises (number varchar(16), name varchar(64), ip varchar(64),"
            f" secret {column}, active boolean)"
        )
        await connection.execute(
            "INSERT INTO enterprises VALUES ('0367', 'june', '10.0.0.5', $1, true)", SECRET
        )
    finally:
        await connection.close()
    await asyncio.to_thread(upgrade, pg_url)


async def test_a_secret_equal_only_by_the_collation_is_refused(pg_url: str) -> None:
    await legacy_table(pg_url, "varchar(64) COLLATE nocase")
    async with opened(pg_url) as database:
        assert await by_secret_with_host(database, SECRET) is not None
        # The database finds the row for either spelling; only the exact one authorises.
        assert await by_secret_with_host(database, SECRET.upper()) is None
        assert await by_secret_with_host(database, SECRET.lower()) is None


async def test_a_fixed_width_secret_column_still_authorises(pg_url: str) -> None:
    await legacy_table(pg_url, "char(64)")
    async with opened(pg_url) as database:
        found = await by_secret_with_host(database, SECRET)
        assert found is not None and found[0].number == "0367"
        assert await by_secret_with_host(database, SECRET[:-1]) is None
