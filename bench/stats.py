"""Summaries of latency samples and of load segments."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.load import Run


def percentile(sorted_ms: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_ms:
        return 0.0
    return sorted_ms[min(len(sorted_ms) - 1, round(fraction * (len(sorted_ms) - 1)))]


@dataclass(frozen=True)
class Summary:
    """Latencies of one way of the single-host comparison, in ms."""

    name: str
    samples: int
    median_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def of(cls, name: str, seconds: list[float]) -> Summary:
        """Summarise latencies given in seconds."""
        ms = sorted(s * 1000 for s in seconds)
        return cls(name, len(ms), statistics.median(ms), percentile(ms, 0.99), statistics.fmean(ms))


def table(rows: list[Summary], seed: Summary, floor: Summary) -> str:
    """The single-host table, each way against the seed's median and the floor's."""
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


@dataclass(frozen=True)
class LoadStats:
    """Load segments of one way, pooled: calls/s over their summed wall time, latencies of the
    calls that succeeded (failures are counted apart), and each segment's own calls/s."""

    name: str
    clients: int
    calls: int
    errors: int
    seconds: float
    per_s: float
    per_round: tuple[float, ...]
    p50_ms: float
    p99_ms: float
    max_ms: float
    sample_errors: tuple[str, ...]

    @classmethod
    def of(cls, name: str, clients: int, runs: Iterable[Run]) -> LoadStats:
        """Pool the segments ``runs`` of one way."""
        ms: list[float] = []
        calls = errors = 0
        seconds = 0.0
        per_round: list[float] = []
        samples: list[str] = []
        for run in runs:
            wall = max(run.finished - run.started, 1e-9)
            ok_here = 0
            for latency, ok in zip(run.latencies, run.ok, strict=True):
                calls += 1
                if ok:
                    ok_here += 1
                    ms.append(latency * 1000)
                else:
                    errors += 1
            seconds += wall
            per_round.append(ok_here / wall)
            samples.extend(run.reasons)
        ms.sort()
        return cls(
            name=name,
            clients=clients,
            calls=calls,
            errors=errors,
            seconds=seconds,
            per_s=(calls - errors) / seconds if seconds else 0.0,
            per_round=tuple(per_round),
            p50_ms=percentile(ms, 0.50),
            p99_ms=percentile(ms, 0.99),
            max_ms=ms[-1] if ms else 0.0,
            sample_errors=tuple(samples[:3]),
        )


def change(new: float, old: float) -> float:
    """``new`` relative to ``old``, as a signed fraction (+0.10 is 10 % more)."""
    return new / old - 1 if old else float("inf")
