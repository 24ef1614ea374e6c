"""The composition root of the PBX side: the transports, their SSH pool and the database's host
keys, the circuit breaker and the client, built from settings. Only here do pbx and db meet.

A transport is one module plus its registration below (see ``pbx/registry.py``).
"""

from __future__ import annotations

from callgate.calls.targets import build_target
from callgate.db.executor import Executor
from callgate.db.guard import db_step
from callgate.db.host_keys import DbHostKeyStore
from callgate.db.hosts import get_host
from callgate.errors import ConfigurationError
from callgate.pbx import console, rx
from callgate.pbx.breaker import CircuitBreaker
from callgate.pbx.client import PbxClient
from callgate.pbx.registry import TRANSPORTS, Shared
from callgate.pbx.routing import RoutingTransport
from callgate.pbx.ssh import PoolLimits, SshPool
from callgate.pbx.transport import PbxTransport
from callgate.settings import Settings, Transport

TRANSPORTS.register(Transport.RX.value, rx.build)
TRANSPORTS.register(Transport.CONSOLE.value, console.build)


def registered_transport(name: str) -> str:
    """``name`` when a transport is registered under it, else a ValueError naming those that
    are (``callgate host set --transport``)."""
    if name not in TRANSPORTS:
        raise ValueError(f"no transport named {name!r} (registered: {TRANSPORTS.names()})")
    return name


def check_settings(settings: Settings) -> None:
    """What only the composition root can check, at start: CALLGATE_TRANSPORT names a
    registered transport (else ConfigurationError naming it)."""
    try:
        registered_transport(settings.transport)
    except ValueError as exc:
        raise ConfigurationError(f"invalid configuration: CALLGATE_TRANSPORT: {exc}") from None


def build_transport(settings: Settings, database: Executor) -> PbxTransport:
    """Every registered transport over one SSH pool, routed per host, behind the per-host
    circuit breaker; ConfigurationError if CALLGATE_TRANSPORT names no registered transport."""
    check_settings(settings)
    pool = SshPool(PoolLimits.from_settings(settings), DbHostKeyStore(database))
    breaker = CircuitBreaker(failures=settings.breaker_failures, cooldown=settings.breaker_cooldown)
    return RoutingTransport(Shared(settings, pool), breaker)


def build_client(settings: Settings, transport: PbxTransport) -> PbxClient:
    return PbxClient(
        transport,
        verify_window=settings.verify_window,
        poll_interval=settings.verify_poll_interval,
    )


async def check_host(settings: Settings, database: Executor, address: str) -> str:
    """Log in to a host with its configured settings and return its Asterisk version."""
    async with db_step("reading the host settings"):
        row = await get_host(database, address)
    target = build_target(settings, address, row)
    transport = build_transport(settings, database)
    try:
        return await build_client(settings, transport).version(target)
    finally:
        await transport.aclose()
