"""Clients of the event streams for the tests: SSE (`/v1/events`) read in the background,
the WebSocket's URL and messages, the event log as the database holds it, calls placed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from callgate.db.enterprises import add_enterprise
from callgate.db.event_log import StoredEvent, events_after
from callgate.domain.states import TERMINAL
from callgate.simulator.timeline import Scenario
from tests.support.database import opened
from tests.support.stack import Stack

QUICK = Scenario(agent_answer_after=0.2, customer_answer_after=0.2, talk=0.3)
OTHER = "0999"

# The websockets client logs each handshake's headers at DEBUG, `Authorization` included: the
# test clients log through this one, which says nothing below INFO.
QUIET_WS_LOG = logging.getLogger("tests.websocket_client")
QUIET_WS_LOG.setLevel(logging.INFO)


@dataclass
class SseEvent:
    id: str | None
    event: str
    data: dict[str, Any]


@dataclass(eq=False)
class SseStream:
    """An open `/v1/events` stream whose events pile up in ``events`` as they come."""

    events: list[SseEvent] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, done: Callable[[list[SseEvent]], bool], within: float = 15.0) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while not done(self.events):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not seen in {within} s; got {self.events}")
            await asyncio.sleep(0.02)

    def of(self, call_id: str) -> list[SseEvent]:
        return [
            e for e in self.events if e.event.startswith("call.") and e.data["call_id"] == call_id
        ]


def sse(
    stack: Stack, headers: dict[str, str] | None = None, last_event_id: str | None = None
) -> contextlib.AbstractAsyncContextManager[SseStream]:
    """`/v1/events` read in the background for the block (the stack's enterprise's, unless
    ``headers`` say another's), with ``Last-Event-ID`` when given."""
    return sse_on(stack.service.client, headers or stack.auth(), last_event_id)


@contextlib.asynccontextmanager
async def sse_on(
    client: httpx.AsyncClient, headers: dict[str, str], last_event_id: str | None = None
) -> AsyncIterator[SseStream]:
    """`/v1/events` of the service ``client`` speaks to, read in the background for the
    block, as `sse`."""
    stream = SseStream()
    sent = dict(headers)
    if last_event_id is not None:
        sent["Last-Event-ID"] = last_event_id

    async def read() -> None:
        try:
            async with client.stream("GET", "/v1/events", headers=sent, timeout=None) as response:
                assert response.status_code == 200, await response.aread()
                fields: dict[str, str] = {}
                async for line in response.aiter_lines():
                    stream.connected.set()  # ": connected" comes first
                    if line.startswith(":"):
                        continue
                    if line:
                        name, _, value = line.partition(": ")
                        fields[name] = value
                        continue
                    if "event" in fields:
                        data = json.loads(fields["data"])
                        stream.events.append(SseEvent(fields.get("id"), fields["event"], data))
                    fields = {}
        finally:
            stream.ended.set()

    task = asyncio.create_task(read())
    try:
        await asyncio.wait_for(stream.connected.wait(), 10)
        yield stream
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def ws_url(stack: Stack, query: str = "") -> str:
    return stack.service.base_url.replace("http://", "ws://") + "/v1/ws" + query


async def stored(stack: Stack, enterprise: str = "0367") -> list[StoredEvent]:
    """The enterprise's events as the database holds them, by id."""
    async with opened(stack.db_url) as database:
        return await events_after(database, enterprise, 0, 100_000)


async def other_enterprise(stack: Stack) -> dict[str, str]:
    """A second enterprise on the same PBX host; its v1 credentials."""
    secret = secrets.token_hex(16)
    async with opened(stack.db_url) as database:
        await add_enterprise(database, number=OTHER, name="other", ip="127.0.0.1", secret=secret)
    return {"Authorization": f"Bearer {secret}"}


async def place(
    stack: Stack, extension: str, headers: dict[str, str] | None = None, *, end: bool = True
) -> str:
    """A call from ``extension`` (its scenario set before); its id, once ended if ``end``."""
    placed = await stack.service.client.post(
        "/v1/calls",
        json={"from": extension, "to": "+375296254070"},
        headers=headers or stack.auth(),
    )
    assert placed.status_code == 201, placed.text
    call_id: str = placed.json()["id"]
    if end:
        assert (await stack.ended(call_id, within=20))["state"] in TERMINAL
    return call_id


async def settled(stack: Stack, call_id: str, enterprise: str = "0367") -> list[StoredEvent]:
    """The call's stored events once its terminal one is stored (the row may be ended a
    moment before the stream's last event went out)."""
    for _ in range(200):
        events = [e for e in await stored(stack, enterprise) if e.call_id == call_id]
        if events and events[-1].state in {s.value for s in TERMINAL}:
            return events
        await asyncio.sleep(0.05)
    raise AssertionError(f"call {call_id} did not end in the log")
