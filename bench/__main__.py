"""`make bench`: every comparison in one run, reported as ratios beside absolute numbers.

    python -m bench [--quick] [--clients N] [--hosts N] [--seconds S] [--rounds N] ...

1. Single host, one call at a time: the seed's way, callgate (rx, console), the floor.
2. Throughput and isolation: concurrent clients across many simulated hosts (a separate
   process) against the seed's way with the same concurrency; one host blackholed.
3. Tracking cost: listings per host with 1 and 50 live calls.
4. Footprint: the service's RSS with a thousand hosts' connections open.
5. Listening: the lag from the simulator printing a call's line to the SSE event, and the CPU
   per call of the listening console, with listening on and off (`bench/listening.py`).
6. Events: the lag from the simulator's line to SSE, WebSocket and webhook clients, and the
   service's CPU per call with 100 subscribers and 10 webhook endpoints against none
   (`bench/events.py`), judged against the libraries' floor (`bench/events_floor.py`).
7. Several instances: calls per second and CPU per call with one and two instances on one
   PostgreSQL against one instance as before and the seed's way, the event lag across
   instances, the takeover after SIGKILL (`bench/instances.py`, a stage of its own).

Prints one Markdown report and writes it to bench/results/latest.md (gitignored). ``--quick``
is a smoke run with small counts, written to bench/results/quick.md instead so that it never
replaces a real measurement; the full run takes about ten minutes (the
several-instances part about three of them).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import uvloop

from bench import (
    events,
    footprint,
    instances,
    listening,
    procs,
    protection,
    report,
    scale,
    setup,
    single,
    tracking,
)
from bench.farm_client import farm_process
from callgate.db.migrate import upgrade
from callgate.logs import configure_logging

RESULTS = Path(__file__).with_name("results")


@dataclass(frozen=True)
class Plan:
    """How much of everything: the full run's defaults, or --quick's."""

    samples: int = 40  # single host: calls per way
    warmup: int = 5
    hosts: int = 100  # per transport (console and rx)
    clients: int = 8
    seconds: float = 6.0  # per load segment
    rounds: int = 6
    footprint_hosts: int = 1000
    footprint_clients: int = 16
    window: float = 10.0  # tracking: seconds counted
    listen_calls: int = 20  # listening: measured calls per turn (one service, one mode)
    listen_rounds: int = 2  # listening: rounds of a turn on and a turn off (ABBA)
    check_calls: int = 20_000  # protection: calls whose policy and limit checks are timed
    events_calls: int = 30  # events: measured calls per turn (attached or none)
    events_rounds: int = 2  # events: rounds of an attached turn and one with none (ABBA)


QUICK = Plan(
    samples=4,
    warmup=1,
    hosts=10,
    clients=4,
    seconds=1.5,
    rounds=1,
    footprint_hosts=40,
    footprint_clients=8,
    window=3.0,
    listen_calls=3,
    listen_rounds=1,
    check_calls=2_000,
    events_calls=8,
    events_rounds=1,
)


@dataclass(frozen=True)
class Results:
    """Every part's result, for the report."""

    single: single.SingleResult
    scale: scale.ScaleResult
    tracking: tracking.TrackingResult
    footprint: footprint.FootprintResult
    listening: listening.ListeningResult
    protection: protection.ProtectionResult
    events: events.EventsResult


async def measure(plan: Plan) -> Results:
    """Run every part in order on one machine set-up; the results, for the report."""
    with setup.stage("callgate-bench-") as host:
        sshd, control, workdir, daemon = host.sshd, host.control, host.workdir, host.daemon
        single_result = await single.measure(sshd, control, workdir, plan.samples, plan.warmup)
        listening_result = await listening.measure(host, plan.listen_calls, plan.listen_rounds)
        events_result = await events.measure(host, plan.events_calls, plan.events_rounds)
        async with farm_process() as farm, setup.database() as url:
            await asyncio.to_thread(upgrade, url)
            prepared = await scale.prepare(url, farm, plan.hosts)
            config = scale.ScaleConfig(plan.hosts, plan.clients, plan.seconds, plan.rounds)
            switch = setup.HostSwitch(url)
            async with setup.callgate_service(url, workdir) as service:
                stage = scale.ScaleStage(
                    service=service,
                    farm=farm,
                    database=url.rsplit("/", 1)[1],
                    sshd=sshd,
                    control=control,
                    daemon_pid=daemon.pid,
                    console=prepared.console,
                    rx=prepared.rx,
                    extra=prepared.extra,
                    healthy_port=prepared.healthy_port,
                    blackhole_port=prepared.blackhole_port,
                    switch=switch,
                )
                await scale.warm(stage, plan.footprint_clients)
                scale_result = await scale.measure(stage, config)
            await switch.close()
            tracking_result = await tracking.measure(url, farm, plan.window)
            footprint_result = await footprint.measure(
                url, farm, workdir, plan.footprint_hosts, plan.footprint_clients
            )
    protection_result = await protection.measure(plan.check_calls)
    return Results(
        single_result,
        scale_result,
        tracking_result,
        footprint_result,
        listening_result,
        protection_result,
        events_result,
    )


def parse_plan(argv: list[str] | None = None) -> tuple[Plan, bool]:
    """The plan (full or --quick, each field overridable) and whether it is --quick."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    for item in fields(Plan):
        flag = "--" + item.name.replace("_", "-")
        kind = float if item.type in (float, "float") else int
        parser.add_argument(flag, type=kind, default=None, help=f"default {item.default}")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    overrides = {
        item.name: getattr(args, item.name)
        for item in fields(Plan)
        if getattr(args, item.name) is not None
    }
    return replace(plan, **overrides), bool(args.quick)


def quiet_logs() -> None:
    """The bench's own callgate parts (the tracking measurement) log warnings only, to stderr:
    stdout is the report's."""
    configure_logging(None, "text", "WARNING")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)


def main() -> None:
    plan, quick = parse_plan()
    quiet_logs()
    procs.raise_open_files()  # the service and the farm inherit it: a thousand hosts' sockets
    started, load_before = time.time(), os.getloadavg()
    # The service's event loop: the benchmark's own clients (HTTP, SSH, the database) then cost
    # what they would cost inside the service, which matters for the floor parts.
    results = uvloop.run(measure(plan))
    run_info = report.RunInfo(
        command=shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        quick=quick,
        started=started,
        seconds=time.time() - started,
        load_before=load_before,
        load_after=os.getloadavg(),
    )
    text = report.render(
        run_info,
        results.single,
        results.scale,
        results.tracking,
        results.footprint,
        results.listening,
        results.protection,
        results.events,
    )
    several_started = time.time()
    several = uvloop.run(instances.measure(instances.QUICK if quick else instances.Plan()))
    text += "\n\n" + instances.render(several, quick, time.time() - several_started)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / ("quick.md" if quick else "latest.md")).write_text(text + "\n")


if __name__ == "__main__":
    main()
