"""`make bench`: the seed's way, callgate's legacy endpoint and the floor, in one run.

    python -m bench [--samples N]

Prints medians, p99 and ratios, and writes them to bench/results/latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import asyncssh
import httpx
from tests.support.sshd import SshdServer, sim_user_session

from bench import setup, ways
from bench.stats import Summary, table

RESULTS = Path(__file__).with_name("results")


async def measure(samples: int, warmup: int) -> str:
    with (
        tempfile.TemporaryDirectory(prefix="callgate-bench-") as tmp,
        sim_user_session() as user,
        SshdServer(user) as sshd,
        setup.simulator_daemon(Path(tmp)) as daemon_port,
    ):
        control = setup.install(sshd, daemon_port)
        async with setup.database() as url:
            secret = await setup.seed_rows(url, sshd, "console")
            async with (
                setup.callgate_service(url, Path(tmp)) as base,
                httpx.AsyncClient(base_url=base, timeout=30) as client,
                asyncssh.connect(
                    sshd.host, sshd.port, username=sshd.username, password=sshd.password,
                    known_hosts=None, client_keys=None, agent_path=None, config=[],
                ) as conn,
            ):  # fmt: skip
                switch = setup.HostSwitch(url)
                seed: list[float] = []
                floor: list[float] = []
                legacy: list[float] = []
                console: list[float] = []
                for index in range(warmup):
                    for transport in ("rx", "console"):
                        await switch.use(transport)
                        await ways.legacy_way(client, secret, 90000 + 2 * index + len(transport))
                    await ways.floor_way(conn)
                    await control.rx("channel request hangup all")
                # Interleaved, so that a noisy moment of the machine hits every way alike.
                for index in range(samples):
                    seed.append(await asyncio.to_thread(
                        ways.seed_way, sshd.host, sshd.port, sshd.username, sshd.password
                    ))  # fmt: skip
                    floor.append(await ways.floor_way(conn))
                    await switch.use("rx")
                    legacy.append(await ways.legacy_way(client, secret, 2 * index))
                    await switch.use("console")
                    console.append(await ways.legacy_way(client, secret, 2 * index + 1))
                    await control.rx("channel request hangup all")
                    await ways.settle()
                await switch.close()
    seed_s = Summary.of("seed's way: sshpass + ssh login per call (originate only)", seed)
    floor_s = Summary.of("floor: one raw `asterisk -rx` over an open connection", floor)
    legacy_s = Summary.of("callgate legacy endpoint, rx transport (verified call)", legacy)
    console_s = Summary.of("callgate legacy endpoint, console transport (verified call)", console)
    rows = [seed_s, legacy_s, console_s, floor_s]
    report = [
        f"Samples per way: {samples} (after {warmup} warm-up calls), interleaved.",
        "",
        table(rows, seed_s, floor_s),
        "",
        f"callgate (console) is {seed_s.median_ms / console_s.median_ms:.1f}x below the seed's "
        f"median (goal >= 25x; issue 5: >= 100x, first bar 50x) and "
        f"{console_s.median_ms / floor_s.median_ms:.2f}x the floor (goal <= 2x).",
        f"callgate (rx) is {seed_s.median_ms / legacy_s.median_ms:.1f}x below the seed's median "
        f"and {legacy_s.median_ms / floor_s.median_ms:.2f}x the floor.",
    ]
    return "\n".join(report)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    report = asyncio.run(measure(args.samples, args.warmup))
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
