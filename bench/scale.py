"""Throughput and isolation: concurrent clients calling across many simulated hosts.

The service (`callgate serve`, PostgreSQL) talks to ``hosts`` console hosts and ``hosts`` rx
hosts of the farm (another process); each enterprise is bound to its own host. The seed's way
runs with the same number of clients against the real sshd. Each round runs five segments,
back to back:

* ``console`` / ``rx``: callgate, the console hosts / the rx hosts;
* ``seed``: the seed's way, the same number of clients;
* ``healthy`` / ``isolated``: the isolation pair, the same load twice: the console hosts'
  clients plus ``EXTRA_CLIENTS`` paced ones (one call per ``EXTRA_PAUSE`` s each) calling one
  more enterprise, on 127.0.0.1, whose host row points at a farm host there (``healthy``) or
  at the farm's blackhole (``isolated``: 127.0.0.1, accepts and never answers). Only the state
  of that one host differs; the other hosts' p99 is what it must not move.

Even rounds run console, healthy, rx, isolated, seed; odd rounds console, isolated, rx,
healthy, seed, so that neither side of the pair always comes first. Blackholed calls still
waiting when their segment ends finish during the next one (rx or seed) and are awaited
before the row is switched back.
"""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from tests.support.sshd import SshdServer

from bench import procs, setup, ways
from bench.farm_client import FarmClient
from bench.load import Run, closed_loop, threaded_loop
from callgate.simulator.daemon import SimulatorControl

GROUP_CONSOLE, GROUP_RX = 1, 2
# Calls are answered after 0.5 s, connected 0.5 s later and talk 2 s: each lives ~3.5 s, so a
# host's channel listing stays short while the tracker follows every call through all states.
SCENARIO: dict[str, float | None] = {
    "agent_answer_after": 0.5,
    "customer_answer_after": 0.5,
    "talk": 2.0,
}
EXTRA_CLIENTS = 4  # paced clients of the host that is blackholed in ``isolated``
EXTRA_PAUSE = 1.0  # seconds each of them waits after an answer
GROUP_EXTRA = 5
SETTLE = 1.5  # after a segment: its calls are hung up and the tracker's last ticks run
MAX_RATE = 2000  # calls per second that no segment can exceed: bounds every loop by count
CPU_PARTS = ("service", "PBX hosts", "PostgreSQL", "load clients")  # and "sessions" opened


@dataclass(frozen=True)
class ScaleConfig:
    hosts: int
    clients: int
    seconds: float
    rounds: int

    @property
    def max_calls(self) -> int:
        return int(self.seconds * MAX_RATE)


@dataclass
class ScaleStage:
    """Everything the rounds drive; ``console``/``rx`` are the enterprises' secrets."""

    service: setup.Service
    farm: FarmClient
    database: str
    sshd: SshdServer
    control: SimulatorControl
    daemon_pid: int
    console: list[str]
    rx: list[str]
    extra: str  # the enterprise on 127.0.0.1, healthy or blackholed
    healthy_port: int  # its farm host's port on 127.0.0.1
    blackhole_port: int
    switch: setup.HostSwitch


@dataclass
class ScaleResult:
    """Each way's segments, its CPU seconds per part (and PostgreSQL sessions), summed over
    the rounds, and the blackholed host's calls."""

    config: ScaleConfig
    runs: dict[str, list[Run]] = field(default_factory=lambda: defaultdict(list))
    cpu: dict[str, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: dict.fromkeys((*CPU_PARTS, "sessions"), 0.0))
    )
    blackholed: list[Run] = field(default_factory=list)  # the extra host, blackholed
    extra_healthy: list[Run] = field(default_factory=list)  # the extra host, healthy

    def add(self, way: str, run: Run, cpu: dict[str, float]) -> None:
        self.runs[way].append(run)
        for part, value in cpu.items():
            self.cpu[way][part] += value


@dataclass(frozen=True)
class Prepared:
    """The enterprises' secrets and the extra host's two ports."""

    console: list[str]
    rx: list[str]
    extra: str
    healthy_port: int
    blackhole_port: int


async def prepare(url: str, farm: FarmClient, hosts: int) -> Prepared:
    """Start the hosts, the extra host on 127.0.0.1 and the blackhole; one enterprise each."""
    console_hosts = await farm.start(GROUP_CONSOLE, hosts, SCENARIO)
    rx_hosts = await farm.start(GROUP_RX, hosts, SCENARIO)
    (extra_host,) = await farm.start(GROUP_EXTRA, 1, SCENARIO, address="127.0.0.1")
    console = await setup.seed_farm_rows(url, console_hosts, farm, prefix="c", transport="console")
    rx = await setup.seed_farm_rows(url, rx_hosts, farm, prefix="r", transport="rx")
    (extra,) = await setup.seed_farm_rows(url, [extra_host], farm, prefix="x", transport="console")
    return Prepared(console, rx, extra, extra_host.port, await farm.blackhole())


async def warm(stage: ScaleStage, clients: int) -> None:
    """One call per host: every connection and console is open before anything is timed."""
    secrets = [*stage.console, *stage.rx, stage.extra]
    run = await closed_loop(
        stage.service.port, secrets, clients=clients, duration=120, max_calls=len(secrets)
    )
    if not all(run.ok) or len(run.ok) != len(secrets):
        raise RuntimeError(f"warm-up failed: {sum(run.ok)}/{len(secrets)} ok; {run.reasons}")
    await stage.farm.hangup()
    await asyncio.sleep(SETTLE)


@dataclass(frozen=True)
class _Snapshot:
    parts: dict[str, float]  # CPU seconds so far of each part but PostgreSQL
    backends: dict[int, float]  # PostgreSQL backends of the bench database
    sessions: int  # PostgreSQL sessions opened so far


async def _snapshot(stage: ScaleStage, seed: bool) -> _Snapshot:
    """Where the CPU of the way being measured goes, so far."""
    if seed:
        sshd_pid = stage.sshd.process_ids()[0]
        hosts = procs.cpu_seconds(sshd_pid, reaped_children=True)
        hosts += procs.cpu_seconds(stage.daemon_pid)
        clients = procs.own_cpu_seconds(children=False) + procs.own_cpu_seconds(children=True)
        return _Snapshot({"service": 0.0, "PBX hosts": hosts, "load clients": clients}, {}, 0)
    parts = {
        "service": procs.cpu_seconds(stage.service.pid),
        "PBX hosts": procs.cpu_seconds(stage.farm.pid),
        "load clients": procs.own_cpu_seconds(children=False),
    }
    backends = procs.postgres_backends(stage.database)
    return _Snapshot(parts, backends, await setup.sessions_opened(stage.database))


def _spent(before: _Snapshot, after: _Snapshot) -> dict[str, float]:
    spent = {part: after.parts[part] - before.parts[part] for part in after.parts}
    spent["PostgreSQL"] = procs.backends_cpu_delta(before.backends, after.backends)
    spent["sessions"] = after.sessions - before.sessions
    return spent


async def _callgate(
    stage: ScaleStage, cfg: ScaleConfig, secrets: list[str]
) -> tuple[Run, dict[str, float]]:
    before = await _snapshot(stage, seed=False)
    run = await closed_loop(
        stage.service.port,
        secrets,
        clients=cfg.clients,
        duration=cfg.seconds,
        max_calls=cfg.max_calls,
    )
    after = await _snapshot(stage, seed=False)
    await stage.farm.hangup()
    await asyncio.sleep(SETTLE)
    spent = _spent(before, after)
    # PostgreSQL counts a session when it is flushed: read again once the segment has settled.
    spent["sessions"] = await setup.sessions_opened(stage.database) - before.sessions
    return run, spent


async def _seed(stage: ScaleStage, cfg: ScaleConfig) -> tuple[Run, dict[str, float]]:
    sshd = stage.sshd
    call = functools.partial(ways.seed_way, sshd.host, sshd.port, sshd.username, sshd.password)
    before = await _snapshot(stage, seed=True)
    run = await asyncio.to_thread(
        threaded_loop, call, clients=cfg.clients, duration=cfg.seconds, max_calls=cfg.max_calls
    )
    after = await _snapshot(stage, seed=True)
    await stage.control.rx("channel request hangup all")
    return run, _spent(before, after)


async def measure(stage: ScaleStage, cfg: ScaleConfig) -> ScaleResult:
    """``cfg.rounds`` rounds of the five segments (see the module docstring)."""
    result = ScaleResult(cfg)
    blackholed: asyncio.Task[Run] | None = None
    for index in range(cfg.rounds):
        pair = ("isolated", "healthy") if index % 2 else ("healthy", "isolated")
        for way in ("console", pair[0], "rx", pair[1], "seed"):
            if way == "seed":
                result.add(way, *await _seed(stage, cfg))
                continue
            if way != "rx" and blackholed is not None:  # its last calls answered first
                result.blackholed.append(await _finish(blackholed))
                blackholed = None
            extra = None
            if way in ("healthy", "isolated"):
                dead = way == "isolated"
                await stage.switch.point(stage.blackhole_port if dead else stage.healthy_port)
                extra = asyncio.create_task(_extra_clients(stage, cfg))
            secrets = stage.rx if way == "rx" else stage.console
            result.add(way, *await _callgate(stage, cfg, secrets))
            if extra is not None and way == "isolated":
                blackholed = extra
            elif extra is not None:
                result.extra_healthy.append(await _finish(extra))
    if blackholed is not None:
        result.blackholed.append(await _finish(blackholed))
    return result


def _extra_clients(stage: ScaleStage, cfg: ScaleConfig) -> Coroutine[Any, Any, Run]:
    """The paced clients of the extra host, for one segment."""
    return closed_loop(
        stage.service.port,
        [stage.extra],
        clients=EXTRA_CLIENTS,
        duration=cfg.seconds,
        max_calls=EXTRA_CLIENTS * int(cfg.seconds / EXTRA_PAUSE + 2),
        first_extension=400,
        pause=EXTRA_PAUSE,
    )


async def _finish(clients: asyncio.Task[Run]) -> Run:
    """The extra clients' segment, once their last call has been answered."""
    async with asyncio.timeout(60):  # a call ends within two connect timeouts (20 s)
        return await clients
