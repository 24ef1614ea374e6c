"""Two service instances on one PostgreSQL, through real HTTP: a subscriber on one instance
gets every transition of a call placed on and followed by the other, in order, with the event
log's ids, exactly once; a listening connection killed on the server (`pg_terminate_backend`)
comes back and catches up, with no gap and no repeat. The double-click guard and the live-call
caps hold across the two (`test_instances_limits.py`)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import cast

import asyncpg
import pytest
from sqlalchemy.sql.expression import Executable

from callgate.calls import shared_events as shared_events_module
from callgate.calls.history import Transition
from callgate.calls.shared_events import Listening, SharedEvents
from callgate.db import notifications as notifications_module
from callgate.db.executor import Database, Executor, Row, Values
from callgate.db.notifications import (
    APPLICATION_NAME,
    CHANNEL,
    EventNotifications,
    channel_of,
    parse,
)
from callgate.domain.states import TERMINAL
from tests.support.database import opened
from tests.support.event_streams import QUICK, place, settled, sse, stored
from tests.support.instances import listening, second_instance
from tests.support.sshd import SshdServer
from tests.support.stack import Stack, call_stack

pytestmark = [pytest.mark.sshd, pytest.mark.postgres]
ENDED = {f"call.{state.value}" for state in TERMINAL}


@pytest.fixture
async def two(pg_url: str, sshd: SshdServer, tmp_path: Path) -> AsyncIterator[tuple[Stack, Stack]]:
    async with (
        call_stack(pg_url, sshd, tmp_path, track_interval=0.1) as first,
        second_instance(first, tmp_path) as second,
    ):
        await listening(pg_url, 2)
        yield first, second


async def test_a_subscriber_on_another_instance_gets_every_transition(
    two: tuple[Stack, Stack],
) -> None:
    first, second = two
    await first.control.set_scenario("151", QUICK)
    async with sse(second) as theirs, sse(first) as ours:
        call_id = await place(first, "151", end=False)
        for stream in (theirs, ours):
            await stream.until(lambda events: any(e.event in ENDED for e in events))
        await asyncio.sleep(0.3)  # a repeat would come now
    log = await settled(first, call_id)
    assert len(log) >= 3
    for stream in (theirs, ours):  # the same events on both instances, once each, in order
        assert [int(e.id or 0) for e in stream.events] == [e.event_id for e in log]
        assert [e.event for e in stream.events] == [f"call.{e.state}" for e in log]
    assert theirs.events[-1].data == ours.events[-1].data  # sides and all


async def test_a_killed_listening_connection_catches_up_without_a_gap(
    two: tuple[Stack, Stack], pg_url: str
) -> None:
    first, second = two
    for extension in ("151", "152", "153"):
        await first.control.set_scenario(extension, QUICK)
    killed: set[int] = set()
    stop = asyncio.Event()

    async def kill_listeners() -> None:
        """Both instances' listening connections terminated again and again."""
        connection = await asyncpg.connect(pg_url)
        try:
            while not stop.is_set():
                rows = await connection.fetch(
                    "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = $1 AND datname = current_database()",
                    APPLICATION_NAME,
                )
                killed.update(row["pid"] for row in rows)
                await asyncio.sleep(0.15)
        finally:
            await connection.close()

    async with sse(second) as theirs:
        killing = asyncio.create_task(kill_listeners())
        calls = [await place(first, extension, end=False) for extension in ("151", "152", "153")]
        for call_id in calls:
            await settled(first, call_id)
        stop.set()
        await killing
        await listening(pg_url, 2, other_than=killed)  # reconnected
        await theirs.until(
            lambda events: {e.data["call_id"] for e in events if e.event in ENDED} == set(calls)
        )
        await asyncio.sleep(0.3)  # a repeat would come now
    assert len(killed) >= 4  # each instance's connection was killed at least twice
    expected = [e for e in await stored(first) if e.call_id in calls]
    assert sorted(int(e.id or 0) for e in theirs.events) == [e.event_id for e in expected]
    for call_id in calls:  # each call's events in order
        assert [e.event for e in theirs.of(call_id)] == [
            f"call.{e.state}" for e in expected if e.call_id == call_id
        ]


class CountingReads:
    """The database as `SharedEvents` uses it, counting the reads of the event log."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.reads = 0
        self.afters: list[int] = []  # where each read started

    async def rows(self, statement: Executable, values: Values | None = None) -> Sequence[Row]:
        self.reads += 1
        self.afters.append(int((values or {})["p_after"]))
        return await self.database.rows(statement, values)

    async def row(self, statement: Executable, values: Values | None = None) -> Row | None:
        return await self.database.row(statement, values)


async def test_an_instance_reads_only_the_events_its_own_subscribers_take(
    pg_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    """Each notification names its event and enterprise (migration 0011) and comes on its
    enterprise's channel too (0012): a reader whose subscribers take another enterprise's
    events LISTENs elsewhere and reads nothing; one whose take these reads and hands on each
    of them once."""
    payloads: list[str] = []
    async with (
        call_stack(pg_url, sshd, tmp_path, track_interval=0.1) as stack,
        opened(pg_url) as database,
    ):
        listener = await asyncpg.connect(pg_url)
        await listener.add_listener(CHANNEL, lambda *args: payloads.append(args[3]))
        on_ours: list[str] = []  # the enterprise's own channel (migration 0012)
        await listener.add_listener(channel_of("0367"), lambda *args: on_ours.append(args[3]))
        readers: dict[str, tuple[CountingReads, list[Transition]]] = {}
        running = []
        for number in ("0367", "9999"):
            counting, got = CountingReads(database), list[Transition]()
            wanted: Callable[[], set[str]] = functools.partial(set, {number})
            events = SharedEvents(cast(Executor, counting), got.append, wanted)
            notifications = EventNotifications(pg_url, events.heard, events.connected, wanted)
            events.start()
            notifications.start()
            running.append(Listening(events, notifications))
            readers[number] = (counting, got)
        try:
            for listening_ in running:
                await asyncio.wait_for(listening_.notifications.listening.wait(), 10)
            await stack.control.set_scenario("151", QUICK)
            call_id = await place(stack, "151")
            log = await settled(stack, call_id)
            for _ in range(100):
                if len(readers["0367"][1]) >= len(log):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # a repeat, or a read by the other reader, would come now
        finally:
            channels = [r.notifications.channels for r in running]
            for listening_ in running:
                await listening_.aclose()
            await listener.close()
    assert [parse(p) for p in payloads] == [(e.event_id, "0367") for e in log]
    assert on_ours == payloads
    assert channels == [
        {channel_of("0367")},
        {channel_of("9999")},
    ]
    ours, theirs = readers["0367"], readers["9999"]
    assert [t.event_id for t in ours[1]] == [e.event_id for e in log]
    assert ours[0].reads >= 1
    assert theirs == (theirs[0], []) and theirs[0].reads == 0


async def test_a_process_listens_on_the_channels_of_the_enterprises_it_takes(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`want` LISTENs on one more enterprise's channel before it returns; the channels no
    longer wanted are let go at the next check, after those wanted are taken (every
    event's channel when the process takes every enterprise's); a reconnect LISTENs on what
    is wanted then. Another enterprise's notifications never reach the process."""
    monkeypatch.setattr(notifications_module, "CHECK_EVERY", 0.05)
    wanted: set[str] | None = set()
    heard: list[tuple[int, str | None]] = []

    async def nothing() -> None:
        return None

    notifications = EventNotifications(pg_url, heard.extend, nothing, lambda: wanted)
    sender = await asyncpg.connect(pg_url)

    async def until(check: Callable[[], bool]) -> None:
        for _ in range(200):
            if check():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("not within 2 s")

    notifications.start()
    try:
        await asyncio.wait_for(notifications.listening.wait(), 10)
        assert notifications.channels == set()
        wanted = {"0367"}
        await notifications.want("0367")
        assert notifications.channels == {channel_of("0367")}  # before it returned
        for event_id, number in ((1, "0367"), (2, "9999")):
            await sender.execute(f"SELECT pg_notify('{channel_of(number)}', '{event_id} {number}')")
        await until(lambda: heard == [(1, "0367")])
        wanted = None  # a reader of every enterprise's events
        await until(lambda: notifications.channels == {CHANNEL})
        wanted = {"9999"}
        await until(lambda: notifications.channels == {channel_of("9999")})
        await sender.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1"
            " AND datname = current_database()",
            APPLICATION_NAME,
        )
        await until(lambda: notifications.connects == 2 and notifications.listening.is_set())
        assert notifications.channels == {channel_of("9999")}
        await sender.execute(f"SELECT pg_notify('{channel_of('9999')}', '3 9999')")
        await until(lambda: heard == [(1, "0367"), (3, "9999")])
    finally:
        await notifications.aclose()
        await sender.close()


async def test_a_catch_up_starts_where_the_log_stood_at_the_last_check(
    pg_url: str, sshd: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader whose enterprise is quiet hears nothing while others' events are stored; at
    each check of its listening connection it notes where the log stands, so that the
    catch-up after a reconnect reads from there, not from the last event it heard (which
    would walk every other enterprise's events since)."""
    monkeypatch.setattr(shared_events_module, "OVERLAP", 0)
    monkeypatch.setattr(notifications_module, "CHECK_EVERY", 0.05)
    async with (
        call_stack(pg_url, sshd, tmp_path, track_interval=0.1) as stack,
        opened(pg_url) as database,
    ):
        counting, got = CountingReads(database), list[Transition]()
        events = SharedEvents(cast(Executor, counting), got.append, lambda: {"9999"})
        notifications = EventNotifications(
            pg_url, events.heard, events.connected, lambda: {"9999"}, events.checked
        )
        quiet = Listening(events, notifications)
        quiet.start()
        try:
            await asyncio.wait_for(notifications.listening.wait(), 10)
            await stack.control.set_scenario("151", QUICK)
            log = await settled(stack, await place(stack, "151"))  # 0367's, not 9999's
            await asyncio.sleep(0.3)  # a check or more
            await events.connected()  # as after a reconnect: the catch-up
            for _ in range(100):
                if counting.reads:
                    break
                await asyncio.sleep(0.02)
        finally:
            await quiet.aclose()
    assert got == []
    assert counting.afters and counting.afters[0] >= log[-1].event_id
