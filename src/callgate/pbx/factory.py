"""Build the PBX side of the service from settings: pool, transport, client."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callgate.db.guard import db_step
from callgate.db.host_keys import DbHostKeyStore
from callgate.db.repositories import HostRepo
from callgate.hosts import build_target
from callgate.pbx.client import PbxClient
from callgate.pbx.rx import RxTransport
from callgate.pbx.ssh import PoolLimits, SshPool
from callgate.pbx.transport import PbxTransport
from callgate.settings import Settings


def build_transport(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> PbxTransport:
    pool = SshPool(PoolLimits.from_settings(settings), DbHostKeyStore(sessions))
    return RxTransport(pool)


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
