"""The tracker follows real calls on a simulated PBX over SSH, to the database, in every ending."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import structlog.testing
from sqlalchemy import update

from callgate.calls.history import History, Transition, end_call, store_histories
from callgate.calls.tracker import NOT_WATCHED, STALE, CallTracker
from callgate.db import call_tracking
from callgate.db.call_tracking import move
from callgate.db.calls import CallRecord
from callgate.db.executor import Database
from callgate.db.models import CALLS
from callgate.domain.outcomes import SideOutcome
from callgate.domain.states import CallState, durations
from callgate.errors import DatabaseUnavailable
from callgate.simulator import Scenario
from tests.support.database import opened
from tests.support.stack import Stack
from tests.support.tracking import FAST, LONG, PHONE, Rig, Watched, make_rig, new_call, read, until

S = CallState
ANSWERED = ["initiated", "ringing_agent", "agent_answered", "ringing_customer", "connected"]
DAYS = timedelta(days=2)


@pytest.fixture
async def rig(pg_url: str) -> AsyncIterator[Rig]:
    """The rig on PostgreSQL (the compare-and-set matters most there)."""
    async with make_rig(pg_url) as made:
        yield made


@pytest.fixture
async def any_rig(db_url: str) -> AsyncIterator[Rig]:
    """The rig on SQLite, then on PostgreSQL."""
    async with make_rig(db_url) as made:
        yield made


@pytest.fixture(autouse=True)
def fast_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service of the `stack` fixture reads these: a 0.1 s tick, calls lost after 2 s."""
    monkeypatch.setenv("CALLGATE_TRACK_INTERVAL", "0.1")
    monkeypatch.setenv("CALLGATE_TRACK_LOST_AFTER", "2")


def sides(record: CallRecord) -> dict[str, tuple[str | None, float | None, str | None]]:
    """The stored sides: (outcome, ring seconds, reason) per side, all None when not reached."""
    return {
        "agent": (record.agent_outcome, record.agent_ring_s, record.agent_reason),
        "customer": (record.customer_outcome, record.customer_ring_s, record.customer_reason),
    }


def followed(tracker: CallTracker, call_id: str) -> Any:
    """The tracker's own record of a call it follows (``_Call``): where the words Asterisk
    said of a side are set, as the console listener sets them."""
    return next(host.calls[call_id] for host in tracker._hosts.values() if call_id in host.calls)


def phases(record: CallRecord) -> dict[str, float]:
    """The phases the call went through, in seconds (those it never reached are left out)."""
    spans = durations(
        record.created_at, record.agent_answered_at, record.customer_answered_at, record.ended_at
    )
    return {name: value for name, value in asdict(spans).items() if value is not None}


async def test_answered_call_is_followed_to_its_end(any_rig: Rig) -> None:
    """Answered: every state in order, stored and published, with ringing 0.3 s and talk ~1 s."""
    any_rig.engine.set_scenario("150", FAST)
    tracker = await any_rig.tracker()
    subscription = tracker.subscribe()
    call_id = await any_rig.place(tracker)
    await any_rig.reaches(call_id, "completed")
    record, events = await read(any_rig.database, call_id)
    assert [event.state for event in events] == [*ANSWERED, "completed"]
    assert [event.at for event in events] == sorted(event.at for event in events)
    spans = phases(record)
    assert 0.2 <= spans["agent_ringing"] <= 0.8
    assert 0.2 <= spans["customer_ringing"] <= 0.8
    assert 1.0 <= spans["talk"] <= 2.0  # 0.5 s in Answer(), then Wait(1), seen within 0.1 s
    assert (record.customer_channel or "").startswith(f"Local/{PHONE}@inoffice-")
    assert record.bridge_id
    assert record.end_reason == "hung up after the conversation"
    assert (record.agent_outcome, record.customer_outcome) == ("answered", "answered")
    assert record.agent_reason is None and record.customer_reason is None
    assert record.agent_ring_s is not None and 0.2 <= record.agent_ring_s <= 0.8
    assert record.customer_ring_s is not None and 0.2 <= record.customer_ring_s <= 0.8
    published = [await asyncio.wait_for(anext(subscription), 2) for _ in range(6)]
    assert [t.state for t in published] == [*ANSWERED, "completed"]
    assert all(t.sides is None for t in published[:-1])  # decided when the call ends
    ended = published[-1].sides
    assert ended is not None and ended.agent is not None and ended.customer is not None
    assert (ended.agent.outcome, ended.agent.ring_s) == ("answered", record.agent_ring_s)
    assert (ended.customer.outcome, ended.customer.ring_s) == ("answered", record.customer_ring_s)
    assert tracker.live_calls() == {}


@pytest.mark.sshd
@pytest.mark.postgres
async def test_answered_call_through_the_service_and_real_sshd(stack: Stack) -> None:
    """HTTP, the service, a real sshd and each transport: the whole answered sequence stored."""
    await stack.control.set_scenario("150", FAST)
    response = await stack.call()
    assert response.status_code == 200, response.text
    async with opened(stack.db_url) as database:

        async def completed() -> bool:
            return (await read(database, response.json()["call_id"]))[0].state == "completed"

        await until(completed)
        record, events = await read(database, response.json()["call_id"])
    assert [event.state for event in events] == [*ANSWERED, "completed"]
    assert 1.0 <= phases(record)["talk"] <= 2.0
    assert record.channel is not None and record.channel.startswith("Local/150@inoffice-")


@pytest.mark.postgres
async def test_agent_no_answer(rig: Rig) -> None:
    """The agent never answers: the originate's timeout (1 s here) ends it: agent_no_answer."""
    rig.engine.set_scenario("150", Scenario(agent_answer_after=None, originate_timeout=1.0))
    call_id = await rig.place(await rig.tracker())
    await rig.reaches(call_id, "agent_no_answer")
    record, events = await read(rig.database, call_id)
    assert [event.state for event in events] == ["initiated", "ringing_agent", "agent_no_answer"]
    assert record.agent_answered_at is None
    assert 0.9 <= phases(record)["total"] <= 2.5
    # 1 s is not Asterisk's 30 s originate timeout: the listing cannot say why it ended.
    outcome, ring_s, reason = sides(record)["agent"]
    assert (outcome, reason) == ("unknown", None)
    assert ring_s is not None and 0.9 <= ring_s <= 2.5
    assert sides(record)["customer"] == (None, None, None)  # never dialled


@pytest.mark.postgres
async def test_what_asterisk_said_of_a_side_is_stored(rig: Rig) -> None:
    """Words heard from Asterisk (set on the tracker's record of the call, as the console
    listener does) win over the listing: the agent said busy, the customer no answer in 5 s."""
    rig.engine.set_scenario("150", Scenario(agent_answer_after=None, originate_timeout=1.0))
    scenario = Scenario(agent_answer_after=0.3, customer_answer_after=None, customer_ring_timeout=1)
    rig.engine.set_scenario("151", scenario)
    tracker = await rig.tracker()
    busy, unanswered = await rig.place(tracker, "150"), await rig.place(tracker, "151")
    followed(tracker, busy).agent_said = SideOutcome.BUSY
    heard = followed(tracker, unanswered)  # "-- Nobody picked up in 5000 ms"
    heard.customer_said, heard.customer_ring_ms = SideOutcome.NO_ANSWER, 5000
    await rig.reaches(busy, "agent_no_answer")
    await rig.reaches(unanswered, "customer_no_answer")
    record = (await read(rig.database, busy))[0]
    assert sides(record)["agent"][0] == "busy" and sides(record)["customer"] == (None, None, None)
    record = (await read(rig.database, unanswered))[0]
    assert sides(record)["agent"][0] == "answered"
    assert sides(record)["customer"] == ("no_answer", 5.0, None)


@pytest.mark.postgres
async def test_customer_no_answer(rig: Rig) -> None:
    """The customer never answers: the Dial gives up after 1 s: customer_no_answer."""
    scenario = Scenario(agent_answer_after=0.3, customer_answer_after=None, customer_ring_timeout=1)
    rig.engine.set_scenario("150", scenario)
    call_id = await rig.place(await rig.tracker())
    await rig.reaches(call_id, "customer_no_answer")
    record, events = await read(rig.database, call_id)
    assert [event.state for event in events] == [*ANSWERED[:4], "customer_no_answer"]
    assert record.customer_answered_at is None and 0.8 <= phases(record)["customer_ringing"] <= 2
    assert record.agent_outcome == "answered"
    assert record.customer_outcome == "unknown"  # busy? no answer? a listing cannot tell
    assert record.customer_ring_s is not None and 0.8 <= record.customer_ring_s <= 2


@pytest.mark.postgres
async def test_hangup_mid_call(rig: Rig) -> None:
    """A hangup on the PBX mid-conversation: the channels vanish, the call is completed."""
    rig.engine.set_scenario("150", LONG)
    call_id = await rig.place(await rig.tracker())
    await rig.reaches(call_id, "connected")
    record, _ = await read(rig.database, call_id)
    assert record.channel is not None
    assert await rig.pbx.hangup(rig.target, record.channel) == [record.channel]
    await rig.reaches(call_id, "completed", within=3)
    assert phases((await read(rig.database, call_id))[0])["talk"] < 5


@pytest.mark.postgres
async def test_cancel_through_the_tracker(rig: Rig) -> None:
    """tracker.cancel() hangs the call up while the customer rings: canceled, with the reason."""
    rig.engine.set_scenario("150", Scenario(agent_answer_after=0.3, customer_answer_after=None))
    tracker = await rig.tracker()
    call_id = await rig.place(tracker)
    await rig.reaches(call_id, "ringing_customer")
    assert await tracker.cancel(call_id, "hung up through the API")
    await rig.reaches(call_id, "canceled", within=3)
    record = (await read(rig.database, call_id))[0]
    assert record.end_reason == "hung up through the API"
    assert (record.agent_outcome, record.customer_outcome) == ("answered", "canceled")
    assert record.agent_ring_s is not None and 0.2 <= record.agent_ring_s <= 0.8
    assert rig.engine.live_calls() == []
    assert not await tracker.cancel(call_id, "again")  # no longer followed


@pytest.mark.postgres
async def test_a_call_ended_by_another_process_keeps_that_end(rig: Rig) -> None:
    """Another process cancels the row, then the channels go: the tracker stops following the
    call, never overwrites `canceled`, and says in the log that the call ended elsewhere."""
    rig.engine.set_scenario("150", Scenario(agent_answer_after=0.2, customer_answer_after=None))
    tracker = await rig.tracker()
    call_id = await rig.place(tracker)
    await rig.reaches(call_id, "ringing_customer")
    expected = CallState(await rig.state(call_id))
    moved = await end_call(
        rig.database,
        call_id,
        S.CANCELED,
        expected=expected,
        at=datetime.now(UTC),
        reason="elsewhere",
    )
    assert moved.applied
    with structlog.testing.capture_logs() as logged:
        record, _ = await read(rig.database, call_id)
        assert record.channel is not None
        await rig.pbx.hangup(rig.target, record.channel)

        async def unfollowed() -> bool:
            return call_id not in tracker.live_calls()

        await until(unfollowed, 5)
    record, events = await read(rig.database, call_id)
    assert (record.state, record.end_reason) == ("canceled", "elsewhere")
    assert events[-1].state == "canceled"
    ended = [e for e in logged if e["event"] == "call ended elsewhere"]
    assert [(e["call_id"], e["state"]) for e in ended] == [(call_id, "canceled")]


@pytest.mark.postgres
async def test_unreachable_host_loses_its_calls(rig: Rig) -> None:
    """The host goes away: after lost_after (1 s) its call is lost, and polling stops."""
    rig.engine.set_scenario("150", LONG)
    tracker = await rig.tracker(lost_after=1.0)
    call_id = await rig.place(tracker)
    await rig.reaches(call_id, "connected")
    await rig.sim.close()
    gone = time.monotonic()
    await rig.reaches(call_id, "lost", within=10)
    assert time.monotonic() - gone >= 0.9
    reason = (await read(rig.database, call_id))[0].end_reason
    assert reason is not None and "127.0.0.1" in reason and "unreachable for" in reason
    assert tracker.live_calls() == {}
    sent = sum(tracker.queries.values())
    await asyncio.sleep(0.5)
    assert sum(tracker.queries.values()) == sent


@pytest.mark.postgres
async def test_restart_loses_vanished_calls_and_resumes_live_ones(rig: Rig) -> None:
    """A call that ended while no tracker ran is lost (with why); a live one resumes to its end."""
    rig.engine.set_scenario("150", FAST)
    rig.engine.set_scenario(
        "151", Scenario(agent_answer_after=0.3, customer_answer_after=0.3, talk=4)
    )
    first = await rig.tracker()
    gone, live = await rig.place(first, "150"), await rig.place(first, "151")
    await rig.reaches(gone, "connected")
    await rig.reaches(live, "connected")
    await first.stop()

    async def one_call_left() -> bool:
        return len(rig.engine.live_calls()) == 1

    await until(one_call_left)
    assert await rig.state(gone) == "connected"  # nobody saw it end
    second = await rig.tracker()
    await rig.reaches(gone, "lost", within=3)
    await rig.reaches(live, "completed", within=10)
    record, events = await read(rig.database, gone)
    assert record.end_reason == NOT_WATCHED
    assert [event.state for event in events] == [*ANSWERED, "lost"]
    # Both had answered (the row's times say so): that much is known of a lost call.
    assert (record.agent_outcome, record.customer_outcome) == ("answered", "answered")
    assert record.customer_ring_s is not None and 0.2 <= record.customer_ring_s <= 0.8
    assert [event.state for event in (await read(rig.database, live))[1]] == [
        *ANSWERED,
        "completed",
    ]
    assert second.queries  # the resumed call was polled by the new tracker


@pytest.mark.postgres
async def test_one_listing_per_interval_for_1_or_20_calls(rig: Rig) -> None:
    """1 and 20 live calls on one host cost the same listings per second; none once all end."""
    rig.engine.default_scenario = Scenario(agent_answer_after=None)  # each rings for 30 s
    tracker = await rig.tracker()

    async def rate(calls: int) -> float:
        while len(ids) < calls:
            ids.append(await rig.place(tracker, str(150 + len(ids))))
        for call_id in ids:
            await rig.reaches(call_id, "ringing_agent")
        before = rig.listings()
        await asyncio.sleep(2.0)
        return (rig.listings() - before) / 2.0

    ids: list[str] = []
    one, twenty = await rate(1), await rate(20)
    assert 5 <= one <= 1 / tracker.interval + 1
    assert abs(twenty - one) <= 1.5
    assert sum(tracker.queries.values()) <= rig.listings()
    rig.engine.execute("channel request hangup all")
    for call_id in ids:
        await rig.reaches(call_id, "agent_no_answer")
    before = rig.listings()
    await asyncio.sleep(0.5)
    assert rig.listings() == before  # a host without live calls is not polled


@pytest.mark.postgres
async def test_calls_to_one_phone_keep_their_own_customer_legs(rig: Rig) -> None:
    """Three live calls to one phone (150 twice, 151): each stores its own customer pair."""
    rig.engine.set_scenario("150", LONG)
    rig.engine.set_scenario("151", Scenario(agent_answer_after=0.6, customer_answer_after=0.3))
    tracker = await rig.tracker()
    ids = [await rig.place(tracker, ext) for ext in ("150", "151", "150")]
    for call_id in ids:
        await rig.reaches(call_id, "connected")
    truth = {  # the simulator's own account: first leg -> the customer pair it dialled
        call.agent_channel: {name.rsplit(";", 1)[0] for name in call.channels}
        - {call.agent_channel}
        for call in rig.engine.live_calls()
    }
    stored = {}
    for call_id in ids:
        record, _ = await read(rig.database, call_id)
        assert record.channel is not None and record.customer_channel is not None
        stored[record.channel.rsplit(";", 1)[0]] = {record.customer_channel.rsplit(";", 1)[0]}
    assert stored == truth and len(truth) == 3


@pytest.mark.postgres
async def test_database_outage_delays_the_history_but_loses_nothing(rig: Rig) -> None:
    """Writes fail for a while: tracking goes on, and every event is stored in order later."""

    flaky = Watched(rig.database)
    flaky.down = True
    tracker = CallTracker(rig.pbx, cast(Database, flaky), rig.settings, interval=0.1)
    rig.trackers.append(tracker)
    await tracker.start()  # the resume fails too, and is retried in the background
    rig.engine.set_scenario("150", LONG)
    call_id = await rig.place(tracker)

    async def connected() -> bool:
        return tracker.live_calls().get(call_id) is S.CONNECTED

    await until(connected)
    assert await rig.state(call_id) == "initiated"  # nothing could be stored yet
    flaky.down = False
    await rig.reaches(call_id, "connected")
    assert [event.state for event in (await read(rig.database, call_id))[1]] == ANSWERED


@pytest.mark.postgres
async def test_failure_is_stored_once_the_row_exists(rig: Rig) -> None:
    """record_failure() before the service's background insert lands: stored when it does."""
    tracker = await rig.tracker()
    call_id = str(uuid.uuid4())
    tracker.record_failure(call_id, "PBX did not create the call", maybe_created=False)
    await asyncio.sleep(0.3)
    await new_call(rig.database, call_id, host="127.0.0.1")
    await rig.reaches(call_id, "failed", within=3)
    record, events = await read(rig.database, call_id)
    assert record.end_reason == "PBX did not create the call" and record.ended_at is not None
    assert [event.state for event in events] == ["failed"]
    assert sides(record) == {
        "agent": ("failed", None, "PBX did not create the call"),
        "customer": (None, None, None),
    }


async def test_compare_and_set_lets_one_writer_move_a_call(any_rig: Rig) -> None:
    """Two writers that both saw ringing_agent: exactly one moves the call, one event each."""
    call_id = await new_call(any_rig.database, host="127.0.0.1")

    async def moved(state: CallState, expected: CallState) -> Any:
        return await move(any_rig.database, call_id, state, expected=expected, at=datetime.now(UTC))

    assert (await moved(S.RINGING_AGENT, S.INITIATED)).applied
    results = await asyncio.gather(
        moved(S.CONNECTED, S.RINGING_AGENT), moved(S.CANCELED, S.RINGING_AGENT)
    )
    assert sorted(result.applied for result in results) == [False, True]
    winner = next(result.current for result in results if result.applied)
    assert all(result.current is winner for result in results)
    stored, events = await read(any_rig.database, call_id)
    assert stored.state == winner and [e.state for e in events] == ["ringing_agent", winner]
    with pytest.raises(ValueError, match="cannot go from"):  # the use case's rule
        await end_call(
            any_rig.database, call_id, S.LOST, expected=S.COMPLETED, at=datetime.now(UTC), reason=""
        )


async def test_a_requested_hangup_holds_the_followers_end(any_rig: Rig) -> None:
    """A process that hangs up a call it does not follow says so first: the follower's own end
    of that call (it hears the channels go) waits, so the hanger's `canceled` stands; past
    `HANGUP_HOLD` (that process died) the follower's end is stored after all."""
    call_id = await new_call(any_rig.database, host="127.0.0.1")
    now = datetime.now(UTC)
    assert await move(any_rig.database, call_id, S.RINGING_AGENT, expected=S.INITIATED, at=now)
    await call_tracking.request_hangup(any_rig.database, call_id, now)

    async def ends(state: CallState, at: datetime) -> Any:
        return await move(any_rig.database, call_id, state, expected=S.RINGING_AGENT, at=at)

    held = await ends(S.AGENT_NO_ANSWER, now)
    assert (held.applied, held.current) == (False, S.RINGING_AGENT)
    long_ago = now - call_tracking.HANGUP_HOLD - timedelta(seconds=1)
    await call_tracking.request_hangup(any_rig.database, call_id, long_ago)
    assert (await ends(S.AGENT_NO_ANSWER, now)).applied  # the hanger never stored its end
    other = await new_call(any_rig.database, host="127.0.0.1")
    await call_tracking.request_hangup(any_rig.database, other, now)
    assert (await move(any_rig.database, other, S.CANCELED, expected=S.INITIATED, at=now)).applied


async def test_a_held_end_is_stored_once_the_hold_is_over(rig: Rig) -> None:
    """The tracker keeps a held end pending and stores it at a later try: a process that
    asked to hang up and died leaves no call live for ever."""
    rig.engine.set_scenario("150", Scenario(agent_answer_after=None))
    tracker = await rig.tracker()
    call_id = await rig.place(tracker)
    await rig.reaches(call_id, "ringing_agent")
    record, _ = await read(rig.database, call_id)
    assert record.channel is not None
    hold = call_tracking.HANGUP_HOLD.total_seconds()
    asked = datetime.now(UTC) - call_tracking.HANGUP_HOLD + timedelta(seconds=1.5)
    await call_tracking.request_hangup(rig.database, call_id, asked)
    await rig.pbx.hangup(rig.target, record.channel)  # ... and nothing stores `canceled`
    await asyncio.sleep(0.8)
    assert await rig.state(call_id) == "ringing_agent"  # held
    await rig.reaches(call_id, "agent_no_answer", within=hold)


async def test_start_ends_rows_older_than_any_call_in_bulk(any_rig: Rig) -> None:
    """Rows still live but days old (from before tracking existed): lost at start, not polled."""
    database = any_rig.database
    old = [await new_call(database, enterprise_number="1") for _ in range(3)]
    long_ago = datetime.now(UTC) - DAYS
    await database.rowcount(update(CALLS).values(created_at=long_ago))
    # The second call's agent had answered, the third call's customer too.
    answered = {"agent_answered_at": long_ago + timedelta(seconds=2)}
    await database.rowcount(update(CALLS).where(CALLS.c.id != old[0]).values(answered))
    connected = {"customer_answered_at": long_ago + timedelta(seconds=5)}
    await database.rowcount(update(CALLS).where(CALLS.c.id == old[2]).values(connected))
    tracker = await any_rig.tracker()
    ended = []
    for call_id in old:
        record, events = await read(any_rig.database, call_id)
        assert (record.state, record.end_reason) == ("lost", STALE)
        assert [event.state for event in events] == ["lost"]
        assert record.agent_ring_s is None and record.customer_ring_s is None
        ended.append((record.agent_outcome, record.customer_outcome))
    assert ended == [("unknown", None), ("answered", "unknown"), ("answered", "answered")]
    assert tracker.live_calls() == {} and not tracker.queries


async def new_calls(database: Database, count: int) -> list[str]:
    return [await new_call(database) for _ in range(count)]


def pending(history: History, call_id: str, *states: CallState) -> History:
    for state in states:
        history.pending.append(Transition(call_id, state, datetime.now(UTC), state.value))
    return history


async def test_one_transaction_stores_a_ticks_transitions(any_rig: Rig) -> None:
    """A tick's transitions of several calls: one transaction, each one compare-and-set.

    Another writer's move stands (a cancel ends the call for good; a later state drops the
    steps no longer possible); a call whose row is not there yet stays pending alone.
    """
    ids = await new_calls(any_rig.database, 3)
    absent = str(uuid.uuid4())  # the service's insert has not landed yet
    now = datetime.now(UTC)
    await move(any_rig.database, ids[1], S.CANCELED, expected=S.INITIATED, at=now, reason="x")
    await move(any_rig.database, ids[2], S.AGENT_ANSWERED, expected=S.INITIATED, at=now)
    histories = [
        pending(History(), ids[0], S.INITIATED, S.RINGING_AGENT, S.AGENT_ANSWERED),
        pending(History(), ids[1], S.INITIATED, S.RINGING_AGENT),
        pending(History(), ids[2], S.RINGING_AGENT, S.CONNECTED),
        pending(History(), absent, S.RINGING_AGENT),
    ]
    watched = Watched(any_rig.database)
    published: list[Transition] = []
    done = await store_histories(cast(Database, watched), histories, published.append)
    assert done == [True, True, True, False]
    assert watched.transactions == 1
    assert [(t.call_id, t.state) for t in published] == [
        (ids[0], S.INITIATED),
        (ids[0], S.RINGING_AGENT),
        (ids[0], S.AGENT_ANSWERED),
        (ids[2], S.CONNECTED),
    ]
    assert [h.persisted for h in histories] == [
        S.AGENT_ANSWERED,
        S.CANCELED,
        S.CONNECTED,
        S.INITIATED,
    ]
    assert [len(h.pending) for h in histories] == [0, 0, 0, 1]
    states = {}
    for call_id in ids:
        record, events = await read(any_rig.database, call_id)
        states[call_id] = (record.state, [e.state for e in events])
    assert states == {
        ids[0]: ("agent_answered", ["initiated", "ringing_agent", "agent_answered"]),
        ids[1]: ("canceled", ["canceled"]),
        ids[2]: ("connected", ["agent_answered", "connected"]),
    }


async def test_a_single_transition_needs_no_transaction(any_rig: Rig) -> None:
    """One transition is one statement, atomic by itself: stored without BEGIN and COMMIT."""
    call_id = await new_call(any_rig.database)
    watched = Watched(any_rig.database)
    published: list[Transition] = []
    histories = [pending(History(), call_id, S.INITIATED)]
    assert await store_histories(cast(Database, watched), histories, published.append) == [True]
    assert watched.transactions == 0
    assert [t.state for t in published] == [S.INITIATED]
    assert [e.state for e in (await read(any_rig.database, call_id))[1]] == ["initiated"]


@pytest.mark.postgres
async def test_a_tick_racing_a_cancel_lets_one_writer_move_each_call(rig: Rig) -> None:
    """The API cancels calls while a tick stores their next step: one of the two wins, alone."""
    ids = await new_calls(rig.database, 12)
    histories = [pending(History(), call_id, S.INITIATED) for call_id in ids]
    assert all(await store_histories(rig.database, histories, lambda t: None))
    for history, call_id in zip(histories, ids, strict=True):
        pending(history, call_id, S.RINGING_AGENT, S.AGENT_ANSWERED)

    async def cancel(call_id: str) -> bool:
        result = await end_call(
            rig.database,
            call_id,
            S.CANCELED,
            expected=S.INITIATED,
            at=datetime.now(UTC),
            reason="API",
        )
        return result.applied

    published: list[Transition] = []
    done, canceled = await asyncio.gather(
        store_histories(rig.database, histories, published.append),
        asyncio.gather(*(cancel(call_id) for call_id in ids)),
    )
    assert all(done)
    for history, call_id, was_canceled in zip(histories, ids, canceled, strict=True):
        record, events = await read(rig.database, call_id)
        moves = [t.state for t in published if t.call_id == call_id]
        if was_canceled:
            assert record.state == "canceled" and history.persisted is S.CANCELED
            assert [e.state for e in events] == ["initiated", "canceled"] and moves == []
        else:
            assert record.state == "agent_answered" and history.persisted is S.AGENT_ANSWERED
            assert [e.state for e in events] == ["initiated", "ringing_agent", "agent_answered"]
            assert moves == [S.RINGING_AGENT, S.AGENT_ANSWERED]
        assert not history.pending


@pytest.mark.postgres
async def test_a_fault_mid_tick_stores_nothing_and_loses_nothing(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails in the middle of a tick: the tick's transaction stores nothing and
    publishes nothing, every transition stays pending, and the next try stores them in order."""
    ids = await new_calls(rig.database, 3)
    histories = [
        pending(History(), call_id, S.INITIATED, S.RINGING_AGENT, S.AGENT_ANSWERED)
        for call_id in ids
    ]
    stored_move = call_tracking.move
    calls = 0

    async def failing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 5:  # the second call's second step
            raise OSError("database down")
        return await stored_move(*args, **kwargs)

    monkeypatch.setattr(call_tracking, "move", failing)
    published: list[Transition] = []
    with pytest.raises(DatabaseUnavailable):
        await store_histories(rig.database, histories, published.append)
    assert published == []
    assert [len(h.pending) for h in histories] == [3, 3, 3]
    assert all(h.persisted is S.INITIATED for h in histories)
    for call_id in ids:
        assert (await read(rig.database, call_id))[1] == []  # rolled back
    again = await store_histories(rig.database, histories, published.append)
    assert again == [True] * 3
    assert [(t.call_id, t.state) for t in published] == [
        (call_id, state) for call_id in ids for state in ANSWERED[:3]
    ]
    for call_id in ids:
        stored, events = await read(rig.database, call_id)
        assert stored.state == "agent_answered"
        assert [e.state for e in events] == ANSWERED[:3]
    assert not any(h.pending for h in histories)


@pytest.mark.postgres
async def test_a_tick_of_many_calls_is_one_transaction(rig: Rig) -> None:
    """Five calls on one host: their transitions are stored per tick, not per call and tick."""
    watched = Watched(rig.database)
    tracker = CallTracker(rig.pbx, cast(Database, watched), rig.settings, interval=0.1)
    rig.trackers.append(tracker)
    await tracker.start()
    rig.engine.set_scenario("150", FAST)
    started = watched.transactions  # the resume's
    ids = list(await asyncio.gather(*(rig.place(tracker) for _ in range(5))))
    for call_id in ids:
        await rig.reaches(call_id, "completed")
        record, events = await read(rig.database, call_id)
        assert [e.state for e in events] == [*ANSWERED, "completed"]
        assert (record.agent_outcome, record.customer_outcome) == ("answered", "answered")
    assert watched.transactions - started <= sum(tracker.queries.values())


async def _tracked_late(rig: Rig, scenario: Scenario, late: float) -> str:
    """A call originated on a host with a listening console and tracked ``late`` seconds
    later, its lines heard meanwhile (a slow originate check, or a call adopted from another
    instance); no listing between its moves. Its id."""
    rig.engine.set_scenario("150", scenario)
    tracker = await rig.tracker(interval=5.0)
    tracker.listen_to(rig.target)

    async def listening() -> bool:
        ears = cast(dict[str, dict[str, Any]], tracker.status()["listening"])
        return any(ear["state"] == "open" for ear in ears.values())

    await until(listening)
    call_id = await new_call(rig.database, host="127.0.0.1")
    sent = asyncio.get_running_loop().time()
    originated = await rig.pbx.originate(rig.target, "150", PHONE)
    await asyncio.sleep(late)
    since = asyncio.get_running_loop().time() - sent
    tracker.track(call_id, rig.target, originated.channel, PHONE, since=since)
    await asyncio.sleep(0)  # taken in hand at the loop's next turn
    return call_id


@pytest.mark.postgres
async def test_lines_heard_before_the_call_is_tracked_keep_their_time(pg_url: str) -> None:
    """A slow originate check (a loaded machine): the agent answered, heard on the listening
    console, before the call was tracked. The move is dated when it was heard and the call
    from when the originate was sent: each side's ring time is the PBX's, not the wait's."""
    async with make_rig(pg_url, kind="console") as rig:
        scenario = Scenario(agent_answer_after=0.15, customer_answer_after=0.6, talk=0.3)
        call_id = await _tracked_late(rig, scenario, 0.45)  # the agent answers meanwhile
        await rig.reaches(call_id, "completed")
        record, events = await read(rig.database, call_id)
        assert [event.state for event in events] == [*ANSWERED, "completed"]
        times = [event.at for event in events]
        assert times == sorted(times)  # the moves heard early come after the call's start
        agent, customer = sides(record).values()
        assert agent[0] == customer[0] == "answered"
        assert agent[1] is not None and 0.1 <= agent[1] <= 0.4, agent
        assert customer[1] is not None and 0.5 <= customer[1] <= 0.9, customer


@pytest.mark.postgres
async def test_a_customers_lines_heard_before_the_call_is_tracked_are_applied_too(
    pg_url: str,
) -> None:
    """A call taken in hand late: its agent answered and its customer's phone rang and was
    busy, all heard on the listening console before the call was tracked. The customer's
    pair names the call only through its phone and its agent's leg, so its lines are kept
    apart and applied once the call is known: the customer's side says busy, as heard, and
    its ringing is in the history."""
    async with make_rig(pg_url, kind="console") as rig:
        scenario = Scenario(
            agent_answer_after=0.1, customer_answer_after=0.1, customer_outcome="busy"
        )
        call_id = await _tracked_late(rig, scenario, 0.6)  # both sides rang and ended
        await rig.reaches(call_id, "customer_no_answer")
        record, events = await read(rig.database, call_id)
        assert [event.state for event in events] == [*ANSWERED[:4], "customer_no_answer"]
        agent, customer = sides(record).values()
        assert agent[0] == "answered" and customer[0] == "busy", (agent, customer)
        assert record.customer_channel is not None
        assert record.customer_channel.startswith(f"Local/{PHONE}@"), record.customer_channel
