"""The one Markdown report of a `make bench` run: what ran, the tables, a line per goal."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

from bench import events, footprint, listening, protection, scale_report, single, tracking
from bench.events import EventsResult
from bench.footprint import FootprintResult
from bench.goals import Goal, goal_lines
from bench.listening import ListeningResult
from bench.protection import ProtectionResult
from bench.scale import ScaleResult
from bench.single import SingleResult
from bench.tracking import TrackingResult


@dataclass(frozen=True)
class RunInfo:
    """How the run was made, for the report's head."""

    command: str
    quick: bool
    started: float  # time.time()
    seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def machine_line(info: RunInfo) -> str:
    """Cores, Python, kernel and the load average around the run."""
    before = ", ".join(f"{value:.2f}" for value in info.load_before)
    after = ", ".join(f"{value:.2f}" for value in info.load_after)
    return (
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average {before} before the run, "
        f"{after} after it (other work on the machine shows here)."
    )


def render(
    info: RunInfo,
    single_result: SingleResult,
    scale_result: ScaleResult,
    tracking_result: TrackingResult,
    footprint_result: FootprintResult,
    listening_result: ListeningResult,
    protection_result: ProtectionResult,
    events_result: EventsResult | None = None,
) -> str:
    """The whole report: head, each part's section, then one line per goal."""
    goals: list[Goal] = [
        *single.goals(single_result),
        *scale_report.goals(scale_result),
        *footprint.goals(footprint_result),
        *tracking.goals(tracking_result),
        *listening.goals(listening_result),
        *protection.goals(protection_result),
        *(events.goals(events_result) if events_result is not None else []),
    ]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.started))
    kind = "quick smoke run (small counts: not a measurement)" if info.quick else "full run"
    lines = [
        "# callgate benchmark",
        "",
        f"`{info.command}`, {kind}, {stamp}, took {info.seconds:.0f} s.",
        machine_line(info),
        "",
        *single.section(single_result),
        "",
        *scale_report.section(scale_result),
        "",
        *footprint.section(footprint_result),
        "",
        *tracking.section(tracking_result),
        "",
        *listening.section(listening_result),
        "",
        *protection.section(protection_result),
        "",
        *([*events.section(events_result), ""] if events_result is not None else []),
        "## Goals",
        "",
        *goal_lines(goals),
    ]
    return "\n".join(lines)
