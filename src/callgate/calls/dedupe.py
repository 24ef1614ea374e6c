"""The double-click guard: the same call asked for twice within a short window is placed once.

A CRM button clicked twice, or a bot retrying on a slow answer, must not ring an agent twice.
Within `window` seconds, a request for the same (enterprise, extension, phone) gets the call
already placed (or waits for the one being placed) instead of dialling again. The memory is
per process: several service instances behind one balancer each guard their own requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
Key = tuple[str, str, str]


class RecentCalls(Generic[T]):
    def __init__(self, window: float) -> None:
        self._window = window
        self._recent: dict[Key, tuple[float, asyncio.Future[T]]] = {}

    async def once(self, key: Key, place: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Place the call, or return the one placed for `key` within the window.

        Returns (result, reused). A failed attempt is not remembered: a retry dials again.
        """
        now = time.monotonic()
        self._expire(now)
        if self._window > 0 and key in self._recent:
            _, pending = self._recent[key]
            return await asyncio.shield(pending), True
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._recent[key] = (now, future)
        try:
            result = await place()
        except BaseException as exc:
            self._recent.pop(key, None)
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters get it, nobody else must
            raise
        future.set_result(result)
        return result, False

    def _expire(self, now: float) -> None:
        stale = [k for k, (at, f) in self._recent.items() if now - at > self._window and f.done()]
        for key in stale:
            del self._recent[key]
