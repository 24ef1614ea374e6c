"""Every instance's subscribers get every stored transition, whichever instance stored it.

On PostgreSQL several instances share one database, and a call is followed by one of them
(its host's tracker): a subscriber on another instance must hear of its transitions too. So on
PostgreSQL the subscribers of every instance, this one's included, are fed from the event log
alone: each stored event is notified by the database (`db.notifications`), and
``SharedEvents`` reads the events it hears of, in batches (all the ids heard since the last
read, one query for their range, or one per cluster of them; at most one read per ``GATHER``
seconds, at once when the last one is older), and hands each
to the subscribers of its enterprise (`CallTracker.publish`). The tracker does not publish
what it stores itself there, so nothing comes twice: one path per database. On SQLite (one
process) the tracker publishes directly, as it always did.

After every (re)connect of the listening connection, the events stored after the last one
seen are read (the catch-up): nothing stored while nobody listened is missed. "The last one
seen" is the log's end as of the last check of the listening connection when that is later
(`checked`): the connection hears only the enterprises wanted here, and the last event heard
of a quiet one can be far behind. Two transactions
may commit their ids out of order (a lower id after a higher one): the catch-up reads from
``OVERLAP`` ids before the last one seen, and an id already handed on is never handed on again
(the ids of the last ``REMEMBERED`` events are kept).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Collection

from callgate import errors
from callgate.calls.event_log import as_transition
from callgate.calls.history import Transition
from callgate.calls.tracker import CallTracker
from callgate.db import event_log
from callgate.db.executor import Executor
from callgate.db.guard import db_step
from callgate.db.notifications import EventNotifications, Heard, is_postgres
from callgate.logs import get_logger
from callgate.tasks import Background

log = get_logger("callgate.shared_events")

BATCH = 1000  # events read per query at most (a larger range is read in pages)
OVERLAP = 1000  # ids before the last one seen that a catch-up reads again
REMEMBERED = 20_000  # ids handed on, remembered so that none is handed on twice
SPREAD = 100  # ids heard further apart than this are read in separate ranges
RETRY = 1.0  # seconds before a failed read is tried again
# Seconds between two reads at least: under load, one read for the moves of several
# trackers' ticks instead of one per transaction; an event heard after a quiet spell is read
# at once (`python -m bench.instances`: the lag and the service's CPU per call).
GATHER = 0.02
_NO_END = 2**31 - 1  # a catch-up reads up to the log's end (`call_events.id` is an integer)


class SharedEvents:
    """Reads the events heard of and hands them on (see the module docstring).

    ``deliver`` takes each event as a transition with its enterprise and event id;
    ``wanted`` says whose events anyone in this process subscribes to now: the enterprises
    (the events of the others are not read: none when nobody subscribes), or None for every
    enterprise's.
    """

    def __init__(
        self,
        database: Executor,
        deliver: Callable[[Transition], None],
        wanted: Callable[[], Collection[str] | None],
    ) -> None:
        self._database = database
        self._deliver = deliver
        self._wanted = wanted
        self._floor: int | None = None  # the log's end when first connected: older is history
        self._last = 0  # the highest id read or heard of
        self._heard: set[Heard] = set()
        self._catch_up = False
        self._given: set[int] = set()
        self._given_order: deque[int] = deque()
        self._wake = asyncio.Event()
        self._read_at = -GATHER  # loop time of the last read
        self._background = Background(self._run, "shared events")
        self.delivered = 0  # events handed on (tests, the bench)

    def start(self) -> None:
        self._background.start()

    async def aclose(self) -> None:
        await self._background.aclose()

    def heard(self, events: list[Heard]) -> None:
        """Events stored and committed (their notifications: id, and enterprise when said):
        read at the next turn if they may be for a subscriber here."""
        self._heard.update(events)
        self._wake.set()

    async def connected(self) -> None:
        """The listening connection is (again) up: read what was stored meanwhile."""
        if self._floor is None:
            async with db_step("reading where the event log stands"):
                where = await event_log.position(self._database, 0)
            self._floor = self._last = max(self._last, where.head)
            return
        self._catch_up = True
        self._wake.set()

    async def checked(self) -> None:
        """The listening connection was found listening: every event stored before now has
        been notified, so a catch-up after the next reconnect may start from the log's end as
        of now. Without it, the last id heard could be far behind while the enterprises
        listened to are quiet, and a catch-up would read past every other enterprise's events
        since then (the read filters them, but walks them)."""
        try:
            async with db_step("reading where the event log stands"):
                where = await event_log.position(self._database, 0)
        except errors.DatabaseUnavailable:
            return  # the next check tries again
        self._last = max(self._last, where.head)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            wait = self._read_at + GATHER - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            self._read_at = asyncio.get_running_loop().time()
            try:
                await self._turn()
            except errors.DatabaseUnavailable as exc:
                log.warning("events of other instances not read yet", detail=exc.message)
                self._wake.set()  # what was not read is still there: try again
                await asyncio.sleep(RETRY)
            except Exception:  # a bug must not end the feeding of every subscriber
                log.exception("events of other instances not read")
                await asyncio.sleep(RETRY)

    async def _turn(self) -> None:
        wanted = self._wanted()
        if self._catch_up:
            low = max(self._floor or 0, self._last - OVERLAP)
            await self._read(low, _NO_END, wanted)
            self._catch_up = False
        if not self._heard:
            return
        heard = self._heard
        self._heard = set()
        # Those nobody here takes are not read at all (an event whose enterprise the
        # notification did not say is read, and the read filters it).
        ids = sorted(
            event_id
            for event_id, enterprise in heard
            if wanted is None or (enterprise in wanted if enterprise else wanted)
        )
        try:
            for low, high in _ranges(ids) if ids else ():
                await self._read(low - 1, high, wanted)
        except BaseException:
            self._heard |= heard  # read at the next try
            raise
        self._last = max(self._last, max(event_id for event_id, _ in heard))

    async def _read(self, after: int, up_to: int, wanted: Collection[str] | None) -> None:
        """Hand on the events with ``after < id <= up_to`` not handed on yet, by id: of the
        ``wanted`` enterprises only, unless None (each instance reads only what its own
        subscribers take: `python -m bench.instances`)."""
        while True:
            async with db_step("reading the events of other instances"):
                events = await event_log.events_between(self._database, after, up_to, BATCH, wanted)
            for event in events:
                self._last = max(self._last, event.event_id)
                if event.event_id in self._given or event.enterprise_number is None:
                    continue
                self._remember(event.event_id)
                self._deliver(as_transition(event, event.enterprise_number))
                self.delivered += 1
            if len(events) < BATCH:
                return
            after = events[-1].event_id

    def _remember(self, event_id: int) -> None:
        self._given.add(event_id)
        self._given_order.append(event_id)
        if len(self._given_order) > REMEMBERED:
            self._given.discard(self._given_order.popleft())


class Listening:
    """The listening connection and the reader of what it hears, stopped together."""

    def __init__(self, events: SharedEvents, notifications: EventNotifications) -> None:
        self.events = events
        self.notifications = notifications

    def start(self) -> None:
        self.events.start()
        self.notifications.start()

    async def want(self, enterprise_number: str) -> None:
        """The notifications of ``enterprise_number``'s events reach this process from now on
        (`EventNotifications.want`): awaited before a stream of them subscribes."""
        await self.notifications.want(enterprise_number)

    async def aclose(self) -> None:
        await self.notifications.aclose()
        await self.events.aclose()


def fed_from_log(database_url: str) -> bool:
    """Whether the subscribers are fed from the event log (PostgreSQL: several instances may
    share it) rather than by the tracker directly (SQLite: one process)."""
    return is_postgres(database_url)


def listen_for_events(
    database_url: str, database: Executor, tracker: CallTracker
) -> Listening | None:
    """On PostgreSQL, what feeds the subscribers of ``tracker`` from the event log once
    started (``aclose()`` it at shutdown); None on SQLite."""
    if not fed_from_log(database_url):
        return None
    events = SharedEvents(database, tracker.publish, tracker.subscribed)
    notifications = EventNotifications(
        database_url, events.heard, events.connected, tracker.subscribed, events.checked
    )
    return Listening(events, notifications)


def _ranges(ids: list[int]) -> list[tuple[int, int]]:
    """Sorted ids as the ranges that cover them, split where two are over ``SPREAD`` apart: a
    transaction that committed late (a low id) is read alone, not with all the ids between."""
    ranges = [(ids[0], ids[0])]
    for event_id in ids[1:]:
        if event_id - ranges[-1][1] > SPREAD:
            ranges.append((event_id, event_id))
        else:
            ranges[-1] = (ranges[-1][0], event_id)
    return ranges
