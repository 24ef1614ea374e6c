"""/v1/ws: an enterprise's call events over a WebSocket, resumable by event id.

The messages take the shape of Wazo's websocketd protocol (``op``, ``code``, ``data``):
authenticate (``Authorization: Bearer`` on the upgrade, or a first ``auth`` message within
`AUTH_WAIT` seconds; never the query string), ``subscribe`` with filters, ``start`` with an
optional ``resume_after`` event id, ``ping``/``pong`` both ways. Unlike websocketd every event
carries its id in the event log (`calls.event_log`), the same id as SSE's (`api.v1.events`),
and the same ``data``. Each way of ending a connection has its own close code (`Close`).

A connection holds at most ``CALLGATE_WS_QUEUE`` events not yet sent: a client that falls
further behind is closed with `Close.SLOW_CONSUMER` and resumes from the last id it got (the
events are in the log), so a slow client costs bounded memory and never slows the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from callgate import errors
from callgate.api.deps import client_address
from callgate.api.v1.auth import secret_in_query
from callgate.api.v1.events import FORMATTED, event_data, reset_data
from callgate.calls.event_log import Handover, Reset, parse_event_id
from callgate.calls.history import Transition
from callgate.calls.rate_limits import RateLimited
from callgate.calls.service import Enterprise
from callgate.calls.services import Services
from callgate.calls.watching import EnterpriseFeed, TooManyStreams
from callgate.domain.states import CallState
from callgate.logs import get_logger
from callgate.redaction import redact_query

log = get_logger("callgate.ws")
router = APIRouter(prefix="/v1", tags=["v1"])
AUTH_WAIT = 5.0  # seconds a connection without credentials on its upgrade has to send `auth`
KEEPALIVE = 15.0  # seconds without an event after which the server sends a `ping`
SEND_WAIT = 10.0  # seconds one message may take to leave; longer: a slow consumer
MAX_MESSAGE = 4096  # characters of a client's message; longer: a protocol error
SLOW = "too many events waiting: resume from the last id"
EVENT_TYPES = frozenset(f"call.{state.value}" for state in CallState)


class Close(IntEnum):
    """The close codes of /v1/ws (the README's table)."""

    GOING_AWAY = 1001  # the service is stopping: connect again (to it or another instance)
    TRY_AGAIN = 1013  # the database failed: connect again later
    NO_TOKEN = 4001  # no credentials on the upgrade and no `auth` message in time
    BAD_AUTH = 4002  # the credentials were refused (or were sent in the query string)
    DISABLED = 4003  # the enterprise was disabled while connected
    BAD_MESSAGE = 4004  # not a message of this protocol
    SLOW_CONSUMER = 4008  # more than CALLGATE_WS_QUEUE events waiting: resume from the last id
    TOO_MANY_STREAMS = 4009  # the enterprise holds CALLGATE_STREAMS_PER_ENTERPRISE streams
    AUTH_LIMITED = 4029  # too many failed authentications from this address: wait


class RedactedHandshakes(logging.Filter):
    """uvicorn logs each WebSocket handshake with its path and query string ("uvicorn.error",
    INFO); a client that put its secret in the URL (refused, `Close.BAD_AUTH`) must not have
    it written to the log: the query is redacted as the HTTP access log's is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith('%s - "WebSocket %s"'):
            args = record.args
            if isinstance(args, tuple) and len(args) >= 2 and isinstance(args[1], str):
                path, _, query = args[1].partition("?")
                shown = f"{path}?{redact_query(query)}" if query else path
                record.args = (args[0], shown, *args[2:])
        return True


class _Closing(Exception):
    def __init__(self, code: Close, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass(frozen=True, slots=True)
class Filter:
    """Which events a connection wants (`subscribe`); None: any."""

    event_types: frozenset[str] | None = None
    call_id: str | None = None
    extension: str | None = None

    def wants(self, transition: Transition) -> bool:
        return (
            (self.event_types is None or f"call.{transition.state}" in self.event_types)
            and (self.call_id is None or transition.call_id == self.call_id)
            and (self.extension is None or transition.extension == self.extension)
        )

    def wants_call(self, call_id: str, extension: str) -> bool:
        """Whether a live call of a reset's snapshot is one this connection follows."""
        return (self.call_id is None or call_id == self.call_id) and (
            self.extension is None or extension == self.extension
        )


def _filter(data: Any) -> Filter:
    """A `subscribe` message's data as a Filter; _Closing for a malformed one."""
    if data is None:
        data = {}
    if not isinstance(data, dict) or set(data) - {"event_types", "call_id", "extension"}:
        raise _Closing(Close.BAD_MESSAGE, "subscribe: data has event_types, call_id, extension")
    types = data.get("event_types")
    if types is not None and (
        not isinstance(types, list) or not all(t in EVENT_TYPES for t in types)
    ):
        raise _Closing(Close.BAD_MESSAGE, "subscribe: event_types are call.<state> names")
    for key in ("call_id", "extension"):
        value = data.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > 64):
            raise _Closing(Close.BAD_MESSAGE, f"subscribe: {key} is a string")
    return Filter(
        None if not types else frozenset(types), data.get("call_id"), data.get("extension")
    )


@functools.lru_cache(maxsize=FORMATTED)
def _event_message(transition: Transition) -> str:
    """An event's message, made once for every connection that sends it (see
    `events.FORMATTED`)."""
    message = {
        "op": "event",
        "code": 0,
        "id": transition.event_id,
        "event": f"call.{transition.state}",
        "data": event_data(transition),
    }
    return json.dumps(message)


class _Connection:
    """One authenticated socket: sends one message at a time, reads the client's."""

    def __init__(self, websocket: WebSocket, svc: Services, enterprise: Enterprise) -> None:
        self.websocket, self.svc, self.enterprise = websocket, svc, enterprise
        self.filter = Filter()
        self._sending = asyncio.Lock()  # the reader's pongs and the writer's events

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_text(json.dumps(message))

    async def send_text(self, text: str) -> None:
        async with self._sending:
            try:
                async with asyncio.timeout(SEND_WAIT):
                    await self.websocket.send_text(text)
            except TimeoutError:
                raise _Closing(Close.SLOW_CONSUMER, "the client does not read") from None

    async def until_start(self) -> Any:
        """Answer `subscribe` and `ping` until `start`; its `resume_after` (None: live only)."""
        while True:
            op, data = await receive(self.websocket)
            if op == "start":
                if data is not None and (
                    not isinstance(data, dict) or set(data) - {"resume_after"}
                ):
                    raise _Closing(Close.BAD_MESSAGE, "start: data has resume_after only")
                return (data or {}).get("resume_after")
            await self.answer(op, data)

    async def answer(self, op: str, data: Any) -> None:
        """A message other than `start`: `subscribe`, `ping`, `pong`."""
        if op == "subscribe":
            self.filter = _filter(data)
            await self.send({"op": "subscribe", "code": 0})
        elif op == "ping":
            payload = data.get("payload") if isinstance(data, dict) else None
            await self.send({"op": "pong", "code": 0, "data": {"payload": payload}})
        elif op != "pong":  # the answer to our ping: nothing to do
            raise _Closing(Close.BAD_MESSAGE, f"unknown op {op[:32]!r}")

    async def read_forever(self) -> None:
        while True:
            op, data = await receive(self.websocket)
            if op == "start":
                raise _Closing(Close.BAD_MESSAGE, "start: already started")
            await self.answer(op, data)

    async def replay(self, after: Any) -> Handover:
        """The events after ``after`` (or a reset), sent before the live ones."""
        try:
            replay, handover = await self.svc.watching.resume(
                self.enterprise.number, parse_event_id(after)
            )
        except errors.DatabaseUnavailable as exc:
            log.warning("event stream not resumed", detail=exc.message)
            raise _Closing(Close.TRY_AGAIN, "the database is unavailable") from None
        if isinstance(replay, Reset):
            data = reset_data(replay)
            data["calls"] = [
                shown
                for call, shown in zip(replay.calls, data["calls"], strict=True)
                if self.filter.wants_call(call.call_id, call.extension)
            ]
            await self.send({"op": "reset", "code": 0, "id": replay.head, "data": data})
        else:
            for transition in replay:
                await self.event(transition)
        return handover

    async def event(self, transition: Transition) -> None:
        if self.filter.wants(transition):
            await self.send_text(_event_message(transition))

    async def write_forever(self, feed: EnterpriseFeed, handover: Handover) -> None:
        pings = 0
        async for transition in feed:
            if feed.overflowed.is_set():  # what is still queued comes after a gap: none of it
                raise _Closing(Close.SLOW_CONSUMER, SLOW)
            if transition is None:
                pings += 1
                await self.send({"op": "ping", "code": 0, "data": {"payload": str(pings)}})
            elif handover.fresh(transition):
                await self.event(transition)
        if feed.disabled:
            raise _Closing(Close.DISABLED, "the enterprise is disabled")
        raise _Closing(Close.GOING_AWAY, "the service is stopping")


async def receive(websocket: WebSocket) -> tuple[str, Any]:
    """The client's next message as (op, data); _Closing for anything else."""
    parsed = await _message(websocket)
    return parsed["op"], parsed.get("data")


async def _message(websocket: WebSocket) -> dict[str, Any]:
    """The client's next message, an object with an ``op``; _Closing for anything else."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None or len(text) > MAX_MESSAGE:
        raise _Closing(Close.BAD_MESSAGE, "messages are JSON text")
    try:
        parsed = json.loads(text)
    except ValueError:
        raise _Closing(Close.BAD_MESSAGE, "messages are JSON text") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("op"), str):
        raise _Closing(Close.BAD_MESSAGE, "a message is an object with an op")
    return parsed


async def _authenticate(websocket: WebSocket, svc: Services) -> Enterprise:
    if secret_in_query(websocket):
        raise _Closing(Close.BAD_AUTH, "the secret is not accepted in the query string")
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    secret = token.strip() if scheme.lower() == "bearer" else ""
    if not secret:
        try:
            async with asyncio.timeout(AUTH_WAIT):
                first = await _message(websocket)
        except TimeoutError:
            raise _Closing(Close.NO_TOKEN, "no credentials in time") from None
        if first["op"] != "auth":
            raise _Closing(Close.NO_TOKEN, "the first message is auth")
        # {"op": "auth", "token": ...}, or the token in data as the other messages have it.
        data = first.get("data")
        found = first.get("token", data.get("token") if isinstance(data, dict) else None)
        secret = found if isinstance(found, str) else ""
    try:
        return await svc.calls.authorise(secret, client=client_address(websocket))
    except errors.AuthenticationFailed:
        raise _Closing(Close.BAD_AUTH, "invalid credentials") from None
    except RateLimited:
        raise _Closing(Close.AUTH_LIMITED, "too many failed authentications") from None
    except errors.DatabaseUnavailable:
        raise _Closing(Close.TRY_AGAIN, "the database is unavailable") from None


@router.websocket("/ws")
async def websocket_events(websocket: WebSocket) -> None:
    """The protocol of the module docstring (README, "WebSocket")."""
    svc: Services = websocket.app.state.services
    await websocket.accept()
    feed: EnterpriseFeed | None = None
    try:
        enterprise = await _authenticate(websocket, svc)
        try:
            svc.watching.check_room(enterprise.number)
        except TooManyStreams as exc:
            raise _Closing(Close.TOO_MANY_STREAMS, exc.message) from None
        connection = _Connection(websocket, svc, enterprise)
        await connection.send({"op": "init", "code": 0, "data": {"protocol": 1}})
        after = await connection.until_start()
        try:  # subscribed before the replay is read: nothing stored meanwhile is missed
            feed = await svc.watching.feed(
                enterprise.number, quiet=KEEPALIVE, maxsize=svc.settings.ws_queue
            )
        except TooManyStreams as exc:
            raise _Closing(Close.TOO_MANY_STREAMS, exc.message) from None
        await connection.send({"op": "start", "code": 0})
        handover = await connection.replay(after) if after is not None else Handover()
        await _run(connection, feed, handover)
    except _Closing as closing:
        log.info("websocket closed", code=int(closing.code), reason=closing.reason)
        with contextlib.suppress(Exception):  # the client may be gone already
            await websocket.close(closing.code, closing.reason)
    except WebSocketDisconnect:
        pass
    finally:
        if feed is not None:
            feed.close()


async def _run(connection: _Connection, feed: EnterpriseFeed, handover: Handover) -> None:
    """Events out and messages in until one side ends: the first _Closing wins."""

    async def overflow() -> None:
        await feed.overflowed.wait()
        raise _Closing(Close.SLOW_CONSUMER, SLOW)

    tasks = [
        asyncio.create_task(connection.write_forever(feed, handover)),
        asyncio.create_task(connection.read_forever()),
        asyncio.create_task(overflow()),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Closed as well as cancelled: a writer waiting on the feed ends either way.
        feed.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        failure = task.exception()
        if failure is not None:
            raise failure
