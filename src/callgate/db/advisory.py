"""One dedicated PostgreSQL connection per process for what several instances coordinate on:
advisory locks, and short statements that must not wait for the pool (the double-click claims).

`AdvisoryLocks.acquire(key)` takes a session-level advisory lock on a 64-bit hash of ``key``
(``hashtextextended``) until `release`: no other instance holds it meanwhile. The locks live
on this connection, outside the pool, so a lock costs two short statements
(``pg_try_advisory_lock`` then ``pg_advisory_unlock``), no transaction and no pooled
connection held meanwhile. A session-level lock is re-entrant: the callers of this process on
one key all get it at once, and the process serialises them itself. While another instance
holds the key, the try is repeated every ``RETRY`` seconds, for at most ``WAIT``.

It is also an `Executor` (one statement at a time, each committed by itself): a statement run
on it skips the pool's checkout and release, about half of what a one-row upsert costs the
service (`python -m bench.instances`, "parts").

A lock may also be taken and let go by statements a call runs anyway, in the same round
trips: tried by the double-click claim of the call about to be originated (`row_locking`,
`db.claims`), then `acquire` finds it held and sends nothing (a lock so taken that nothing
acquired is let go by `release_unused`); let go by the statement that stores the call's
outcome (`row_releasing`, `db.calls`). The originate lock then costs no statement of its own:
``python -m bench.instances paced two`` against ``--without locks``.

Should the connection end while a lock is held, the lock is gone with it (the server releases
a session's locks when it ends): its holder finishes unguarded, which is logged; the next
statement opens a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import String, bindparam, func
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql.expression import ColumnElement, Executable

from callgate import errors
from callgate.db.engine import CONNECT_TIMEOUT, STATEMENT_TIMEOUT, async_url
from callgate.db.executor import Executor, Row, UpdateWithRow, Values
from callgate.db.postgres import own_connection
from callgate.logs import get_logger

log = get_logger("callgate.advisory")

T = TypeVar("T")
APPLICATION_NAME = "callgate-locks"
RETRY = 0.005  # seconds between two tries while another instance holds the key
WAIT = 10.0  # seconds a block waits for a key at most (then DatabaseUnavailable)
_TRY = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended($1, 0))"
_FAULTS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True, slots=True)
class Held:
    """A lock `AdvisoryLocks.acquire` gave: its key, and the connection that holds it."""

    key: str
    connection: asyncpg.Connection | None


def _hashed(name: str) -> ColumnElement[int]:
    """The 64-bit lock key of the text bound as ``name``, as `_TRY` and `_UNLOCK` hash it."""
    return func.hashtextextended(bindparam(name, type_=String()), 0)


def unlock(name: str) -> ColumnElement[bool]:
    """`pg_advisory_unlock` on the key bound as ``name``, as a column of another statement
    (`AdvisoryLocks.row_releasing`), labelled ``unlocked``."""
    return func.pg_advisory_unlock(_hashed(name)).label("unlocked")


def try_lock(name: str) -> ColumnElement[bool]:
    """`pg_try_advisory_lock` on the key bound as ``name``, as a column of another statement
    (`AdvisoryLocks.row_locking`), labelled ``locked``."""
    return func.pg_try_advisory_lock(_hashed(name)).label("locked")


class AdvisoryLocks:
    """See the module docstring; ``aclose()`` at shutdown."""

    def __init__(self, url: str) -> None:
        target = async_url(url).set(drivername="postgresql")
        self._dsn = target.render_as_string(hide_password=False)
        self._connection: asyncpg.Connection | None = None
        self._turn = asyncio.Lock()  # one statement at a time on the connection
        # Locks taken by `row_locking` on the open connection that no block has yet, by key
        # (a session's lock is re-entrant: each taking counts, each unlock takes one away).
        self._early: dict[str, int] = {}
        self.waits = 0  # tries that found the key held by another instance (the bench)

    async def _on(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``work`` on the connection (opened if need be), alone on it."""
        async with self._turn:
            if self._connection is None or self._connection.is_closed():
                self._early.clear()  # gone with the connection that took them
                self._connection = await asyncpg.connect(
                    self._dsn,
                    timeout=CONNECT_TIMEOUT,
                    command_timeout=STATEMENT_TIMEOUT,
                    server_settings={
                        "application_name": APPLICATION_NAME,
                        "statement_timeout": str(int(STATEMENT_TIMEOUT * 1000)),
                    },
                )
            return await work(self._connection)

    async def _statement(self, work: Callable[[Executor], Awaitable[T]]) -> T:
        """A statement of the `Executor` protocol; failures raised as SQLAlchemy's, as the
        pool's are (`db.postgres`)."""
        try:
            return await self._on(lambda connection: work(own_connection(connection)))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError("", None, exc) from None
        except _FAULTS as exc:
            raise DBAPIError("", None, exc, connection_invalidated=True) from None

    async def rows(self, statement: Executable, values: Values | None = None) -> Sequence[Row]:
        return await self._statement(lambda on: on.rows(statement, values))

    async def row(self, statement: Executable, values: Values | None = None) -> Row | None:
        return await self._statement(lambda on: on.row(statement, values))

    async def value(self, statement: Executable, values: Values | None = None) -> Any:
        return await self._statement(lambda on: on.value(statement, values))

    async def rowcount(self, statement: Executable, values: Values | None = None) -> int:
        return await self._statement(lambda on: on.rowcount(statement, values))

    async def many(self, statement: Executable, rows: Sequence[Values]) -> None:
        await self._statement(lambda on: on.many(statement, rows))

    async def update_with_row(self, statement: UpdateWithRow, values: Values) -> int | None:
        return await self._statement(lambda on: on.update_with_row(statement, values))

    async def row_locking(self, statement: Executable, values: Values, key: str) -> Row | None:
        """``statement``'s row, run on this connection; its ``locked`` column (`try_lock`, on
        ``key``) says whether it took the lock, which is then held for the next `acquire` of
        ``key`` (or `release_unused`). A statement that fails or is cancelled midway ends
        the connection: a lock it may have taken goes with it."""

        async def work(connection: asyncpg.Connection) -> Row | None:
            try:
                row = await own_connection(connection).row(statement, values)
            except BaseException:
                connection.terminate()
                self._early.clear()  # every lock of the connection is gone with it
                raise
            if row is not None and row["locked"]:
                self._early[key] = self._early.get(key, 0) + 1
            return row

        try:
            return await self._on(work)
        except _FAULTS as exc:
            raise DBAPIError("", None, exc, connection_invalidated=True) from None

    def _take_early(self, key: str) -> bool:
        """Whether a lock on ``key`` taken by `row_locking` was there (now the caller's)."""
        count = self._early.get(key, 0)
        if count > 1:
            self._early[key] = count - 1
        elif count == 1:
            del self._early[key]
        return count > 0

    async def release_unused(self, key: str) -> None:
        """Let go of a lock on ``key`` that `row_locking` took and no block used (the call was
        refused, or another instance placed it)."""
        if self._take_early(key):
            await self._unlock(key, self._connection)

    async def _unlock(self, key: str, held: asyncpg.Connection | None) -> None:
        if self.lost(Held(key, held)):
            return
        assert held is not None  # not lost
        try:
            await asyncio.shield(self._fetch(_UNLOCK, key))
        except _FAULTS as exc:  # the connection's end releases it anyway
            log.warning("lock not released", error=type(exc).__name__)
            with contextlib.suppress(Exception):
                held.terminate()

    async def _fetch(self, sql: str, key: str) -> bool:
        return bool(await self._on(lambda connection: connection.fetchval(sql, key)))

    async def acquire(self, key: str) -> Held:
        """The lock on ``key`` (taken by `row_locking` already, or now), until `release` or
        `row_releasing`; DatabaseUnavailable if it cannot be had."""
        deadline = asyncio.get_running_loop().time() + WAIT
        try:
            while not self._take_early(key) and not await self._fetch(_TRY, key):
                self.waits += 1
                if asyncio.get_running_loop().time() > deadline:
                    raise errors.DatabaseUnavailable("another instance held a lock for too long")
                await asyncio.sleep(RETRY)
        except _FAULTS as exc:
            raise errors.DatabaseUnavailable(
                f"database unavailable while taking a lock ({type(exc).__name__})"
            ) from None
        return Held(key, self._connection)

    async def release(self, held: Held) -> None:
        """Let go of a lock `acquire` gave."""
        await self._unlock(held.key, held.connection)

    def lost(self, held: Held) -> bool:
        """Whether ``held`` went with the connection that held it (logged): then nothing may
        unlock its key on this one, where the same key may be another call's now (a
        session's lock is re-entrant)."""
        connection = held.connection
        if connection is self._connection and connection is not None and not connection.is_closed():
            return False
        log.warning("lock lost with its connection while held")
        return True

    async def row_releasing(self, held: Held, statement: Executable, values: Values) -> Row | None:
        """``statement``'s row, run on this connection; its ``unlocked`` column (`unlock`,
        bound to ``held``'s key by the caller) lets go of ``held`` in the same round trip.
        Only for a lock not `lost`. Should the statement fail, the lock is let go alone;
        should it be cancelled midway (whether it ran is not known), with its connection,
        which ends."""
        try:
            return await self._statement(lambda on: on.row(statement, values))
        except (asyncio.CancelledError, TimeoutError):
            connection = held.connection
            if connection is self._connection and connection is not None:
                connection.terminate()
                self._early.clear()
            raise
        except BaseException:
            await self._unlock(held.key, held.connection)
            raise

    async def aclose(self) -> None:
        async with self._turn:
            if self._connection is not None and not self._connection.is_closed():
                await self._connection.close()
            self._connection = None
