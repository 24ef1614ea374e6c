"""Event ids and resumable /v1/events through real HTTP, real calls on the simulated PBX, on
SQLite and PostgreSQL: `id:` is the event's `call_events.id`; `Last-Event-ID` replays exactly
the events missed, then goes on live without a gap or a repeat; an expired, unknown or garbled
id gets `event: reset` with the log's last id and a snapshot of the live calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callgate.api.v1 import events as events_module
from callgate.domain.states import TERMINAL
from callgate.simulator.timeline import Scenario
from tests.support.event_streams import QUICK, other_enterprise, place, settled, sse, stored
from tests.support.sshd import SshdServer
from tests.support.stack import Stack, call_stack

pytestmark = [pytest.mark.sshd]
ENDED = {f"call.{state.value}" for state in TERMINAL}


@pytest.fixture
async def api(db_url: str, sshd: SshdServer, tmp_path: Path) -> AsyncIterator[Stack]:
    async with call_stack(db_url, sshd, tmp_path, track_interval=0.1) as stack:
        yield stack


async def test_ids_are_event_ids_and_a_resume_gets_exactly_the_missed_events(api: Stack) -> None:
    for extension in ("151", "152", "153"):
        await api.control.set_scenario(extension, QUICK)
    theirs = await other_enterprise(api)
    await api.control.set_scenario("159", QUICK)

    async with sse(api) as first:
        seen = await place(api, "151", end=False)
        await first.until(lambda events: any(e.event in ENDED for e in events))
    log = await settled(api, seen)
    assert [int(e.id or 0) for e in first.of(seen)] == [e.event_id for e in log]
    assert [e.event for e in first.of(seen)] == [f"call.{e.state}" for e in log]
    last = first.events[-1].id
    assert last is not None

    # Missed while away: one of ours, one of the other enterprise's.
    missed = await place(api, "152")
    hidden = await place(api, "159", theirs, end=False)
    await settled(api, missed)
    await settled(api, hidden, "0999")

    async with sse(api, last_event_id=last) as resumed:
        await resumed.until(lambda events: any(e.event in ENDED for e in events))
        live = await place(api, "153", end=False)
        await resumed.until(
            lambda events: any(e.event in ENDED and e.data["call_id"] == live for e in events)
        )
        await asyncio.sleep(0.3)  # a repeat would come now
    expected = [e for e in await stored(api) if e.event_id > int(last)]
    got = resumed.events
    assert [int(e.id or 0) for e in got] == [e.event_id for e in expected]  # no gap, no repeat
    assert {e.data["call_id"] for e in got} == {missed, live}
    assert all(e.data["call_id"] != hidden for e in got)
    ended = next(e for e in got if e.data["call_id"] == missed and e.event in ENDED)
    call = await api.ended(missed)
    assert ended.data["sides"] == call["sides"]  # a replayed end says what a live one says
    assert set(ended.data) == {"call_id", "state", "at", "reason", "sides"}


async def test_resume_from_the_last_id_while_nothing_happened_replays_nothing(api: Stack) -> None:
    await api.control.set_scenario("151", QUICK)
    call_id = await place(api, "151")
    last = (await settled(api, call_id))[-1].event_id
    async with sse(api, last_event_id=str(last)) as resumed:
        await asyncio.sleep(0.5)
    assert resumed.events == []


@pytest.mark.parametrize("last_event_id", ["garbage", "-3", "99999999"])
async def test_an_unknown_id_gets_a_reset_and_a_snapshot(api: Stack, last_event_id: str) -> None:
    await api.control.set_scenario("171", Scenario(agent_answer_after=None))
    ringing = await place(api, "171", end=False)
    for _ in range(100):
        if any(e.state == "ringing_agent" for e in await stored(api) if e.call_id == ringing):
            break
        await asyncio.sleep(0.05)
    async with sse(api, last_event_id=last_event_id) as resumed:
        await resumed.until(lambda events: bool(events))
    reset = resumed.events[0]
    assert reset.event == "reset"
    head = max(e.event_id for e in await stored(api))
    assert (reset.id, reset.data["last_event_id"]) == (str(head), head)
    assert reset.data["reason"] == "unknown"
    assert [(c["call_id"], c["state"]) for c in reset.data["calls"]] == [(ringing, "ringing_agent")]
    assert set(reset.data["calls"][0]) == {"call_id", "state", "at", "reason", "sides"}


async def test_an_expired_id_gets_a_reset_then_the_live_events(
    db_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    """Resumable for CALLGATE_EVENTS_RETENTION: past it, a reset and the live calls, then the
    events after the reset's id. The old events stay in the call's history."""
    async with call_stack(
        db_url, sshd, tmp_path, track_interval=0.1, events_retention=1.0
    ) as stack:
        await stack.control.set_scenario("151", QUICK)
        old = await place(stack, "151")
        before = (await settled(stack, old))[0].event_id - 1
        await stack.control.set_scenario(
            "171", Scenario(agent_answer_after=1.5, customer_answer_after=0.2, talk=0.3)
        )
        await asyncio.sleep(1.2)  # the old call's events are past the retention now
        live = await place(stack, "171", end=False)
        async with sse(stack, last_event_id=str(before)) as resumed:
            await resumed.until(
                lambda events: any(e.event in ENDED and e.data["call_id"] == live for e in events)
            )
        reset, *after = resumed.events
        assert (reset.event, reset.data["reason"]) == ("reset", "expired")
        assert old not in {c["call_id"] for c in reset.data["calls"]}
        assert all(e.data["call_id"] == live for e in after)
        assert all(int(e.id or 0) > reset.data["last_event_id"] for e in after)
        expected = [e.event_id for e in await stored(stack) if e.event_id > int(reset.id or 0)]
        assert [int(e.id or 0) for e in after] == expected
        history = (await stack.service.client.get(f"/v1/calls/{old}", headers=stack.auth())).json()
        assert history["state"] == "completed"  # nothing deleted: resume bounded, not history


async def test_a_stream_that_falls_behind_ends_and_resumes_without_a_loss(
    db_url: str, sshd: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSE with a queue of 1 (the service runs in this process): a tick that publishes several
    calls' moves at once (`asterisk -rx` polling) overflows it; the stream ends instead of
    skipping events, and `Last-Event-ID` brings the rest."""
    monkeypatch.setattr(events_module, "QUEUE", 1)
    async with call_stack(
        db_url, sshd, tmp_path, host={"transport": "rx"}, track_interval=0.5
    ) as stack:
        extensions = [str(code) for code in range(151, 156)]
        for extension in extensions:
            await stack.control.set_scenario(extension, QUICK)
        async with sse(stack) as first:
            calls = await asyncio.gather(*(place(stack, e, end=False) for e in extensions))
            await asyncio.wait_for(first.ended.wait(), 15)
        for call_id in calls:
            await settled(stack, call_id)
        got = [int(e.id or 0) for e in first.events]
        log = [e.event_id for e in await stored(stack)]
        assert len(got) < len(log)
        async with sse(stack, last_event_id=str(got[-1] if got else 0)) as resumed:
            await resumed.until(lambda events: len(got) + len(events) >= len(log))
        assert got + [int(e.id or 0) for e in resumed.events] == log
