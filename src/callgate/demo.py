"""`make run`: a simulated PBX started in-process and a demo enterprise bound to it.

So that a first call works on a machine with no Asterisk at hand. The simulator prints what a
real Asterisk 22.7 prints and plays the call's life (agent answers, customer answers, talk).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from callgate.db.enterprises import add_enterprise, list_enterprises
from callgate.db.executor import Database
from callgate.db.hosts import set_host
from callgate.domain.sealed import seal
from callgate.logs import get_logger
from callgate.settings import Settings
from callgate.simulator.engine import SimulatedAsterisk
from callgate.simulator.sshserver import SshSimulator, start_ssh_simulator

log = get_logger("callgate.demo")

DEMO_NUMBER = "0367"
DEMO_NAME = "june"
DEMO_HOST = "127.0.0.1"
DEMO_USER = "demo"


@dataclass
class Demo:
    simulator: SshSimulator
    secret: str
    instructions: str  # for the terminal, once the service listens

    async def close(self) -> None:
        await self.simulator.close()


async def start_demo(settings: Settings, database: Database) -> Demo:
    password = secrets.token_urlsafe(18)
    simulator = await start_ssh_simulator(
        SimulatedAsterisk(), host=DEMO_HOST, port=0, username=DEMO_USER, password=password
    )
    existing = [
        secret for row, secret in await list_enterprises(database) if row.number == DEMO_NUMBER
    ]
    if existing:
        secret = existing[0]
    else:
        secret = secrets.token_hex(16)
        await add_enterprise(database, DEMO_NUMBER, DEMO_NAME, DEMO_HOST, secret)
    # The simulator's key is known here, so it is pinned outright: no first-contact trust.
    changes = {
        "ssh_port": simulator.port,
        "ssh_user": DEMO_USER,
        # The in-process simulator's password, new each run: sealed when there is a key, in
        # clear otherwise (it opens nothing once this process ends).
        "ssh_password": seal(password, settings.secret_key) if settings.secret_key else password,
        "host_key_policy": "strict",
        "host_key": simulator.host_key,
        "dial_context": settings.dial_context,
    }
    await set_host(database, DEMO_HOST, changes)
    log.info("demo ready", enterprise=DEMO_NAME, simulator_port=simulator.port)
    return Demo(simulator, secret, _instructions(settings, secret))


def _instructions(settings: Settings, secret: str) -> str:
    """What to type next: printed by `callgate serve` once its port accepts connections (a
    line printed before then would fail the first command pasted from it)."""
    base = f"http://{_display_host(settings.host)}:{settings.port}"
    return (
        "\nDemo PBX ready (simulated Asterisk 22.7: the agent answers after 1 s, the customer"
        " after 2 s, they talk 20 s). Place a call:\n"
        f"  curl '{base}/api/makecallexternal?code=150&phone=%2B375296254070"
        f"&clientId={secret}'\n"
        "then follow it (the call_id from the answer) through its states:\n"
        f"  curl -H 'Authorization: Bearer {secret}' {base}/v1/calls/CALL_ID\n"
        "or watch every call live:\n"
        f"  CALLGATE_CLIENT_SECRET={secret} .venv/bin/callgate calls watch\n"
    )


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host
