"""Build the PBX side of the service from settings: pool, transport, client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callgate.db.guard import db_step
from callgate.db.host_keys import DbHostKeyStore
from callgate.db.repositories import HostRepo
from callgate.hosts import build_target
from callgate.pbx.breaker import CircuitBreaker
from callgate.pbx.client import PbxClient
from callgate.pbx.console import ConsoleTransport
from callgate.pbx.console_listener import ConsoleListener
from callgate.pbx.rx import RxTransport
from callgate.pbx.ssh import PoolLimits, SshPool
from callgate.pbx.transport import HostTarget, PbxTransport
from callgate.pbx.verbose import Heard
from callgate.settings import Settings, Transport


class RoutingTransport:
    """Per host, ``target.transport`` (its row's ``transport``, else CALLGATE_TRANSPORT) picks
    the console or rx. Both run over one SSH pool, so a host has one set of connections.

    ``breaker`` guards every run around the choice: a failing host is short-circuited
    whichever transport it uses, and the console's rx fallback is not tried behind its back.
    """

    def __init__(
        self,
        console: PbxTransport,
        rx: PbxTransport,
        breaker: CircuitBreaker | None = None,
        listener: ConsoleListener | None = None,
    ) -> None:
        self._console, self._rx, self._breaker = console, rx, breaker
        self._listener = listener

    def listen(
        self, target: HostTarget
    ) -> AbstractAsyncContextManager[AsyncIterator[Heard | None]] | None:
        """A listening console on a console host (see ``console_listener``); None for rx."""
        if self._listener is None or target.transport is not Transport.CONSOLE:
            return None
        return self._listener.listen(target)

    async def run(
        self, target: HostTarget, commands: Sequence[str], *, notices: list[str] | None = None
    ) -> list[str]:
        chosen = self._console if target.transport is Transport.CONSOLE else self._rx
        if self._breaker is None:
            return await chosen.run(target, commands, notices=notices)
        return await self._breaker.call(
            target, lambda: chosen.run(target, commands, notices=notices)
        )

    def status(self) -> dict[str, object]:
        # The console's status already holds the rx one (its fallback, the same object).
        status = {**self._console.status(), "transport": "per-host"}
        if self._breaker is not None:
            status["breaker"] = self._breaker.status()
        return status

    async def aclose(self) -> None:
        await self._console.aclose()  # closes its fallback, the rx transport, and the pool
        await self._rx.aclose()  # a no-op by then, unless the console had another fallback


def build_transport(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> PbxTransport:
    """The SSH pool, both transports routed per host, and the per-host circuit breaker."""
    pool = SshPool(PoolLimits.from_settings(settings), DbHostKeyStore(sessions))
    rx = RxTransport(pool)
    console = ConsoleTransport(pool, rx, idle_timeout=settings.ssh_idle_timeout)
    breaker = CircuitBreaker(failures=settings.breaker_failures, cooldown=settings.breaker_cooldown)
    listener = ConsoleListener(pool) if settings.track_listen else None
    return RoutingTransport(console, rx, breaker, listener)


def build_client(settings: Settings, transport: PbxTransport) -> PbxClient:
    return PbxClient(
        transport,
        verify_window=settings.verify_window,
        poll_interval=settings.verify_poll_interval,
    )


async def check_host(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], address: str
) -> str:
    """Log in to a host with its configured settings and return its Asterisk version."""
    async with db_step("reading the host settings"), sessions() as session:
        row = await HostRepo(session).get(address)
    target = build_target(settings, address, row)
    transport = build_transport(settings, sessions)
    try:
        return await build_client(settings, transport).version(target)
    finally:
        await transport.aclose()
