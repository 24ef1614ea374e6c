"""Two service instances on one PostgreSQL, through real HTTP: a subscriber on one instance
gets every transition of a call placed on and followed by the other, in order, with the event
log's ids, exactly once; a listening connection killed on the server (`pg_terminate_backend`)
comes back and catches up, with no gap and no repeat. The double-click guard and the live-call
caps hold across the two (`test_instances_limits.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from callgate.db.notifications import APPLICATION_NAME
from callgate.domain.states import TERMINAL
from tests.support.event_streams import QUICK, place, settled, sse, stored
from tests.support.service import free_port, running_service
from tests.support.sshd import SshdServer
from tests.support.stack import Stack, call_stack

pytestmark = [pytest.mark.sshd, pytest.mark.postgres]
ENDED = {f"call.{state.value}" for state in TERMINAL}


@contextlib.asynccontextmanager
async def second_instance(stack: Stack, tmp_path: Path) -> AsyncIterator[Stack]:
    """Another instance of the service on the stack's database and PBX host."""
    settings = stack.service.settings.model_copy(
        update={"port": free_port(), "log_file": tmp_path / "second.log"}
    )
    async with running_service(settings) as service:
        yield dataclasses.replace(stack, service=service)


@pytest.fixture
async def two(pg_url: str, sshd: SshdServer, tmp_path: Path) -> AsyncIterator[tuple[Stack, Stack]]:
    async with (
        call_stack(pg_url, sshd, tmp_path, track_interval=0.1) as first,
        second_instance(first, tmp_path) as second,
    ):
        await listening(pg_url, 2)
        yield first, second


async def listening(url: str, count: int, *, other_than: set[int] | None = None) -> set[int]:
    """The pids of the instances' listening connections, once there are ``count`` (none of
    ``other_than``)."""
    connection = await asyncpg.connect(url)
    try:
        for _ in range(200):
            pids = {
                row["pid"]
                for row in await connection.fetch(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE application_name = $1 AND datname = current_database()",
                    APPLICATION_NAME,
                )
            }
            if len(pids) == count and not pids & (other_than or set()):
                return pids
            await asyncio.sleep(0.05)
    finally:
        await connection.close()
    raise AssertionError(f"not {count} listening connections")


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
