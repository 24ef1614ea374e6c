"""`python -m bench.instances`: the report's rows and goals from a result, and the merging of
the runs of several instances into one segment."""

from __future__ import annotations

from bench import instances
from bench.instances import Plan, Result, Segment
from bench.load import Run

from callgate.calls.shared_events import _ranges


def _run(calls: int, seconds: float, failed: int = 0) -> Run:
    run = Run()
    run.started, run.finished = 100.0, 100.0 + seconds
    for _ in range(calls):
        run.add(0.01, True, 0)
    for _ in range(failed):
        run.add(0.01, False, 0, "502 bad gateway")
    return run


def _result(two_rate_calls: int, two_service_cpu: float) -> Result:
    result = Result(Plan(hosts=2, clients=2, seconds=1.0))
    result.segments = [
        Segment("seed", _run(10, 1.0), {"PBX hosts": 0.3, "load clients": 0.5}),
        Segment("alone", _run(100, 1.0), {"service": 0.5, "PostgreSQL": 0.2}),
        Segment("one", _run(100, 1.0), {"service": 0.53, "PostgreSQL": 0.25}),
        Segment("two", _run(two_rate_calls, 1.0, failed=1), {"service": two_service_cpu}),
    ]
    result.lags = {"direct (a)": [0.004, 0.005], "another (b)": [0.010, 0.012]}
    result.takeover_s, result.takeover_hosts, result.takeover_live = 11.2, 3, 2
    return result


def test_the_report_has_a_row_per_segment_and_the_goals_met() -> None:
    text = instances.render(_result(110, 0.54), quick=False, seconds=120)
    assert "| alone | 100.0 | 100 | 5.00 | 2.00 |" in text
    assert "| two | 110.0 | 110 (1 failed) | 4.91 |" in text
    assert "| seed | 10.0 | 10 | - | - | 30.00 | 50.00 |" in text
    assert "(paced): +6.0 % (one instance), -1.8 % (two; goal <= +10 %): **met**" in text
    assert "110.0 against 100.0 calls/s (goal: never slower): **met**" in text
    assert "11.0x (two instances), 10.0x (one)" in text
    assert (
        "holding 3 hosts (2 with live calls the survivor did not hold): 11.2 s" in text
        and "< 15 s): **met**" in text
    )
    assert "| another (b) | 10.0 / 12.0 (2) |" in text


def test_a_goal_its_floor_misses_is_out_of_reach() -> None:
    """Two instances that share nothing (`apart`) are the floor of the goals on two: when
    they alone cost over 10 % more per call, or place fewer calls per second than one, no
    coordination could meet the goal; when they do not, the goal is plainly NOT MET."""
    result = _result(80, 0.8)
    result.segments.append(Segment("apart", _run(90, 1.0), {"service": 0.54}))
    text = instances.render(result, quick=False, seconds=120)
    assert "(two; goal <= +10 %): **out of reach here**" in text
    assert "(`apart`): +20.0 %, the cost of splitting" in text
    assert "(the coordination's own cost): +66.7 %" in text
    assert "(goal: never slower): **out of reach here**" in text
    assert "share nothing against one as before: 90.0 against 100.0 calls/s" in text
    result.segments[-1] = Segment("apart", _run(100, 1.0), {"service": 0.52})
    text = instances.render(result, quick=False, seconds=120)
    assert "(two; goal <= +10 %): **NOT MET**" in text
    assert "(goal: never slower): **NOT MET**" in text


def test_the_goals_not_met_say_so() -> None:
    result = _result(80, 0.8)
    result.takeover_s = None
    text = instances.render(result, quick=True, seconds=30)
    assert "quick smoke run" in text
    assert "(two; goal <= +10 %): **NOT MET**" in text
    assert "(goal: never slower): **NOT MET**" in text
    assert "takeover after SIGKILL: not seen" in text


def test_the_rounds_show_their_own_spread_beside_the_whole() -> None:
    """The goal is judged on each set-up's bursts added up; each round's paced bursts,
    compared with each other, show how far one round alone could have been from it."""
    result = _result(80, 0.8)
    result.segments.append(Segment("apart", _run(90, 1.0), {"service": 0.54}))
    result.rounds = {"alone": [5.0, 6.0, 5.0], "apart": [6.0, 6.6, 5.5], "two": [6.5, 7.2, 6.0]}
    text = instances.render(result, quick=False, seconds=120)
    assert "(two; goal <= +10 %) (its rounds: +20.0 to +30.0 %):" in text
    assert "(`apart`): +20.0 % (its rounds: +10.0 to +20.0 %), the cost" in text
    assert "own cost): +66.7 % (its rounds: +8.3 to +9.1 %)" in text


def test_a_set_ups_bursts_add_up_to_its_segment() -> None:
    """Its calls and CPU summed, its rate over the bursts' own time (not the time the other
    set-ups' bursts took between them), its lags together."""
    first = Segment("two", _run(30, 1.0), {"service": 0.3}, {"instance 1": [0.01]})
    second = Segment("two", _run(20, 1.0, failed=2), {"service": 0.2}, {"instance 1": [0.02]})
    second.run.started, second.run.finished = 500.0, 502.0  # minutes later
    combined = instances._combined("two, paced", [first, second])
    assert combined.name == "two, paced"
    assert combined.calls == 50 and len(combined.run.ok) == 52
    assert combined.rate == 50 / 3.0
    assert combined.per_call_ms("service") == 10.0
    assert combined.lags == {"instance 1": [0.01, 0.02]}
    assert combined.run.reasons["502 bad gateway"] == 2


def test_the_runs_of_several_instances_make_one_segment() -> None:
    first, second = _run(3, 2.0), _run(2, 1.0, failed=1)
    second.started, second.finished = 99.0, 101.0
    merged = instances._merged([first, second])
    assert (merged.started, merged.finished) == (99.0, 102.0)
    assert sum(merged.ok) == 5 and len(merged.ok) == 6
    assert merged.reasons["502 bad gateway"] == 1


def test_ids_heard_far_apart_are_read_in_separate_ranges() -> None:
    assert _ranges([5]) == [(5, 5)]
    assert _ranges([1, 2, 50, 120]) == [(1, 120)]
    assert _ranges([3, 500, 501, 503]) == [(3, 3), (500, 503)]
