"""The single-host comparison: the seed's way, callgate's legacy endpoint (rx and console) and
the floor, one call at a time, interleaved so that a noisy moment hits every way alike."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import asyncssh
from tests.support.sshd import SshdServer

from bench import setup, ways
from bench.load import HttpLane
from bench.stats import Summary, table
from callgate.simulator.daemon import SimulatorControl


@dataclass(frozen=True)
class SingleResult:
    seed: Summary
    rx: Summary
    console: Summary
    idle: Summary  # the console way again, after the machine idled
    floor: Summary
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
        ):  # fmt: skip
            switch = setup.HostSwitch(url)
            client = HttpLane(service.port)
            seed: list[float] = []
            floor: list[float] = []
            legacy: list[float] = []
            console: list[float] = []
            idle: list[float] = []
            for index in range(warmup):
                for transport in ("rx", "console"):
                    await switch.use(transport)
                    await ways.legacy_way(client, secret, 90000 + 3 * index + len(transport))
                await ways.floor_way(conn)
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
                console.append(await ways.legacy_way(client, secret, 3 * index + 1))
                await control.rx("channel request hangup all")
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
        warmup=warmup,
    )


def section(result: SingleResult) -> list[str]:
    """The comparison's Markdown: the table and the ratios against the seed and the floor."""
    seed, rx, console, floor = result.seed, result.rx, result.console, result.floor
    idle = result.idle
    return [
        "## Single host, one call at a time",
        "",
        f"Samples per way: {seed.samples} (after {result.warmup} warm-up calls), interleaved; "
        f"each callgate sample starts {ways.SETTLE * 1000:.0f} ms after the sample before it "
        "(its after-answer writes done), the last row after "
        f"{ways.IDLE * 1000:.0f} ms with nothing running.",
        "",
        table([seed, rx, console, idle, floor], seed, floor),
        "",
        f"callgate (console) is {seed.median_ms / console.median_ms:.1f}x below the seed's "
        f"median (goal >= 25x; issue 5: >= 100x, first bar 50x) and "
        f"{console.median_ms / floor.median_ms:.2f}x the floor (goal <= 2x).",
        f"callgate (rx) is {seed.median_ms / rx.median_ms:.1f}x below the seed's median "
        f"and {rx.median_ms / floor.median_ms:.2f}x the floor.",
        f"After {ways.IDLE * 1000:.0f} ms of idle the console call takes "
        f"{idle.median_ms:.2f} ms ({seed.median_ms / idle.median_ms:.1f}x below the seed's "
        "median): on this machine an idle CPU wakes slowly, and a call crosses six processes "
        "(client, service, PostgreSQL, sshd, the console, Asterisk) and back.",
    ]


def goals(result: SingleResult) -> list[tuple[str, bool, str]]:
    """(goal, met, numbers) for the report's goal list."""
    seed, console, floor = result.seed, result.console, result.floor
    below = seed.median_ms / console.median_ms
    above_floor = console.median_ms / floor.median_ms
    return [
        (
            "single host: console median >= 25x below the seed's",
            below >= 25,
            f"{seed.median_ms:.1f} ms / {console.median_ms:.2f} ms = {below:.1f}x",
        ),
        (
            "single host: console median <= 2x the floor",
            above_floor <= 2,
            f"{console.median_ms:.2f} ms / {floor.median_ms:.2f} ms = {above_floor:.2f}x",
        ),
    ]
