"""Bound every database step in time and turn its failures into DatabaseUnavailable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from callgate import metrics
from callgate.errors import Conflict, DatabaseUnavailable

# A step that takes longer than this is treated as a dead database: the client gets a clear
# error quickly instead of a hanging request.
DEFAULT_DB_TIMEOUT = 2.0
T = TypeVar("T")


@asynccontextmanager
async def db_step(what: str, within: float = DEFAULT_DB_TIMEOUT) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(within):
            yield
    except IntegrityError:
        # A unique constraint said no: the database works, the row exists already.
        raise Conflict(f"conflict while {what}") from None
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        # The class name only: messages of drivers can carry the DSN.
        stale = isinstance(exc, DBAPIError) and exc.connection_invalidated
        metrics.database_failed(what)
        raise DatabaseUnavailable(
            f"database unavailable while {what} ({type(exc).__name__})", retryable=stale
        ) from None


async def bounded(
    what: str, work: Callable[[], Awaitable[T]], within: float = DEFAULT_DB_TIMEOUT
) -> T:
    """Run `work` as a db_step that answers within `within` even if its cleanup does not.

    When a database stops answering mid-query, SQLAlchemy's asyncpg adapter closes the
    cancelled connection politely (up to 2 s more) inside the cancelled step, so a bare
    db_step could take twice its bound. Here the step runs in its own task: the caller gets
    DatabaseUnavailable on time and the cleanup finishes in the background.
    """

    async def step() -> T:
        async with db_step(what, within):
            return await work()

    task = asyncio.ensure_future(step())
    done, _ = await asyncio.wait({task}, timeout=within + 0.05)
    if not done:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        metrics.database_failed(what)
        raise DatabaseUnavailable(f"database unavailable while {what} (TimeoutError)")
    return task.result()


async def bounded_retry(
    what: str, work: Callable[[], Awaitable[T]], within: float = DEFAULT_DB_TIMEOUT
) -> T:
    """`bounded`, and once more when the first attempt met a connection that had died while
    pooled (``DatabaseUnavailable.retryable``): what pre-ping does before every checkout, done
    only when needed (PostgreSQL's pool in `db.postgres` does not ping). For work that is safe
    to run twice or can tell that its first attempt landed."""
    try:
        return await bounded(what, work, within)
    except DatabaseUnavailable as exc:
        if not exc.retryable:
            raise
    return await bounded(what, work, within)
