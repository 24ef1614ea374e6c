"""Footprint: the service's resident memory with a thousand hosts' connections open.

A fresh `callgate serve` (so that the throughput rounds' allocations are not counted) on the
bench database, a thousand more farm hosts, one enterprise each (console transport, the
default). One call per host opens each host's SSH connection and console; then VmRSS is read
from /proc, and again once the calls have ended and the tracker has gone quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvloop

from bench import procs, setup
from bench.farm_client import FarmClient, farm_process
from bench.load import closed_loop
from callgate.db.migrate import upgrade

GROUP = 3
# Short calls: a thousand hosts each followed once per second would otherwise flood the warm-up.
BRIEF: dict[str, float | None] = {
    "agent_answer_after": 0.2,
    "customer_answer_after": 0.2,
    "talk": 0.5,
}
RSS_GOAL_MIB = 150.0
QUIET = 3.0  # seconds for the last calls to end and their states to be stored


@dataclass(frozen=True)
class FootprintResult:
    """Resident memory at three moments, and what the service had open."""

    hosts: int
    calls_ok: int
    warm_seconds: float
    rss_start_kib: int
    rss_warm_kib: int
    rss_quiet_kib: int
    connections: int  # the service's pool, from /api/status
    consoles: int  # consoles opened, from /api/status
    farm_connections: int  # SSH connections the simulated hosts see


async def measure(
    url: str, farm: FarmClient, workdir: Path, hosts: int, clients: int
) -> FootprintResult:
    """Start ``hosts`` hosts and a fresh service, call each host once, read VmRSS."""
    started = await farm.start(GROUP, hosts, BRIEF)
    secrets = await setup.seed_farm_rows(url, started, farm, prefix="f", transport="console")
    async with setup.callgate_service(url, workdir) as service:
        rss_start = procs.rss_kib(service.pid)
        run = await closed_loop(
            service.port, secrets, clients=clients, duration=300, max_calls=len(secrets)
        )
        rss_warm = procs.rss_kib(service.pid)
        async with httpx.AsyncClient(base_url=service.base, timeout=30) as client:
            status = (await client.get("/api/status", headers=setup.ADMIN)).json()["pbx"]
        farm_connections = int((await farm.stats())["connections"])
        await farm.hangup()
        await asyncio.sleep(QUIET)
        rss_quiet = procs.rss_kib(service.pid)
    return FootprintResult(
        hosts=hosts,
        calls_ok=sum(run.ok),
        warm_seconds=run.finished - run.started,
        rss_start_kib=rss_start,
        rss_warm_kib=rss_warm,
        rss_quiet_kib=rss_quiet,
        connections=int(status.get("connections", -1)),
        consoles=int(status.get("consoles", {}).get("opened", -1)),
        farm_connections=farm_connections,
    )


def section(result: FootprintResult) -> list[str]:
    """The report's table: RSS when started, after one call per host, once quiet."""
    per_host = (result.rss_warm_kib - result.rss_start_kib) / max(1, result.hosts)
    return [
        "## Footprint: the service with many hosts' connections open",
        "",
        f"A fresh `callgate serve`; one call to each of {result.hosts} hosts "
        f"({result.calls_ok} succeeded, {result.warm_seconds:.1f} s) opened "
        f"{result.connections} SSH connections and {result.consoles} consoles "
        f"(the hosts see {result.farm_connections} connections).",
        "",
        "| moment | VmRSS MiB |",
        "|---|---:|",
        f"| started, no host contacted | {result.rss_start_kib / 1024:.1f} |",
        f"| right after one call per host | {result.rss_warm_kib / 1024:.1f} |",
        f"| {QUIET:g} s later, calls ended | {result.rss_quiet_kib / 1024:.1f} |",
        "",
        f"Growth per host: {per_host:.0f} KiB.",
    ]


def goals(result: FootprintResult) -> list[tuple[str, bool, str]]:
    """(goal, met, numbers): RSS under the goal with every host's connection open."""
    mib = result.rss_warm_kib / 1024
    all_open = result.connections >= result.hosts and result.calls_ok == result.hosts
    return [
        (
            f"footprint: RSS < {RSS_GOAL_MIB:g} MiB with {result.hosts} hosts' connections open",
            mib < RSS_GOAL_MIB and all_open,
            f"{mib:.1f} MiB with {result.connections} connections open "
            f"({result.calls_ok}/{result.hosts} calls ok)",
        )
    ]


async def _alone(hosts: int, clients: int) -> FootprintResult:
    with tempfile.TemporaryDirectory(prefix="callgate-footprint-") as workdir:
        async with farm_process() as farm, setup.database() as url:
            await asyncio.to_thread(upgrade, url)
            return await measure(url, farm, Path(workdir), hosts, clients)


def main() -> None:
    """``python -m bench.footprint [--hosts N]``: this part alone, as `make bench` runs it."""
    parser = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    procs.raise_open_files()  # the service and the farm inherit it: a thousand hosts' sockets
    result = uvloop.run(_alone(args.hosts, args.clients))
    print("\n".join(section(result)))
    for goal, met, numbers in goals(result):
        print(f"- {'met' if met else 'NOT MET'}: {goal}: {numbers}")


if __name__ == "__main__":
    main()
