"""The three statements every call runs, on the cheapest path each database allows.

The authorisation read (`BY_SECRET_WITH_HOST`), the call row's insert (`INSERT_CALL`) and its
outcome's update (`FINISH_CALL`): single statements in autocommit, repositories' Core
statements each. On PostgreSQL the tracker's state changes take the same path
(`call_tracking.store_histories`).

- PostgreSQL: asyncpg itself, through its own pool, the SQL compiled once by SQLAlchemy for
  the asyncpg dialect and prepared once per connection (asyncpg's statement cache). Measured
  on the benchmark machine: one such statement cost 0.23 ms of CPU through SQLAlchemy's async
  engine (its pool, the greenlet hop, the execution context and the result) and 0.09 ms here,
  and the service's CPU is what bounds its calls per second.
- SQLite, the embedded default: the same Core statements on the lean engine
  (`make_read_engine`).

Both speak SQLAlchemy's exceptions (IntegrityError for a unique violation, DBAPIError with
``connection_invalidated`` for a connection that died while pooled), so `db.guard` maps their
failures alike.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol, cast

import asyncpg
from sqlalchemy import Insert, Update
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from callgate.db.engine import (
    CONNECT_TIMEOUT,
    POOL_OVERFLOW,
    POOL_SIZE,
    STATEMENT_TIMEOUT,
    async_url,
    make_read_engine,
)
from callgate.db.repositories import (
    BY_SECRET_WITH_HOST,
    FINISH_CALL,
    INSERT_CALL,
    HostRow,
    TenantRow,
    plausible_secret,
    tenant_from,
    tenant_with_host,
)

Tenant = tuple[TenantRow, HostRow | None]


class PerCallStatements(Protocol):
    """The per-call statements; every method is one statement, committed by itself."""

    async def open(self) -> None:
        """Get ready; opens no database connection (the service starts while it is down)."""

    async def tenant(self, secret: str) -> Tenant | None:
        """The active enterprise with this secret and its host row, read fresh."""

    async def insert_call(self, values: Mapping[str, Any]) -> None:
        """Insert a ``calls`` row (`new_call_values`); IntegrityError if its id or idempotency
        key is taken."""

    async def finish_call(self, values: Mapping[str, Any]) -> int:
        """Store an outcome (`finish_values`); how many rows it changed (0: no such call)."""

    async def close(self) -> None:
        """Release the connections."""


def per_call_statements(url: str) -> PerCallStatements:
    """asyncpg's pool for PostgreSQL, the lean engine otherwise; `open()` it before use."""
    target = async_url(url)
    if target.drivername == "postgresql+asyncpg":
        dsn = target.set(drivername="postgresql").render_as_string(hide_password=False)
        return AsyncpgStatements(dsn)
    return EngineStatements(make_read_engine(url))  # SQLite: async_url allows nothing else


class EngineStatements:
    """Through SQLAlchemy's engine (SQLite)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def open(self) -> None:
        """Nothing to do: the engine connects on first use."""

    async def tenant(self, secret: str) -> Tenant | None:
        async with self.engine.connect() as connection:
            return await tenant_with_host(connection, secret)

    async def insert_call(self, values: Mapping[str, Any]) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(INSERT_CALL, dict(values))

    async def finish_call(self, values: Mapping[str, Any]) -> int:
        async with self.engine.connect() as connection:
            result = await connection.execute(FINISH_CALL, dict(values))
        return int(result.rowcount)

    async def close(self) -> None:
        await self.engine.dispose()


_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy's, untyped


class _Compiled:
    """A Core statement as asyncpg runs it: its SQL and the order of its parameters."""

    def __init__(self, statement: ClauseElement, names: Mapping[str, Any] | None = None) -> None:
        compiled = cast(
            SQLCompiler,
            statement.compile(
                dialect=_DIALECT,
                column_keys=list(names) if names is not None else None,
            ),
        )
        self.sql = str(compiled)
        self._order = tuple(compiled.positiontup or ())
        self._fixed = compiled.params  # the values compiled in (LIMIT's)

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        return [values[name] if name in values else self._fixed[name] for name in self._order]


async def _no_reset(_connection: asyncpg.Connection) -> None:
    """Nothing to reset: no transaction, SET, LISTEN or lock outlives one use of these
    connections (a statement in autocommit, or one `transaction`), and asyncpg's default
    reset is a round trip on every release."""


class AsyncpgStatements:
    """Through asyncpg's own pool (PostgreSQL). The tracker writes through it too (see
    `call_tracking.store_histories`): `connection`, `rowcount` and `value` run any Core
    statement built once."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None
        # Compiled once per statement object (all of them are built once, at import or by a
        # cached builder); the statement is kept with its form, so its id is never reused.
        self._compiled: dict[int, tuple[ClauseElement, _Compiled]] = {}

    async def open(self) -> None:
        # min_size 0: the pool opens connections on demand, none now.
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=0,
            max_size=POOL_SIZE + POOL_OVERFLOW,
            reset=_no_reset,
            timeout=CONNECT_TIMEOUT,
            command_timeout=STATEMENT_TIMEOUT + 1.0,
            server_settings={
                "application_name": "callgate",
                "statement_timeout": str(int(STATEMENT_TIMEOUT * 1000)),
            },
        )

    def _form(self, statement: ClauseElement, values: Mapping[str, Any]) -> _Compiled:
        known = self._compiled.get(id(statement))
        if known is None:
            # An INSERT or UPDATE without .values() takes its columns from the first values.
            names = values if isinstance(statement, Insert | Update) else None
            known = self._compiled[id(statement)] = (statement, _Compiled(statement, names))
        return known[1]

    @asynccontextmanager
    async def connection(self, *, transaction: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection (in one transaction if asked); its failures, and those of the
        statements run on it, raised as SQLAlchemy's exceptions."""
        if self._pool is None:
            raise RuntimeError("AsyncpgStatements used before open()")
        try:
            async with self._pool.acquire() as connection:
                if not transaction:
                    yield connection
                    return
                async with connection.transaction():
                    yield connection
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError("", None, exc) from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # A connection closed under a statement is what a restarted server leaves in the
            # pool: worth one retry, as with the engine's invalidated connections.
            dead = isinstance(exc, asyncpg.ConnectionDoesNotExistError | asyncpg.InterfaceError)
            raise DBAPIError("", None, exc, connection_invalidated=dead) from None

    async def rowcount(
        self, connection: asyncpg.Connection, statement: ClauseElement, values: Mapping[str, Any]
    ) -> int:
        """Run an INSERT, UPDATE or DELETE; the rows it wrote."""
        form = self._form(statement, values)
        status: str = await connection.execute(form.sql, *form.args(values))
        return int(status.rsplit(" ", 1)[-1])  # "INSERT 0 <rows>", "UPDATE <rows>"

    async def value(
        self, connection: asyncpg.Connection, statement: ClauseElement, values: Mapping[str, Any]
    ) -> Any:
        """The first column of the first row (None without a row)."""
        form = self._form(statement, values)
        return await connection.fetchval(form.sql, *form.args(values))

    async def tenant(self, secret: str) -> Tenant | None:
        if not plausible_secret(secret):
            return None  # no such secret can be stored; spare the database
        values = {"secret": secret}
        form = self._form(BY_SECRET_WITH_HOST, values)
        async with self.connection() as connection:
            row = await connection.fetchrow(form.sql, *form.args(values))
        return None if row is None else tenant_from(row)

    async def insert_call(self, values: Mapping[str, Any]) -> None:
        encoded = dict(values)
        if encoded.get("metadata") is not None:  # asyncpg takes a JSON column's value as text
            encoded["metadata"] = json.dumps(encoded["metadata"])
        async with self.connection() as connection:
            await self.rowcount(connection, INSERT_CALL, encoded)

    async def finish_call(self, values: Mapping[str, Any]) -> int:
        async with self.connection() as connection:
            return await self.rowcount(connection, FINISH_CALL, values)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
