"""The double-click guard (RecentCalls): a call asked for twice within the window is placed
once; a failed one is forgotten; expiry costs the same however many calls are remembered."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

import pytest

from callgate.calls.dedupe import Key, RecentCalls

WINDOW = 5.0


class _Time(float):
    """A reading of `_Clock`: counts each subtraction or comparison it takes part in, that
    is how many remembered calls the guard looks at."""

    clock: _Clock

    def _look(self) -> float:
        self.clock.looks += 1
        return float(self)

    def __sub__(self, other: float) -> float:
        return self._look() - float(other)

    def __rsub__(self, other: float) -> float:
        return float(other) - self._look()

    def __lt__(self, other: float) -> bool:
        return self._look() < other

    def __le__(self, other: float) -> bool:
        return self._look() <= other

    def __gt__(self, other: float) -> bool:
        return self._look() > other

    def __ge__(self, other: float) -> bool:
        return self._look() >= other


class _Clock:
    """Moved by hand, in seconds."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.looks = 0

    def __call__(self) -> float:
        reading = _Time(self.now)
        reading.clock = self
        return reading


class _Dialler:
    """Counts the calls really placed; each answers with its own number."""

    def __init__(self) -> None:
        self.placed: list[Key] = []

    def to(self, key: Key) -> Callable[[], Awaitable[int]]:
        async def place() -> int:
            self.placed.append(key)
            return len(self.placed)

        return place


def _key(n: int = 0) -> Key:
    return ("100", "201", f"+37529{n:07d}")


async def test_reused_within_the_window_placed_again_after() -> None:
    clock, dial = _Clock(), _Dialler()
    recent: RecentCalls[int] = RecentCalls(WINDOW, clock)
    assert await recent.once(_key(), dial.to(_key())) == (1, False)
    clock.now += WINDOW  # the window's last instant still counts
    assert await recent.once(_key(), dial.to(_key())) == (1, True)
    assert await recent.once(_key(1), dial.to(_key(1))) == (2, False)  # another phone
    clock.now += 0.5
    assert await recent.once(_key(), dial.to(_key())) == (3, False)
    assert dial.placed == [_key(), _key(1), _key()]


async def test_waiters_share_the_call_being_placed() -> None:
    recent: RecentCalls[str] = RecentCalls(WINDOW, _Clock())
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    first = asyncio.create_task(recent.once(_key(), lambda: answer))
    await asyncio.sleep(0)
    second = asyncio.create_task(recent.once(_key(), lambda: pytest.fail("dialled twice")))
    await asyncio.sleep(0)
    answer.set_result("call-1")
    assert await first == ("call-1", False)
    assert await second == ("call-1", True)


async def test_a_call_still_being_placed_outlives_the_window() -> None:
    """Kept (and shared) while it is placed, however long that takes, without keeping the
    calls asked for after it past their own window; forgotten once done."""
    clock, dial = _Clock(), _Dialler()
    recent: RecentCalls[int | str] = RecentCalls(WINDOW, clock)
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    slow = asyncio.create_task(recent.once(_key(), lambda: answer))
    await asyncio.sleep(0)
    clock.now += 1
    assert await recent.once(_key(1), dial.to(_key(1))) == (1, False)
    clock.now += 3 * WINDOW
    assert await recent.once(_key(1), dial.to(_key(1))) == (2, False)  # expired
    waiter = asyncio.create_task(recent.once(_key(), lambda: pytest.fail("dialled twice")))
    await asyncio.sleep(0)
    answer.set_result("slow call")
    assert await slow == ("slow call", False)
    assert await waiter == ("slow call", True)
    assert await recent.once(_key(), dial.to(_key())) == (3, False)  # old and done


async def test_a_failed_attempt_is_forgotten() -> None:
    clock, dial = _Clock(), _Dialler()
    recent: RecentCalls[int] = RecentCalls(WINDOW, clock)
    failure: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    first = asyncio.create_task(recent.once(_key(), lambda: failure))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(recent.once(_key(), lambda: pytest.fail("dialled twice")))
    await asyncio.sleep(0)
    failure.set_exception(ConnectionError("PBX unreachable"))
    for attempt in (first, waiter):  # the waiter shares the failure
        with pytest.raises(ConnectionError):
            await attempt
    clock.now += 1  # the retry, within the window, dials again; its call is then reused
    assert await recent.once(_key(), dial.to(_key())) == (1, False)
    assert await recent.once(_key(), dial.to(_key())) == (1, True)
    clock.now += WINDOW  # past the failed attempt's window, not the retry's: reused
    assert await recent.once(_key(), dial.to(_key())) == (1, True)


async def test_window_zero_never_reuses() -> None:
    dial = _Dialler()
    recent: RecentCalls[int] = RecentCalls(0, _Clock())
    assert await recent.once(_key(), dial.to(_key())) == (1, False)
    assert await recent.once(_key(), dial.to(_key())) == (2, False)


async def test_expiry_looks_at_the_old_calls_only() -> None:
    """With thousands of calls in the window, a call looks at the few it drops, not at all
    of them (a scan of every entry on every call was the cost under load)."""
    clock, dial = _Clock(), _Dialler()
    recent: RecentCalls[int] = RecentCalls(WINDOW, clock)
    for n in range(3):
        await recent.once(_key(n), dial.to(_key(n)))
    clock.now += WINDOW - 1
    for n in range(3, 3000):
        await recent.once(_key(n), dial.to(_key(n)))
    clock.now += 2  # the first three are out of the window, the others in
    clock.looks = 0
    assert await recent.once(_key(3000), dial.to(_key(3000))) == (3001, False)
    assert clock.looks <= 6  # the 3 dropped, the first one kept, the placed call's own age
    assert await recent.once(_key(3), lambda: pytest.fail("dialled twice")) == (4, True)
    assert await recent.once(_key(0), dial.to(_key(0))) == (3002, False)


async def test_memory_is_bounded_under_a_flood_of_distinct_calls() -> None:
    """Distinct calls beyond the bound within one window are placed (unguarded), never
    remembered: the map holds at most `max_remembered` calls."""
    recent: RecentCalls[str] = RecentCalls(WINDOW, clock=lambda: 0.0, max_remembered=100)
    placed: list[str] = []

    async def place(number: str) -> str:
        placed.append(number)
        return number

    for index in range(1000):
        number = f"+3752962{index:05d}"
        await recent.once(("0367", "150", number), functools.partial(place, number))
    assert len(placed) == 1000
    assert len(recent._recent) == len(recent._order) == 100
    # The first 100 are still guarded: asked again, they are not placed again.
    _, reused = await recent.once(("0367", "150", "+375296200000"), lambda: place("again"))
    assert reused and len(placed) == 1000
