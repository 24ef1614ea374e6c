"""Never twice: a command that changes the PBX, once written, is never sent again, whatever
happens to the connection; only commands that read are. Against a real sshd running the
simulator's `asterisk`, behind a relay that loses what the host says, then cuts the line.

The window tested is the one where the old rule re-sent an originate: the line was written,
the console on the host read it and Asterisk ran it, and its echo was lost with the
connection. Callgate saw no echo, so it used to think the console never read the line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest

from callgate import errors
from callgate.pbx import commands
from callgate.pbx.console import ConsoleTransport
from callgate.pbx.rx import RxTransport
from callgate.pbx.ssh import PoolLimits, SshPool
from callgate.pbx.transport import HostTarget
from callgate.simulator.daemon import SimulatorControl
from tests.support.consoles import CTX, NO_CALLS, PHONE, TARGET, Pbx, eventually, sshd_pbx
from tests.support.netfaults import Relay
from tests.support.sshd import SshdServer

pytestmark = pytest.mark.sshd
ORIGINATE = commands.originate("150", PHONE, CTX)


@dataclass
class Host:
    pbx: Pbx
    relay: Relay
    target: HostTarget  # through the relay

    def originates(self) -> int:
        """`channel originate` commands the simulated Asterisk received: how often an agent
        was rung."""
        return sum(c.command.startswith("channel originate") for c in self.pbx.engine.commands)

    async def lose_the_answer_to(self, run: asyncio.Task[list[str]], command: str) -> None:
        """Once Asterisk ran ``command`` (its echo and answer lost on the way), cut the line."""
        assert await eventually(lambda: self.pbx.sent(command) == 1)
        assert not run.done()  # nothing came back: no echo, no answer
        self.relay.cut()


@pytest.fixture
async def host(sshd: SshdServer) -> AsyncIterator[Host]:
    async with sshd_pbx(sshd, **TARGET) as pbx, Relay(sshd.port) as relay:
        yield Host(pbx, relay, replace(pbx.target, port=relay.port))


async def _console(host: Host) -> ConsoleTransport:
    """A console transport with its one console open and idle, through the relay."""
    console = host.pbx.transport(consoles_per_host=1)
    assert (await console.run(host.target, [commands.VERSION]))[0].startswith("Asterisk")
    return console


@pytest.mark.parametrize("batch", [[ORIGINATE, commands.CHANNELS_CONCISE], [ORIGINATE]])
async def test_an_originate_whose_echo_was_lost_is_never_sent_again(
    host: Host, batch: list[str]
) -> None:
    console = await _console(host)
    host.relay.mute()
    run = asyncio.create_task(console.run(host.target, batch))
    await host.lose_the_answer_to(run, ORIGINATE)
    (outcome,) = await asyncio.gather(run, return_exceptions=True)
    await asyncio.sleep(0.3)  # nothing goes out behind the error's back either
    assert host.originates() == 1 and len(host.pbx.engine.live_calls()) == 1  # rang once
    assert console.opened == 1  # no other console was opened to send it again
    assert isinstance(outcome, errors.ConnectionLost), outcome
    assert outcome.maybe_executed and outcome.completed == 0  # unknown outcome
    # The console is usable again for what follows (a fresh one), and still rang once.
    assert await console.run(host.target, [commands.CHANNELS_COUNT]) != [NO_CALLS]
    assert host.originates() == 1 and console.opened == 2


async def test_a_hangup_whose_echo_was_lost_is_never_sent_again(host: Host) -> None:
    console = await _console(host)
    hangup = commands.hangup("Local/150@inoffice-00000000;1")
    host.relay.mute()
    run = asyncio.create_task(console.run(host.target, [hangup]))
    await host.lose_the_answer_to(run, hangup)
    (outcome,) = await asyncio.gather(run, return_exceptions=True)
    await asyncio.sleep(0.3)
    assert host.pbx.sent(hangup) == 1 and console.opened == 1
    assert isinstance(outcome, errors.ConnectionLost) and outcome.maybe_executed, outcome


async def test_a_listing_whose_echo_was_lost_is_typed_again(host: Host) -> None:
    """A command that only reads is retried on a fresh console: the caller gets its answer."""
    console = await _console(host)
    host.relay.mute()
    run = asyncio.create_task(console.run(host.target, [commands.CHANNELS_COUNT]))
    await host.lose_the_answer_to(run, commands.CHANNELS_COUNT)
    assert await run == [NO_CALLS]
    assert host.pbx.sent(commands.CHANNELS_COUNT) == 2 and console.opened == 2


async def test_rx_never_sends_a_lost_originate_again(host: Host) -> None:
    """The same loss on `asterisk -rx`: unknown outcome, one originate. (Muted before the
    exec, rx would never get its session: the originate is held back on the host instead.)"""
    rx = RxTransport(SshPool(PoolLimits()))
    try:
        assert (await rx.run(host.target, [commands.VERSION]))[0].startswith("Asterisk")
        await SimulatorControl(host.pbx.daemon_port).set_delay(3)  # it runs, its answer waits
        run = asyncio.create_task(rx.run(host.target, [ORIGINATE, commands.CHANNELS_CONCISE]))
        await host.lose_the_answer_to(run, ORIGINATE)
        (outcome,) = await asyncio.gather(run, return_exceptions=True)
        await asyncio.sleep(0.3)
        assert host.originates() == 1
        assert isinstance(outcome, errors.ConnectionLost) and outcome.maybe_executed, outcome
    finally:
        await rx.aclose()
