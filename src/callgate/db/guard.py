"""Bound every database step in time and turn its failures into DatabaseUnavailable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from callgate.errors import Conflict, DatabaseUnavailable

# A step that takes longer than this is treated as a dead database: the client gets a clear
# error quickly instead of a hanging request.
DEFAULT_DB_TIMEOUT = 2.0


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
        raise DatabaseUnavailable(
            f"database unavailable while {what} ({type(exc).__name__})", retryable=stale
        ) from None
