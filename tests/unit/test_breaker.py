"""The circuit breaker's decisions, on a fake clock: what counts, what opens, what closes."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from callgate import errors
from callgate.errors import HostFailing
from callgate.pbx import commands
from callgate.pbx.breaker import CircuitBreaker
from callgate.pbx.registry import Shared, TransportRegistry
from callgate.pbx.routing import RoutingTransport
from callgate.pbx.ssh import PoolLimits, SshPool
from callgate.pbx.transport import HostTarget
from callgate.settings import Settings
from tests.support import memory_transport as memory

HOST = HostTarget("10.0.0.5", 5059, "callgate")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def outcome(breaker: CircuitBreaker, error: BaseException | None = None) -> str:
    """Run one use through the breaker; what became of it."""

    async def work() -> str:
        if error is not None:
            raise error
        return "ran"

    try:
        return await breaker.call(HOST, work)
    except HostFailing as exc:
        assert not exc.maybe_executed
        return "refused"
    except BaseException as exc:
        return type(exc).__name__


def state(breaker: CircuitBreaker) -> object:
    hosts = breaker.status()["hosts"]
    assert isinstance(hosts, dict)
    return hosts["10.0.0.5:5059"]["state"]


def refused() -> errors.PbxError:
    return errors.SshConnectionRefused("SSH connection to 10.0.0.5:5059 refused")


async def test_three_failures_open_and_a_probe_closes() -> None:
    """3 connection failures open it; after the cool-down one probe goes, success closes it."""
    clock = Clock()
    breaker = CircuitBreaker(failures=3, cooldown=30, clock=clock)
    for _ in range(3):
        assert await outcome(breaker, refused()) == "SshConnectionRefused"
    assert await outcome(breaker) == "refused" and state(breaker) == "open"
    clock.now += 30
    assert state(breaker) == "half-open"
    assert await outcome(breaker) == "ran"
    assert state(breaker) == "closed"


@pytest.mark.parametrize(
    "error",
    [
        errors.CallNotCreated("no channel"),
        errors.AsteriskNotRunning("Unable to connect to remote asterisk"),
        errors.UnexpectedOutput("garbage"),
    ],
)
async def test_an_answering_host_resets_the_count(error: errors.PbxError) -> None:
    """CallNotCreated, AsteriskNotRunning, garbage: the host's shell answered, the count resets."""
    breaker = CircuitBreaker(failures=3, clock=Clock())
    for _ in range(2):
        await outcome(breaker, refused())
    await outcome(breaker, error)
    await outcome(breaker, refused())
    assert state(breaker) == "closed"


@pytest.mark.parametrize(
    "error",
    [errors.CommandTimeout("t"), errors.ConnectionLost("l"), errors.PbxBusy("b")],
)
async def test_inconclusive_outcomes_neither_count_nor_reset(error: errors.PbxError) -> None:
    """A command timeout, a lost link, our own busy limit: the count stays where it was."""
    breaker = CircuitBreaker(failures=3, clock=Clock())
    for _ in range(2):
        await outcome(breaker, refused())
    await outcome(breaker, error)
    assert state(breaker) == "closed"
    await outcome(breaker, refused())
    assert state(breaker) == "open"


async def test_one_shared_attempt_counts_once() -> None:
    """The same exception handed to many callers of one connect attempt is one failure."""
    breaker = CircuitBreaker(failures=3, clock=Clock())
    shared = errors.SshConnectTimeout("SSH connection to 10.0.0.5:5059 timed out after 10 s")
    for _ in range(10):
        await outcome(breaker, shared)
    assert state(breaker) == "closed"
    assert breaker.status()["hosts"] == {
        "10.0.0.5:5059": {
            "state": "closed",
            "failures": 1,
            "last_error": shared.message,
            "rejected": 0,
        }
    }


async def test_failed_or_cancelled_probe() -> None:
    """A failed probe reopens for a full cool-down; a cancelled one lets the next call probe."""
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown=10, clock=clock)
    await outcome(breaker, refused())
    clock.now += 10
    assert await outcome(breaker, asyncio.CancelledError()) == "CancelledError"
    assert state(breaker) == "half-open"
    assert await outcome(breaker, refused()) == "SshConnectionRefused"
    assert state(breaker) == "open"
    clock.now += 9.5
    assert await outcome(breaker) == "refused"
    clock.now += 0.5
    assert await outcome(breaker) == "ran"


async def test_concurrent_calls_during_the_probe_fail_fast() -> None:
    """While the probe runs, other calls are refused with a message that says so."""
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown=5, clock=clock)
    await outcome(breaker, refused())
    clock.now += 5
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "ran"

    probe = asyncio.create_task(breaker.call(HOST, slow))
    await asyncio.sleep(0)
    with pytest.raises(HostFailing, match=r"is failing \(1 connection .*it is being tried now"):
        await breaker.call(HOST, slow)
    release.set()
    assert await probe == "ran" and state(breaker) == "closed"


async def test_zero_switches_it_off() -> None:
    """CALLGATE_BREAKER_FAILURES=0: every call goes through, however many fail."""
    breaker = CircuitBreaker(failures=0, clock=Clock())
    for _ in range(10):
        assert await outcome(breaker, refused()) == "SshConnectionRefused"
    assert await outcome(breaker) == "ran"


async def test_an_error_raised_from_a_counted_one_counts_once() -> None:
    """A transport that carries a shared attempt's failure into its run (``PbxError.after``)
    raises a new error caused by it: still the one attempt, one failure."""
    breaker = CircuitBreaker(failures=2, clock=Clock())
    shared = refused()
    assert await outcome(breaker, shared) == "SshConnectionRefused"
    later = shared.after(1)
    assert later is not shared and later.completed == 1 and shared.completed == 0
    assert await outcome(breaker, later) == "SshConnectionRefused"
    assert state(breaker) == "closed"
    assert await outcome(breaker, refused()) == "SshConnectionRefused"
    assert state(breaker) == "open"


async def test_a_host_another_transport_cannot_reach_opens_it() -> None:
    """Not only SSH failures count: a host the in-memory transport cannot reach (it reports a
    PbxUnreachable, as any transport would) opens the circuit, routed as the service routes,
    and then nothing more reaches that transport for the host."""
    registry = TransportRegistry()
    registry.register(memory.NAME, memory.build)
    breaker = CircuitBreaker(failures=2, cooldown=30, clock=Clock())
    shared = Shared(Settings(_env_file=None), SshPool(PoolLimits()), registry)
    routing = RoutingTransport(shared, breaker)
    transport = memory.BUILT[-1]
    transport.unreachable.add(HOST.address)
    target = replace(HOST, transport=memory.NAME)
    for _ in range(2):
        with pytest.raises(errors.PbxUnreachable, match="no memory PBX"):
            await routing.run(target, [commands.VERSION])
    assert state(breaker) == "open"
    transport.unreachable.clear()
    with pytest.raises(HostFailing):
        await routing.run(target, [commands.VERSION])
    assert transport.runs == []
    await routing.aclose()
