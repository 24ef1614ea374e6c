"""Background tasks' start and end (`callgate.tasks`), written once for every poller."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from callgate.tasks import Background, cancel_and_wait


async def test_cancel_and_wait_ends_running_tasks_and_skips_none() -> None:
    ended: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(name)

    first, second = asyncio.create_task(forever("a")), asyncio.create_task(forever("b"))
    await asyncio.sleep(0)
    await cancel_and_wait(first, None, second)
    assert sorted(ended) == ["a", "b"]  # each one's cleanup ran before the wait returned
    assert first.cancelled() and second.cancelled()


async def test_a_task_that_had_failed_is_logged_not_raised() -> None:
    async def broken() -> None:
        raise ValueError("a bug")

    task = asyncio.create_task(broken(), name="the broken one")
    await asyncio.sleep(0)
    with structlog.testing.capture_logs() as logged:
        await cancel_and_wait(task)
    assert [(e["event"], e["task"], e["error"]) for e in logged] == [
        ("background task had failed", "the broken one", "ValueError('a bug')")
    ]


async def test_the_callers_own_cancel_is_not_swallowed() -> None:
    async def slow_to_end() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.2)  # its cleanup takes a while

    task = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    closing = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0.01)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing


async def test_background_starts_once_and_anew_after_it_ended() -> None:
    runs = 0
    stop = asyncio.Event()

    async def run() -> None:
        nonlocal runs
        runs += 1
        await stop.wait()

    background = Background(run, "the run")
    background.start()
    background.start()  # still running: no second task
    await asyncio.sleep(0)
    assert runs == 1 and background.running
    stop.set()
    await asyncio.sleep(0)
    assert not background.running
    stop.clear()
    background.start()  # it ended: started anew
    await asyncio.sleep(0)
    assert runs == 2 and background.running
    await background.aclose()
    assert not background.running
    await background.aclose()  # a second close is harmless
