"""ConsoleTransport against a real sshd (bash program + daemon) and the in-process simulator."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, cast

import pytest

from callgate import errors
from callgate.pbx import commands
from callgate.pbx.client import PbxClient
from callgate.pbx.routing import RoutingTransport
from callgate.pbx.rx import RxTransport
from callgate.pbx.ssh import PoolLimits, SshPool
from callgate.settings import Settings, Transport
from callgate.simulator import install_program
from callgate.simulator.console import ConsoleScreen
from callgate.wiring import build_transport
from tests.support.consoles import (
    CTX,
    NO_CALLS,
    PHONE,
    TARGET,
    Pbx,
    console_pids,
    eventually,
    inprocess_pbx,
    measure_originates,
    sshd_pbx,
    status_of,
)
from tests.support.sshd import SshdServer


@pytest.fixture(params=[pytest.param("sshd", marks=pytest.mark.sshd), "inprocess"])
async def pbx(request: pytest.FixtureRequest) -> AsyncIterator[Pbx]:
    """Each test runs against both: a real sshd with the bash program, and the in-process one."""
    sshd = request.getfixturevalue("sshd") if request.param == "sshd" else None
    async with sshd_pbx(sshd, **TARGET) if sshd else inprocess_pbx(**TARGET) as host:
        yield host


@pytest.fixture
async def real(sshd: SshdServer) -> AsyncIterator[Pbx]:
    """Only the real sshd: for what needs the console's process on the host."""
    async with sshd_pbx(sshd, **TARGET) as host:
        yield host


@pytest.fixture
async def inproc() -> AsyncIterator[Pbx]:
    """Only the in-process simulator: for its console switches."""
    async with inprocess_pbx(**TARGET) as host:
        yield host


async def test_same_answers_as_rx(pbx: Pbx) -> None:
    """Every command callgate uses, in a call's life: the console's answers are the bytes
    `asterisk -rx` prints for the same PBX in the same state (the run is replayed over rx)."""
    script = [
        [commands.CHANNELS_CONCISE, commands.CHANNELS_COUNT, commands.VERSION],
        [commands.originate("150", PHONE, "inoffice"), commands.CHANNELS_CONCISE],
        [commands.CHANNELS_CONCISE, commands.CHANNELS_COUNT],  # 3 s later: answered, bridged
        [commands.hangup("Local/150@inoffice-00000000;1")],
        [commands.hangup("Local/151@inoffice-000000ab;2"), commands.originate("160", PHONE, CTX)],
        [commands.HANGUP_ALL, commands.CHANNELS_CONCISE, commands.CHANNELS_COUNT],
    ]
    console, rx = pbx.transport(), RxTransport(SshPool(PoolLimits()))
    answers: dict[str, list[list[str]]] = {}
    try:
        for name, transport in (("console", console), ("rx", rx)):
            pbx.restart()
            answers[name] = []
            for cli in script:
                answers[name].append(await transport.run(pbx.target, cli))
                pbx.clock.now += 3
        assert pbx.sent(commands.originate("150", PHONE, "inoffice")) == 1  # rx's run only
    finally:
        await rx.aclose()
    assert answers["console"] == answers["rx"]
    flat = [answer for step in answers["console"] for answer in step]
    assert "!00000000-0000-4000-8000-000000000001!" in flat[5]
    assert flat[7].startswith("Requested Hangup on channel")
    assert flat[10].count("Requested Hangup") == 4 and console.opened == 1


async def test_verified_originate(pbx: Pbx) -> None:
    """PbxClient's originate over the console: the listing typed with it usually shows the
    pair unstarted (as a real Asterisk does, fact 1 of recordings/asterisk/README.md), and the
    next listings see the dialplan take the call. On a loaded machine the simulator may
    answer that listing after the 1 ms in which the pair settles: then one check is enough."""
    console = pbx.transport()
    pbx.clock.running = True
    placed = await PbxClient(console).originate(pbx.target, "150", PHONE)
    assert placed.channel.name == "Local/150@inoffice-00000000;1" and 1 <= placed.checks <= 6
    assert placed.channel.state == "Ringing"
    assert pbx.sent(commands.originate("150", PHONE, "inoffice")) == 1
    assert status_of(console, pbx.target)["mode"] == "console"


async def test_parallel_callers_get_their_own_answers(pbx: Pbx) -> None:
    """40 callers at once on 2 consoles: each answer names its caller's channel."""
    console = pbx.transport(consoles_per_host=2)
    channels = [f"Local/1{n:02d}@inoffice-0000000{n % 10};1" for n in range(40)]
    answers = await asyncio.gather(
        *(console.run(pbx.target, [commands.hangup(channel)]) for channel in channels)
    )
    assert answers == [[f"{channel} is not a known channel\n"] for channel in channels]
    assert console.opened == 2


async def test_asterisk_not_running(pbx: Pbx) -> None:
    """Asterisk down: AsteriskNotRunning (nothing ran), no fallback; back up: it works."""
    console = pbx.transport()
    pbx.engine.running = False
    with pytest.raises(errors.AsteriskNotRunning) as raised:
        await console.run(pbx.target, [commands.VERSION])
    assert not raised.value.maybe_executed and console.opened == 0
    assert status_of(console, pbx.target)["mode"] == "console"
    pbx.engine.running = True
    assert (await console.run(pbx.target, [commands.VERSION]))[0].startswith("Asterisk 22.7.0")
    pbx.engine.running = False  # stops while the console is open: its command may have run
    with pytest.raises(errors.AsteriskNotRunning):
        await console.run(pbx.target, [commands.VERSION])
    with pytest.raises(errors.AsteriskNotRunning) as again:
        await console.run(pbx.target, [commands.VERSION])
    assert not again.value.maybe_executed  # the next console could not connect at all


async def test_output_too_large(pbx: Pbx) -> None:
    """An answer over the bound raises OutputTooLarge; that console is replaced."""
    console = pbx.transport(output_limit=1500)
    for code in range(150, 160):
        await console.run(pbx.target, [commands.originate(str(code), PHONE, "inoffice")])
    with pytest.raises(errors.OutputTooLarge):
        await console.run(pbx.target, [commands.CHANNELS_CONCISE])
    assert (await console.run(pbx.target, [commands.CHANNELS_COUNT]))[0].startswith("20 active")
    assert console.opened == 2


async def test_hung_console_times_out_then_recovers_inprocess(inproc: Pbx) -> None:
    """An Asterisk that stops answering: CommandTimeout in time, not re-sent, then recovery."""
    console, target = inproc.transport(), replace(inproc.target, command_timeout=0.5)
    await console.run(target, [commands.VERSION])
    inproc.simulator.console_hang = True
    hangup = commands.hangup("Local/101@inoffice-00000001;1")
    started = time.monotonic()
    with pytest.raises(errors.CommandTimeout) as raised:
        await console.run(target, [hangup])
    assert time.monotonic() - started < 0.5 + 0.3 and raised.value.maybe_executed
    inproc.simulator.console_hang = False
    assert (await console.run(target, [commands.VERSION]))[0].startswith("Asterisk")
    assert inproc.sent(hangup) == 0 and console.opened == 2


async def test_console_refused_falls_back_to_rx_inprocess(inproc: Pbx) -> None:
    """No console on the host: answers come through rx, status says so, the console returns."""
    inproc.simulator.console_enabled = False
    console = inproc.transport(retry_after=0.2)
    assert await console.run(inproc.target, [commands.CHANNELS_COUNT]) == [NO_CALLS]
    state = status_of(console, inproc.target)
    assert state["mode"] == "rx-fallback" and "switched off" in state["reason"]
    assert any("-rx" in c.command for c in inproc.simulator.exec_commands)
    inproc.simulator.console_enabled = True
    await asyncio.sleep(0.25)
    await console.run(inproc.target, [commands.VERSION])  # via rx; retries in the background
    assert await eventually(lambda: status_of(console, inproc.target)["mode"] == "console")
    await console.run(inproc.target, [commands.VERSION])
    assert console.opened == 1


async def test_garbage_closes_the_console_then_falls_back(
    inproc: Pbx, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unreadable answer: UnexpectedOutput (it may have run) and the console is closed; the
    new one is unreadable at its first command, so the host falls back to rx, which answers."""
    console = inproc.transport(retry_after=0.2)
    await console.run(inproc.target, [commands.VERSION])
    # The console forgets its erase codes: the sentinel's answer is no longer "output".
    monkeypatch.setattr(ConsoleScreen, "output", lambda _s, _c, text: text)
    with pytest.raises(errors.UnexpectedOutput, match="unreadable answer") as raised:
        await console.run(inproc.target, [commands.CHANNELS_COUNT])
    assert raised.value.maybe_executed and inproc.sent(commands.CHANNELS_COUNT) == 1
    assert await console.run(inproc.target, [commands.CHANNELS_COUNT]) == [NO_CALLS]
    state = status_of(console, inproc.target)
    assert state["mode"] == "rx-fallback" and "unreadable" in state["reason"]
    assert console.opened == 1 and inproc.sent(commands.CHANNELS_COUNT) == 2
    monkeypatch.undo()
    await asyncio.sleep(0.25)
    await console.run(inproc.target, [commands.VERSION])
    assert await eventually(lambda: status_of(console, inproc.target)["mode"] == "console")


async def test_routing_picks_the_transport_per_host(inproc: Pbx) -> None:
    """build_transport: one pool; a `console` host gets a console, an `rx` host does not."""
    assert Settings.model_fields["transport"].default == Transport.CONSOLE
    routing = build_transport(Settings(_env_file=None), database=cast(Any, None))
    assert isinstance(routing, RoutingTransport)
    try:
        rx_host = replace(inproc.target, transport=Transport.RX)
        console_host = replace(inproc.target, transport=Transport.CONSOLE)
        by_rx = await routing.run(rx_host, [commands.VERSION])
        assert by_rx == await routing.run(console_host, [commands.VERSION])
        lines = [c.command for c in inproc.simulator.exec_commands]
        assert lines == ["asterisk -rx 'core show version'", "asterisk -r -q"]
        status = routing.status()
        assert status["transport"] == "per-host" and status["connections_opened"] == 1
        hosts = cast(dict[str, Any], status["consoles"])["hosts"]
        assert hosts == {console_host.label: {"mode": "console", "consoles": 1, "idle": 1}}
    finally:
        await routing.aclose()


@pytest.mark.sshd
async def test_two_hundred_commands_one_console(real: Pbx) -> None:
    """200 commands in a row over one console: one console process, gone after close."""
    sshd = real.server
    console = real.transport(consoles_per_host=1)
    for n in range(200):
        channel = f"Local/{100 + n % 100}@inoffice-{n:08x};1"
        answer = await console.run(real.target, [commands.hangup(channel)])
        assert answer == [f"{channel} is not a known channel\n"]
    assert len(console_pids(sshd)) == 1 and console.opened == 1
    await console.aclose()
    assert await eventually(lambda: not console_pids(sshd))


@pytest.mark.sshd
async def test_killed_console_is_reopened(real: Pbx) -> None:
    """The console killed on the host: the next call opens another and succeeds."""
    sshd = real.server
    console = real.transport(consoles_per_host=1)
    await console.run(real.target, [commands.VERSION])
    (pid,) = console_pids(sshd)
    os.kill(pid, signal.SIGKILL)
    assert (await console.run(real.target, [commands.CHANNELS_COUNT]))[0].endswith("processed\n")
    assert console.opened == 2 and len(now := console_pids(sshd)) == 1 and pid not in now


@pytest.mark.sshd
async def test_stopped_console_times_out_then_recovers(real: Pbx) -> None:
    """A frozen console (SIGSTOP): CommandTimeout in time, not re-sent; it is hung up, and
    the next call gets a new console."""
    console, target = real.transport(consoles_per_host=1), replace(real.target, command_timeout=0.5)
    await console.run(target, [commands.VERSION])
    (pid,) = console_pids(real.server)
    os.kill(pid, signal.SIGSTOP)
    try:
        hangup = commands.hangup("Local/101@inoffice-00000001;1")
        started = time.monotonic()
        with pytest.raises(errors.CommandTimeout):
            await console.run(target, [hangup])
        assert time.monotonic() - started < 0.5 + 0.3
        assert (await console.run(target, [commands.VERSION]))[0].startswith("Asterisk")
        assert real.sent(hangup) == 0 and console.opened == 2
        assert await eventually(lambda: pid not in console_pids(real.server))  # no leak
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.sshd
async def test_console_that_cannot_open_falls_back_to_rx(real: Pbx) -> None:
    """`asterisk -r` fails on the host: rx answers, status says rx-fallback and why; once the
    console works again, a background retry brings the host back to `console`."""
    sshd = real.server
    program = install_program(sshd.dir / "sim", real.daemon_port)
    sshd.add_program(
        "asterisk",
        f'#!/bin/bash\n[[ $1 == -rx ]] && exec {program} "$@"\n'
        "echo 'asterisk: this host has no console' >&2\nexit 1\n",
    )
    console = real.transport(retry_after=0.2)
    answers = await console.run(real.target, [commands.CHANNELS_COUNT, commands.VERSION])
    assert answers[0] == NO_CALLS
    state = status_of(console, real.target)
    assert state["mode"] == "rx-fallback" and "this host has no console" in state["reason"]
    assert console.opened == 0 and not console_pids(sshd)
    install_program(sshd.bin_dir, real.daemon_port)
    await asyncio.sleep(0.25)
    await console.run(real.target, [commands.VERSION])  # via rx; retries in the background
    assert await eventually(lambda: status_of(console, real.target)["mode"] == "console")
    assert console.opened == 1 and len(console_pids(sshd)) == 1


@pytest.mark.sshd
async def test_measure_originate_console_vs_rx(real: Pbx) -> None:
    """Not a timed test: the median time of PbxClient.originate over console and over rx."""
    rx = RxTransport(SshPool(PoolLimits()))
    try:
        samples = await measure_originates(real, {"console": real.transport(), "rx": rx}, 30)
    finally:
        await rx.aclose()
    medians = {name: statistics.median(times) * 1000 for name, times in samples.items()}
    print(
        "\nPbxClient.originate (verified), real sshd, median of 30: "
        + ", ".join(f"{name} {ms:.2f} ms" for name, ms in medians.items())
    )
    assert all(len(times) == 30 for times in samples.values())


async def test_a_notice_in_the_middle_of_a_listing_leaves_the_answer_exact(inproc: Pbx) -> None:
    """core_local.c's NOTICE landing between the lines of a listing (the simulator's switch):
    the answer is still what `asterisk -rx` prints, and the notice is handed over apart."""
    console = inproc.transport()
    inproc.clock.running = True
    await PbxClient(console).originate(inproc.target, "199", PHONE)  # a call that stays
    inproc.simulator.set_logs_mid_listing(True)
    doomed = commands.originate("150", PHONE, "nosuchcontext")
    await console.run(inproc.target, [doomed])
    await asyncio.sleep(0.05)  # the pair is gone: its notice waits for the next listing
    notices: list[str] = []
    (listing,) = await console.run(inproc.target, [commands.CHANNELS_CONCISE], notices=notices)
    inproc.clock.running = False  # the same instant for -rx
    assert listing == inproc.engine.execute(commands.CHANNELS_CONCISE).output
    assert listing.count("\n") == 2 and "nosuchcontext" not in listing
    assert [n.split("]: ", 1)[1] for n in notices] == [
        "core_local.c:753 local_call: No such extension/context 150@nosuchcontext while "
        "calling Local channel"
    ]
