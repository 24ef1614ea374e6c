"""`make bench`'s events part: how subscribers and endpoints are spread over the enterprises,
which line each event is measured from, the lags per channel, the CPU ratio and its goal, the
report's tables; and the webhook receiver it measures with, over real loopback HTTP."""

from __future__ import annotations

import json
from dataclasses import replace

import httpx
import pytest
from bench import events, events_floor, listening
from bench.events import EventsResult, ModeResult, Turn, WebhookReceiver
from bench.listening import Arrival, Cpu, Placed

from callgate.simulator.daemon import Pushed
from callgate.simulator.logtext import spawn_exited, verbose

FIRST = "Local/10001@inoffice-0000001a"
CUSTOMER = "Local/+375297700001@inoffice-0000001b"
CALL = Placed("c1", "10001", "+375297700001")
LINES = {
    "ringing_agent": verbose(3, f"{FIRST};1 is ringing"),
    "agent_answered": verbose(3, f"{FIRST};1 answered"),
    "ringing_customer": verbose(3, f"{CUSTOMER};1 is ringing"),
    "connected": verbose(3, f"{CUSTOMER};1 answered {FIRST};1"),
    "completed": verbose(2, spawn_exited("inoffice", "10001", 6, f"{FIRST};2")),
}


def test_numbers_start_with_the_seeded_enterprise_and_things_spread_evenly() -> None:
    assert events.numbers(3) == ["0367", "0368", "0369"]
    assert events.spread(100, 5) == [20] * 5
    assert events.spread(10, 4) == [3, 3, 2, 2]
    assert sum(events.spread(7, 3)) == 7


def test_each_heard_transition_is_timed_from_its_first_line_on_any_console() -> None:
    pushes = [Pushed(100.0 + i, 2, text) for i, text in enumerate(LINES.values())]
    pushes.append(Pushed(99.0, 5, LINES["connected"]))  # the same line earlier, elsewhere
    causes = events.cause_times([CALL], pushes)
    assert causes[("c1", "ringing_agent")] == 100.0
    assert causes[("c1", "connected")] == 99.0
    assert set(causes) == {("c1", state) for state in listening.HEARD}
    assert events.cause_times([CALL], []) == {}


def test_lags_skip_events_no_line_drives() -> None:
    causes = {("c1", "connected"): 10.0, ("c1", "completed"): 11.0}
    arrivals = [
        Arrival("c1", "initiated", 9.0),  # no line of its own
        Arrival("c1", "connected", 10.005),
        Arrival("c1", "completed", 11.25),
        Arrival("sentinel", "connected", 10.1),  # not a measured call
    ]
    assert events.lags(arrivals, causes) == pytest.approx([0.005, 0.25])


def _turn(service: float, calls: int = 10, lag_ms: float = 5.0, **more: int) -> Turn:
    lags = {"sse": [lag_ms / 1000] * 3, "ws": [lag_ms / 1000] * 3, "webhook": [0.8]}
    return Turn(
        calls=calls,
        failed=more.get("failed", 0),
        unended=0,
        window=6.0,
        cpu=Cpu(service=service, postgres=service / 2),
        idle=Cpu(service=service / 5, postgres=service / 10),  # over events.IDLE (2 s)
        lags=lags,
        expected={"sse": 3, "ws": 3, "webhook": 1},
        late=more.get("late", 0),
    )


def _result(attached: list[Turn], none: list[Turn]) -> EventsResult:
    on, off = ModeResult(attached=True), ModeResult(attached=False)
    for turn in attached:
        on = on.add(turn)
    for turn in none:
        off = off.add(turn)
    return EventsResult(on, off)


def test_turns_pool_and_the_ratio_is_per_call() -> None:
    result = _result([_turn(0.11), _turn(0.11)], [_turn(0.1, calls=20)])
    assert result.attached.calls == 20 and result.attached.turns == 2
    assert result.attached.lags["sse"] == (0.005,) * 6
    assert result.attached.expected == {"sse": 6, "ws": 6, "webhook": 2}
    assert result.attached.per_call_ms(result.attached.cpu.service) == pytest.approx(11.0)
    assert events.ratio(result) == pytest.approx(2.2)  # 11 ms against 5 ms per call
    assert events.ratio(_result([_turn(0.1)], [])) is None


def test_the_goal_is_met_within_ten_percent_and_only_with_every_call_through() -> None:
    [(_, met, numbers)] = events.goals(_result([_turn(0.105)], [_turn(0.1)]))
    assert met is True and "1.05 times (+5 %)" in numbers and "webhook p50 800.0 ms" in numbers
    [(_, over, _)] = events.goals(_result([_turn(0.12)], [_turn(0.1)]))
    [(_, failed, _)] = events.goals(_result([_turn(0.1, failed=1)], [_turn(0.1)]))
    [(_, late, _)] = events.goals(_result([_turn(0.1, late=1)], [_turn(0.1)]))
    assert over is False and failed is False and late is False


def test_the_goal_is_out_of_reach_only_when_the_floor_alone_misses_it() -> None:
    result = _result([_turn(0.2)], [_turn(0.1)])  # none: 10 ms per call
    assert events.EVENTS_PER_CALL == 6  # initiated, then the five heard transitions
    # 20 streams and 2 endpoints per call's enterprise: 6 x (20 x 0.01 + 2 x 0.1) = 2.4 ms
    costly = replace(result, floor=events_floor.Floor(message_ms=0.01, request_ms=0.1))
    assert events.floor_extra_ms(costly) == pytest.approx(2.4)
    assert events.floor_ratio(costly) == pytest.approx(1.24)
    [(_, met, numbers)] = events.goals(costly)
    assert met is None and "the floor alone adds 2.40 ms: 1.24 times (+24 %)" in numbers
    cheap = replace(result, floor=events_floor.Floor(message_ms=0.001, request_ms=0.01))
    [(_, reachable, _)] = events.goals(cheap)
    assert reachable is False  # the floor leaves room: the service missed it
    [(_, unmeasured, numbers)] = events.goals(result)
    assert unmeasured is False and "floor" not in numbers
    failing = _result([_turn(0.2, failed=1)], [_turn(0.1)])
    [(_, failed, _)] = events.goals(replace(failing, floor=costly.floor))
    assert failed is False  # a refused call is a failure, never "out of reach"
    text = "\n".join(events.section(costly))
    assert "a stream message 0.010 ms" in text and "a webhook request 0.100 ms" in text
    assert "at the floor 2.40 ms of CPU more per call, 1.24 times none's (+24 %" in text
    assert "The service spent 10.00 ms more (4.2 times the floor's)" in text


async def test_the_floor_is_measured_over_real_loopback_streams_and_requests() -> None:
    floor = await events_floor.measure(messages=40, requests=50, streams=4)
    assert 0 < floor.message_ms < 5 and 0 < floor.request_ms < 50


def test_the_section_shows_each_channel_and_both_modes() -> None:
    text = "\n".join(events.section(_result([_turn(0.2)], [_turn(0.1)])))
    assert "| SSE `/v1/events` | 3/3 | 5.0 | 5.0 | 5.0 | 5.0 |" in text
    assert "| webhook | 1/1 | 800.0 |" in text
    assert "| attached (100 streams, 10 endpoints) | 10 | 6.0 | 20.00 | 10.00 | 30.00 |" in text
    assert "| none | 10 | 6.0 | 10.00 | 5.00 | 15.00 |" in text
    assert "2.00 times (+100 %)" in text
    assert "spent 20.0 ms of CPU a second attached against 10.0 with none" in text


async def test_the_receiver_records_each_delivery_over_a_kept_connection() -> None:
    async with WebhookReceiver("0367") as receiver, httpx.AsyncClient() as client:
        for state in ("initiated", "connected"):
            body = {"type": f"call.{state}", "data": {"call_id": "c1", "state": state}}
            answer = await client.post(
                f"http://127.0.0.1:{receiver.port}/hooks", content=json.dumps(body)
            )
            assert answer.status_code == 204
        assert [(a.call_id, a.state) for a in receiver.arrivals] == [
            ("c1", "initiated"),
            ("c1", "connected"),
        ]
        assert receiver.ended() == set()
        await client.post(
            f"http://127.0.0.1:{receiver.port}/hooks",
            content=json.dumps({"data": {"call_id": "c1", "state": "completed"}}),
        )
        assert receiver.ended() == {"c1"}


async def test_heard_waits_for_every_client_of_the_enterprise_only() -> None:
    ours, theirs = events.Inbox("0367"), events.Inbox("0368")
    ours.arrivals.append(Arrival("s", "connected", 1.0))
    inboxes = {"sse": [ours, theirs], "ws": [], "webhook": []}
    await events.heard(inboxes, "0367", "s")  # the other enterprise's client is not waited for
    assert await events.all_ended([ours], {"0367": set()}) == 0
