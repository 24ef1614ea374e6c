"""A simulated PBX host for the console transport's tests: real sshd or in-process.

Its engine runs on a hand-moved clock with predictable bridge ids, so a run can be replayed
exactly (the console's answers are compared with rx's on the same replayed PBX).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pydantic import SecretStr

from callgate.pbx.client import PbxClient
from callgate.pbx.console import ConsoleTransport
from callgate.pbx.rx import RxTransport
from callgate.pbx.ssh import PoolLimits, SshPool
from callgate.pbx.transport import HostTarget, PbxTransport
from callgate.settings import HostKeyPolicy
from callgate.simulator import SimulatedAsterisk, SimulatorDaemon, install_program
from callgate.simulator.sshserver import SshSimulator, start_ssh_simulator
from tests.support.sshd import SshdServer

PHONE, CTX = "+375296254070", "inoffice"
NO_CALLS = "0 active channels\n0 active calls\n0 calls processed\n"
USER, PASSWORD = "pbx", "sim-password"


class Clock:
    """The engine's clocks and bridge ids, moved by hand: a run can be replayed exactly.

    ``running = True`` lets it also follow real time from then on (moves by hand still add):
    what a test needs that waits for a call to progress, as a verified originate does (the new
    pair starts unstarted, ``simulator.timeline.SETTLE``).
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.bridges = 0
        self._since: float | None = None

    @property
    def running(self) -> bool:
        return self._since is not None

    @running.setter
    def running(self, on: bool) -> None:
        if on and self._since is None:
            self._since = time.monotonic()
        elif not on and self._since is not None:
            self.now, self._since = self(), None

    def __call__(self) -> float:
        return self.now + (0.0 if self._since is None else time.monotonic() - self._since)

    def wall(self) -> float:
        return 1795707000.0 + self()

    def bridge_id(self) -> str:
        self.bridges += 1
        return f"00000000-0000-4000-8000-{self.bridges:012d}"  # Asterisk's shape: a UUID

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

    @property
    def server(self) -> SshdServer:
        """The real sshd in front of the bash program."""
        assert self.sshd is not None, "not a real sshd PBX"
        return self.sshd

    @property
    def simulator(self) -> SshSimulator:
        """The in-process simulator, with its console switches."""
        assert self.sim is not None, "not an in-process PBX"
        return self.sim

    def sent(self, command: str) -> int:
        """How many times Asterisk received ``command``."""
        return sum(recorded.command == command for recorded in self.engine.commands)

    def restart(self) -> None:
        """Asterisk as it was at the start: same clock, same counters, no calls."""
        self.clock.now, self.clock.bridges = 1000.0, 0
        self.engine.reset()

    async def aclose(self) -> None:
        for transport in self.transports:
            await transport.aclose()


@contextlib.asynccontextmanager
async def sshd_pbx(sshd: SshdServer, **target: Any) -> AsyncIterator[Pbx]:
    """The bash program in ``sshd``'s bin directory, in front of a daemon in this process."""
    clock = Clock()
    engine = clock.engine()
    async with SimulatorDaemon(engine) as daemon:
        install_program(sshd.bin_dir, daemon.port)
        host = HostTarget(sshd.host, sshd.port, sshd.username, SecretStr(sshd.password), **target)
        pbx = Pbx(engine, clock, host, sshd=sshd, daemon_port=daemon.port)
        try:
            yield pbx
        finally:
            await pbx.aclose()


@contextlib.asynccontextmanager
async def inprocess_pbx(**target: Any) -> AsyncIterator[Pbx]:
    """The in-process SSH simulator (``sim`` has the console switches)."""
    clock = Clock()
    engine = clock.engine()
    sim = await start_ssh_simulator(engine, username=USER, password=PASSWORD)
    sim.console_hostname = "pbx-7.example.net"  # not "vm": the prompt must be learnt
    pbx = Pbx(engine, clock, HostTarget(sim.host, sim.port, USER, SecretStr(PASSWORD), **target))
    pbx.sim = sim
    try:
        yield pbx
    finally:
        await pbx.aclose()
        await sim.close()


TARGET: dict[str, Any] = {
    "host_key_policy": HostKeyPolicy.OFF,
    "command_timeout": 5.0,
    "connect_timeout": 5.0,
}


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
    """Whether ``check`` becomes true within ``seconds``."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def status_of(transport: ConsoleTransport, target: HostTarget) -> dict[str, Any]:
    """The host's entry in the transport's status (mode, consoles, reason)."""
    consoles = cast(dict[str, Any], transport.status()["consoles"])
    return cast(dict[str, Any], consoles["hosts"][target.label])


async def measure_originates(
    pbx: Pbx, transports: dict[str, PbxTransport], rounds: int
) -> dict[str, list[float]]:
    """Seconds per verified ``PbxClient.originate``, per transport, interleaved (so both see
    the same host load), after two warm-up calls each (connection, console)."""
    clients = {name: PbxClient(transport) for name, transport in transports.items()}
    samples: dict[str, list[float]] = {name: [] for name in clients}
    pbx.clock.running = True  # the dialplan starts SETTLE after the originate, as on Asterisk
    for n in range(rounds + 2):
        for name, client in clients.items():
            started = time.perf_counter()
            await client.originate(pbx.target, str(150 + n % 40), PHONE)
            if n >= 2:
                samples[name].append(time.perf_counter() - started)
            pbx.clock.now += 120  # the call ends: listings stay one call long
    return samples
