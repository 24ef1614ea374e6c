"""Stopping `callgate serve` with calls in flight: SIGTERM drains them, SIGKILL loses nothing
that a restart cannot settle, and a restart never dials anything again.

The service runs as its own process (the console script), against a real sshd whose asterisk
is the simulator, its originate answers held back (`set_delay`) so that calls are in flight.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from callgate.calls.reconcile import FAILED_REASON, REASON, reconcile_pending
from callgate.db.call_tracking import move
from callgate.db.calls import (
    CallRecord,
    call_record,
    finish_call,
    finish_values,
    insert_call,
    new_call_values,
)
from callgate.db.migrate import upgrade
from callgate.db.models import CALLS, utcnow
from callgate.domain.states import CallState
from callgate.simulator.daemon import SimulatorControl, SimulatorDaemon
from callgate.simulator.program import install_program
from tests.support.database import opened
from tests.support.processes import ServiceProcess
from tests.support.sshd import SshdServer
from tests.support.stack import prepare_database, sshd_host_row

pytestmark = [pytest.mark.sshd, pytest.mark.postgres]


class Host:
    """The simulator daemon behind the sshd's asterisk, and what reached it."""

    def __init__(self, daemon: SimulatorDaemon) -> None:
        self.daemon, self.control = daemon, SimulatorControl(daemon.port)

    async def originates(self) -> int:
        commands = await self.control.commands()
        return sum(c.command.startswith("channel originate") for c in commands)


@pytest.fixture(params=["rx", "console"])
async def deployment(
    request: pytest.FixtureRequest, pg_url: str, sshd: SshdServer, tmp_path: Path
) -> AsyncIterator[tuple[ServiceProcess, Host, str]]:
    """A migrated database with one enterprise on the sshd host, the service, the host."""
    async with SimulatorDaemon() as daemon:
        install_program(sshd.bin_dir, daemon.port)
        secret = secrets.token_hex(16)
        host_row = sshd_host_row(sshd, transport=request.param)
        await prepare_database(pg_url, sshd, secret=secret, host=host_row)
        service = ServiceProcess(pg_url, tmp_path)
        try:
            await service.start()
            yield service, Host(daemon), secret
        finally:
            await service.stop()


async def call(base_url: str, secret: str, code: str) -> httpx.Response:
    """One legacy call on its own connection (a client that does not share it)."""
    params = {"code": code, "phone": "+375296254070", "clientId": secret}
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        return await client.get("/api/makecallexternal", params=params)


async def rows(db_url: str) -> dict[str, CallRecord]:
    async with opened(db_url) as database:
        found = [call_record(row) for row in await database.rows(select(CALLS))]
    return {record.id: record for record in found}


async def until(check: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def refused(base_url: str) -> bool:
    """Whether a new connection is turned away: refused, answered 503, or closed unanswered.

    The last happens when the connection reached the kernel's accept queue just before the
    listening socket closed: the server never reads it, so the client sees it dropped.
    """
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=1) as client:
            return (await client.get("/health")).status_code == 503
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
        return True


async def test_sigterm_drains_calls_in_flight(
    deployment: tuple[ServiceProcess, Host, str], pg_url: str
) -> None:
    """SIGTERM: new connections refused, calls in flight end 200 and stored, none re-dialled."""
    service, host, secret = deployment
    await host.control.set_delay(2.5)  # each originate runs at once; its answer comes late
    codes = ["150", "151", "152", "153"]
    in_flight = [asyncio.create_task(call(service.base_url, secret, code)) for code in codes]
    # All four inside the service (a console host runs two at a time, the others queue for a
    # console: in flight too), and the PBX holding answers.
    await until(lambda: _logged_at_least(service, "ssh originate", 4))
    await until(lambda: _originates_at_least(host, 2))
    stopping = time.monotonic()
    service.signal(signal.SIGTERM)
    await until(lambda: refused(service.base_url), within=1.5)
    assert not any(task.done() for task in in_flight)  # turned away while they still ran
    responses = await asyncio.gather(*in_flight)
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    status = await service.wait(within=30)
    drained = time.monotonic() - stopping
    assert status in (0, -signal.SIGTERM), service.output.read_text()[-2000:]
    assert drained < 10, drained  # the 2.5 s answers, then a prompt exit
    stored = await rows(pg_url)
    assert {r.json()["call_id"] for r in responses} == set(stored)
    assert {r.outcome for r in stored.values()} == {"success"}
    assert all(r.channel for r in stored.values())
    await host.control.set_delay(0)
    await service.start()  # a restart: resumes tracking, dials nothing
    await asyncio.sleep(1.5)
    assert await host.originates() == 4
    assert {r.outcome for r in (await rows(pg_url)).values()} == {"success"}


async def _logged_at_least(service: ServiceProcess, event: str, count: int) -> bool:
    log = service.log_file.read_text() if service.log_file.exists() else ""
    return sum(event in line for line in log.splitlines()) >= count


async def _originates_at_least(host: Host, count: int) -> bool:
    return await host.originates() >= count


async def test_sigkill_leaves_a_pending_call_that_restart_settles(
    deployment: tuple[ServiceProcess, Host, str], pg_url: str
) -> None:
    """kill -9 mid-call: the row stays pending; the restart makes it `unknown`, never re-dials."""
    service, host, secret = deployment
    await host.control.set_delay(4)
    request = asyncio.create_task(call(service.base_url, secret, "150"))
    await until(lambda: _originates_at_least(host, 1))
    await until(lambda: _pending_rows(pg_url, 1))  # the row is written while the PBX works
    service.signal(signal.SIGKILL)
    assert await service.wait(within=10) == -signal.SIGKILL
    with pytest.raises(httpx.TransportError):
        await request
    (pending,) = (await rows(pg_url)).values()
    assert pending.outcome == "pending"
    await host.control.set_delay(0)
    await service.start()  # settles before it serves: no waiting needed
    (settled,) = (await rows(pg_url)).values()
    assert (settled.outcome, settled.error, settled.error_code) == (
        "unknown",
        REASON,
        "pbx_connection_lost",
    )
    assert (settled.state, settled.end_reason) == ("lost", REASON)
    await asyncio.sleep(1.5)  # tracker ticks, retries: none may dial
    assert await host.originates() == 1
    assert len(await host.control.calls()) == 1  # it did ring: which is why it is "unknown"


async def _pending_rows(db_url: str, count: int) -> bool:
    return sum(r.outcome == "pending" for r in (await rows(db_url)).values()) >= count


async def test_reconcile_settles_each_kind_of_pending_row(pg_url: str) -> None:
    """Pending rows of an earlier run: verified -> success, failed -> failed, else unknown."""
    await asyncio.to_thread(upgrade, pg_url)
    async with opened(pg_url) as database:

        async def new_row() -> str:
            values = new_call_values(
                enterprise_number="0367", extension="150", phone="+375296254070", host="h"
            )
            await insert_call(database, values)
            return str(values["id"])

        made = {kind: await new_row() for kind in ("verified", "failed", "unknown", "finished")}
        await finish_call(database, finish_values(made["finished"], "failed", error="refused"))
        at = utcnow()
        await move(
            database,
            made["verified"],
            CallState.INITIATED,
            expected=CallState.INITIATED,
            at=at,
            channel="Local/150@inoffice-00000001;1",
        )
        await move(database, made["failed"], CallState.FAILED, expected=CallState.INITIATED, at=at)
        before = utcnow()
        newer = await new_row()  # this run's own call, still being placed: left alone
        counts = await reconcile_pending(database, before=before)
        assert counts == {"success": 1, "failed": 1, "unknown": 1}
        stored = await rows(pg_url)
        outcome = {kind: (stored[i].outcome, stored[i].error) for kind, i in made.items()}
        assert outcome == {
            "verified": ("success", None),
            "failed": ("failed", FAILED_REASON),
            "unknown": ("unknown", REASON),
            "finished": ("failed", "refused"),
        }
        assert (stored[made["unknown"]].state, stored[made["unknown"]].end_reason) == (
            "lost",
            REASON,
        )
        # Never verified: whether the agent's phone even rang is unknown; no customer dialled.
        lost = stored[made["unknown"]]
        assert (lost.agent_outcome, lost.agent_ring_s, lost.customer_outcome) == (
            "unknown",
            None,
            None,
        )
        assert stored[made["verified"]].state == "initiated"  # the tracker follows it on
        assert stored[newer].outcome == "pending"
        again = await reconcile_pending(database, before=before)
        assert again == {"success": 0, "failed": 0, "unknown": 0}
