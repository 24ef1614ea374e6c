"""PostgreSQL's notifications of stored events: one dedicated connection that LISTENs.

Every row stored in ``call_events`` sends ``NOTIFY callgate_events, '<id> <enterprise>'`` (a
trigger, migrations 0009 and 0011; the id alone before 0011), delivered at commit and only if
the transaction commits. ``EventNotifications`` holds one asyncpg connection per process,
outside the pool (a LISTEN lives as long as its connection, and the pool's connections are
reset by nobody: `db.postgres`), LISTENs on that channel and hands what it hears to
``heard``: each event's id and enterprise (None: not said). A connection that ends (the server
restarted, ``pg_terminate_backend``, a network fault) is opened again with a growing pause;
after every (re)connect ``connected`` is awaited, so that the caller can read what was
stored while nobody listened. A connection that stops answering without ending is found by a
``SELECT 1`` every ``CHECK_EVERY`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg

from callgate import errors
from callgate.db.engine import CONNECT_TIMEOUT, async_url
from callgate.logs import get_logger
from callgate.tasks import Background

log = get_logger("callgate.notifications")

CHANNEL = "callgate_events"
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


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (the only one that notifies)."""
    return async_url(url).drivername == "postgresql+asyncpg"


class EventNotifications:
    """Listens for stored events' ids for as long as it runs (see the module docstring)."""

    def __init__(
        self,
        url: str,
        heard: Callable[[list[Heard]], None],
        connected: Callable[[], Awaitable[None]],
    ) -> None:
        target = async_url(url)
        self._dsn = target.set(drivername="postgresql").render_as_string(hide_password=False)
        self._heard = heard
        self._connected = connected
        self._background = Background(self._run, "event notifications")
        self.connects = 0  # connections made (the first one included), for the status page
        self.listening = asyncio.Event()  # set while a connection listens

    def start(self) -> None:
        self._background.start()

    async def aclose(self) -> None:
        await self._background.aclose()

    async def _run(self) -> None:
        pause = FIRST_PAUSE
        while True:
            try:
                await self._listen()
                pause = FIRST_PAUSE  # it listened: the next loss is retried soon
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
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

        def notified(_conn: object, _pid: int, _channel: str, payload: object) -> None:
            event = parse(payload)
            if event is not None:
                self._heard([event])

        try:
            connection.add_termination_listener(lambda _conn: lost.set())
            await connection.add_listener(CHANNEL, notified)
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
                    await connection.fetchval("SELECT 1")
            log.warning("event notifications: connection lost")
        finally:
            self.listening.clear()
            if not connection.is_closed():
                connection.terminate()
