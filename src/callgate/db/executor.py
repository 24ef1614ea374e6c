"""The one way statements reach the database: run a Core statement, alone or in a transaction.

Every statement of the service is a Core statement on the tables of `callgate.db.models`,
written once and run through an `Executor`; `connect` picks the backend of the URL's family,
each with one pool:

- PostgreSQL (`callgate.db.postgres`): asyncpg's own pool, the SQL compiled by SQLAlchemy for
  the asyncpg dialect.
- SQLite (`callgate.db.sqlite`): SQLAlchemy's async engine on aiosqlite.

Both raise SQLAlchemy's exceptions (IntegrityError for a unique violation, DBAPIError with
``connection_invalidated`` for a connection that died while pooled), so `db.guard` maps their
failures alike. Rows come back as mappings by column name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Insert, Select, Table, Update, insert, literal_column, select
from sqlalchemy.sql.expression import ColumnElement, Executable

from callgate.db.engine import POOL_SIZE, async_url

Row = Mapping[str, Any]
Values = Mapping[str, Any]


@dataclass(frozen=True, eq=False)
class UpdateWithRow:
    """An UPDATE and a row to insert exactly when the UPDATE changed a row, atomically.

    ``row`` gives the inserted row's columns as expressions of the same parameters (bind
    parameters, literals). Both forms are built here, once: ``update`` then ``insert`` in one
    transaction, and ``returning``, one statement (``WITH moved AS (UPDATE ... RETURNING 1)
    INSERT ... SELECT ... FROM moved RETURNING <key>``) for a database whose UPDATE can feed an
    INSERT; each backend runs the form its database has. Either way the inserted row's primary
    key comes back with no statement more (RETURNING, or SQLite's last row id): a call's event
    id (`db.event_log`).
    """

    update: Update
    table: Table
    row: Mapping[str, ColumnElement[Any]]
    insert: Insert = field(init=False)
    returning: Insert = field(init=False)

    def __post_init__(self) -> None:
        moved = self.update.returning(literal_column("1")).cte("moved")
        chosen: Select[Any] = select(*self.row.values()).select_from(moved)
        object.__setattr__(self, "insert", insert(self.table).values(dict(self.row)))
        key = next(iter(self.table.primary_key.columns))
        object.__setattr__(
            self,
            "returning",
            insert(self.table).from_select(list(self.row), chosen).returning(key),
        )


class Executor(Protocol):
    """Runs Core statements; each method one statement. On a `Database` each statement
    commits by itself; inside `Database.transaction` they share its transaction."""

    async def rows(self, statement: Executable, values: Values | None = None) -> Sequence[Row]:
        """Every row of a query (or of an INSERT/UPDATE ... RETURNING)."""

    async def row(self, statement: Executable, values: Values | None = None) -> Row | None:
        """The first row, or None."""

    async def value(self, statement: Executable, values: Values | None = None) -> Any:
        """The first column of the first row (None without a row)."""

    async def rowcount(self, statement: Executable, values: Values | None = None) -> int:
        """Run an INSERT, UPDATE or DELETE; how many rows it wrote."""

    async def many(self, statement: Executable, rows: Sequence[Values]) -> None:
        """Run an INSERT or UPDATE once per set of values (each with the same names), in one
        go: the driver's executemany, one compiled statement for any number of rows."""

    async def update_with_row(self, statement: UpdateWithRow, values: Values) -> int | None:
        """Run ``statement`` (see `UpdateWithRow`); the primary key of the row inserted, None
        when the UPDATE changed no row (and so nothing was inserted)."""


class Database(Executor, Protocol):
    """An `Executor` on a pool of connections, and transactions of several statements."""

    def transaction(self) -> AbstractAsyncContextManager[Executor]:
        """An `Executor` whose statements commit together when the block ends without error."""

    async def open(self) -> None:
        """Get ready; opens no connection (the service starts while the database is down)."""

    async def close(self) -> None:
        """Release the connections."""


class Pooled(ABC):
    """A `Database`'s statements, each on a connection of its own from `_alone`."""

    @abstractmethod
    def _alone(self) -> AbstractAsyncContextManager[Executor]:
        """A pooled connection for one statement that commits by itself."""

    async def rows(self, statement: Executable, values: Values | None = None) -> Sequence[Row]:
        async with self._alone() as connection:
            return await connection.rows(statement, values)

    async def row(self, statement: Executable, values: Values | None = None) -> Row | None:
        async with self._alone() as connection:
            return await connection.row(statement, values)

    async def value(self, statement: Executable, values: Values | None = None) -> Any:
        async with self._alone() as connection:
            return await connection.value(statement, values)

    async def rowcount(self, statement: Executable, values: Values | None = None) -> int:
        async with self._alone() as connection:
            return await connection.rowcount(statement, values)

    async def many(self, statement: Executable, rows: Sequence[Values]) -> None:
        async with self._alone() as connection:
            await connection.many(statement, rows)

    async def update_with_row(self, statement: UpdateWithRow, values: Values) -> int | None:
        async with self._alone() as connection:
            return await connection.update_with_row(statement, values)


def connect(url: str, pool_size: int = POOL_SIZE) -> Database:
    """The database of ``url`` (postgresql://, sqlite:///...); `open()` it before use.
    ``pool_size``: PostgreSQL's connections at most (SQLite has one writer anyway)."""
    target = async_url(url)
    if target.drivername == "postgresql+asyncpg":
        from callgate.db.postgres import PostgresDatabase

        dsn = target.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresDatabase(dsn, pool_size)
    from callgate.db.sqlite import SqliteDatabase  # async_url allows nothing else

    return SqliteDatabase(url)
