"""The single-host comparison: the seed's way, callgate's legacy endpoint (rx and console), the
floor and the floors of a verified call's parts (`bench.floors`), one call at a time,
interleaved so that a noisy moment hits every way alike."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import asyncssh
from tests.support.sshd import SshdServer

from bench import setup, ways
from bench.floors import FloorRound, Floors
from bench.load import HttpLane
from bench.stats import Summary, table
from callgate.simulator.daemon import SimulatorControl

# A verified call through the legacy endpoint this many times below the seed's way: the goal,
# and the first bar on the way to it (README, Benchmark).
GOAL = 100.0
FIRST_BAR = 50.0
# callgate's own cost over the floors of what it must do: at most this factor.
OVER_FLOORS = 1.5


@dataclass(frozen=True)
class SingleResult:
    seed: Summary
    rx: Summary
    console: Summary
    idle: Summary  # the console way again, after the machine idled
    floor: Summary
    pbx_floor: Summary  # the parts of a verified call, each alone (bench.floors)
    http_floor: Summary
    db_floor: Summary
    floors: Summary  # the three, summed round by round
    unchecked: Summary  # the originate and one listing alone: what trusting the pair costs
    checks: float  # listings per verified originate, on average (the honest check)
    warmup: int


async def measure(
    sshd: SshdServer, control: SimulatorControl, workdir: Path, samples: int, warmup: int
) -> SingleResult:
    """One enterprise on the real sshd (127.0.0.1), its own database and `callgate serve`."""
    async with setup.database() as url:
        secret = await setup.seed_rows(url, sshd, "console")
        async with (
            setup.callgate_service(url, workdir) as service,
            asyncssh.connect(
                sshd.host, sshd.port, username=sshd.username, password=sshd.password,
                known_hosts=None, client_keys=None, agent_path=None, config=[],
            ) as conn,
            Floors(sshd, url, service.port, secret) as floors,
        ):  # fmt: skip
            switch = setup.HostSwitch(url)
            client = HttpLane(service.port)
            seed: list[float] = []
            floor: list[float] = []
            legacy: list[float] = []
            console: list[float] = []
            idle: list[float] = []
            rounds: list[FloorRound] = []
            for index in range(warmup):
                for transport in ("rx", "console"):
                    await switch.use(transport)
                    await ways.legacy_way(client, secret, 90000 + 3 * index + len(transport))
                await ways.floor_way(conn)
                await floors.measure(f"+37529700{index:03d}")
                await control.rx("channel request hangup all")
            # Interleaved, so that a noisy moment of the machine hits every way alike.
            for index in range(samples):
                seed.append(await asyncio.to_thread(
                    ways.seed_way, sshd.host, sshd.port, sshd.username, sshd.password
                ))  # fmt: skip
                floor.append(await ways.floor_way(conn))
                await switch.use("rx")
                await ways.settle()
                legacy.append(await ways.legacy_way(client, secret, 3 * index))
                await switch.use("console")
                await ways.settle()
                # The console call and its floor parts take turns in the place right after
                # the rx call: measured always after the other, the floor parts came out about
                # 0.4 ms faster than in the console call's place (README, Benchmark).
                for way in ("console", "floors") if index % 2 == 0 else ("floors", "console"):
                    if way == "console":
                        console.append(await ways.legacy_way(client, secret, 3 * index + 1))
                    else:
                        rounds.append(await floors.measure(f"+37529800{index:03d}"))
                    await control.rx("channel request hangup all")
                    await ways.settle()
                # The same call after 100 ms in which nothing ran: what a first click after a
                # quiet spell sees on this machine (idle CPUs wake slowly, caches are cold).
                await ways.settle(ways.IDLE)
                idle.append(await ways.legacy_way(client, secret, 3 * index + 2))
                await control.rx("channel request hangup all")
                await ways.settle()
            await switch.close()
            client.close()
    return SingleResult(
        seed=Summary.of("seed's way: sshpass + ssh login per call (originate only)", seed),
        rx=Summary.of("callgate legacy endpoint, rx transport (verified call)", legacy),
        console=Summary.of("callgate legacy endpoint, console transport (verified call)", console),
        idle=Summary.of(
            f"the same, console, after {ways.IDLE * 1000:.0f} ms with nothing running", idle
        ),
        floor=Summary.of("floor: one raw `asterisk -rx` over an open connection", floor),
        pbx_floor=Summary.of(
            "floor part: the verified originate alone, over an open console",
            [r.pbx for r in rounds],
        ),
        http_floor=Summary.of(
            "floor part: `GET /health` alone (HTTP and the framework)", [r.http for r in rounds]
        ),
        db_floor=Summary.of(
            "floor part: the authorisation read alone", [r.database for r in rounds]
        ),
        floors=Summary.of(
            "the three floor parts, one after another (the least a verified call takes here)",
            [r.total for r in rounds],
        ),
        unchecked=Summary.of(
            "the originate and one listing alone (a check that trusted the pair)",
            [r.unchecked for r in rounds],
        ),
        checks=sum(r.checks for r in rounds) / max(1, len(rounds)),
        warmup=warmup,
    )


def section(result: SingleResult) -> list[str]:
    """The comparison's Markdown: the table and the ratios against the seed and the floors."""
    seed, rx, console, floor = result.seed, result.rx, result.console, result.floor
    idle, floors = result.idle, result.floors
    parts = [result.pbx_floor, result.http_floor, result.db_floor, floors, result.unchecked]
    return [
        "## Single host, one call at a time",
        "",
        f"Samples per way: {seed.samples} (after {result.warmup} warm-up calls), interleaved; "
        f"each callgate sample starts {ways.SETTLE * 1000:.0f} ms after the sample before it "
        "(its after-answer writes done), the after-idle row after "
        f"{ways.IDLE * 1000:.0f} ms with nothing running. The floor parts (`bench/floors.py`) "
        "are each part of a verified call alone, measured from the benchmark's process in the "
        "same rounds, in turns with the console call (in its place every other round); their "
        "sum is taken round by round.",
        "",
        table([seed, rx, console, idle, floor, *parts], seed, floor),
        "",
        f"callgate (console) is {seed.median_ms / console.median_ms:.1f}x below the seed's "
        f"median (goals >= 25x, >= {FIRST_BAR:.0f}x, >= {GOAL:.0f}x) and "
        f"{console.median_ms / floor.median_ms:.2f}x the floor (goal <= 2x).",
        f"The floor parts alone, one after another, are {ceiling(result):.1f}x below the "
        "seed's median: no verified call through HTTP built on the same components (uvicorn "
        "and FastAPI, asyncssh, asyncpg) can do better on this machine. callgate "
        f"takes {console.median_ms / floors.median_ms:.2f}x their sum "
        f"(goal <= {OVER_FLOORS:g}x), {console.median_ms - floors.median_ms:.2f} ms more.",
        "The honest check (the pair alone is no proof, the dialplan must be seen "
        "taking the call) costs "
        f"{result.pbx_floor.median_ms - result.unchecked.median_ms:.2f} ms over an originate "
        f"and one listing; a verified originate took {result.checks:.2f} listings on average.",
        f"callgate (rx) is {seed.median_ms / rx.median_ms:.1f}x below the seed's median "
        f"and {rx.median_ms / floor.median_ms:.2f}x the floor.",
        f"After {ways.IDLE * 1000:.0f} ms of idle the console call takes "
        f"{idle.median_ms:.2f} ms ({seed.median_ms / idle.median_ms:.1f}x below the seed's "
        "median): on this machine an idle CPU wakes slowly, and a call crosses six processes "
        "(client, service, PostgreSQL, sshd, the console, Asterisk) and back.",
    ]


def ceiling(result: SingleResult) -> float:
    """The best ratio to the seed that a verified call through HTTP, on the same components,
    could show here."""
    return result.seed.median_ms / result.floors.median_ms


def goals(result: SingleResult) -> list[tuple[str, bool | None, str]]:
    """(goal, met, numbers) for the report's goal list; ``met`` is None for a goal out of
    reach on this machine (its floors alone miss it)."""
    seed, console, floor, floors = result.seed, result.console, result.floor, result.floors
    below = seed.median_ms / console.median_ms
    above_floor = console.median_ms / floor.median_ms
    over_floors = console.median_ms / floors.median_ms
    best = ceiling(result)
    ratio = f"{seed.median_ms:.1f} ms / {console.median_ms:.2f} ms = {below:.1f}x"
    floors_ratio = (
        f"{ratio}; the floor parts alone: {seed.median_ms:.1f} ms / "
        f"{floors.median_ms:.2f} ms = {best:.1f}x"
    )
    return [
        ("single host: console median >= 25x below the seed's", below >= 25, ratio),
        (
            f"single host: console median >= {FIRST_BAR:.0f}x below the seed's (the first bar, "
            "with the honest check)",
            _reach(below, best, FIRST_BAR),
            floors_ratio,
        ),
        (
            f"single host: console median >= {GOAL:.0f}x below the seed's",
            _reach(below, best, GOAL),
            floors_ratio,
        ),
        (
            f"single host: console median <= {OVER_FLOORS:g}x the sum of its floor parts",
            over_floors <= OVER_FLOORS,
            f"{console.median_ms:.2f} ms / {floors.median_ms:.2f} ms = {over_floors:.2f}x",
        ),
        (
            "single host: console median <= 2x the floor",
            above_floor <= 2,
            f"{console.median_ms:.2f} ms / {floor.median_ms:.2f} ms = {above_floor:.2f}x",
        ),
    ]


def _reach(below: float, best: float, bar: float) -> bool | None:
    """Met, not met, or None: out of reach in this run, when even the floor parts alone, one
    after another, stay under the bar (the same rule for every bar)."""
    if below >= bar:
        return True
    return None if best < bar else False
