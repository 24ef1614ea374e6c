"""/v1/ws through real HTTP (uvicorn's WebSocket over the `websockets` package) with real calls
on the simulated PBX: authentication on the upgrade or by a first message (and its close codes),
subscribe filters, resume_after, ping/pong, a slow consumer closed and resumed, the stream cap,
a disabled enterprise, and never another enterprise's events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from callgate.api.v1 import ws as ws_module
from callgate.api.v1.ws import AUTH_WAIT, Close
from callgate.db.enterprises import set_active
from callgate.domain.states import TERMINAL
from tests.support.database import opened
from tests.support.event_streams import (
    QUICK,
    QUIET_WS_LOG,
    other_enterprise,
    place,
    settled,
    stored,
    ws_url,
)
from tests.support.sshd import SshdServer
from tests.support.stack import Stack, call_stack

pytestmark = [pytest.mark.sshd]
ENDED = {f"call.{state.value}" for state in TERMINAL}


@pytest.fixture
async def api(db_url: str, sshd: SshdServer, tmp_path: Path) -> AsyncIterator[Stack]:
    async with call_stack(db_url, sshd, tmp_path, track_interval=0.1) as stack:
        yield stack


def _open(stack: Stack, headers: dict[str, str] | None = None, query: str = "") -> connect:
    return connect(
        ws_url(stack, query), additional_headers=headers, proxy=None, logger=QUIET_WS_LOG
    )


async def _recv(ws: ClientConnection, within: float = 15.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
    return message


async def _started(
    ws: ClientConnection, subscribe: dict[str, Any] | None = None, **start: Any
) -> None:
    """init, then subscribe (when given) and start, each answered."""
    assert await _recv(ws) == {"op": "init", "code": 0, "data": {"protocol": 1}}
    if subscribe is not None:
        await ws.send(json.dumps({"op": "subscribe", "data": subscribe}))
        assert await _recv(ws) == {"op": "subscribe", "code": 0}
    await ws.send(json.dumps({"op": "start", "data": start}))
    assert await _recv(ws) == {"op": "start", "code": 0}


async def _events_until_end(
    ws: ClientConnection, call_id: str, within: float = 20.0
) -> list[dict[str, Any]]:
    """Messages until ``call_id``'s terminal event."""
    got: list[dict[str, Any]] = []
    while True:
        got.append(await _recv(ws, within))
        if got[-1].get("event") in ENDED and got[-1]["data"]["call_id"] == call_id:
            return got


async def _closed_with(ws: ClientConnection, within: float = 15.0) -> int | None:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), within)
    return ws.close_code


async def test_header_auth_events_with_ids_and_never_another_enterprises(api: Stack) -> None:
    theirs = await other_enterprise(api)
    for extension in ("151", "159"):
        await api.control.set_scenario(extension, QUICK)
    async with _open(api, api.auth()) as ours, _open(api, theirs) as other:
        await _started(ours)
        await _started(other)
        call_id = await place(api, "151", end=False)
        got = await _events_until_end(ours, call_id)
        log = await settled(api, call_id)
        assert [m["id"] for m in got] == [e.event_id for e in log]
        assert [m["event"] for m in got] == [f"call.{e.state}" for e in log]
        assert all(m["op"] == "event" and m["data"]["call_id"] == call_id for m in got)
        assert set(got[-1]["data"]) == {"call_id", "state", "at", "reason", "sides"}
        assert got[-1]["data"]["sides"] == (await api.ended(call_id))["sides"]
        # The other enterprise's socket has had nothing of ours; its own call comes through.
        their_call = await place(api, "159", theirs, end=False)
        seen = await _events_until_end(other, their_call)
        assert {m["data"]["call_id"] for m in seen} == {their_call}


async def test_auth_by_message_and_the_auth_close_codes(api: Stack) -> None:
    async with _open(api) as ws:
        await ws.send(json.dumps({"op": "auth", "token": api.secret}))
        await _started(ws)
        await ws.send(json.dumps({"op": "ping", "data": {"payload": "p1"}}))
        assert await _recv(ws) == {"op": "pong", "code": 0, "data": {"payload": "p1"}}
    async with _open(api) as ws:
        await ws.send(json.dumps({"op": "auth", "token": "not-the-secret-at-all"}))
        assert await _closed_with(ws) == Close.BAD_AUTH
    async with _open(api, {"Authorization": "Bearer not-the-secret-at-all"}) as ws:
        assert await _closed_with(ws) == Close.BAD_AUTH
    async with _open(api, query=f"?token={api.secret}") as ws:  # never in the URL
        assert await _closed_with(ws) == Close.BAD_AUTH
    async with _open(api) as ws:
        await ws.send(json.dumps({"op": "start"}))  # anything before auth
        assert await _closed_with(ws) == Close.NO_TOKEN
    started = asyncio.get_running_loop().time()
    async with _open(api) as ws:  # says nothing
        assert await _closed_with(ws, AUTH_WAIT + 5) == Close.NO_TOKEN
    assert AUTH_WAIT - 0.5 <= asyncio.get_running_loop().time() - started <= AUTH_WAIT + 3
    for bad in ("not json", json.dumps({"op": "nonsense"}), json.dumps([1])):
        async with _open(api, api.auth()) as ws:
            await _started(ws)
            await ws.send(bad)
            assert await _closed_with(ws) == Close.BAD_MESSAGE
    async with _open(api, api.auth()) as ws:
        assert (await _recv(ws))["op"] == "init"
        await ws.send(json.dumps({"op": "subscribe", "data": {"event_types": ["call.nope"]}}))
        assert await _closed_with(ws) == Close.BAD_MESSAGE


async def test_failed_auths_are_rate_limited_per_address(
    db_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    async with call_stack(db_url, sshd, tmp_path, limit_auth_failures_per_minute=2) as stack:
        codes = []
        for _ in range(3):
            async with _open(stack, {"Authorization": "Bearer not-the-secret-at-all"}) as ws:
                codes.append(await _closed_with(ws))
        assert codes == [Close.BAD_AUTH, Close.BAD_AUTH, Close.AUTH_LIMITED]


async def test_subscribe_filters_by_call_and_event_type(api: Stack) -> None:
    for extension in ("151", "152"):
        await api.control.set_scenario(extension, QUICK)
    async with _open(api, api.auth()) as by_type, _open(api, api.auth()) as by_extension:
        await _started(by_type, {"event_types": ["call.connected", "call.completed"]})
        await _started(by_extension, {"extension": "152"})
        first = await place(api, "151", end=False)
        second = await place(api, "152", end=False)
        typed = await _events_until_end(by_type, first)
        assert [m["event"] for m in typed if m["data"]["call_id"] == first] == [
            "call.connected",
            "call.completed",
        ]
        assert all(m["event"] in {"call.connected", "call.completed"} for m in typed)
        mine = await _events_until_end(by_extension, second)
        assert {m["data"]["call_id"] for m in mine} == {second}
    async with _open(api, api.auth()) as by_call:
        await _started(by_call, {"call_id": second}, resume_after=0)
        replayed = await _events_until_end(by_call, second)
        log = await settled(api, second)
        assert [m["id"] for m in replayed] == [e.event_id for e in log]


async def test_resume_after_gets_exactly_the_missed_events(api: Stack) -> None:
    for extension in ("151", "152", "153"):
        await api.control.set_scenario(extension, QUICK)
    async with _open(api, api.auth()) as ws:
        await _started(ws)
        first = await place(api, "151", end=False)
        last = (await _events_until_end(ws, first))[-1]["id"]
    missed = await place(api, "152")
    await settled(api, missed)
    async with _open(api, api.auth()) as ws:
        await _started(ws, resume_after=last)
        got = await _events_until_end(ws, missed)
        live = await place(api, "153", end=False)
        got += await _events_until_end(ws, live)
        with pytest.raises(TimeoutError):  # no repeat comes after
            await _recv(ws, 0.5)
    expected = [e.event_id for e in await stored(api) if e.event_id > last]
    assert [m["id"] for m in got] == expected
    async with _open(api, api.auth()) as ws:  # not an id: a reset, the log's last id
        await _started(ws, resume_after="soon")
        reset = await _recv(ws)
        assert (reset["op"], reset["data"]["reason"]) == ("reset", "unknown")
        assert reset["id"] == reset["data"]["last_event_id"] == expected[-1]
        assert reset["data"]["calls"] == []


async def test_a_slow_consumer_is_closed_and_resumes_from_its_last_id(
    db_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    """A queue of 1 event: a tick that stores several calls' transitions at once (polled
    with `asterisk -rx`: each tick's moves are published together) overflows it."""
    async with call_stack(
        db_url, sshd, tmp_path, host={"transport": "rx"}, track_interval=0.5, ws_queue=1
    ) as stack:
        extensions = [str(code) for code in range(151, 156)]
        for extension in extensions:
            await stack.control.set_scenario(extension, QUICK)
        got: list[dict[str, Any]] = []
        async with _open(stack, stack.auth()) as ws:
            await _started(ws)
            calls = await asyncio.gather(*(place(stack, e, end=False) for e in extensions))
            with pytest.raises(ConnectionClosed):
                while True:
                    got.append(await _recv(ws))
            assert ws.close_code == Close.SLOW_CONSUMER
        for call_id in calls:
            await stack.ended(call_id)
            await settled(stack, call_id)
        last = got[-1]["id"] if got else 0
        async with _open(stack, stack.auth()) as ws:
            await _started(ws, resume_after=last)
            expected = [e.event_id for e in await stored(stack) if e.event_id > last]
            rest = [(await _recv(ws))["id"] for _ in expected]
        assert [m["id"] for m in got] + rest == [e.event_id for e in await stored(stack)]


async def test_stream_cap_and_a_disabled_enterprise(
    db_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    async with (
        call_stack(db_url, sshd, tmp_path, streams_per_enterprise=1) as stack,
        _open(stack, stack.auth()) as first,
    ):
        await _started(first)
        async with _open(stack, stack.auth()) as second:
            assert await _closed_with(second) == Close.TOO_MANY_STREAMS
        async with opened(stack.db_url) as database:
            await set_active(database, "0367", False)  # `callgate enterprise disable`
        assert await _closed_with(first, 10) == Close.DISABLED


async def test_the_server_pings_a_quiet_connection(
    api: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service runs in this process: its quiet period is shortened here."""
    monkeypatch.setattr(ws_module, "KEEPALIVE", 0.3)
    async with _open(api, api.auth()) as ws:
        await _started(ws)
        first, second = await _recv(ws, 5), await _recv(ws, 5)
        assert (first["op"], second["op"]) == ("ping", "ping")
        assert first["data"]["payload"] != second["data"]["payload"]
        await ws.send(json.dumps({"op": "pong", "data": first["data"]}))  # answered: fine
        assert (await _recv(ws, 5))["op"] == "ping"
