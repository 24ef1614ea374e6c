"""The protection goals of `make bench`: judged on the numbers, met and not met."""

from __future__ import annotations

from bench.protection import ProtectionResult, goals, section

BODIES = {
    "rss_before_mib": 110.0,
    "rss_after_mib": 112.0,
    "growth_mib": 2.0,
    "mean_sent_before_answer_mib": 0.8,
}


def _met(result: ProtectionResult) -> list[bool]:
    return [met for _, met, _ in goals(result)]


def test_cheap_checks_and_flat_memory_meet_both_goals() -> None:
    result = ProtectionResult(calls=100, checks_p50_ms=0.12, checks_p99_ms=0.3, bodies=BODIES)
    assert _met(result) == [True, True]
    assert "p50 0.120 ms" in section(result)[2]


def test_dear_checks_or_growing_memory_miss_them() -> None:
    grown = {**BODIES, "rss_after_mib": 140.0, "growth_mib": 30.0}
    result = ProtectionResult(calls=100, checks_p50_ms=0.25, checks_p99_ms=0.9, bodies=grown)
    assert _met(result) == [False, False]
