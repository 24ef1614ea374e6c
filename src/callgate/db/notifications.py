"""PostgreSQL's notifications of stored events: one dedicated connection that LISTENs.

Every row stored in ``call_events`` sends ``NOTIFY <channel>, '<id> <enterprise>'`` (a
trigger, migrations 0009, 0011 and 0012; the id alone before 0011), delivered at commit and
only if the transaction commits, on two channels: ``callgate_events`` (every event) and its
enterprise's, ``channel_of(<number>)`` (since 0012). ``EventNotifications`` holds one asyncpg
connection per process, outside the pool (a LISTEN lives as long as its connection, and the
pool's connections are reset by nobody: `db.postgres`), and LISTENs on the channels of the
enterprises ``wanted`` names (every event's when it says None): a notification costs the
process a wake-up and a read (about 0.1 ms, `python -m bench.notify_cost`), and most would be of
enterprises nobody here takes. ``want(number)`` LISTENs on one more before it returns, so that
a stream opened after it misses nothing; channels no longer wanted are let go at the next
check. What it hears goes to ``heard``: each event's id and enterprise (None: not said).

A connection that ends (the server restarted, ``pg_terminate_backend``, a network fault) is
opened again with a growing pause; after every (re)connect, the wanted channels LISTENed on,
``connected`` is awaited, so that the caller can read what was stored while nobody listened.
A connection that stops answering without ending is found by a ``SELECT 1`` every
``CHECK_EVERY`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Collection

import asyncpg

from callgate import errors
from callgate.db.engine import CONNECT_TIMEOUT, async_url
from callgate.logs import get_logger
from callgate.tasks import Background

log = get_logger("callgate.notifications")

CHANNEL = "callgate_events"  # every event's
APPLICATION_NAME = "callgate-events"  # how the listening connection shows in pg_stat_activity
FIRST_PAUSE = 0.1  # seconds before the first reconnect; doubled each failure up to MAX_PAUSE
MAX_PAUSE = 5.0
CHECK_EVERY = 10.0  # seconds between two checks that the connection still answers


Heard = tuple[int, str | None]  # an event's id, and its enterprise when the payload says it


def parse(payload: object) -> Heard | None:
    """A notification's payload: ``'<id> <enterprise>'``, or ``'<id>'`` alone (a trigger from
    before migration 0011); None for anything else."""
    if not isinstance(payload, str):
        return None
    event_id, _, enterprise = payload.partition(" ")
    if not event_id.isdigit():
        return None
    return int(event_id), enterprise or None


def channel_of(enterprise_number: str) -> str:
    """The channel of one enterprise's events: as the trigger names it (migration 0012), a
    hash, since a channel name is at most 63 bytes. Not a secret: the number is in every
    payload."""
    digest = hashlib.md5(enterprise_number.encode(), usedforsecurity=False).hexdigest()
    return f"{CHANNEL}_{digest}"


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (the only one that notifies)."""
    return async_url(url).drivername == "postgresql+asyncpg"


_FAULTS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class EventNotifications:
    """Listens for stored events' ids for as long as it runs (see the module docstring).

    ``wanted`` says whose events the process takes now: the enterprises, or None for every
    enterprise's (`CallTracker.subscribed`). ``checked``, if given, is awaited after each
    check that found the connection listening: whatever was stored before it has been
    notified by then (the caller may note how far the log is heard)."""

    def __init__(
        self,
        url: str,
        heard: Callable[[list[Heard]], None],
        connected: Callable[[], Awaitable[None]],
        wanted: Callable[[], Collection[str] | None],
        checked: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        target = async_url(url)
        self._dsn = target.set(drivername="postgresql").render_as_string(hide_password=False)
        self._heard = heard
        self._connected = connected
        self._wanted = wanted
        self._checked = checked
        self._background = Background(self._run, "event notifications")
        self._connection: asyncpg.Connection | None = None  # while it listens
        self._channels: set[str] = set()  # LISTENed on that connection
        self._turn = asyncio.Lock()  # one statement at a time on the connection
        self.connects = 0  # connections made (the first one included), for the status page
        self.listening = asyncio.Event()  # set while a connection listens

    @property
    def channels(self) -> frozenset[str]:
        """The channels LISTENed on now (tests, the bench)."""
        return frozenset(self._channels)

    def start(self) -> None:
        self._background.start()

    async def aclose(self) -> None:
        await self._background.aclose()

    async def want(self, enterprise_number: str) -> None:
        """LISTEN on the channel of ``enterprise_number``'s events before returning, unless
        it (or every event's) is listened on already. Nothing while no connection listens,
        and a connection lost meanwhile is not waited for: the next one LISTENs on every
        wanted channel, then the caller's catch-up reads what was stored while nobody
        listened."""
        channel = channel_of(enterprise_number)
        if CHANNEL in self._channels or channel in self._channels:
            return
        async with self._turn:
            connection = self._connection
            if connection is None or CHANNEL in self._channels or channel in self._channels:
                return
            try:
                await connection.add_listener(channel, self._notified)
            except _FAULTS:  # the LISTEN may or may not hold: listen again, from the start
                connection.terminate()  # then the caller's catch-up reads what was missed
                return
            self._channels.add(channel)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        event = parse(payload)
        if event is not None:
            self._heard([event])

    def _desired(self) -> set[str]:
        wanted = self._wanted()
        return {CHANNEL} if wanted is None else {channel_of(number) for number in wanted}

    async def _follow_wanted(self, connection: asyncpg.Connection) -> None:
        """LISTEN on the wanted channels not listened on yet, then UNLISTEN the others (in
        this order: nothing wanted goes unheard in between, at worst heard twice)."""
        desired = self._desired()
        for channel in desired - self._channels:
            await connection.add_listener(channel, self._notified)
            self._channels.add(channel)
        for channel in self._channels - desired:
            await connection.remove_listener(channel, self._notified)
            self._channels.discard(channel)

    async def _run(self) -> None:
        pause = FIRST_PAUSE
        while True:
            try:
                await self._listen()
                pause = FIRST_PAUSE  # it listened: the next loss is retried soon
            except _FAULTS as exc:
                log.warning(
                    "event notifications: not connected; retrying",
                    error=type(exc).__name__,
                    retry_s=pause,
                )
            except errors.DatabaseUnavailable as exc:  # the catch-up read after connecting
                log.warning("event notifications: catch-up not read; retrying", detail=exc.message)
            except Exception:  # a bug in a handler must not end the listening for good
                log.exception("event notifications failed; retrying")
            self.listening.clear()
            await asyncio.sleep(pause)
            pause = min(MAX_PAUSE, pause * 2)

    async def _listen(self) -> None:
        connection: asyncpg.Connection = await asyncpg.connect(
            self._dsn,
            timeout=CONNECT_TIMEOUT,
            command_timeout=CONNECT_TIMEOUT,
            server_settings={"application_name": APPLICATION_NAME},
        )
        lost = asyncio.Event()
        try:
            connection.add_termination_listener(lambda _conn: lost.set())
            async with self._turn:
                self._channels = set()
                await self._follow_wanted(connection)
                self._connection = connection
            self.connects += 1
            self.listening.set()
            log.info("event notifications: listening", connects=self.connects)
            # Listening first, then the catch-up read: an event stored in between is both
            # notified and read, and the reader drops the second copy.
            await self._connected()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CHECK_EVERY):
                        await lost.wait()
                if not lost.is_set():
                    async with self._turn:
                        await connection.fetchval("SELECT 1")
                        await self._follow_wanted(connection)
                    if self._checked is not None:
                        await self._checked()
            log.warning("event notifications: connection lost")
        finally:
            self._connection = None
            self._channels = set()
            self.listening.clear()
            if not connection.is_closed():
                connection.terminate()
