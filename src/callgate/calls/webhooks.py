"""Webhooks and RetailCRM: an enterprise's endpoints (added, listed, removed, enabled again)
and where a webhook may point.

What an event sends is `calls.webhook_messages`; the dispatcher that sends it, through an
outbox in the database, is `calls.dispatcher`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import SecretStr

from callgate.calls.admin import opened
from callgate.db import webhooks as store
from callgate.db.executor import Database
from callgate.db.guard import db_step
from callgate.domain import webhooks as rules
from callgate.domain.sealed import MAKE_A_KEY, seal
from callgate.errors import ConfigurationError, InvalidInput
from callgate.logs import get_logger
from callgate.settings import Settings

log = get_logger("callgate.webhooks")

WEBHOOK, RETAILCRM = "webhook", "retailcrm"
RESOLVE_TIMEOUT = 5.0  # seconds a target's name may take to resolve


def iso_time(at: datetime) -> str:
    # As `/v1/events` writes it (api/v1/events.py): one form on every channel.
    return at.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint as it may be shown: never its secret."""

    id: int
    enterprise_number: str
    kind: str
    url: str
    event_types: list[str] | None
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    failures: int
    retry_at: datetime | None


def _shown(row: store.EndpointRow) -> Endpoint:
    types = row.event_types.split() if row.event_types is not None else None
    return Endpoint(
        row.id,
        row.enterprise_number,
        row.kind,
        row.url,
        types,
        row.created_at,
        row.disabled_at,
        row.disabled_reason,
        row.failures,
        row.retry_at,
    )


# -- Checking a target ---------------------------------------------------------------------


class TargetRefused(ValueError):
    """A URL whose host is, or resolves to, an address webhooks may not reach."""


async def check_target(url: str, allow_private: bool) -> None:
    """TargetRefused when ``url``'s host resolves to a private, loopback or link-local
    address (any of them) and those are not allowed, or does not resolve at all."""
    if not allow_private:
        await allowed_addresses(*rules.host_of(url))


async def allowed_addresses(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order; TargetRefused when it
    does not resolve, or when any of them is private, loopback or link-local (a name that
    mixes them is refused whole)."""
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            found = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
    except (OSError, TimeoutError):
        raise TargetRefused(f"host {host!r} does not resolve") from None
    addresses = list(dict.fromkeys(str(address[0]) for *_, address in found))
    if not addresses or any(rules.is_private(address) for address in addresses):
        raise TargetRefused(
            "resolves to a private, loopback or link-local address "
            "(allowed only with CALLGATE_WEBHOOK_ALLOW_PRIVATE=true)"
        )
    return addresses


async def _checked(url: str, allow_private: bool, field: str = "url") -> str:
    try:
        rules.check_url(url)
        await check_target(url, allow_private)
    except ValueError as exc:
        raise InvalidInput(field, str(exc)) from None
    return url


def _stored_secret(value: str, key: SecretStr | None, *, required: bool) -> str:
    if key is None:
        if required:
            raise ConfigurationError(
                f"CALLGATE_SECRET_KEY is not set: API keys are stored encrypted; {MAKE_A_KEY}"
            )
        return value
    return seal(value, key)


# -- The enterprise's own endpoints (v1 API) -----------------------------------------------


class Webhooks:
    """An enterprise's webhook endpoints, for the v1 API."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self._database, self._settings = database, settings

    async def add(
        self, number: str, url: str, event_types: Sequence[str] | None
    ) -> tuple[Endpoint, str]:
        """A new endpoint and its signing secret (shown this once); InvalidInput for a URL or
        an event type that cannot be."""
        return await add_webhook(self._database, self._settings, number, url, event_types)

    async def list(self, number: str) -> list[Endpoint]:
        async with db_step("reading webhooks"):
            rows = await store.list_endpoints(self._database, number, WEBHOOK)
        return [_shown(row) for row in rows]

    async def status(self, within: float = 5.0) -> dict[str, object] | None:
        """For /api/status: the endpoints, the disabled ones (id, enterprise, since, why) and
        the deliveries waiting; None when the database cannot say."""
        try:
            async with asyncio.timeout(within):
                total, disabled, waiting = await store.summary(self._database)
        except Exception:  # a state to report, never a crash of /api/status
            return None
        return {
            "endpoints": total,
            "pending_deliveries": waiting,
            "disabled": [
                {
                    "id": row.id,
                    "enterprise": row.enterprise_number,
                    "kind": row.kind,
                    "disabled_at": iso_time(row.disabled_at) if row.disabled_at else None,
                    "reason": row.disabled_reason,
                }
                for row in disabled
            ],
        }

    async def remove(self, number: str, endpoint_id: int) -> bool:
        async with db_step("removing a webhook"):
            removed = await store.remove_endpoints(
                self._database, endpoint_id=endpoint_id, number=number, kind=WEBHOOK
            )
        return removed > 0


async def add_webhook(
    database: Database,
    settings: Settings,
    number: str,
    url: str,
    event_types: Sequence[str] | None,
) -> tuple[Endpoint, str]:
    await _checked(url, settings.webhook_allow_private)
    try:
        types = rules.check_event_types(event_types)
    except ValueError as exc:
        raise InvalidInput("event_types", str(exc)) from None
    secret = rules.new_secret()
    stored = _stored_secret(secret, settings.secret_key, required=False)
    async with db_step("adding a webhook"):
        if not await store.enterprise_exists(database, number):
            raise InvalidInput("enterprise", f"no enterprise with number {number!r}")
        # From now on: the events before it was added are not its to send.
        cursor = await store.head(database)
        row = await store.add_endpoint(database, number, WEBHOOK, url, types, stored, cursor)
    log.info("webhook added", endpoint=row.id, enterprise=number)
    return _shown(row), secret


# -- The operator's (CLI) ------------------------------------------------------------------


async def cli_add_webhook(
    settings: Settings, number: str, url: str, event_types: Sequence[str] | None
) -> tuple[Endpoint, str]:
    async with opened(settings.database_url) as database:
        return await add_webhook(database, settings, number, url, event_types)


async def cli_list(
    settings: Settings, number: str | None, kind: str = WEBHOOK
) -> list[tuple[Endpoint, int]]:
    """Endpoints with how many deliveries each has waiting."""
    async with opened(settings.database_url) as database:
        rows = await store.list_endpoints(database, number, kind)
        return [(_shown(row), await store.pending_count(database, row.id)) for row in rows]


async def cli_remove_webhook(settings: Settings, endpoint_id: int) -> bool:
    async with opened(settings.database_url) as database:
        removed = await store.remove_endpoints(
            database, endpoint_id=endpoint_id, number=None, kind=WEBHOOK
        )
        return removed > 0


async def cli_enable(settings: Settings, endpoint_id: int) -> bool:
    async with opened(settings.database_url) as database:
        return await store.enable_endpoint(database, endpoint_id)


async def set_crm(settings: Settings, number: str, url: str, api_key: str) -> Endpoint:
    """The enterprise's RetailCRM account (replacing one it had): calls from now on are told
    to it. The API key is stored encrypted (ConfigurationError without CALLGATE_SECRET_KEY)."""
    await _checked(url.rstrip("/"), settings.webhook_allow_private)
    stored = _stored_secret(api_key, settings.secret_key, required=True)
    async with opened(settings.database_url) as database:
        if not await store.enterprise_exists(database, number):
            raise InvalidInput("enterprise", f"no enterprise with number {number!r}")
        cursor = await store.head(database)
        async with database.transaction() as tx:
            await store.remove_endpoints(tx, number=number, kind=RETAILCRM)
            row = await store.add_endpoint(
                tx, number, RETAILCRM, url.rstrip("/"), None, stored, cursor
            )
    return _shown(row)


async def remove_crm(settings: Settings, number: str) -> bool:
    async with opened(settings.database_url) as database:
        return await store.remove_endpoints(database, number=number, kind=RETAILCRM) > 0
