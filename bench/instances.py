"""Several instances on one PostgreSQL: throughput, CPU per call, event lag, takeover.

    python -m bench.instances [--quick] [--hosts N] [--clients N] [--seconds S] [--rounds R]
    python -m bench.instances serve [--alone]   # how the measurement starts each service
    python -m bench.instances --seconds 15 paced two   # one paced segment alone (A/B runs)
    python -m bench.instances --seconds 15 paced two --without events  # ... less one part
    python -m bench.instances --seconds 15 paced apart  # ... of two instances sharing nothing

The farm's simulated console hosts (another process, `bench.farm`), one enterprise each, and
concurrent clients placing calls (`bench.load.closed_loop`, every call another number). The
set-ups below all run from the start, each with hosts (``hosts``) and databases of its own,
and are measured in ``rounds`` rounds of bursts of ``seconds`` each, the set-ups in turn
(every other round in reverse, `setup.abba`): one paced burst (at most ``PACED_RATE`` calls a
second in all: the CPU per call) then one as fast as the calls go (calls per second). Each
set-up's bursts add up to its segments of the report, and each round's paced bursts are
compared with each other too. Measured one after the other instead, the same set-ups moved
by more than the goal's 10 % from run to run here, with the machine's speed between them.

- ``seed``: the seed's way (sshpass + ssh per call) against the real sshd, same clients
  (one segment, first);
- ``alone``: one `callgate serve` with none of the coordination of several instances (no
  event notifications, double-click claims, originate locks, live-call recounts or host
  leases: the service as one instance per database was), on a database of its own;
- ``apart``: two such instances that share nothing, each on a database of its own with half
  the hosts (their enterprises), the clients split between them: what splitting the load
  over two processes costs on this machine with no coordination at all, the floor of the
  goals on two instances;
- ``one``: one coordinated instance (as every instance on PostgreSQL now runs), on a
  database of its own;
- ``two``: two coordinated instances on one database (of their own), the clients split
  between them.

For each: calls per second, the CPU per call of each process (the services, the PostgreSQL
backends of its database, the simulated hosts; Redis is not used here: the limits and the
guard are on PostgreSQL), and the lag from a tracker's move to an SSE subscriber (the event's
``at`` to its arrival; in ``two`` a subscriber on each instance, so that about half of what
each hears was followed by the other one). Then ``takeover``: the second instance is killed
with SIGKILL under load, and the time until every host with live calls is held by the
survivor again is measured (its leases expire, `calls.leases`).

Prints a Markdown report and writes it to bench/results/instances.md (``--quick``:
instances-quick.md). The full run takes about five minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import uvloop

from bench import procs, setup, ways
from bench.farm_client import FarmClient, FarmHost, farm_process
from bench.goals import STATUS
from bench.load import Run, closed_loop, threaded_loop
from bench.stats import percentile
from callgate.domain.states import LIVE

RESULTS = Path(__file__).with_name("results")
_LIVE = [state.value for state in LIVE]
GROUP = 7  # the farm's group of this bench's hosts
# Calls answered after 0.5 s, connected 0.5 s later, 2 s of talk: ~3.5 s live, as `bench.scale`.
SCENARIO: dict[str, float | None] = {
    "agent_answer_after": 0.5,
    "customer_answer_after": 0.5,
    "talk": 2.0,
}
POOL_SIZE = 12  # each instance's PostgreSQL connections at most (8 clients at most each)
PACED_POOL_SIZE = 4  # the same, for an instance measured only paced (`--parts`)
SETTLE = 2.0  # seconds after a segment: its calls hung up, the trackers' last ticks run
LEASE_TTL = 10.0  # the default (`CALLGATE_LEASE_TTL`)


@dataclass(frozen=True)
class Plan:
    hosts: int = 20
    clients: int = 8
    seconds: float = 5.0  # per burst
    rounds: int = 3  # bursts of each set-up, in turn


QUICK = Plan(hosts=4, clients=4, seconds=2.0, rounds=1)


@dataclass
class Segment:
    """One segment's calls, CPU seconds per part and event lags (seconds)."""

    name: str
    run: Run
    cpu: dict[str, float]
    lags: dict[str, list[float]] = field(default_factory=dict)  # by subscriber's instance

    @property
    def calls(self) -> int:
        return sum(self.run.ok)

    @property
    def rate(self) -> float:
        return self.calls / max(1e-9, self.run.finished - self.run.started)

    def per_call_ms(self, part: str) -> float:
        return 1000 * self.cpu.get(part, 0.0) / max(1, self.calls)


@dataclass
class Result:
    plan: Plan
    segments: list[Segment] = field(default_factory=list)
    lags: dict[str, list[float]] = field(default_factory=dict)  # at a light load
    takeover_s: float | None = None
    takeover_hosts: int = 0
    takeover_live: int = 0  # the victim's hosts with live calls at the kill
    notes: list[str] = field(default_factory=list)
    # Service CPU per call (ms) of each set-up's paced bursts, in the order of the rounds.
    rounds: dict[str, list[float]] = field(default_factory=dict)


PARTS = ("events", "claims", "locks", "recount", "leases")  # what `serve --without` drops


def serve(alone: bool, without: list[str]) -> None:
    """`callgate serve`; ``alone``: without any of the coordination of several instances,
    ``without``: without those parts of it (the names are looked up by `wiring.running` when
    called, so the service uses the changed ones)."""
    from callgate import wiring
    from callgate.calls import shared_events
    from callgate.cli import app

    def nothing(*_args: object, **_kwargs: object) -> None:
        return None

    async def no_task(*_args: object, **_kwargs: object) -> None:
        return None

    patches: dict[str, list[tuple[object, str, object]]] = {
        "events": [(wiring, "listen_for_events", nothing)],
        "claims": [(wiring, "SharedClaims", nothing)],
        "locks": [(wiring, "AdvisoryLocks", nothing)],  # the claims then on the pool
        "recount": [(wiring, "count_elsewhere", no_task)],
        "leases": [(wiring, "is_postgres", lambda _url: False)],
    }
    if alone:
        patches["all"] = [
            (wiring, "fed_from_log", lambda _url: False),
            (shared_events, "fed_from_log", lambda _url: False),
        ]
        without = [*PARTS, "all"]
    for part in without:
        for module, name, value in patches[part]:
            setattr(module, name, value)
    app(["serve"], prog_name="callgate")


def _command(alone: bool, without: tuple[str, ...] = ()) -> list[str]:
    argv = [sys.executable, "-m", "bench.instances", "serve"]
    if alone:
        argv.append("--alone")
    for part in without:
        argv += ["--without", part]
    return argv


@contextlib.asynccontextmanager
async def _service(
    url: str, workdir: Path, name: str, *, alone: bool = False, without: tuple[str, ...] = ()
) -> AsyncIterator[setup.Service]:
    log_file = workdir / f"{name}.log"
    # Six instances run at once (eleven with `--parts`), each with its pool and two
    # connections more: bounded, so that all of them stay within PostgreSQL's hundred
    # connections; one without a part of the coordination is only paced (a few at once).
    env = {
        "CALLGATE_INSTANCE_ID": name,
        "CALLGATE_LOG_FILE": str(log_file),
        "CALLGATE_DATABASE_POOL_SIZE": str(PACED_POOL_SIZE if without else POOL_SIZE),
    }
    try:
        async with setup.callgate_service(
            url, workdir, extra_env=env, command=_command(alone, without)
        ) as service:
            yield service
    except (RuntimeError, ProcessLookupError):
        if log_file.exists():  # why it did not start
            print(log_file.read_text()[-2000:], file=sys.stderr)
        raise


class Subscriber:
    """An SSE subscriber of one enterprise on one instance: each event's lag on arrival."""

    def __init__(self, service: setup.Service, secret: str) -> None:
        self.lags: list[float] = []
        self._task = asyncio.create_task(self._read(service, secret))

    async def _read(self, service: setup.Service, secret: str) -> None:
        headers = {"Authorization": f"Bearer {secret}"}
        async with (
            httpx.AsyncClient(base_url=service.base, timeout=httpx.Timeout(5, read=None)) as client,
            client.stream("GET", "/v1/events", headers=headers) as response,
        ):
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    arrived = time.time()
                    at = datetime.fromisoformat(json.loads(line[6:])["at"]).timestamp()
                    self.lags.append(arrived - at)

    async def close(self) -> list[float]:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._task
        return self.lags


@dataclass(frozen=True)
class Serving:
    """A set-up under load: its services, the enterprises (secrets) each one's clients call,
    and the databases whose PostgreSQL backends count."""

    services: list[setup.Service]
    calls_to: list[list[str]]
    databases: list[str]


def sharing(services: list[setup.Service], secrets: list[str], url: str) -> Serving:
    """Services on one database, each one's clients calling every enterprise."""
    return Serving(services, [secrets] * len(services), [_name(url)])


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def _cpu(
    pids: dict[str, list[int]], databases: list[str]
) -> tuple[dict[str, float], dict[int, float]]:
    parts = {part: sum(procs.cpu_seconds(pid) for pid in group) for part, group in pids.items()}
    parts["load clients"] = procs.own_cpu_seconds(children=False)
    backends: dict[int, float] = {}
    for database in databases:
        backends |= procs.postgres_backends(database)
    return parts, backends


LAG_RATE = 8.0  # calls per second placed while the lag is measured: a light load
LAG_SECONDS = 5.0
PACED_RATE = 30.0  # calls per second at most in the paced segments (below any saturation)


async def _lag(
    services: dict[str, setup.Service], secret: str, url: str | None, host: str, plan: Plan
) -> dict[str, list[float]]:
    """Lags at a light load: calls of one enterprise (one host) placed through every service,
    a subscriber on each; named by whether the subscriber's instance follows the host."""
    subscribers = {name: Subscriber(service, secret) for name, service in services.items()}
    await asyncio.sleep(0.5)
    seconds = LAG_SECONDS if plan.seconds >= 5 else 2.0
    pause = len(services) / LAG_RATE
    await asyncio.gather(
        *(
            closed_loop(
                service.port,
                [secret],
                clients=1,
                duration=seconds,
                max_calls=int(seconds * LAG_RATE),
                first_extension=300 + index,
                pause=pause,
            )
            for index, service in enumerate(services.values())
        )
    )
    await asyncio.sleep(4.0)  # the calls end (3.5 s), their last moves arrive
    owner = None
    if url is not None:
        connection = await asyncpg.connect(_plain(url))
        try:
            owner = await connection.fetchval(
                "SELECT owner FROM host_leases WHERE host = $1 AND expires_at > now()", host
            )
        finally:
            await connection.close()
    lags: dict[str, list[float]] = {}
    for name, subscriber in subscribers.items():
        where = "direct" if url is None else ("its tracker's" if name == owner else "another")
        lags[f"{where} ({name})"] = await subscriber.close()
    return lags


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _segment(
    name: str, serving: Serving, farm: FarmClient, plan: Plan, pause: float = 0.0
) -> Segment:
    """Load split between the services, a subscriber of the first enterprise each one's
    clients call on each; each client waits ``pause`` seconds after each answer (0: as fast
    as the calls go)."""
    services = serving.services
    subscribers = {
        f"instance {i + 1}": Subscriber(s, calls_to[0])
        for i, (s, calls_to) in enumerate(zip(services, serving.calls_to, strict=True))
    }
    await asyncio.sleep(0.5)  # the streams are open
    pids = {"service": [s.pid for s in services], "PBX hosts": [farm.pid]}
    before, backends = await _cpu(pids, serving.databases)
    share = max(1, plan.clients // len(services))
    runs = await asyncio.gather(
        *(
            closed_loop(
                service.port,
                serving.calls_to[index],
                clients=share,
                duration=plan.seconds,
                max_calls=int(plan.seconds * 2000),
                first_extension=200 + index * share,  # an agent per client, on every instance
                pause=pause,
            )
            for index, service in enumerate(services)
        )
    )
    after, backends_after = await _cpu(pids, serving.databases)
    await asyncio.sleep(1.0)  # the last moves reach the subscribers
    lags = {where: await sub.close() for where, sub in subscribers.items()}
    await farm.hangup()
    await asyncio.sleep(SETTLE)
    run = _merged(runs)
    cpu = {part: after[part] - before[part] for part in after}
    cpu["PostgreSQL"] = procs.backends_cpu_delta(backends, backends_after)
    return Segment(name, run, cpu, lags)


@contextlib.asynccontextmanager
async def _apart(hosts: list[FarmHost], farm: FarmClient, workdir: Path) -> AsyncIterator[Serving]:
    """Two instances without any coordination (``--alone``), each on a database of its own
    with half of ``hosts``, warmed up; each one's clients call its own enterprises."""
    half = len(hosts) // 2
    async with setup.database() as first_url, setup.database() as second_url:
        urls, calls_to = [first_url, second_url], []
        for index, (url, mine) in enumerate(zip(urls, (hosts[:half], hosts[half:]), strict=True)):
            await setup.migrate(url)
            calls_to.append(
                await setup.seed_farm_rows(url, mine, farm, prefix=f"s{index}", transport="console")
            )
        async with contextlib.AsyncExitStack() as stack:
            services = [
                await stack.enter_async_context(
                    _service(url, workdir, f"bench-apart-{index}", alone=True)
                )
                for index, url in enumerate(urls)
            ]
            for service, secrets in zip(services, calls_to, strict=True):
                await _warm([service], secrets, farm)
            yield Serving(services, calls_to, [_name(url) for url in urls])


def _merged(runs: list[Run]) -> Run:
    merged = Run()
    merged.started = min(r.started for r in runs)
    merged.finished = max(r.finished for r in runs)
    for r in runs:
        merged.latencies += r.latencies
        merged.ok += r.ok
        merged.targets += r.targets
        merged.reasons.update(r.reasons)
    return merged


async def _seed(stage: setup.Stage, plan: Plan) -> Segment:
    sshd = stage.sshd

    def call() -> float:
        return ways.seed_way(sshd.host, sshd.port, sshd.username, sshd.password)

    hosts = [stage.sshd.process_ids()[0]]

    def spent() -> dict[str, float]:
        return {
            "PBX hosts": procs.cpu_seconds(hosts[0], reaped_children=True)
            + procs.cpu_seconds(stage.daemon.pid),
            "load clients": procs.own_cpu_seconds(children=False)
            + procs.own_cpu_seconds(children=True),
        }

    before = spent()
    run = await asyncio.to_thread(
        threaded_loop,
        call,
        clients=plan.clients,
        duration=plan.seconds,
        max_calls=int(plan.seconds * 2000),
    )
    after = spent()
    await stage.control.rx("channel request hangup all")
    return Segment("seed", run, {part: after[part] - before[part] for part in after})


async def _warm(services: list[setup.Service], secrets: list[str], farm: FarmClient) -> None:
    """One call per host through each service: connections and consoles open before timing."""
    for service in services:
        run = await closed_loop(
            service.port, secrets, clients=4, duration=120, max_calls=len(secrets)
        )
        if sum(run.ok) != len(secrets):
            raise RuntimeError(f"warm-up failed: {sum(run.ok)}/{len(secrets)}; {run.reasons}")
    await farm.hangup()
    await asyncio.sleep(SETTLE)


# The hosts with verified live calls that the survivor does not hold now.
_UNHELD = """
SELECT count(DISTINCT c.host) FROM calls c LEFT JOIN host_leases l ON l.host = c.host
WHERE c.state = ANY($2::text[]) AND c.channel IS NOT NULL
  AND (l.owner IS DISTINCT FROM $1 OR l.expires_at < now())
"""


async def _takeover(
    url: str, services: dict[str, setup.Service], secrets: list[str], plan: Plan
) -> tuple[float | None, int, int]:
    """SIGKILL the instance holding the most hosts, under load on the other (the survivor);
    seconds until every host with live calls is held by the survivor, how many hosts the
    victim held, and how many hosts with live calls the survivor did not hold at the kill."""
    connection = await asyncpg.connect(_plain(url))
    try:
        rows = await connection.fetch(
            "SELECT owner, count(*) AS hosts FROM host_leases"
            " WHERE expires_at > now() AND owner = ANY($1::text[]) GROUP BY owner",
            list(services),
        )
        leases = {row["owner"]: int(row["hosts"]) for row in rows}
        name = max(services, key=lambda owner: leases.get(owner, 0))
        victim, held = services[name], leases.get(name, 0)
        survivor_name = next(other for other in services if other != name)
        survivor = services[survivor_name]
        load = asyncio.create_task(
            closed_loop(
                survivor.port,
                secrets,
                clients=max(1, plan.clients // 2),
                duration=LEASE_TTL * 3,
                max_calls=10**6,
            )
        )
        await asyncio.sleep(1.0)
        unheld = await connection.fetchval(_UNHELD, survivor_name, _LIVE)
        os.kill(victim.pid, signal.SIGKILL)
        killed = time.monotonic()
        taken: float | None = None
        while time.monotonic() - killed < LEASE_TTL * 3:
            await asyncio.sleep(0.1)
            if await connection.fetchval(_UNHELD, survivor_name, _LIVE) == 0:
                taken = time.monotonic() - killed
                break
        load.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await load
        return taken, held, int(unheld or 0)
    finally:
        await connection.close()


def _combined(name: str, bursts: list[Segment]) -> Segment:
    """One set-up's bursts as one segment: their calls, CPU and lags summed, its duration the
    bursts' own (not the time between them, when other set-ups ran)."""
    run = Run()
    run.finished = sum(burst.run.finished - burst.run.started for burst in bursts)
    cpu: dict[str, float] = {}
    lags: dict[str, list[float]] = {}
    for burst in bursts:
        run.latencies += burst.run.latencies
        run.ok += burst.run.ok
        run.targets += burst.run.targets
        run.reasons.update(burst.run.reasons)
        for part, seconds in burst.cpu.items():
            cpu[part] = cpu.get(part, 0.0) + seconds
        for where, heard in burst.lags.items():
            lags.setdefault(where, []).extend(heard)
    return Segment(name, run, cpu, lags)


@contextlib.asynccontextmanager
async def _instances(
    hosts: list[FarmHost],
    farm: FarmClient,
    workdir: Path,
    names: tuple[str, ...],
    *,
    alone: bool = False,
    without: tuple[str, ...] = (),
) -> AsyncIterator[tuple[Serving, str, list[str]]]:
    """Instances (``names``; ``alone``, ``without``: `serve`'s) on a database of their own
    with ``hosts``, warmed up: how they serve, the database's URL and the enterprises'
    secrets."""
    async with setup.database() as url, contextlib.AsyncExitStack() as stack:
        if not alone and not url.startswith("postgresql"):
            raise RuntimeError("several instances need PostgreSQL: none is reachable")
        await setup.migrate(url)
        secrets = await setup.seed_farm_rows(url, hosts, farm, prefix="c", transport="console")
        services = []
        for name in names:  # the first takes the hosts' leases in its warm-up
            service = await stack.enter_async_context(
                _service(url, workdir, name, alone=alone, without=without)
            )
            await _warm([service], secrets, farm)
            services.append(service)
        yield sharing(services, secrets, url), url, secrets


async def measure(plan: Plan, *, parts: bool = False) -> Result:
    """Every set-up started at once, each with hosts and databases of its own, then measured
    in bursts taken in turn (`setup.abba`): a drift of the machine during the run hits every
    set-up alike, and each round's bursts are compared with each other (`Result.rounds`)."""
    result = Result(plan)
    with setup.stage("callgate-instances-") as stage:
        result.segments.append(await _seed(stage, plan))
        # One of the two is killed at the end: stopping what is gone finds no process.
        with contextlib.suppress(ProcessLookupError):
            await _all_setups(result, stage, plan, parts)
    return result


async def _all_setups(result: Result, stage: setup.Stage, plan: Plan, parts: bool) -> None:
    """Start every set-up, on hosts of its own; the light-load lags, the bursts, the takeover."""
    workdir = stage.workdir
    async with farm_process() as farm, contextlib.AsyncExitStack() as stack:
        names = ["alone", "apart", *(f"one without {part}" for part in PARTS if parts)]
        names += ["one", "two"]
        hosts = {
            name: await farm.start(GROUP + index, plan.hosts, SCENARIO)
            for index, name in enumerate(names)
        }
        # All but `two`, stopped before the takeover: PostgreSQL's connections are counted.
        others = await stack.enter_async_context(contextlib.AsyncExitStack())
        servings: dict[str, Serving] = {}
        alone, _, alone_secrets = await others.enter_async_context(
            _instances(hosts["alone"], farm, workdir, ("bench-alone",), alone=True)
        )
        servings["alone"] = alone
        result.lags |= await _lag(
            {"bench-alone": alone.services[0]},
            alone_secrets[0],
            None,
            hosts["alone"][0].address,
            plan,
        )
        servings["apart"] = await others.enter_async_context(_apart(hosts["apart"], farm, workdir))
        for part in PARTS if parts else ():  # what each part of the coordination costs
            name = f"one without {part}"
            servings[name], _, _ = await others.enter_async_context(
                _instances(hosts[name], farm, workdir, (f"bench-{part}",), without=(part,))
            )
        servings["one"], _, _ = await others.enter_async_context(
            _instances(hosts["one"], farm, workdir, ("bench-one",))
        )
        two, url, secrets = await stack.enter_async_context(
            _instances(hosts["two"], farm, workdir, ("bench-a", "bench-b"))
        )
        servings["two"] = two
        both = {"bench-a": two.services[0], "bench-b": two.services[1]}
        result.lags |= await _lag(both, secrets[0], url, hosts["two"][0].address, plan)
        await _bursts(result, servings, farm, plan)
        await others.aclose()
        taken = await _takeover(url, both, secrets, plan)
        result.takeover_s, result.takeover_hosts, result.takeover_live = taken
        await farm.hangup()


async def _bursts(
    result: Result, servings: dict[str, Serving], farm: FarmClient, plan: Plan
) -> None:
    """``plan.rounds`` rounds of a paced burst then one as fast as it goes for every set-up,
    in turn; each set-up's bursts added up into its two segments."""
    pause = plan.clients / PACED_RATE
    paced: dict[str, list[Segment]] = {name: [] for name in servings}
    fast: dict[str, list[Segment]] = {name: [] for name in servings}
    for name in setup.abba(list(servings), plan.rounds):
        paced[name].append(await _segment(f"{name}, paced", servings[name], farm, plan, pause))
        # A set-up without a part of the coordination is there for its CPU per call alone;
        # its pool's connections would grow with the load (PostgreSQL has a hundred).
        if not name.startswith("one without"):
            fast[name].append(await _segment(name, servings[name], farm, plan))
    for name in servings:
        result.segments.append(_combined(f"{name}, paced", paced[name]))
        if fast[name]:
            result.segments.append(_combined(name, fast[name]))
        result.rounds[name] = [burst.per_call_ms("service") for burst in paced[name]]


def _verdict(met: bool, floor_misses: bool) -> str:
    """A goal's word (`bench.goals`): met; out of reach here when its floor alone misses it;
    else NOT MET."""
    return STATUS[True if met else None if floor_misses else False]


def _lag_text(lags: list[float]) -> str:
    if not lags:
        return "-"
    ms = sorted(1000 * lag for lag in lags)
    return f"{percentile(ms, 0.5):.1f} / {percentile(ms, 0.99):.1f} ({len(ms)})"


def render(result: Result, quick: bool, seconds: float) -> str:
    by = {segment.name: segment for segment in result.segments}
    kind = "quick smoke run (small counts: not a measurement)" if quick else "full run"
    plan = result.plan
    lines = [
        "# callgate: several instances",
        "",
        f"`python -m bench.instances{' --quick' if quick else ''}`, {kind}, took {seconds:.0f} s; "
        f"{plan.hosts} simulated console hosts per set-up, {plan.clients} clients; PostgreSQL; "
        "no Redis (limits and guard on PostgreSQL). Every set-up runs from the start, on hosts "
        f"and databases of its own, and is measured in {plan.rounds} rounds of bursts of "
        f"{plan.seconds:g} s, the set-ups in turn (every other round in reverse): a segment "
        "below is the sum of its set-up's bursts, and a drift of the machine hits every set-up "
        "alike.",
        "",
        "CPU per call in ms, each part over the calls that succeeded; a subscriber of one "
        "enterprise's events is open on each instance during each segment (lag under a load "
        "that saturates the machine: the light-load lag below is the one to read). A `paced` "
        f"segment's clients wait after each answer (at most {PACED_RATE:g} calls/s in all): "
        "what costs per second (listings, lease rounds, recounts) is then shared by the same "
        "number of calls in every set-up, and its CPU per call is the one to compare; the "
        "other segments go as fast as they can (calls/s).",
        "",
        "| segment | calls/s | ok | service ms CPU/call | PostgreSQL | PBX hosts | "
        "load clients | lag p50 / p99 ms (events) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for segment in result.segments:
        failed = len(segment.run.ok) - segment.calls
        lag = "; ".join(f"{w}: {_lag_text(v)}" for w, v in segment.lags.items()) or "-"
        service = "-" if segment.name == "seed" else f"{segment.per_call_ms('service'):.2f}"
        postgres = "-" if segment.name == "seed" else f"{segment.per_call_ms('PostgreSQL'):.2f}"
        lines.append(
            f"| {segment.name} | {segment.rate:.1f} | {segment.calls}"
            f"{f' ({failed} failed)' if failed else ''} | {service} | {postgres} | "
            f"{segment.per_call_ms('PBX hosts'):.2f} | {segment.per_call_ms('load clients'):.2f} "
            f"| {lag} |"
        )
    lines += [
        "",
        f"Event lag at a light load ({LAG_RATE:g} calls/s of one enterprise, one host), from "
        "the tracker's move to an SSE subscriber: `direct` is the tracker publishing to a "
        "subscriber of its own process (one instance as before); on PostgreSQL every "
        "subscriber is fed from the event log (a stored event's notification, then a read).",
        "",
        "| subscriber | lag p50 / p99 ms (events) |",
        "|---|---|",
        *(f"| {where} | {_lag_text(lags)} |" for where, lags in result.lags.items()),
        "",
    ]
    goals: list[str] = []
    if {"alone", "one", "two"} <= by.keys():
        one, two = by["one"], by["two"]

        def cpu(name: str) -> float:  # per call, paced when measured so
            return by.get(f"{name}, paced", by[name]).per_call_ms("service")

        cost = cpu("one") / max(1e-9, cpu("alone")) - 1
        cost_two = cpu("two") / max(1e-9, cpu("alone")) - 1

        def spread(name: str, against: str = "alone") -> str:  # the rounds' own ratios
            pairs = zip(result.rounds.get(against, []), result.rounds.get(name, []), strict=False)
            costs = sorted(100 * (this / max(1e-9, base) - 1) for base, this in pairs)
            if len(costs) < 2:
                return ""
            return f" (its rounds: {costs[0]:+.1f} to {costs[-1]:+.1f} %)"

        # The floor (`apart`): two instances that share nothing, the load split between them.
        # What it misses already, no coordination can meet: "out of reach here", the rule of
        # `make bench`'s other goals.
        apart = by.get("apart")
        split = cpu("apart") / max(1e-9, cpu("alone")) - 1 if apart is not None else None
        goals.append(
            f"- coordination's service CPU per call against one instance as before (paced): "
            f"{100 * cost:+.1f} % (one instance), {100 * cost_two:+.1f} % (two; goal <= +10 %)"
            f"{spread('two')}: **{_verdict(cost_two <= 0.10, split is not None and split > 0.10)}**"
        )
        if apart is not None and split is not None:
            own = cpu("two") / max(1e-9, cpu("apart")) - 1
            goals.append(
                f"  - two instances that share nothing (`apart`): {100 * split:+.1f} %"
                f"{spread('apart')}, the cost of splitting the load over two processes alone; "
                "two coordinating instances against them (the coordination's own cost): "
                f"{100 * own:+.1f} %{spread('two', 'apart')}"
            )
        slower_apart = apart is not None and apart.rate < 0.97 * by["alone"].rate
        goals.append(
            f"- two instances against one: {two.rate:.1f} against {one.rate:.1f} calls/s "
            f"(goal: never slower): **{_verdict(two.rate >= 0.97 * one.rate, slower_apart)}**"
        )
        if apart is not None:
            goals.append(
                f"  - two instances that share nothing against one as before: "
                f"{apart.rate:.1f} against {by['alone'].rate:.1f} calls/s"
            )
        if "seed" in by:
            seed = max(1e-9, by["seed"].rate)
            goals.append(
                f"- against the seed's way, same clients: {two.rate / seed:.1f}x "
                f"(two instances), {one.rate / seed:.1f}x (one)"
            )
    if result.takeover_s is None:
        goals.append("- takeover after SIGKILL: not seen within the measurement (**NOT MET**)")
    else:
        goals.append(
            f"- takeover after SIGKILL of an instance holding {result.takeover_hosts} hosts "
            f"({result.takeover_live} with live calls the survivor did not hold): "
            f"{result.takeover_s:.1f} s until every host with live calls is held again (lease "
            f"{LEASE_TTL:g} s; goal < 15 s): **{'met' if result.takeover_s < 15 else 'NOT MET'}**"
        )
    lines += ["Goals:", "", *goals, *result.notes]
    return "\n".join(lines)


async def paced(setup_name: str, plan: Plan, without: tuple[str, ...] = ()) -> Segment:
    """One paced segment of one set-up alone (``one``, ``two`` or ``apart``), on databases of
    its own: the CPU per call to compare between two checkouts run one after the other, or
    with and without parts of the coordination (``without``: `serve --without`)."""
    pause = plan.clients / PACED_RATE
    name = f"{setup_name}, paced"
    with setup.stage("callgate-instances-") as stage:
        async with farm_process() as farm:
            hosts = await farm.start(GROUP, plan.hosts, SCENARIO)
            if setup_name == "apart":
                async with _apart(hosts, farm, stage.workdir) as apart:
                    return await _segment(name, apart, farm, plan, pause)
            names = ("bench-a", "bench-b")[: 2 if setup_name == "two" else 1]
            async with _instances(hosts, farm, stage.workdir, names, without=without) as started:
                return await _segment(name, started[0], farm, plan, pause)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instances", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--hosts", type=int)
    parser.add_argument("--clients", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--rounds", type=int)
    commands = parser.add_subparsers(dest="command")
    one = commands.add_parser("serve", help="serve (the measurement starts them)")
    one.add_argument("--alone", action="store_true", help="without the coordination")
    one.add_argument("--without", action="append", choices=PARTS, default=[])
    alone = commands.add_parser("paced", help="one paced segment of one set-up, alone")
    alone.add_argument("setup", choices=("one", "two", "apart"))
    alone.add_argument("--without", action="append", choices=PARTS, default=[])
    parser.add_argument(
        "--parts", action="store_true", help="also one instance without each part, in turn"
    )
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.alone, args.without)
        return
    plan = QUICK if args.quick else Plan()
    plan = Plan(
        hosts=args.hosts or plan.hosts,
        clients=args.clients or plan.clients,
        seconds=args.seconds or plan.seconds,
        rounds=args.rounds or plan.rounds,
    )
    procs.raise_open_files()
    if args.command == "paced":
        segment = uvloop.run(paced(args.setup, plan, tuple(args.without)))
        calls = sum(segment.run.ok)
        cpu = segment.cpu.items()
        per_call = ", ".join(f"{part} {1000 * seconds / calls:.2f}" for part, seconds in cpu)
        print(f"{segment.name}: {calls} calls; ms of CPU per call: {per_call}")
        return
    started = time.time()
    result = uvloop.run(measure(plan, parts=args.parts))
    text = render(result, args.quick, time.time() - started)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / ("instances-quick.md" if args.quick else "instances.md")).write_text(text + "\n")


if __name__ == "__main__":
    main()
