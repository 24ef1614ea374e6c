"""`make bench`'s listening part: which line causes which event, the lag matching, the SSE
parsing, the CPU accounting and the goal; and the simulator daemon's record of the blocks it
pushed to its consoles, which the lags are measured from."""

from __future__ import annotations

import asyncio
import time

import pytest
from bench import listening, procs, setup
from bench.listening import Arrival, Lag, ListeningResult, ModeResult, Placed, Turn

from callgate.simulator.daemon import HOST, Pushed, SimulatorControl, SimulatorDaemon
from callgate.simulator.logtext import spawn_exited, verbose
from callgate.simulator.timeline import Scenario

FIRST = "Local/10001@inoffice-0000001a"
CUSTOMER = "Local/+375297700001@inoffice-0000001b"
CALL = Placed("c1", "10001", "+375297700001")
REFERENCE = 1  # the benchmark's own console
LISTENER = 2  # the service's listening console

# One answered call's lines as the simulator prints them (colours and margins included).
LINES = {
    "ringing_agent": verbose(3, f"{FIRST};1 is ringing"),
    "agent_answered": verbose(3, f"{FIRST};1 answered"),
    "ringing_customer": verbose(3, f"{CUSTOMER};1 is ringing"),
    "connected": verbose(3, f"{CUSTOMER};1 answered {FIRST};1"),
    "completed": verbose(2, spawn_exited("inoffice", "10001", 6, f"{FIRST};2")),
}


def _says(state: str, text: str, placed: Placed = CALL) -> bool:
    pattern = listening.cause(state, placed.code, placed.phone)
    assert pattern is not None
    return any(pattern.fullmatch(line) for line in listening.clean_lines(text))


@pytest.mark.parametrize("state", listening.HEARD)
def test_each_heard_state_has_exactly_its_own_line(state: str) -> None:
    for other, text in LINES.items():
        assert _says(state, text) is (other == state), (state, other)


def test_lines_of_another_call_cause_nothing() -> None:
    other = Placed("c2", "1000", "+37529770000")  # prefixes of CALL's extension and phone
    assert not any(
        _says(state, text, other) for state in listening.HEARD for text in LINES.values()
    )


def test_the_customer_legs_end_does_not_complete_the_call() -> None:
    customer_end = verbose(2, spawn_exited("inoffice", CALL.phone, 6, f"{CUSTOMER};2"))
    assert not _says("completed", customer_end)
    assert listening.cause("initiated", CALL.code, CALL.phone) is None


def test_a_block_of_several_lines_is_read_line_by_line() -> None:
    block = verbose(3, "Executing [10001@inoffice:4] Answer") + LINES["agent_answered"]
    assert listening.clean_lines(block)[-1] == f"-- {FIRST};1 answered"
    assert _says("agent_answered", block)


def test_caused_at_prefers_the_listening_console_then_the_reference() -> None:
    pattern = listening.cause("connected", CALL.code, CALL.phone)
    assert pattern is not None
    text = LINES["connected"]
    both = [Pushed(10.0, REFERENCE, text), Pushed(10.001, LISTENER, text)]
    assert listening.caused_at(both, pattern, REFERENCE) == (10.001, True)
    assert listening.caused_at(both[:1], pattern, REFERENCE) == (10.0, False)
    assert listening.caused_at([Pushed(9.0, LISTENER, "nothing\n")], pattern, REFERENCE) is None


def test_match_lags_measures_each_heard_event_from_its_line() -> None:
    pushes = [Pushed(100.0 + i, LISTENER, text) for i, text in enumerate(LINES.values())]
    arrivals = [Arrival("c1", "initiated", 99.5)] + [
        Arrival("c1", state, 100.0 + i + 0.004) for i, state in enumerate(LINES)
    ]
    arrivals.append(Arrival("sentinel", "ringing_agent", 101.0))  # not a measured call
    lags, unmatched = listening.match_lags(arrivals, [CALL], pushes, REFERENCE)
    assert unmatched == 0
    assert [lag.state for lag in lags] == list(LINES)
    assert all(lag.heard and lag.seconds == pytest.approx(0.004) for lag in lags)


def test_match_lags_counts_an_event_whose_line_is_missing() -> None:
    lags, unmatched = listening.match_lags([Arrival("c1", "connected", 5.0)], [CALL], [], REFERENCE)
    assert (lags, unmatched) == ([], 1)


def test_sse_events_splits_complete_events_and_keeps_the_rest() -> None:
    text = (
        ": connected\n\n"
        'id: c1\nevent: call.ringing_agent\ndata: {"call_id": "c1"}\n\n'
        ": keepalive\r\n\r\n"
        "id: c1\nevent: call.connected\nda"
    )
    events, rest = listening.sse_events(text)
    assert events == [("call.ringing_agent", '{"call_id": "c1"}')]
    assert rest == "id: c1\nevent: call.connected\nda"
    more, rest = listening.sse_events(rest + 'ta: {"call_id": "c1"}\n\n')
    assert more == [("call.connected", '{"call_id": "c1"}')] and rest == ""


def test_lag_summary_in_ms() -> None:
    lags = [Lag("c", "connected", ms / 1000, True) for ms in (3.0, 1.0, 2.0, 50.0, 4.0)]
    summary = listening.LagSummary.of(lags)  # nearest-rank percentiles, as `bench.stats`
    assert (summary.count, summary.p50_ms, summary.p99_ms, summary.max_ms) == (5, 3, 50, 50)
    assert listening.LagSummary.of([]).count == 0


def test_tree_cpu_delta_counts_started_processes_whole_and_ended_ones_apart() -> None:
    before = {1: 1.0, 2: 2.0, 3: 0.5}
    after = {1: 1.5, 2: 2.25, 4: 0.125}  # 3 ended, 4 started
    total, started, ended = procs.tree_cpu_delta(before, after)
    assert (total, started, ended) == (0.875, 0.125, 1)


def test_exact_cpu_seconds_of_this_process_and_of_none() -> None:
    import os

    assert procs.exact_cpu_seconds(os.getpid()) > 0
    assert procs.exact_cpu_seconds(2**22 + 12345) == 0.0  # above pid_max's default


def _turn(lags: list[Lag], calls: int = 1) -> Turn:
    placed = [Placed(f"c{i}", str(10000 + i), f"+3752977{i:06d}") for i in range(calls)]
    cpu = listening.Cpu(service=0.01 * calls)
    return Turn(placed, 0, True, lags, 0, cpu, listening.Cpu())


def _result(on_lags_ms: list[float], states: tuple[str, ...] = listening.HEARD) -> ListeningResult:
    lags = [Lag("c0", state, ms / 1000, True) for state, ms in zip(states, on_lags_ms, strict=True)]
    on = ModeResult(listen=True).add(_turn(lags))
    off = ModeResult(listen=False).add(_turn([Lag("c0", "connected", 0.9, False)]))
    return ListeningResult(on, off, listening.SPACING, listening.SCENARIO)


def test_the_goal_is_met_when_every_heard_event_came_within_100_ms() -> None:
    [(_, met, numbers)] = listening.goals(_result([3.0, 2.5, 2.5, 3.5, 53.0]))
    assert met is True and "5 of 5 events" in numbers


def test_the_goal_is_missed_by_a_late_event_or_a_missing_one() -> None:
    [(_, late, _)] = listening.goals(_result([180.0, 2.5, 2.5, 3.5, 53.0]))
    [(_, short, numbers)] = listening.goals(_result([2.5, 2.5, 3.5, 53.0], listening.HEARD[1:]))
    assert late is False and short is False
    assert "ringing_agent 1" in numbers


def test_the_section_shows_both_modes_and_the_cost() -> None:
    text = "\n".join(listening.section(_result([3.0, 2.5, 2.5, 3.5, 53.0])))
    assert "| connected | 1/1 | 3.5 |" in text
    assert "| difference (listening's cost) | +0.00 |" in text


async def test_the_daemon_records_what_it_pushed_to_which_console_and_when() -> None:
    async with SimulatorDaemon() as daemon:
        control = SimulatorControl(daemon.port)
        await control.set_default_scenario(Scenario(agent_answer_after=None))
        reader, writer = await asyncio.open_connection(HOST, daemon.port)
        try:
            command = b"core set verbose 3"
            writer.write(b"cx %d\n" % len(command) + command)
            await reader.readuntil(b"\n")  # the answer's header: the console is open
            (console,) = [c["console"] for c in await control.consoles()]
            before = time.time()
            await control.rx("channel originate Local/150@inoffice application Wait 1")
            for _ in range(100):
                if any("is ringing" in p.text for p in daemon.pushed):
                    break
                await asyncio.sleep(0.01)
            after = time.time()
        finally:
            writer.close()
        ringing = [p for p in daemon.pushed if "is ringing" in p.text]
        assert len(ringing) == 1 and ringing[0].console == console
        assert before <= ringing[0].at <= after
        assert await control.pushed(since=before) == [p for p in daemon.pushed if p.at >= before]
        assert await control.pushed(since=after + 60) == []
        with pytest.raises(RuntimeError, match="since"):
            await control.request("pushed", since="yesterday")
        assert daemon.pushed.maxlen is not None


def test_turns_run_in_abba_order() -> None:
    assert list(setup.abba((True, False), 3)) == [True, False, False, True, True, False]
    assert list(setup.abba(("a", "b", "c"), 2)) == ["a", "b", "c", "c", "b", "a"]
    assert list(setup.abba((True, False), 0)) == []
