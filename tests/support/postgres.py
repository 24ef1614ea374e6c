"""A fresh PostgreSQL database per test: ``callgate_test_<hex>``, dropped afterwards.

The server is the one of ``CALLGATE_TEST_POSTGRES`` (default: the local trust-auth server). If it
cannot be reached the test is skipped, or failed under ``CALLGATE_REQUIRE_SERVICES=1``.

The admin statements run on a private event loop in a worker thread, so the helper works from
synchronous fixtures and tests alike without touching pytest-asyncio's loop.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.services import POSTGRES_ADMIN_URL, missing, port_open

_T = TypeVar("_T")
PREFIX = "callgate_test_"


def _isolated(work: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``work()`` to completion on a new event loop in a worker thread."""

    async def main() -> _T:
        return await work()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


def _plain_url(url: URL) -> str:
    """The URL as operators write it (``postgresql://``), rendered with its password."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(admin: URL, statement: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE refuse to run inside)."""
    engine = create_async_engine(
        admin.set(drivername="postgresql+asyncpg"),
        isolation_level="AUTOCOMMIT",
        connect_args={"timeout": 5},
    )
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@contextmanager
def fresh_database(admin_url: str = POSTGRES_ADMIN_URL) -> Iterator[str]:
    """Create an empty database, yield its ``postgresql://`` URL, drop it on exit."""
    admin = make_url(admin_url)
    host, port = admin.host or "127.0.0.1", admin.port or 5432
    if not port_open(host, port):
        missing("PostgreSQL", f"nothing listens on {host}:{port}")
    name = PREFIX + secrets.token_hex(6)  # hex only: safe to put into the statement
    try:
        _isolated(lambda: _admin(admin, f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError, DBAPIError) as exc:
        missing("PostgreSQL", f"cannot create a database: {type(exc).__name__}")
    try:
        yield _plain_url(admin.set(database=name))
    finally:
        # FORCE: a connection a failed test left open must not keep the database alive.
        _isolated(lambda: _admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
