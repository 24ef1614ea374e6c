"""The operator's administration (`callgate db | enterprise | host`): the schema, enterprises
and their secrets, hosts' SSH settings and pinned keys.

Each piece of work runs on the database of ``url``, opened for it and closed after
(`opened`). A database that fails is reported as `DatabaseUnavailable` naming the database
(its password masked) and what went wrong, never SQL, parameters or the password.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.exc import DBAPIError

from callgate.db import enterprises, hosts
from callgate.db.engine import async_url, describe_db_error, safe_url
from callgate.db.enterprises import EnterpriseRow
from callgate.db.executor import Database, connect
from callgate.domain.hosts import HostRow
from callgate.errors import DatabaseUnavailable


def _unavailable(url: str, exc: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"database {safe_url(url)}: {describe_db_error(exc)}")


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Database]:
    """The database of ``url`` for the block (ConfigurationError for a URL it cannot use)."""
    database = connect(url)
    try:
        await database.open()
        try:
            yield database
        finally:
            await database.close()
    except (DBAPIError, OSError, TimeoutError) as exc:
        raise _unavailable(url, exc) from None


def upgrade_schema(url: str, revision: str) -> str:
    """Bring the schema to ``revision`` (synchronous); the database's URL as it may be shown.

    Alembic's CommandError for an unknown revision."""
    from callgate.db.migrate import upgrade  # lazily: Alembic loads only here

    async_url(url)  # a URL the service cannot use fails here, naming the setting
    try:
        upgrade(url, revision)
    except (DBAPIError, OSError, TimeoutError) as exc:
        raise _unavailable(url, exc) from None
    return safe_url(url)


async def add_enterprise(url: str, number: str, name: str, ip: str, secret: str) -> EnterpriseRow:
    """An active enterprise added; InvalidInput for a bad field, AlreadyExists on a clash."""
    async with opened(url) as database:
        return await enterprises.add_enterprise(database, number, name, ip, secret)


async def list_enterprises(url: str) -> list[tuple[EnterpriseRow, str]]:
    """Every enterprise by number, with its secret."""
    async with opened(url) as database:
        return await enterprises.list_enterprises(database)


async def set_active(url: str, number: str, active: bool) -> bool:
    """Enable or disable an enterprise; False if there is no such number."""
    async with opened(url) as database:
        return await enterprises.set_active(database, number, active)


async def set_host(url: str, address: str, changes: Mapping[str, Any]) -> HostRow:
    """Change a host's settings (only those given; None resets one); the row as stored."""
    async with opened(url) as database:
        return await hosts.set_host(database, address, changes)


async def list_hosts(url: str) -> list[HostRow]:
    """Every host's row, by address."""
    async with opened(url) as database:
        return await hosts.list_hosts(database)


async def forget_host_key(url: str, address: str) -> bool:
    """Forget a host's pinned key; False if none was pinned."""
    async with opened(url) as database:
        return await hosts.forget_host_key(database, address)
