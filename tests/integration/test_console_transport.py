"""ConsoleTransport against a real sshd (bash program + daemon) and the in-process simulator."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import SecretStr

from callgate import errors
from callgate.pbx import commands
from callgate.pbx.client import PbxClient
from callgate.pbx.console import ConsoleTransport
from callgate.pbx.factory import RoutingTransport, build_transport
from callgate.pbx.rx import RxTransport
from callgate.pbx.ssh import PoolLimits, SshPool
from callgate.pbx.transport import HostTarget
from callgate.settings import HostKeyPolicy, Settings, Transport
from callgate.simulator import SimulatedAsterisk, SimulatorDaemon, install_program
from callgate.simulator.console import ConsoleScreen
from callgate.simulator.sshserver import SshSimulator, start_ssh_simulator
from tests.support.sshd import SshdServer

PHONE, CTX = "+375296254070", "inoffice"
USER, PASSWORD = "pbx", "sim-password"


class Clock:
    """The engine's clocks and bridge ids, moved by hand: a run can be replayed exactly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.bridges = 0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1795707000.0 + self.now

    def bridge_id(self) -> str:
        self.bridges += 1
        return f"bridge-{self.bridges}"

    def engine(self) -> SimulatedAsterisk:
        return SimulatedAsterisk(clock=self, wall_clock=self.wall, bridge_ids=self.bridge_id)


@dataclass
class Pbx:
    """A simulated PBX host and how to reach it; ``sshd`` is None for the in-process one."""

    engine: SimulatedAsterisk
    clock: Clock
    target: HostTarget
    sshd: SshdServer | None = None
    daemon_port: int = 0
    sim: SshSimulator | None = None
    transports: list[ConsoleTransport] = field(default_factory=list)

    def transport(self, **options: Any) -> ConsoleTransport:
        pool = SshPool(PoolLimits())
        console = ConsoleTransport(pool, RxTransport(pool), **options)
        self.transports.append(console)
        return console

    def sent(self, command: str) -> int:
        """How many times Asterisk received ``command``."""
        return sum(recorded.command == command for recorded in self.engine.commands)

    def restart(self) -> None:
        """Asterisk as it was at the start: same clock, same counters, no calls."""
        self.clock.now, self.clock.bridges = 1000.0, 0
        self.engine.reset()


@contextlib.asynccontextmanager
async def sshd_pbx(sshd: SshdServer, **target: Any) -> AsyncIterator[Pbx]:
    clock = Clock()
    engine = clock.engine()
    async with SimulatorDaemon(engine) as daemon:
        install_program(sshd.bin_dir, daemon.port)
        host = HostTarget(sshd.host, sshd.port, sshd.username, SecretStr(sshd.password), **target)
        yield Pbx(engine, clock, host, sshd=sshd, daemon_port=daemon.port)


@contextlib.asynccontextmanager
async def inprocess_pbx(**target: Any) -> AsyncIterator[Pbx]:
    clock = Clock()
    engine = clock.engine()
    sim = await start_ssh_simulator(engine, username=USER, password=PASSWORD)
    try:
        host = HostTarget(sim.host, sim.port, USER, SecretStr(PASSWORD), **target)
        yield Pbx(engine, clock, host, sim=sim)
    finally:
        await sim.close()


TARGET = {"host_key_policy": HostKeyPolicy.OFF, "command_timeout": 5.0, "connect_timeout": 5.0}


@pytest.fixture(params=[pytest.param("sshd", marks=pytest.mark.sshd), "inprocess"])
async def pbx(request: pytest.FixtureRequest) -> AsyncIterator[Pbx]:
    """Each test runs against both: a real sshd with the bash program, and the in-process one."""
    maker = (
        sshd_pbx(request.getfixturevalue("sshd"), **TARGET)
        if request.param == "sshd"
        else inprocess_pbx(**TARGET)
    )
    async with maker as host:
        try:
            yield host
        finally:
            for transport in host.transports:
                await transport.aclose()


@pytest.fixture
async def real(sshd: SshdServer) -> AsyncIterator[Pbx]:
    """Only the real sshd: for what needs the console's process on the host."""
    async with sshd_pbx(sshd, **TARGET) as host:
        try:
            yield host
        finally:
            for transport in host.transports:
                await transport.aclose()


def console_pids(sshd: SshdServer) -> list[int]:
    """The `asterisk -r` console processes under this sshd (the exec'd console client)."""
    pids = []
    for pid in sshd.process_ids():
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"-r" in argv and any(arg.endswith(b"/console.py") for arg in argv):
                pids.append(pid)
    return pids


async def eventually(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def status_of(transport: ConsoleTransport, target: HostTarget) -> dict[str, Any]:
    consoles = cast(dict[str, Any], transport.status()["consoles"])
    return cast(dict[str, Any], consoles["hosts"][target.label])


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
    assert "bridge-1" in flat[5] and flat[7].startswith("Requested Hangup on channel")
    assert flat[10].count("Requested Hangup") == 4 and flat[12].startswith("0 active")
    assert console.opened == 1


async def test_verified_originate(pbx: Pbx) -> None:
    """PbxClient's originate over the console sees its new channel at the first listing."""
    console = pbx.transport()
    placed = await PbxClient(console).originate(pbx.target, "150", PHONE)
    assert placed.channel.name == "Local/150@inoffice-00000000;1" and placed.checks == 1
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


async def test_hung_console_times_out_then_recovers_inprocess() -> None:
    """An Asterisk that stops answering: CommandTimeout in time, not re-sent, then recovery."""
    async with inprocess_pbx(**(TARGET | {"command_timeout": 0.5})) as pbx:
        console = pbx.transport()
        await console.run(pbx.target, [commands.VERSION])
        assert pbx.sim is not None
        pbx.sim.console_hang = True
        hangup = commands.hangup("Local/101@inoffice-00000001;1")
        started = time.monotonic()
        with pytest.raises(errors.CommandTimeout) as raised:
            await console.run(pbx.target, [hangup])
        assert time.monotonic() - started < 0.5 + 0.3 and raised.value.maybe_executed
        pbx.sim.console_hang = False
        assert (await console.run(pbx.target, [commands.VERSION]))[0].startswith("Asterisk")
        assert pbx.sent(hangup) == 0 and console.opened == 2
        await console.aclose()


async def test_console_refused_falls_back_to_rx_inprocess() -> None:
    """No console on the host: answers come through rx, status says so, the console returns."""
    async with inprocess_pbx(**TARGET) as pbx:
        assert pbx.sim is not None
        pbx.sim.console_enabled = False
        console = pbx.transport(retry_after=0.2)
        listing = await console.run(pbx.target, [commands.CHANNELS_COUNT])
        assert listing == ["0 active channels\n0 active calls\n0 calls processed\n"]
        state = status_of(console, pbx.target)
        assert state["mode"] == "rx-fallback" and "switched off" in state["reason"]
        assert any("-rx" in c.command for c in pbx.sim.exec_commands)
        pbx.sim.console_enabled = True
        await asyncio.sleep(0.25)
        await console.run(pbx.target, [commands.VERSION])  # via rx; retries in the background
        assert await eventually(lambda: status_of(console, pbx.target)["mode"] == "console")
        await console.run(pbx.target, [commands.VERSION])
        assert console.opened == 1
        await console.aclose()


async def test_garbage_closes_the_console_then_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unreadable answer: UnexpectedOutput (it may have run) and the console is closed; the
    new one is unreadable at its first command, so the host falls back to rx, which answers."""
    async with inprocess_pbx(**TARGET) as pbx:
        console = pbx.transport(retry_after=0.2)
        await console.run(pbx.target, [commands.VERSION])
        # The console forgets its erase codes: the sentinel's answer is no longer "output".
        monkeypatch.setattr(ConsoleScreen, "output", lambda _s, _c, text: text)
        with pytest.raises(errors.UnexpectedOutput, match="unreadable answer") as raised:
            await console.run(pbx.target, [commands.CHANNELS_COUNT])
        assert raised.value.maybe_executed and pbx.sent(commands.CHANNELS_COUNT) == 1
        count = await console.run(pbx.target, [commands.CHANNELS_COUNT])
        assert count == ["0 active channels\n0 active calls\n0 calls processed\n"]
        state = status_of(console, pbx.target)
        assert state["mode"] == "rx-fallback" and "unreadable" in state["reason"]
        assert console.opened == 1 and pbx.sent(commands.CHANNELS_COUNT) == 2
        monkeypatch.undo()
        await asyncio.sleep(0.25)
        await console.run(pbx.target, [commands.VERSION])
        assert await eventually(lambda: status_of(console, pbx.target)["mode"] == "console")
        await console.aclose()


async def test_routing_picks_the_transport_per_host() -> None:
    """build_transport: one pool; a `console` host gets a console, an `rx` host does not."""
    async with inprocess_pbx(**TARGET) as pbx:
        assert pbx.sim is not None
        settings = Settings(_env_file=None)
        assert Settings.model_fields["transport"].default is Transport.CONSOLE
        routing = build_transport(settings, sessions=cast(Any, None))
        assert isinstance(routing, RoutingTransport)
        try:
            rx_host = HostTarget(**{**pbx.target.__dict__, "transport": Transport.RX})
            console_host = HostTarget(**{**pbx.target.__dict__, "transport": Transport.CONSOLE})
            assert await routing.run(rx_host, [commands.VERSION]) == await routing.run(
                console_host, [commands.VERSION]
            )
            lines = [c.command for c in pbx.sim.exec_commands]
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
    assert real.sshd is not None
    console = real.transport(consoles_per_host=1)
    for n in range(200):
        channel = f"Local/{100 + n % 100}@inoffice-{n:08x};1"
        answer = await console.run(real.target, [commands.hangup(channel)])
        assert answer == [f"{channel} is not a known channel\n"]
    assert len(console_pids(real.sshd)) == 1 and console.opened == 1
    await console.aclose()
    assert await eventually(lambda: not console_pids(real.sshd))  # type: ignore[arg-type]


@pytest.mark.sshd
async def test_killed_console_is_reopened(real: Pbx) -> None:
    """The console killed on the host: the next call opens another and succeeds."""
    assert real.sshd is not None
    console = real.transport(consoles_per_host=1)
    await console.run(real.target, [commands.VERSION])
    (pid,) = console_pids(real.sshd)
    os.kill(pid, signal.SIGKILL)
    assert (await console.run(real.target, [commands.CHANNELS_COUNT]))[0].endswith("processed\n")
    assert console.opened == 2 and pid not in console_pids(real.sshd)
    assert len(console_pids(real.sshd)) == 1


@pytest.mark.sshd
async def test_stopped_console_times_out_then_recovers(sshd: SshdServer) -> None:
    """A frozen console (SIGSTOP): CommandTimeout in time, not re-sent; it is hung up, and
    the next call gets a new console."""
    async with sshd_pbx(sshd, **(TARGET | {"command_timeout": 0.5})) as pbx:
        console = pbx.transport(consoles_per_host=1)
        await console.run(pbx.target, [commands.VERSION])
        (pid,) = console_pids(sshd)
        os.kill(pid, signal.SIGSTOP)
        try:
            hangup = commands.hangup("Local/101@inoffice-00000001;1")
            started = time.monotonic()
            with pytest.raises(errors.CommandTimeout):
                await console.run(pbx.target, [hangup])
            assert time.monotonic() - started < 0.5 + 0.3
            assert (await console.run(pbx.target, [commands.VERSION]))[0].startswith("Asterisk")
            assert pbx.sent(hangup) == 0 and console.opened == 2
            assert await eventually(lambda: pid not in console_pids(sshd))  # hung up: no leak
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            await console.aclose()


@pytest.mark.sshd
async def test_console_that_cannot_open_falls_back_to_rx(real: Pbx) -> None:
    """`asterisk -r` fails on the host: rx answers, status says rx-fallback and why; once the
    console works again, a background retry brings the host back to `console`."""
    sshd = real.sshd
    assert sshd is not None
    program = install_program(sshd.dir / "sim", real.daemon_port)
    sshd.add_program(
        "asterisk",
        f'#!/bin/bash\n[[ $1 == -rx ]] && exec {program} "$@"\n'
        "echo 'asterisk: this host has no console' >&2\nexit 1\n",
    )
    console = real.transport(retry_after=0.2)
    answers = await console.run(real.target, [commands.CHANNELS_COUNT, commands.VERSION])
    assert answers[0] == "0 active channels\n0 active calls\n0 calls processed\n"
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
    clients = {
        "console": PbxClient(real.transport()),
        "rx": PbxClient(RxTransport(SshPool(PoolLimits()))),
    }
    samples: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for n in range(32):  # interleaved, so both see the same host load; 2 warm-ups
            for name, client in clients.items():
                started = time.perf_counter()
                placed = await client.originate(real.target, str(150 + n % 40), PHONE)
                if n >= 2:
                    samples[name].append(time.perf_counter() - started)
                assert placed.checks == 1
                real.clock.now += 120  # the call ends: listings stay one call long
    finally:
        await clients["rx"].transport.aclose()
    medians = {name: statistics.median(times) * 1000 for name, times in samples.items()}
    print(
        "\nPbxClient.originate (verified), real sshd, median of 30: "
        + ", ".join(f"{name} {ms:.2f} ms" for name, ms in medians.items())
    )
    assert all(len(times) == 30 for times in samples.values())
