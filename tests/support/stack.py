"""The whole thing for an integration test: real sshd + simulated Asterisk + database + service.

async with call_stack(db_url, sshd, tmp_path) as stack:
    response = await stack.service.client.get("/api/makecallexternal", params=...)
    assert await stack.originates() == 1
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callgate.db.enterprises import add_enterprise
from callgate.db.hosts import set_host
from callgate.db.migrate import upgrade
from callgate.domain.states import TERMINAL
from callgate.settings import Settings
from callgate.simulator.daemon import SimulatorControl, SimulatorDaemon
from callgate.simulator.program import install_program
from tests.support.database import opened
from tests.support.hygiene import REGISTRY
from tests.support.service import RunningService, free_port, running_service
from tests.support.sshd import SshdServer

ENTERPRISE = {"number": "0367", "name": "june", "ip": "127.0.0.1"}
# Tests place calls faster than any enterprise should: the rate and live-call limits off.
LIMITS_OFF = {
    "limit_enterprise_per_second": 0,
    "limit_enterprise_per_minute": 0,
    "limit_extension_per_minute": 0,
    "limit_destination_per_10_minutes": 0,
    "limit_destination_per_day": 0,
    "limit_live_calls_per_enterprise": 0,
    "limit_live_calls_per_host": 0,
    "limit_auth_failures_per_minute": 0,
}


@dataclass
class Stack:
    sshd: SshdServer
    daemon: SimulatorDaemon
    control: SimulatorControl
    service: RunningService
    secret: str
    db_url: str

    async def originates(self) -> int:
        """How many `channel originate` commands reached the host's asterisk program."""
        return sum(c.command.startswith("channel originate") for c in await self.control.commands())

    async def host_commands(self) -> int:
        return len(await self.control.commands())

    async def set_host(self, **overrides: Any) -> None:
        """Change the host row, as `callgate host set` would, while the service runs."""
        async with opened(self.db_url) as database:
            await set_host(database, "127.0.0.1", overrides)

    async def call(self, **params: str) -> Any:
        query = {"code": "150", "phone": "+375296254070", "clientId": self.secret, **params}
        return await self.service.client.get("/api/makecallexternal", params=query)

    def auth(self) -> dict[str, str]:
        """The v1 API's credentials for the stack's enterprise."""
        return {"Authorization": f"Bearer {self.secret}"}

    async def ended(self, call_id: str, within: float = 15.0) -> Any:
        """`GET /v1/calls/{id}` once the call has ended (or as it is when `within` runs out)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            response = await self.service.client.get(f"/v1/calls/{call_id}", headers=self.auth())
            call = response.json()
            if call["state"] in TERMINAL or asyncio.get_running_loop().time() > deadline:
                return call
            await asyncio.sleep(0.05)


def sshd_host_row(sshd: SshdServer, **overrides: Any) -> dict[str, Any]:
    """The `pbx_hosts` fields that point a host at `sshd`, password login, accept-new."""
    return {
        "ssh_port": sshd.port,
        "ssh_user": sshd.username,
        "ssh_password": sshd.password,
        "host_key_policy": "accept-new",
        **overrides,
    }


async def prepare_database(
    db_url: str, sshd: SshdServer, *, secret: str, host: dict[str, Any]
) -> None:
    await asyncio.to_thread(upgrade, db_url)
    async with opened(db_url) as database:
        await add_enterprise(database, secret=secret, **ENTERPRISE)
        await set_host(database, "127.0.0.1", host)


@contextlib.asynccontextmanager
async def call_stack(
    db_url: str,
    sshd: SshdServer,
    tmp_path: Path,
    *,
    host: dict[str, Any] | None = None,
    migrate: bool = True,
    **settings: Any,
) -> AsyncIterator[Stack]:
    """Simulator daemon behind `sshd`'s asterisk program, a migrated database, the service."""
    daemon = SimulatorDaemon()
    port = await daemon.start()
    install_program(sshd.bin_dir, port)
    secret = secrets.token_hex(16)
    host_row = sshd_host_row(sshd, **(host or {}))
    if migrate:
        await prepare_database(db_url, sshd, secret=secret, host=host_row)
    values: dict[str, Any] = {
        "database_url": db_url,
        "port": free_port(),
        "log_file": tmp_path / "callgate.log",
        **LIMITS_OFF,  # tests of the limits set their own
        "admin_token": secrets.token_hex(16),  # `service.status()` shows what operators see
    }
    config = Settings(**(values | settings))
    REGISTRY.record_stack(secret, config.log_file)  # leak hygiene: see tests/support/hygiene.py
    try:
        async with running_service(config) as service:
            yield Stack(sshd, daemon, SimulatorControl(port), service, secret, db_url)
    finally:
        await daemon.stop()
