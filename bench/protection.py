"""Protection: what the per-call checks cost, and memory while huge unauthenticated bodies arrive.

Two parts of `make bench`:
- the destination policy and the rate and live-call limits, checked together as a call checks
  them (`bench.destinations` and `bench.rate_limits` measure each alone): the shipped policy
  with a number never seen before every call (libphonenumber parses and classifies each), the
  default limits on memory storage, every call from an enterprise of its own so that none is
  refused and every check runs and counts; the p50 must stay below 0.2 ms;
- `bench.bodies`: 100 bodies of 30 MB, 10 at a time, without credentials, against a fresh
  `callgate serve`; its VmRSS growth must stay below 20 MiB.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from bench import bodies, rate_limits
from callgate.domain.destinations import PolicyOverrides, classify, effective_policy

CHECKS_GOAL_MS = 0.2


@dataclass(frozen=True)
class ProtectionResult:
    calls: int
    checks_p50_ms: float
    checks_p99_ms: float
    bodies: dict[str, float]


async def measure_checks(calls: int) -> list[float]:
    """Seconds per call for the policy and the limits together."""
    live, limits = rate_limits.default_limits()
    own, default = PolicyOverrides(), PolicyOverrides()
    took = []
    try:
        for number in range(calls):
            enterprise, call_id, phone = f"e{number}", str(number), f"+3752962{number:05d}"
            classify.cache_clear()  # a number never seen: the policy's dearest case
            began = time.perf_counter()
            effective_policy(own, default, "BY").check("150", phone)
            live.reserve(call_id, enterprise, "10.0.0.5")
            await limits.check_call(enterprise, "150", phone)
            live.placed(call_id)
            took.append(time.perf_counter() - began)
            live.release(call_id)
    finally:
        await limits.aclose()
    return took


async def measure(calls: int) -> ProtectionResult:
    took = sorted(await measure_checks(calls))
    return ProtectionResult(
        calls=len(took),
        checks_p50_ms=statistics.median(took) * 1000,
        checks_p99_ms=took[int(len(took) * 0.99)] * 1000,
        bodies=await bodies.measure(),
    )


def section(result: ProtectionResult) -> list[str]:
    found = result.bodies
    return [
        "## Protection: the per-call checks, and huge unauthenticated bodies",
        "",
        f"The destination policy and the rate and live-call limits, checked together for "
        f"{result.calls} calls (a new number and a new enterprise each, memory storage): "
        f"p50 {result.checks_p50_ms:.3f} ms, p99 {result.checks_p99_ms:.3f} ms.",
        f"{bodies.BODIES} bodies of 30 MB, {bodies.AT_ONCE} at a time, without credentials: "
        f"every one answered 413; VmRSS {found['rss_before_mib']:.1f} MiB before, "
        f"{found['rss_after_mib']:.1f} MiB after; about "
        f"{found['mean_sent_before_answer_mib']:.1f} MiB of each was sent before its answer.",
    ]


def goals(result: ProtectionResult) -> list[tuple[str, bool, str]]:
    growth = result.bodies["growth_mib"]
    return [
        (
            f"protection: policy and limit checks p50 < {CHECKS_GOAL_MS:g} ms per call",
            result.checks_p50_ms < CHECKS_GOAL_MS,
            f"p50 {result.checks_p50_ms:.3f} ms (p99 {result.checks_p99_ms:.3f} ms)",
        ),
        (
            f"protection: memory growth < {bodies.GROWTH_GOAL_MIB:g} MiB while "
            f"{bodies.BODIES} unauthenticated 30 MB bodies arrive",
            growth < bodies.GROWTH_GOAL_MIB,
            f"{growth:.1f} MiB",
        ),
    ]
