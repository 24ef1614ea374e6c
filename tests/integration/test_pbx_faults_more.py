"""More ways a PBX host fails, through the service on PostgreSQL and a real sshd, with each
transport. Each test checks the invariant, counted at the simulator: a non-2xx answer means no
originate reached a host (or an explicit `unknown` outcome when the link broke after it was
sent); a 2xx means exactly one did."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from callgate.db.enterprises import add_enterprise
from callgate.db.hosts import get_host, set_host
from callgate.db.models import CALLS
from callgate.simulator.program import install_program
from tests.support.database import opened
from tests.support.netfaults import Blackhole
from tests.support.sshd import SshdServer
from tests.support.stack import Stack, call_stack

pytestmark = [pytest.mark.sshd, pytest.mark.postgres]
MakeStack = Callable[..., AbstractAsyncContextManager[Stack]]
ENDLESS = '#!/bin/bash\nexec yes "$(printf "x%.0s" {1..1000})"\n'


@pytest.fixture(params=["rx", "console"])
def make_stack(
    request: pytest.FixtureRequest, pg_url: str, sshd: SshdServer, tmp_path: Path
) -> MakeStack:
    """`call_stack` for each transport in turn, with the test's own (short) settings."""

    def make(**settings: Any) -> AbstractAsyncContextManager[Stack]:
        return call_stack(pg_url, sshd, tmp_path, host={"transport": request.param}, **settings)

    return make


async def blackhole(address: str = "127.0.0.1", port: int = 0) -> Blackhole:
    """A Blackhole on any loopback address and port (the helper's own is 127.0.0.1, any port)."""
    hole = Blackhole()
    hole._server = await asyncio.start_server(hole._on_connect, address, port)
    return hole


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await _value(check()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _value(result: Awaitable[bool] | bool) -> bool:
    return await result if inspect.isawaitable(result) else result


def detail(response: Any) -> str:
    return str(response.json()["detail"])


async def timed_call(stack: Stack, **params: str) -> tuple[Any, float]:
    started = time.monotonic()
    response = await stack.call(**params)
    return response, time.monotonic() - started


async def breaker_of(stack: Stack, label: str) -> dict[str, Any]:
    status = (await stack.service.status()).json()
    hosts: dict[str, Any] = status["pbx"]["breaker"]["hosts"]
    return dict(hosts.get(label, {}))


async def outcomes(stack: Stack) -> list[str]:
    """Every call row's outcome, once none is pending (outcomes are written after answers)."""
    async with opened(stack.db_url) as database:
        for _ in range(200):
            found = sorted(row["outcome"] for row in await database.rows(select(CALLS)))
            if "pending" not in found:
                return found
            await asyncio.sleep(0.05)
        return found


async def test_breaker_opens_fails_fast_probes_and_recovers(make_stack: MakeStack) -> None:
    """3 blackholed attempts open the circuit; fast refusals touch nothing; a probe recovers."""
    async with make_stack(ssh_connect_timeout=1, breaker_cooldown=1.5) as stack:
        sshd, label = stack.sshd, f"127.0.0.1:{stack.sshd.port}"
        await asyncio.to_thread(sshd.stop)
        hole = await blackhole(port=sshd.port)  # the host's port now swallows every handshake
        try:
            for code in ("150", "151", "152"):
                response, _ = await timed_call(stack, code=code)
                assert response.status_code == 500
                assert "timed out after 1 s" in detail(response)
            assert hole.accepted == 3
            assert (await breaker_of(stack, label))["state"] == "open"
            fast = []
            for code in ("153", "154", "155", "156", "157"):
                await outcomes(stack)  # the last call's writes done: time this call alone
                response, elapsed = await timed_call(stack, code=code)
                fast.append(elapsed)
                assert response.status_code == 500
                assert re.fullmatch(
                    rf"Call initiation failed: host {label} is failing \(3 connection failures "
                    r"in a row, last: .+\); next attempt in [12] s",
                    detail(response),
                ), detail(response)
            # Median, not each: the test's client shares the service's event loop (and CPU).
            assert max(fast) < 0.25 and sorted(fast)[2] < 0.05, fast
            assert hole.accepted == 3  # refused here: not one more connection reached the host
            await eventually(lambda: _state_is(stack, label, "half-open"), within=3)
            # The probe goes; calls meanwhile still fail fast; the probe fails: open again.
            probe = asyncio.create_task(stack.call(code="160"))
            await eventually(lambda: hole.accepted >= 4)
            during, elapsed = await timed_call(stack, code="161")
            assert during.status_code == 500 and elapsed < 0.25
            assert detail(during).endswith("it is being tried now")
            assert (await probe).status_code == 500
            assert hole.accepted == 4
            assert (await breaker_of(stack, label))["state"] == "open"
        finally:
            await hole.close()
        await asyncio.to_thread(sshd.start)  # the host is back
        assert await stack.originates() == 0
        await eventually(lambda: _state_is(stack, label, "half-open"), within=3)
        recovered = await stack.call(code="162")
        assert recovered.status_code == 200, recovered.text
        closed = await breaker_of(stack, label)
        assert (closed["state"], closed["failures"]) == ("closed", 0)
        assert await stack.originates() == 1
        assert await outcomes(stack) == ["failed"] * 10 + ["success"]


async def _state_is(stack: Stack, label: str, state: str) -> bool:
    return (await breaker_of(stack, label)).get("state") == state


@pytest.fixture
async def dead_tenant(make_stack: MakeStack) -> AsyncIterator[tuple[Stack, str, Blackhole]]:
    """The stack, and a second enterprise whose host (127.0.0.2) is a Blackhole."""
    async with make_stack(ssh_connect_timeout=3) as stack:
        hole = await blackhole("127.0.0.2")
        secret = "dead-tenant-" + os.urandom(8).hex()
        async with opened(stack.db_url) as database:
            await add_enterprise(database, "0368", "dead", "127.0.0.2", secret)
            healthy = await get_host(database, "127.0.0.1")  # same transport as it
            assert healthy is not None and healthy.transport is not None
            user, password = stack.sshd.username, stack.sshd.password
            await set_host(database, "127.0.0.2", {
                "ssh_port": hole.port, "ssh_user": user, "ssh_password": password,
                "transport": healthy.transport,
            })  # fmt: skip
        try:
            yield stack, secret, hole
        finally:
            await hole.close()


async def test_dead_host_does_not_slow_a_healthy_one(
    dead_tenant: tuple[Stack, str, Blackhole],
) -> None:
    """10 calls to a blackholed host beside 10 to a healthy one: the healthy ones stay fast."""
    stack, dead_secret, hole = dead_tenant
    assert (await stack.call(code="149")).status_code == 200  # warm, as in steady operation
    codes = [str(150 + n) for n in range(10)]
    dead = [timed_call(stack, code=code, clientId=dead_secret) for code in codes]
    healthy = [timed_call(stack, code=code) for code in codes]
    results = await asyncio.gather(*dead, *healthy)
    dead_results, healthy_results = results[:10], results[10:]
    assert [r.status_code for r, _ in healthy_results] == [200] * 10
    slowest = max(elapsed for _, elapsed in healthy_results)
    assert slowest < 2.0, f"a healthy call took {slowest:.2f} s"  # the dead host's took 3 s
    assert [r.status_code for r, _ in dead_results] == [500] * 10
    assert all("127.0.0.2" in detail(r) for r, _ in dead_results)
    assert min(elapsed for _, elapsed in dead_results) >= 2.9  # they did wait for the timeout
    assert hole.accepted >= 1
    assert await stack.originates() == 11  # the healthy host's eleven 200s, nothing more
    assert (await breaker_of(stack, f"127.0.0.1:{stack.sshd.port}"))["state"] == "closed"
    counted = (await breaker_of(stack, f"127.0.0.2:{hole.port}"))["failures"]
    assert 1 <= counted <= 5, counted  # attempts, not calls: shared ones count once


async def test_sshd_killed_during_the_originate_is_unknown_and_never_redialled(
    make_stack: MakeStack,
) -> None:
    """The link dies after the originate was sent: 500 with an unknown outcome, no re-dial."""
    async with make_stack(ssh_command_timeout=5, track_interval=0.2) as stack:
        await stack.control.set_delay(3)  # the originate runs at once, its answer comes late
        request = asyncio.create_task(stack.call())
        await eventually(lambda: _originated(stack))
        started = time.monotonic()
        await asyncio.to_thread(stack.sshd.kill)
        response = await request
        assert time.monotonic() - started < 2  # noticed at once, not after the command timeout
        assert response.status_code == 500
        assert re.fullmatch(
            r"Call initiation failed: (SSH connection to \S+ lost during the command \(\w+\)"
            r"|the console on \S+ ended during the command)",
            detail(response),
        ), detail(response)
        assert await outcomes(stack) == ["unknown"]
        await asyncio.to_thread(stack.sshd.start)
        await asyncio.sleep(1.0)  # time for any retry or tracker poll to (wrongly) dial again
        assert await stack.originates() == 1  # sent once, never again
        assert len(await stack.control.calls()) == 1  # it did ring: which is why "unknown"


async def _originated(stack: Stack) -> bool:
    return await stack.originates() >= 1


def _rss() -> int:
    """This process's resident memory in bytes (the service runs in the test's process)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_endless_output_is_cut_off(make_stack: MakeStack) -> None:
    """An asterisk that prints megabytes forever: bounded read, memory flat, still serving."""
    async with make_stack(ssh_command_timeout=2) as stack:
        stack.sshd.add_program("asterisk", ENDLESS)
        before, peak = _rss(), 0

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, _rss())
                await asyncio.sleep(0.01)

        sampler = asyncio.create_task(sample())
        try:
            response, elapsed = await timed_call(stack)
        finally:
            sampler.cancel()
        assert response.status_code == 500
        assert re.search(r"exceeded \d+ (characters|bytes)|timed out after 2 s", detail(response))
        assert elapsed < 2 + 1.5  # within the command timeout (and the console's fallback)
        assert peak - before < 64 * 1024 * 1024, f"memory grew by {(peak - before) >> 20} MiB"
        assert await stack.originates() == 0
        install_program(stack.sshd.bin_dir, stack.daemon.port)  # the real (simulated) one
        assert (await stack.service.client.get("/health")).status_code == 200
        again = await stack.call(code="151")
        assert again.status_code == 200, again.text
        assert await stack.originates() == 1
        await eventually(lambda: _no_yes_left(stack.sshd))


async def _no_yes_left(sshd: SshdServer) -> bool:
    """No `yes` of the endless program is left running on the host."""
    return "yes" not in await asyncio.to_thread(_process_names, sshd)


def _process_names(sshd: SshdServer) -> list[str]:
    names = []
    for pid in sshd.process_ids():
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            continue  # it ended meanwhile
    return names


# program -> its 500 and the call's outcome: noise with exit 0 passes as "ran", then no channel
# is seen (failed); exit 3 is said, and what the program did before it is not known (unknown).
GARBAGE = {
    "noise-exit-0": (
        "printf 'Segmentation fault\\n\\001\\377 %s\\n' \"$RANDOM\"\nexit 0\n",
        r"PBX did not create the call \(no channel Local/150@inoffice-…;1 on \S+ within 1\.5 s\)",
        "failed",
    ),
    "noise-exit-3": (
        "printf '\\033[31m*** glibc detected ***\\n'\nexit 3\n",
        r"asterisk on \S+ exited with status 3",
        "unknown",
    ),
}


@pytest.mark.parametrize("program", sorted(GARBAGE))
async def test_garbage_answers_are_a_clear_500(make_stack: MakeStack, program: str) -> None:
    """An asterisk that answers garbage: one clear 500, no verified call, still serving."""
    async with make_stack() as stack:
        script, expected, outcome = GARBAGE[program]
        stack.sshd.add_program("asterisk", "#!/bin/bash\n" + script)
        response = await stack.call()
        assert response.status_code == 500
        assert re.fullmatch("Call initiation failed: " + expected, detail(response)), response.text
        assert await stack.originates() == 0
        assert await outcomes(stack) == [outcome]
        assert await stack.control.calls() == []
        install_program(stack.sshd.bin_dir, stack.daemon.port)
        assert (await stack.call(code="151")).status_code == 200  # still serving
        assert await stack.originates() == 1
