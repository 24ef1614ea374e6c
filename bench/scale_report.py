"""The Markdown of the throughput and isolation measurements, and their goals."""

from __future__ import annotations

from collections import Counter

from bench.scale import CPU_PARTS, EXTRA_CLIENTS, EXTRA_PAUSE, SCENARIO, ScaleResult
from bench.stats import LoadStats, change

THROUGHPUT_RATIO_GOAL = 20.0
P99_GOAL_MS = 100.0
ISOLATION_GOAL = 0.20

Goal = tuple[str, bool, str]


def _stats(result: ScaleResult) -> dict[str, LoadStats]:
    """Each way's segments pooled, under its name in the report."""
    clients = result.config.clients
    names = {
        "seed": "seed's way: sshpass + ssh per call, one sshd",
        "console": "callgate, console transport",
        "rx": "callgate, rx transport",
        "healthy": "callgate, console, plus the extra host (healthy)",
        "isolated": "callgate, console, plus the extra host (blackholed)",
    }
    return {way: LoadStats.of(name, clients, result.runs[way]) for way, name in names.items()}


def _rounds(stats: LoadStats) -> str:
    """Each round's calls/s: how much the machine's noise moved them."""
    return ", ".join(f"{value:.0f}" for value in stats.per_round)


def _row(stats: LoadStats, seed: LoadStats) -> str:
    """One way's row of the throughput table."""
    return (
        f"| {stats.name} | {stats.clients} | {stats.calls} | {stats.errors} | "
        f"{stats.per_s:.1f} | {_rounds(stats)} | {stats.p50_ms:.1f} | {stats.p99_ms:.1f} | "
        f"{stats.per_s / seed.per_s:.1f}x |"
    )


def section(result: ScaleResult) -> list[str]:
    """Throughput, CPU per call, the reading of both, and isolation."""
    cfg, stats = result.config, _stats(result)
    seed = stats["seed"]
    scenario = ", ".join(f"{key} {value}" for key, value in SCENARIO.items())
    lines = [
        "## Throughput: concurrent clients across many hosts",
        "",
        f"{cfg.clients} closed-loop clients per way, {cfg.rounds} rounds of {cfg.seconds:g} s "
        "segments (callgate console, callgate rx, the seed's way, and the isolation pair "
        "below), interleaved. callgate: "
        f"{cfg.hosts} console hosts + {cfg.hosts} rx hosts in a process of their own, each on its "
        "own loopback address and port (`pbx_hosts` is keyed by address), one enterprise "
        f"each; every call to another number, hosts in turn; the tracker follows every call "
        f"({scenario} s). "
        "Seed: the same clients, sshpass + ssh login per call, one real sshd.",
        "",
        "| way | clients | calls | errors | calls/s | calls/s per round | p50 ms | p99 ms "
        "| calls/s vs seed |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
        *(_row(stats[way], seed) for way in ("seed", "console", "rx")),
        "",
        "CPU per call (ms), from /proc around each segment (a noisy machine moves calls/s "
        "more than this). The service is one process: it can use one core at most. "
        "PostgreSQL: its backends alive at each segment's end (a lower bound: a connection "
        "closed during the segment took its CPU time with it); sessions: connections "
        "PostgreSQL saw opened, per 100 calls.",
        "",
        "| way | " + " | ".join(CPU_PARTS) + " | total | PostgreSQL sessions / 100 calls |",
        "|---|" + "---:|" * (len(CPU_PARTS) + 2),
    ]
    for way in ("seed", "console", "rx"):
        calls = max(1, stats[way].calls)
        parts = [result.cpu[way][part] * 1000 / calls for part in CPU_PARTS]
        cells = " | ".join(f"{value:.2f}" for value in parts)
        sessions = result.cpu[way]["sessions"] * 100 / calls
        lines.append(f"| {stats[way].name} | {cells} | {sum(parts):.2f} | {sessions:.1f} |")
    for sample in (*stats["console"].sample_errors, *stats["rx"].sample_errors):
        lines.append(f"\nError sample: `{sample}`")
    return [*lines, "", *_reading(result, stats), "", *_isolation(result, stats)]


def _reading(result: ScaleResult, stats: dict[str, LoadStats]) -> list[str]:
    """What the CPU figures imply for the goals: arithmetic on the numbers above, no more."""
    seed, console = stats["seed"], stats["console"]
    if not console.calls or not console.per_s or not seed.per_s:
        return []
    service_ms = result.cpu["console"]["service"] * 1000 / console.calls
    needed = THROUGHPUT_RATIO_GOAL * seed.per_s
    little_ms = result.config.clients / console.per_s * 1000
    text = (
        f"Reading (console): at {service_ms:.1f} ms of service CPU per call, one service "
        f"process (one core) tops out near {1000 / service_ms:.0f} calls/s."
    )
    if console.per_s < needed:
        text += (
            f" {THROUGHPUT_RATIO_GOAL:g}x the seed's {seed.per_s:.1f} calls/s is {needed:.0f} "
            f"calls/s: at most {1000 / needed:.1f} ms of service CPU per call. The seed's way "
            "spends more CPU per call but spreads it over processes on every core."
        )
    if console.p99_ms >= P99_GOAL_MS:
        text += (
            f" With {result.config.clients} closed-loop clients the mean latency is clients / "
            f"throughput = {little_ms:.0f} ms (Little's law), so a p99 under "
            f"{P99_GOAL_MS:g} ms at this concurrency needs more calls/s first."
        )
    return [text]


def _isolation(result: ScaleResult, stats: dict[str, LoadStats]) -> list[str]:
    """The same load with the extra host healthy, then blackholed; what its calls got."""
    base, iso = stats["healthy"], stats["isolated"]
    healthy = LoadStats.of("extra host, healthy", EXTRA_CLIENTS, result.extra_healthy)
    dead = LoadStats.of("extra host, blackholed", EXTRA_CLIENTS, result.blackholed)
    waited = sorted(latency for run in result.blackholed for latency in run.latencies)
    reasons: Counter[str] = Counter()
    for run in result.blackholed:
        reasons.update(run.reasons)
    median_s = waited[len(waited) // 2] if waited else 0.0
    return [
        "## Isolation: one host blackholed",
        "",
        f"The same load twice: the {result.config.clients} healthy clients, plus "
        f"{EXTRA_CLIENTS} paced clients (one call per {EXTRA_PAUSE:g} s each) calling one more "
        "enterprise on 127.0.0.1 whose host row points first at a healthy farm host, then at "
        "a TCP server that accepts and never answers (one pair per round; which runs first "
        "alternates).",
        "",
        "| healthy hosts' calls | calls | errors | calls/s | calls/s per round | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---|---:|---:|",
        f"| extra host healthy | {base.calls} | {base.errors} | {base.per_s:.1f} | "
        f"{_rounds(base)} | {base.p50_ms:.1f} | {base.p99_ms:.1f} |",
        f"| extra host blackholed | {iso.calls} | {iso.errors} | {iso.per_s:.1f} | "
        f"{_rounds(iso)} | {iso.p50_ms:.1f} | {iso.p99_ms:.1f} |",
        f"| change | | | {change(iso.per_s, base.per_s):+.0%} | | "
        f"{change(iso.p50_ms, base.p50_ms):+.0%} | {change(iso.p99_ms, base.p99_ms):+.0%} |",
        "",
        f"The extra host's own calls: healthy, {healthy.calls} calls, {healthy.errors} errors, "
        f"p50 {healthy.p50_ms:.1f} ms; blackholed, {dead.calls} calls, "
        f"{dead.calls - dead.errors} succeeded, median answer after {median_s:.1f} s; answers: "
        + ("; ".join(f"{count}x `{reason}`" for reason, count in reasons.items()) or "none"),
    ]


def goals(result: ScaleResult) -> list[Goal]:
    """(goal, met, numbers) for throughput and p99 (each transport) and isolation."""
    stats = _stats(result)
    seed = stats["seed"]
    found: list[Goal] = []
    for way in ("console", "rx"):
        mine = stats[way]
        ratio = mine.per_s / seed.per_s if seed.per_s else float("inf")
        found.append((
            f"throughput ({way}): >= {THROUGHPUT_RATIO_GOAL:g}x the seed's calls/s",
            ratio >= THROUGHPUT_RATIO_GOAL and mine.errors == 0,
            f"{mine.per_s:.1f} / {seed.per_s:.1f} calls/s = {ratio:.1f}x, "
            f"{mine.errors} errors, {result.config.clients} clients",
        ))  # fmt: skip
        found.append((
            f"throughput ({way}): p99 < {P99_GOAL_MS:g} ms",
            mine.p99_ms < P99_GOAL_MS,
            f"p99 {mine.p99_ms:.1f} ms (p50 {mine.p50_ms:.1f} ms; seed p99 {seed.p99_ms:.0f} ms)",
        ))  # fmt: skip
    base, iso = stats["healthy"], stats["isolated"]
    moved = change(iso.p99_ms, base.p99_ms)
    found.append((
        f"isolation: healthy hosts' p99 moves by <= {ISOLATION_GOAL:.0%} with a host blackholed",
        abs(moved) <= ISOLATION_GOAL and iso.errors == 0,
        f"{base.p99_ms:.1f} ms -> {iso.p99_ms:.1f} ms ({moved:+.0%}), {iso.errors} errors",
    ))  # fmt: skip
    return found
