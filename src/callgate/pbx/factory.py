"""Build the PBX side of the service from settings: pool, transport, client."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callgate.db.guard import db_step
from callgate.db.host_keys import DbHostKeyStore
from callgate.db.repositories import HostRepo
from callgate.hosts import build_target
from callgate.pbx.client import PbxClient
from callgate.pbx.console import ConsoleTransport
from callgate.pbx.rx import RxTransport
from callgate.pbx.ssh import PoolLimits, SshPool
from callgate.pbx.transport import HostTarget, PbxTransport
from callgate.settings import Settings, Transport


class RoutingTransport:
    """Per host, ``target.transport`` (its row's ``transport``, else CALLGATE_TRANSPORT) picks
    the console or rx. Both run over one SSH pool, so a host has one set of connections."""

    def __init__(self, console: PbxTransport, rx: PbxTransport) -> None:
        self._console, self._rx = console, rx

    async def run(self, target: HostTarget, commands: Sequence[str]) -> list[str]:
        chosen = self._console if target.transport is Transport.CONSOLE else self._rx
        return await chosen.run(target, commands)

    def status(self) -> dict[str, object]:
        # The console's status already holds the rx one (its fallback, the same object).
        return {**self._console.status(), "transport": "per-host"}

    async def aclose(self) -> None:
        await self._console.aclose()  # closes its fallback, the rx transport, and the pool
        await self._rx.aclose()  # a no-op by then, unless the console had another fallback


def build_transport(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> PbxTransport:
    pool = SshPool(PoolLimits.from_settings(settings), DbHostKeyStore(sessions))
    rx = RxTransport(pool)
    console = ConsoleTransport(pool, rx, idle_timeout=settings.ssh_idle_timeout)
    return RoutingTransport(console, rx)


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
