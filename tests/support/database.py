"""The service's `Database` on a test's database URL, opened for the block and closed after."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from callgate.db.executor import Database, connect


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[Database]:
    database = connect(url)
    await database.open()
    try:
        yield database
    finally:
        await database.close()
