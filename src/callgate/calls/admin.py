"""The operator's administration (`callgate db | enterprise | host`): the schema, enterprises
and their secrets and destination policies, hosts' SSH settings and pinned keys.

Each piece of work runs on the database of ``url``, opened for it and closed after
(`opened`). A database that fails is reported as `DatabaseUnavailable` naming the database
(its password masked) and what went wrong, never SQL, parameters or the password.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from pydantic import SecretStr
from sqlalchemy.exc import DBAPIError

from callgate.db import enterprise_limits, enterprises, hosts, policies
from callgate.db.engine import async_url, describe_db_error, safe_url
from callgate.db.enterprises import EnterpriseRow
from callgate.db.executor import Database, connect
from callgate.domain.destinations import DestinationPolicy, PolicyOverrides, effective_policy
from callgate.domain.hosts import HostRow
from callgate.domain.sealed import MAKE_A_KEY, MAX_PASSWORD_LENGTH, is_sealed, seal
from callgate.errors import ConfigurationError, DatabaseUnavailable, InvalidInput


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


async def set_host(
    url: str, address: str, changes: Mapping[str, Any], secret_key: SecretStr | None
) -> HostRow:
    """Change a host's settings (only those given; None resets one); the row as stored.

    A password is stored sealed with ``secret_key`` (`domain.sealed`): without a key it is
    refused (ConfigurationError saying how to make one). A password an earlier version stored
    in clear is sealed on this write too, when there is a key.
    """
    changes = dict(changes)
    password = changes.get("ssh_password")
    if password is not None:
        changes["ssh_password"] = _sealed(str(password), secret_key)
    async with opened(url) as database:
        row = await hosts.set_host(database, address, changes)
        if secret_key is not None and row.ssh_password and not is_sealed(row.ssh_password):
            sealed = seal(row.ssh_password, secret_key)
            resealed = await hosts.replace_password(database, address, row.ssh_password, sealed)
            row = resealed or row
        return row


def _sealed(password: str, secret_key: SecretStr | None) -> str:
    if secret_key is None:
        raise ConfigurationError(
            f"CALLGATE_SECRET_KEY is not set: SSH passwords are stored encrypted; {MAKE_A_KEY}"
        )
    if not password or "\x00" in password or len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            "ssh_password", f"must be 1 to {MAX_PASSWORD_LENGTH} characters, without NUL"
        )
    return seal(password, secret_key)


async def list_hosts(url: str) -> list[HostRow]:
    """Every host's row, by address."""
    async with opened(url) as database:
        return await hosts.list_hosts(database)


async def forget_host_key(url: str, address: str) -> bool:
    """Forget a host's pinned key; False if none was pinned."""
    async with opened(url) as database:
        return await hosts.forget_host_key(database, address)


async def set_policy(
    url: str, number: str, changes: Mapping[str, str | int | None], region: str
) -> DestinationPolicy | None:
    """Change an enterprise's destination policy (`policies.DEFAULT`: the global default's),
    only the fields given (None: inherited again); the policy now in force, None when there is
    no such enterprise."""
    async with opened(url) as database:
        if await policies.set_policy(database, number, changes) is None:
            return None
        default, own = await _stored_policies(database)
    if number == policies.DEFAULT:
        return effective_policy(PolicyOverrides(), default, region)
    return effective_policy(own.get(number, PolicyOverrides()), default, region)


async def destination_policies(
    url: str, region: str
) -> tuple[DestinationPolicy, dict[str, DestinationPolicy]]:
    """The policy of an enterprise without one of its own (the global default), and those of
    the enterprises that have their own, by number."""
    async with opened(url) as database:
        default, own = await _stored_policies(database)
    shown = {number: effective_policy(values, default, region) for number, values in own.items()}
    return effective_policy(PolicyOverrides(), default, region), shown


async def _stored_policies(
    database: Database,
) -> tuple[PolicyOverrides, dict[str, PolicyOverrides]]:
    stored = await policies.list_policies(database)
    return stored.pop(policies.DEFAULT, PolicyOverrides()), stored


async def set_limits(url: str, number: str, changes: Mapping[str, int | None]) -> bool:
    """Change an enterprise's own limits, only those given (None: the default again); False
    when there is no such enterprise."""
    async with opened(url) as database:
        return await enterprise_limits.set_limits(database, number, changes) is not None


async def own_limits(url: str) -> dict[str, dict[str, int]]:
    """Each enterprise's own limits by number (only the values it has)."""
    async with opened(url) as database:
        return await enterprise_limits.list_limits(database)
