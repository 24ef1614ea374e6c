"""Tracking cost: channel listings per second per host, with 1 and with 50 live calls on it.

A ``CallTracker`` (its public API: ``CallTracker(...)``, ``track(...)``, ``queries``) runs in
the bench process, on the service's own transport and client, against two farm hosts. Each
call is placed as the service places it (row, verified originate, outcome) and handed to
``track``. Over a fixed window the farm counts the ``core show channels concise`` each host
answered, and the tracker's per-host counter says how many it sent: one per host per
interval, whatever the number of calls, is the claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

from bench import setup
from bench.farm_client import FarmClient
from callgate.calls.targets import build_target
from callgate.calls.tracker import CallTracker
from callgate.db.calls import finish_call, finish_values, insert_call, new_call_values
from callgate.db.executor import connect
from callgate.db.hosts import get_host
from callgate.pbx.transport import HostTarget
from callgate.settings import Settings
from callgate.wiring import build_client, build_transport

GROUP = 4
# Calls that stay up through the whole window: answered at once, then a long conversation.
LONG: dict[str, float | None] = {
    "agent_answer_after": 0.2,
    "customer_answer_after": 0.2,
    "talk": 55.0,
}
SETTLE = 1.5  # after the calls are placed, before the window opens
SPACING_TOLERANCE = 0.05


@dataclass(frozen=True)
class HostLoad:
    """One host's share of the measurement."""

    calls: int
    listings: int  # counted at the simulated host, in the window
    counted: int  # the tracker's own per-host counter, over the same window
    per_s: float  # listings / window
    spacing_per_s: float  # 1 / mean interval between consecutive listings in the window
    live_at_end: int  # of this host's calls, those the tracker still followed at the end


@dataclass(frozen=True)
class TrackingResult:
    """The window, the tracker's interval, and the host with 1 call then the one with many."""

    window: float
    interval: float
    hosts: tuple[HostLoad, ...]


async def measure(url: str, farm: FarmClient, window: float, many: int = 50) -> TrackingResult:
    """Place 1 call on one host and ``many`` on another, then count over ``window`` seconds."""
    hosts = await farm.start(GROUP, 2, LONG)
    await setup.seed_farm_rows(url, hosts, farm, prefix="t", transport="console")
    database = connect(url)
    await database.open()
    settings = Settings(database_url=url, log_file=None, log_level="ERROR")
    rows = [await get_host(database, host.address) for host in hosts]
    targets = [build_target(settings, h.address, row) for h, row in zip(hosts, rows, strict=True)]
    transport = build_transport(settings, database)
    pbx = build_client(settings, transport)
    tracker = CallTracker(pbx, database, settings, interval=settings.track_interval)
    placed: defaultdict[str, list[str]] = defaultdict(list)

    async def place(index: int, extension: int) -> None:
        target: HostTarget = targets[index]
        call_id, phone = str(uuid.uuid4()), f"+3759{extension:08d}"
        row = new_call_values(
            id=call_id, enterprise_number=f"t{index:04d}",  # seed_farm_rows' numbering
            extension=str(extension), phone=phone, host=target.address,
        )  # fmt: skip
        await insert_call(database, row)
        originated = await pbx.originate(target, str(extension), phone)
        outcome = finish_values(call_id, "success", channel=originated.channel.name)
        await finish_call(database, outcome)
        tracker.track(call_id, target, originated.channel, phone, since=originated.took)
        placed[target.address].append(call_id)

    try:
        # The first call of each host together, so that both pollers start in the same instant.
        await asyncio.gather(place(0, 500), place(1, 600))
        for extension in range(601, 600 + many):
            await place(1, extension)
        await asyncio.sleep(SETTLE)
        counted_before = dict(tracker.queries)
        since = time.time()
        await asyncio.sleep(window)
        until = time.time()
        counted_after, live = dict(tracker.queries), tracker.live_calls()
        # End the calls and let the tracker see them end: none is left live in the database
        # for the next service to resume.
        await farm.hangup()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10 * settings.track_interval + 5):
                while tracker.live_calls():  # noqa: ASYNC110 - polls the tracker's state
                    await asyncio.sleep(0.1)
    finally:
        await tracker.stop()
        await transport.aclose()
        await database.close()
    times = await farm.listings([t.address for t in targets], since, until)
    loads = []
    for target in targets:
        seen = sorted(times[target.address])
        spacing = (seen[-1] - seen[0]) / (len(seen) - 1) if len(seen) > 1 else float("inf")
        counted = counted_after.get(target.label, 0) - counted_before.get(target.label, 0)
        calls = placed[target.address]
        loads.append(
            HostLoad(
                calls=len(calls),
                listings=len(seen),
                counted=counted,
                per_s=len(seen) / window,
                spacing_per_s=1 / spacing,
                live_at_end=sum(1 for call_id in calls if call_id in live),
            )
        )
    return TrackingResult(window, settings.track_interval, tuple(loads))


def section(result: TrackingResult) -> list[str]:
    """The report's table: per host, listings counted at the host and by the tracker."""
    lines = [
        "## Tracking cost: listings per host",
        "",
        f"One CallTracker (interval {result.interval:g} s) follows 1 call on one simulated host "
        f"and {result.hosts[1].calls} on another; over a {result.window:g} s window the hosts "
        "count the `core show channels concise` they answer.",
        "",
        "| live calls on the host | listings at the host | tracker's counter | listings/s "
        "| 1 / mean spacing | calls still followed at the end |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for host in result.hosts:
        lines.append(
            f"| {host.calls} | {host.listings} | {host.counted} | {host.per_s:.2f} | "
            f"{host.spacing_per_s:.3f} | {host.live_at_end} |"
        )
    return lines


def goals(result: TrackingResult) -> list[tuple[str, bool, str]]:
    """(goal, met, numbers): the same listings per second with 1 and with many calls."""
    one, many = result.hosts
    same_rate = abs(many.spacing_per_s / one.spacing_per_s - 1) <= SPACING_TOLERANCE
    # Counts over one window may differ by one listing from the pollers' phases alone.
    met = same_rate and abs(one.listings - many.listings) <= 1 and many.live_at_end == many.calls
    return [
        (
            f"tracking: listings per second per host equal with 1 and {many.calls} live calls",
            met,
            f"{one.per_s:.2f}/s ({one.listings} in {result.window:g} s) with 1 call, "
            f"{many.per_s:.2f}/s ({many.listings}) with {many.calls}; spacing "
            f"{one.spacing_per_s:.3f} vs {many.spacing_per_s:.3f}/s; tracker counted "
            f"{one.counted} and {many.counted}",
        )
    ]
