"""SQLite's `Database`: Core statements on SQLAlchemy's async engine (aiosqlite).

The embedded default, for a single machine: each statement on its own commits by itself, a
`transaction` commits its statements together. SQLite's UPDATE cannot feed an INSERT in one
statement, so `update_with_row` runs the two in one transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import Executable

from callgate.db.engine import make_engine
from callgate.db.executor import Executor, Pooled, Row, UpdateWithRow, Values


class EngineConnection:
    """The `Executor` of one SQLAlchemy connection, in the transaction its owner began."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def rows(self, statement: Executable, values: Values | None = None) -> Sequence[Row]:
        result = await self._connection.execute(statement, dict(values or {}))
        return cast(Sequence[Row], result.mappings().all()) if result.returns_rows else []

    async def row(self, statement: Executable, values: Values | None = None) -> Row | None:
        result = await self._connection.execute(statement, dict(values or {}))
        return cast(Row | None, result.mappings().first())

    async def value(self, statement: Executable, values: Values | None = None) -> Any:
        result = await self._connection.execute(statement, dict(values or {}))
        return result.scalar()

    async def rowcount(self, statement: Executable, values: Values | None = None) -> int:
        result = await self._connection.execute(statement, dict(values or {}))
        return int(result.rowcount)

    async def many(self, statement: Executable, rows: Sequence[Values]) -> None:
        if rows:
            await self._connection.execute(statement, [dict(values) for values in rows])

    async def update_with_row(self, statement: UpdateWithRow, values: Values) -> int | None:
        if not await self.rowcount(statement.update, values):
            return None
        inserted = await self._connection.execute(statement.insert, dict(values))
        return int(inserted.lastrowid)  # the connection's own last row id: no query more


class SqliteDatabase(Pooled):
    """`Database` on SQLAlchemy's async engine (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self._engine = make_engine(url)

    async def open(self) -> None:
        """Nothing to do: the engine connects on first use."""

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[EngineConnection]:
        async with self._engine.begin() as connection:
            yield EngineConnection(connection)

    def transaction(self) -> AbstractAsyncContextManager[Executor]:
        return self._transaction()

    def _alone(self) -> AbstractAsyncContextManager[Executor]:
        return self._transaction()

    async def close(self) -> None:
        await self._engine.dispose()
