"""Following an enterprise's calls as they change: the tracker's transitions of its calls only.

The tracker routes each transition to the subscribers of the enterprise whose call it is
(`CallTracker.subscribe`): a feed reads nothing to filter. An enterprise holds at most
`CALLGATE_STREAMS_PER_ENTERPRISE` feeds at once, and the feeds of an enterprise disabled
meanwhile (`callgate enterprise disable`) end within `RECHECK` seconds: one read of the active
enterprises per period, however many feeds are open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from callgate import errors
from callgate.calls.event_log import Handover, Reset, catch_up
from callgate.calls.history import Subscription, Transition
from callgate.calls.tracker import CallTracker
from callgate.db.enterprises import active_numbers
from callgate.db.executor import Executor
from callgate.db.guard import db_step
from callgate.logs import get_logger
from callgate.tasks import cancel_and_wait

log = get_logger("callgate.watching")
RECHECK = 2.0  # seconds between two checks that the enterprises with open feeds are active


class TooManyStreams(errors.CallgateError):
    code = "too_many_streams"


class EnterpriseFeed:
    """``async for transition in feed``: a transition of the enterprise's calls, or None
    after ``quiet`` seconds without one (time for a keep-alive); it ends when the tracker
    stops or the enterprise is disabled. ``close()`` when done."""

    def __init__(self, subscription: Subscription, enterprise_number: str, quiet: float) -> None:
        self._subscription = subscription
        self.enterprise_number = enterprise_number
        self._quiet = quiet
        self._closed: list[EnterpriseFeed] | None = None  # set by Watching: where to leave
        self.disabled = False  # ended because the enterprise was disabled

    @property
    def overflowed(self) -> asyncio.Event:
        """Set once the feed lost a transition (its consumer fell ``maxsize`` behind)."""
        return self._subscription.overflowed

    def __aiter__(self) -> EnterpriseFeed:
        return self

    async def __anext__(self) -> Transition | None:
        # `asyncio.timeout`, not `wait_for`: Python 3.11's `wait_for` wraps the wait in a task
        # of its own, one per event and stream.
        try:
            async with asyncio.timeout(self._quiet):
                transition = await anext(self._subscription)
        except TimeoutError:
            return None
        if transition.enterprise_number not in (None, self.enterprise_number):
            return None  # never: the tracker routes by enterprise (a guard, not a filter)
        return transition

    def close(self) -> None:
        self._subscription.close()
        if self._closed is not None and self in self._closed:
            self._closed.remove(self)


class Watching:
    def __init__(
        self,
        tracker: CallTracker,
        database: Executor,
        *,
        streams_per_enterprise: int,
        retention: timedelta = timedelta(hours=24),
        hear_of: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._tracker = tracker
        # On PostgreSQL: the notifications of an enterprise's events reach this process once
        # it returns (`shared_events.Listening.want`); None: the tracker publishes directly.
        self._hear_of = hear_of
        self._database = database
        self._cap = streams_per_enterprise
        self.retention = retention  # how far back a stream may resume (`calls.event_log`)
        self._feeds: dict[str, list[EnterpriseFeed]] = {}  # open feeds by enterprise number
        self._checking: asyncio.Task[None] | None = None

    def check_room(self, enterprise_number: str) -> None:
        """TooManyStreams when the enterprise already holds its share of feeds."""
        if len(self._feeds.get(enterprise_number, ())) >= self._cap:
            raise TooManyStreams(
                f"at most {self._cap} event streams per enterprise are open at once"
            )

    async def feed(
        self, enterprise_number: str, *, quiet: float, maxsize: int = 10_000
    ) -> EnterpriseFeed:
        """From now on: no transition stored after this call returns is missed
        (TooManyStreams when the enterprise has no room), unless the consumer falls
        ``maxsize`` behind (``overflowed``)."""
        self.check_room(enterprise_number)
        if self._hear_of is not None:  # before subscribing: nothing committed after is missed
            await self._hear_of(enterprise_number)
            self.check_room(enterprise_number)  # another feed may have taken the room meanwhile
        open_feeds = self._feeds.setdefault(enterprise_number, [])
        subscription = self._tracker.subscribe(maxsize, enterprise_number=enterprise_number)
        feed = EnterpriseFeed(subscription, enterprise_number, quiet)
        feed._closed = open_feeds
        open_feeds.append(feed)
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(self._check_active())
        return feed

    async def resume(
        self, enterprise_number: str, after: int | None
    ) -> tuple[list[Transition] | Reset, Handover]:
        """What a feed opened just now resuming after ``after`` gets first
        (`event_log.catch_up`); DatabaseUnavailable when the database fails."""
        return await catch_up(self._database, enterprise_number, after, retention=self.retention)

    def follows(self, call_id: str) -> bool:
        """Whether this process's tracker follows the call (another process may)."""
        return call_id in self._tracker.live_calls()

    async def _check_active(self) -> None:
        """End the feeds of disabled enterprises, while any feed is open."""
        while any(self._feeds.values()):
            await asyncio.sleep(RECHECK)
            self._forget_empty()
            try:
                async with db_step("checking the enterprises of the event streams"):
                    active = await active_numbers(self._database)
            except errors.DatabaseUnavailable as exc:  # the next period tries again
                log.warning("active enterprises not read", detail=exc.message)
                continue
            for number, feeds in list(self._feeds.items()):
                if number not in active:
                    for feed in list(feeds):
                        feed.disabled = True
                        feed.close()
        self._forget_empty()

    def _forget_empty(self) -> None:
        """No key stays for an enterprise without feeds."""
        for number in [n for n, feeds in self._feeds.items() if not feeds]:
            del self._feeds[number]

    async def aclose(self) -> None:
        """Stop the check (shutdown): the tracker's stop ends the feeds themselves."""
        await cancel_and_wait(self._checking)
