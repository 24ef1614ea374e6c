"""Process probes for the report: CPU time spent per process, resident memory, open-file limit;
and the end of a child process asked to end.

CPU times come from ``/proc/<pid>/stat`` (user + system, in clock ticks). Measured around a
load segment they say where each call's CPU went, which is what a noisy machine cannot hide:
wall-clock throughput moves with whatever else runs, CPU per call much less.
"""

from __future__ import annotations

import asyncio
import os
import resource
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` (plus its reaped children's, if asked); 0 if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    # Fields 14-17 of proc(5) (utime, stime, cutime, cstime) are 11-14 after the ")".
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def own_cpu_seconds(*, children: bool) -> float:
    """This process's CPU seconds, or its reaped children's (``sshpass`` + ``ssh``)."""
    times = os.times()
    if children:
        return times.children_user + times.children_system
    return times.user + times.system


def postgres_backends(database: str) -> dict[int, float]:
    """CPU seconds of each live PostgreSQL backend serving ``database`` (others' excluded)."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f" {database} " in f" {cmdline} ":
            found[int(entry.name)] = cpu_seconds(int(entry.name))
    return found


def backends_cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU the backends alive at the end spent since ``before``: a lower bound, because a
    backend that ended in between (a connection the pool closed) took its time with it."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def rss_kib(pid: int) -> int:
    """The process's resident set size (``VmRSS``), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def raise_open_files(wanted: int = 65536) -> int:
    """Raise this process's open-files limit (children inherit it); returns the new soft limit.

    A thousand hosts' connections, the farm's thousand listeners and their peers need more
    than the usual 1024.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def exact_cpu_seconds(pid: int) -> float:
    """On-CPU seconds of ``pid``'s live threads, as the scheduler counts them
    (``/proc/<pid>/task/*/schedstat``, nanoseconds): exact, where ``cpu_seconds`` counts whole
    clock ticks (10 ms here). Threads that ended took their time with them; 0 if it is gone."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended meanwhile
    return total / 1e9


def tree_cpu_delta(before: dict[int, float], after: dict[int, float]) -> tuple[float, float, int]:
    """CPU a set of processes spent between two snapshots (pid -> ``exact_cpu_seconds``):
    (the total, the part of processes started in between, how many ended in between). A
    process started in between counts whole; one that ended took its time since ``before``
    with it, so with any ended the total is a lower bound."""
    total = started = 0.0
    for pid, seconds in after.items():
        if pid in before:
            total += seconds - before[pid]
        else:
            total += seconds
            started += seconds
    return total, started, sum(1 for pid in before if pid not in after)


async def ended(proc: asyncio.subprocess.Process, within: float) -> None:
    """Wait for ``proc``, asked to end, to end; killed if it has not within ``within`` s."""
    try:
        await asyncio.wait_for(proc.wait(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
