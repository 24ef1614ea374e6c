"""The double-click guard: the same call asked for twice within a short window is placed once.

A CRM button clicked twice, or a bot retrying on a slow answer, must not ring an agent twice.
Within `window` seconds, a request for the same (enterprise, extension, phone) gets the call
already placed (or waits for the one being placed) instead of dialling again. `RecentCalls`
is this process's memory, the first check and a free one; on PostgreSQL `SharedClaims` then
holds the key in the database, so that several instances behind one balancer place the call
once between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Generic, TypeVar

from callgate import errors
from callgate.db import claims
from callgate.db.advisory import AdvisoryLocks
from callgate.db.calls import CallRecord, get_call
from callgate.db.executor import Database, Executor
from callgate.db.guard import db_step
from callgate.db.models import CallOutcome, utcnow

T = TypeVar("T")
Key = tuple[str, str, str]
_Entry = tuple[float, asyncio.Future[T]]  # when the call was asked for, and its outcome


MAX_REMEMBERED = 10_000  # calls remembered at most: the guard's memory is bounded


class RecentCalls(Generic[T]):
    def __init__(
        self,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_remembered: int = MAX_REMEMBERED,
    ) -> None:
        self._window = window
        self._clock = clock
        self._max = max_remembered
        self._recent: dict[Key, _Entry[T]] = {}
        # The same entries, oldest first (each is appended when asked for, and the clock only
        # moves forward): expiry pops from the front and stops at the first one still inside
        # the window, instead of scanning every entry on every call (~1,500 under load). A
        # deque, not the dict's own order: popping a dict's first key gets slower as deleted
        # slots pile up at its front.
        self._order: deque[tuple[Key, _Entry[T]]] = deque()

    async def once(self, key: Key, place: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Place the call, or return the one placed for `key` within the window.

        Returns (result, reused). A failed attempt is not remembered: a retry dials again.
        """
        if self._window <= 0:  # no reuse: nothing to remember
            return await place(), False
        now = self._clock()
        self._expire(now)
        if key in self._recent:
            _, pending = self._recent[key]
            return await asyncio.shield(pending), True
        if len(self._recent) >= self._max:  # a flood of distinct calls: placed unguarded
            return await place(), False
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        entry = (now, future)
        # `key` is not remembered (checked above), so both go at the end, in time order.
        self._recent[key] = entry
        self._order.append((key, entry))
        try:
            result = await place()
        except BaseException as exc:
            del self._recent[key]  # still ours: a pending entry is only ever removed here
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters get it, nobody else must
            raise
        future.set_result(result)
        if self._clock() - now > self._window:
            # Placing took longer than the window: expiry has already let go of the entry
            # (pending, it had to stay) or drops it at the next call; done and old, it is
            # forgotten now, as that next call would.
            del self._recent[key]
        return result, False

    def _expire(self, now: float) -> None:
        """Forget the calls asked for more than `window` ago, unless still being placed (their
        placer forgets them when done). Amortised O(1): each entry is popped once."""
        while self._order and now - self._order[0][1][0] > self._window:
            key, entry = self._order.popleft()
            # The key may have failed and been asked for again since: only drop this entry.
            if self._recent.get(key) is entry and entry[1].done():
                del self._recent[key]


class SharedClaims:
    """The guard across instances on one database (`db.claims`): after this process's own
    guard, a call is claimed in the database under its key's SHA-256; a key another instance
    claimed within the window gives that instance's call, once its outcome is stored.

    One statement per call placed (an upsert), on ``locks``' connection when given (a
    connection of its own, `db.advisory`: no pool checkout), which also tries the call's
    originate lock when asked to (`claim`'s ``lock``), else on ``database``; the claims older
    than ``PRUNE_AFTER`` are deleted every ``PRUNE_EVERY`` seconds.
    """

    PRUNE_EVERY = 60.0
    PRUNE_AFTER = 3600.0  # seconds; longer than any window

    def __init__(
        self, database: Database, window: float, locks: AdvisoryLocks | None = None
    ) -> None:
        self._database = database
        self._locks = locks
        self._on: Executor = locks or database
        self._window = window
        self._pruned = -math.inf
        self.elsewhere = 0  # requests answered with another instance's call (tests, bench)

    @staticmethod
    def digest(key: Key) -> str:
        return hashlib.sha256("\x1f".join(key).encode()).hexdigest()

    async def claim(self, key: Key, call_id: str, *, lock: str | None = None) -> str | None:
        """None: ``call_id`` holds the key now (place it); else the call that holds it.

        ``lock``: the call's originate lock, tried by the same statement when the claims run
        on ``locks``; held after it when taken (`AdvisoryLocks.release_unused` lets go of it
        if no originate comes)."""
        now = utcnow()
        digest, since = self.digest(key), now - timedelta(seconds=self._window)
        async with db_step("checking for a repeated call"):
            if lock is not None and self._locks is not None:
                holder = await claims.claim_locking(
                    self._locks, digest, call_id, at=now, since=since, lock=lock
                )
            else:
                holder = await claims.claim(self._on, digest, call_id, at=now, since=since)
        if time.monotonic() - self._pruned > self.PRUNE_EVERY:
            self._pruned = time.monotonic()
            with contextlib.suppress(errors.DatabaseUnavailable):
                async with db_step("deleting old call claims"):
                    await claims.prune(self._on, now - timedelta(seconds=self.PRUNE_AFTER))
        if holder is not None:
            self.elsewhere += 1
        return holder

    async def let_go(self, key: Key, call_id: str) -> None:
        """The call failed: a retry dials again (a fault here only keeps the key a window)."""
        with contextlib.suppress(errors.DatabaseUnavailable):
            async with db_step("letting a call claim go"):
                await asyncio.shield(claims.let_go(self._on, self.digest(key), call_id))

    async def outcome(self, call_id: str, within: float) -> CallRecord | None:
        """The call's row once its outcome is stored (None: not within ``within`` seconds)."""
        deadline = time.monotonic() + within
        while True:
            async with db_step("reading a call placed by another instance"):
                record = await get_call(self._database, call_id)
            if record is not None and record.outcome != CallOutcome.PENDING.value:
                return record
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)
