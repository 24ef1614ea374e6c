"""Summaries of latency samples."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    name: str
    samples: int
    median_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def of(cls, name: str, seconds: list[float]) -> Summary:
        ms = sorted(s * 1000 for s in seconds)
        p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
        return cls(name, len(ms), statistics.median(ms), p99, statistics.fmean(ms))


def table(rows: list[Summary], seed: Summary, floor: Summary) -> str:
    lines = [
        "| way | n | median ms | p99 ms | seed median / this | this / floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.samples} | {row.median_ms:.2f} | {row.p99_ms:.2f} | "
            f"{seed.median_ms / row.median_ms:.1f}x | {row.median_ms / floor.median_ms:.2f}x |"
        )
    return "\n".join(lines)
