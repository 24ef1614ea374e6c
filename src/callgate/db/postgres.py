"""PostgreSQL's `Database`: Core statements on asyncpg's own pool, compiled once by SQLAlchemy.

asyncpg's pool rather than SQLAlchemy's async engine on the same driver: the engine's pool,
greenlet hop, execution context and result cost about as much CPU again as the statement
itself, and the service's CPU per call is what bounds its calls per second
(`python -m bench.db_paths` measures one call's statements both ways). The SQL of a
statement is compiled for the asyncpg dialect once and prepared once per connection
(asyncpg's statement cache); a statement's values travel as parameters.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

import asyncpg
from sqlalchemy import Insert, Update
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

from callgate.db.engine import CONNECT_TIMEOUT, POOL_SIZE, STATEMENT_TIMEOUT
from callgate.db.executor import Executor, Pooled, Row, UpdateWithRow, Values

_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy's, untyped
# Compiled forms kept: every statement the service runs again and again is built once (at
# import, or by a cached builder), so these are few; statements built per use (a history
# filter, an operator's change) come and go at the end of the line.
_FORMS_KEPT = 512


class _Compiled:
    """A Core statement as asyncpg runs it: its SQL and the order of its parameters."""

    def __init__(self, statement: Executable, names: Mapping[str, Any] | None) -> None:
        compiled = cast(
            SQLCompiler,
            cast(ClauseElement, statement).compile(
                dialect=_DIALECT,
                column_keys=list(names) if names is not None else None,
                compile_kwargs={"render_postcompile": True},  # IN lists as plain parameters
            ),
        )
        self.sql = str(compiled)
        self._order = tuple(compiled.positiontup or ())
        self._fixed = compiled.params  # the values built into the statement (LIMIT's, say)

    def args(self, values: Values | None) -> list[Any]:
        given = values or {}
        return [given[name] if name in given else self._fixed[name] for name in self._order]


class _Forms:
    """The compiled forms by statement object, the most recently used kept. Each entry holds
    its statement, so an id is never reused while its form is kept."""

    def __init__(self) -> None:
        self._kept: OrderedDict[int, tuple[Executable, _Compiled]] = OrderedDict()

    def of(self, statement: Executable, values: Values | None) -> _Compiled:
        key = id(statement)
        known = self._kept.get(key)
        if known is not None:
            self._kept.move_to_end(key)
            return known[1]
        # An INSERT or UPDATE without .values() takes its columns from the values given.
        names = values if isinstance(statement, Insert | Update) else None
        form = _Compiled(statement, names)
        self._kept[key] = (statement, form)
        if len(self._kept) > _FORMS_KEPT:
            self._kept.popitem(last=False)
        return form


class _Connection:
    """The `Executor` of one pooled connection."""

    def __init__(self, connection: asyncpg.Connection, forms: _Forms) -> None:
        self._connection, self._forms = connection, forms

    async def rows(self, statement: Executable, values: Values | None = None) -> Sequence[Row]:
        form = self._forms.of(statement, values)
        found: list[Row] = await self._connection.fetch(form.sql, *form.args(values))
        return found

    async def row(self, statement: Executable, values: Values | None = None) -> Row | None:
        form = self._forms.of(statement, values)
        found: Row | None = await self._connection.fetchrow(form.sql, *form.args(values))
        return found

    async def value(self, statement: Executable, values: Values | None = None) -> Any:
        form = self._forms.of(statement, values)
        return await self._connection.fetchval(form.sql, *form.args(values))

    async def rowcount(self, statement: Executable, values: Values | None = None) -> int:
        form = self._forms.of(statement, values)
        status: str = await self._connection.execute(form.sql, *form.args(values))
        return int(status.rsplit(" ", 1)[-1])  # "INSERT 0 <rows>", "UPDATE <rows>"

    async def many(self, statement: Executable, rows: Sequence[Values]) -> None:
        if rows:
            form = self._forms.of(statement, rows[0])
            await self._connection.executemany(form.sql, [form.args(values) for values in rows])

    async def update_with_row(self, statement: UpdateWithRow, values: Values) -> int | None:
        # One statement: the row is inserted exactly when the UPDATE returned one; its key
        # comes back in the same round trip (no row: None).
        key: int | None = await self.value(statement.returning, values)
        return key


_OWN_FORMS = _Forms()  # the compiled forms of the statements run on connections held apart


def own_connection(connection: asyncpg.Connection) -> Executor:
    """The `Executor` of a connection held outside the pool (`db.advisory`); its failures
    are asyncpg's own, for the holder to map."""
    return _Connection(connection, _OWN_FORMS)


async def _init(connection: asyncpg.Connection) -> None:
    """JSON columns as Python values both ways, as SQLAlchemy's own driver set-up does."""
    await connection.set_type_codec(
        "json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )


async def _no_reset(_connection: asyncpg.Connection) -> None:
    """Nothing to reset: no transaction, SET, LISTEN or lock outlives one use of these
    connections (a statement in autocommit, or one `transaction`), and asyncpg's default
    reset is a round trip on every release (`python -m bench.db_paths`, "reset")."""


class PostgresDatabase(Pooled):
    """`Database` on asyncpg's own pool (see the module docstring)."""

    def __init__(self, dsn: str, pool_size: int = POOL_SIZE) -> None:
        self._dsn, self._pool_size = dsn, pool_size
        self._pool: asyncpg.Pool | None = None
        self._forms = _Forms()

    async def open(self) -> None:
        if self._pool is not None:
            return  # open already
        # min_size 0: the pool opens connections on demand, none now.
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=0,
            max_size=self._pool_size,
            init=_init,
            reset=_no_reset,
            timeout=CONNECT_TIMEOUT,
            command_timeout=STATEMENT_TIMEOUT + 1.0,
            server_settings={
                "application_name": "callgate",
                "statement_timeout": str(int(STATEMENT_TIMEOUT * 1000)),
            },
        )

    @asynccontextmanager
    async def _connection(self, *, transaction: bool) -> AsyncIterator[_Connection]:
        """A pooled connection (in one transaction if asked); its failures, and those of the
        statements run on it, raised as SQLAlchemy's exceptions."""
        if self._pool is None:
            raise RuntimeError("PostgresDatabase used before open()")
        try:
            async with self._pool.acquire() as connection:
                if not transaction:
                    yield _Connection(connection, self._forms)
                    return
                async with connection.transaction():
                    yield _Connection(connection, self._forms)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError("", None, exc) from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # A connection closed under a statement is what a restarted server leaves in the
            # pool: worth one retry (`guard.bounded_retry`), as pre-ping would have done.
            dead = isinstance(exc, asyncpg.ConnectionDoesNotExistError | asyncpg.InterfaceError)
            raise DBAPIError("", None, exc, connection_invalidated=dead) from None

    def transaction(self) -> AbstractAsyncContextManager[Executor]:
        return self._connection(transaction=True)

    def _alone(self) -> AbstractAsyncContextManager[Executor]:
        return self._connection(transaction=False)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
