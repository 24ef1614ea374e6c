"""The rig the tracker tests share: a simulated PBX behind the in-process SSH server, a
migrated database, the PBX client."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr

from callgate.calls.targets import build_target
from callgate.calls.tracker import CallTracker
from callgate.db.call_tracking import CallEvent, call_events
from callgate.db.calls import (
    CallRecord,
    finish_call,
    finish_values,
    get_call,
    insert_call,
    new_call_values,
)
from callgate.db.executor import Database
from callgate.db.hosts import set_host
from callgate.db.migrate import upgrade
from callgate.pbx.client import PbxClient
from callgate.pbx.transport import HostTarget, PbxTransport
from callgate.settings import Settings
from callgate.simulator import Scenario, SimulatedAsterisk, SshSimulator, start_ssh_simulator
from callgate.wiring import build_client, build_transport
from tests.support.database import opened

USER, PASSWORD, PHONE = "pbx", "sim-password", "+375296254070"
FAST = Scenario(agent_answer_after=0.3, customer_answer_after=0.3, talk=1.0)
LONG = Scenario(agent_answer_after=0.3, customer_answer_after=0.3, talk=60.0)


async def until(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    """Wait for ``check()`` to hold, polling; fail the test when it never does."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s")
        await asyncio.sleep(0.05)


async def read(database: Database, call_id: str) -> tuple[CallRecord, list[CallEvent]]:
    record = await get_call(database, call_id)
    assert record is not None
    return record, await call_events(database, call_id)


async def new_call(database: Database, call_id: str | None = None, **fields: Any) -> str:
    """Insert a call row as the service does; its id."""
    values = new_call_values(
        **({"enterprise_number": "0367", "extension": "150", "phone": PHONE, "host": "h"} | fields),
        id=call_id,
    )
    await insert_call(database, values)
    return str(values["id"])


class Watched:
    """A `Database` that fails while ``down`` and counts the transactions begun on it."""

    def __init__(self, database: Database) -> None:
        self.database, self.down, self.transactions = database, False, 0

    def __getattr__(self, name: str) -> Any:
        if self.down:
            raise OSError("database down")
        self.transactions += name == "transaction"
        return getattr(self.database, name)


@dataclass
class Rig:
    """A simulated PBX behind the in-process SSH server, a migrated database, the PBX client."""

    engine: SimulatedAsterisk
    sim: SshSimulator
    settings: Settings
    database: Database  # as the service's: asyncpg's own pool on PostgreSQL
    transport: PbxTransport
    pbx: PbxClient
    target: HostTarget
    trackers: list[CallTracker] = field(default_factory=list)

    async def tracker(self, **options: Any) -> CallTracker:
        """A started tracker on this PBX and database (interval 0.1 s unless told), writing
        as the service's does."""
        defaults: dict[str, Any] = {"interval": 0.1}
        tracker = CallTracker(self.pbx, self.database, self.settings, **(defaults | options))
        self.trackers.append(tracker)
        await tracker.start()
        return tracker

    async def place(self, tracker: CallTracker, ext: str = "150", phone: str = PHONE) -> str:
        """Place a call as the service does (row, verified originate, outcome) and track it."""
        call_id = await new_call(self.database, extension=ext, phone=phone, host="127.0.0.1")
        originated = await self.pbx.originate(self.target, ext, phone)
        outcome = finish_values(call_id, "success", channel=originated.channel.name)
        await finish_call(self.database, outcome)
        tracker.track(call_id, self.target, originated.channel, phone, since=originated.took)
        await asyncio.sleep(0)  # the tracker takes the call in hand at the loop's next turn
        return call_id

    async def state(self, call_id: str) -> str:
        return (await read(self.database, call_id))[0].state

    async def reaches(self, call_id: str, state: str, within: float = 15.0) -> None:
        async def check() -> bool:
            return await self.state(call_id) == state

        await until(check, within)

    def listings(self) -> int:
        """How many `core show channels concise` the PBX has answered."""
        return sum(c.command == "core show channels concise" for c in self.engine.commands)


@contextlib.asynccontextmanager
async def make_rig(db_url: str, kind: str = "rx") -> AsyncIterator[Rig]:
    """The rig; its host's transport ``kind`` (rx: no listening console, listings alone)."""
    await asyncio.to_thread(upgrade, db_url)
    engine = SimulatedAsterisk()
    sim = await start_ssh_simulator(engine, username=USER, password=PASSWORD)
    async with opened(db_url) as database:
        settings = Settings(database_url=db_url, log_file=None, ssh_user=USER)
        host = {
            "ssh_port": sim.port,
            "ssh_password": PASSWORD,
            "host_key": sim.host_key,
            "transport": kind,
        }
        row = await set_host(database, "127.0.0.1", host)
        transport = build_transport(settings, database)
        target = build_target(settings, "127.0.0.1", row)
        assert target.password == SecretStr(PASSWORD)
        client = build_client(settings, transport)
        rig = Rig(engine, sim, settings, database, transport, client, target)
        try:
            yield rig
        finally:
            for tracker in rig.trackers:
                await tracker.stop()
            await transport.aclose()
            await sim.close()
