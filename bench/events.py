"""Events: how soon a transition Asterisk prints reaches a client over SSE, WebSocket and a
webhook, and what 100 subscribers and 10 webhook endpoints cost the service per call.

    python -m bench.events [--quick] [--calls N] [--rounds N]   # this part alone
        [--subscribers N] [--endpoints N] [--enterprises N]   # another mix (100, 10, 5)

The single-host set-up of `bench/listening.py` (the real sshd whose `asterisk` is the
simulator, its daemon in a process of its own, one fresh PostgreSQL database) with
``ENTERPRISES`` enterprises on that host, and `callgate serve` as its own process, started
once per turn, *attached* or *none*, in the order attached, none, none, attached, ... so that
a drift of the machine hits both alike:

- attached: ``SUBSCRIBERS`` event streams open, spread evenly over the enterprises, half of
  each enterprise's (the odd one SSE) on `/v1/events` (SSE: `listening.SseClient`) and half
  on `/v1/ws` (`WsClient`), with ``CALLGATE_STREAMS_PER_ENTERPRISE`` raised to let them in; and
  ``ENDPOINTS`` webhook endpoints, spread alike, each a receiver of its own in this process on
  127.0.0.1 (`WebhookReceiver`, answering 204), added through `POST /v1/webhooks` before the
  measured calls and removed after them. The dispatcher polls every
  ``CALLGATE_WEBHOOK_POLL_INTERVAL`` (the default, 0.5 s);
- none: no stream, no endpoint.

Each turn: a sentinel call that stays up keeps the host's listening console open (as in
`bench/listening.py`); once its ``connected`` event has reached every client, ``IDLE`` s
without calls are measured apart (what the service spends per second whatever the calls: the
dispatcher's polls, the streams' keep-alives); then ``calls`` calls through the legacy
endpoint, one every ``SPACING`` s, from the enterprises in turn (the scenario of
`bench/listening.py`). The CPU window runs from just before the first call to ``TAIL`` s after
the last one was placed, and when attached on until every subscriber and endpoint has had the
terminal event of each of its enterprise's calls (at most ``END_WAIT`` s more): the same calls
and at least the same time in both modes.

The lag of an event on a channel is its arrival at the client (``time.time()`` in this process
just after the bytes that complete it were read) minus the moment the simulator daemon wrote the
line that drives it to a console (``Pushed.at``, the daemon's own record; one clock for both
processes), for the transitions a heard line drives (`listening.HEARD`), over every client of
that channel: a subscriber late in the service's fan-out counts as it is.

CPU per call: each process's on-CPU time as the scheduler counts it (`listening.snapshot`):
`callgate serve`, and beside it the database's PostgreSQL backends (the dispatcher reads the
event log and writes the outbox). The goal: the service's CPU per call attached at most
``GOAL_RATIO`` times that with none. After the turns, the libraries' floor for the same
deliveries is measured (`bench.events_floor`); when none's CPU plus that floor is already over
the goal, the goal is out of reach here (`goals`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx
import uvloop
from sqlalchemy import select
from tests.support.sshd import SshdServer
from websockets.asyncio.client import ClientConnection, connect

from bench import events_floor, listening, procs, setup
from bench.goals import goal_lines
from bench.listening import Arrival, Cpu, LagSummary, Placed, legacy_call
from bench.load import HttpLane
from callgate.db.enterprises import add_enterprise
from callgate.db.executor import connect as connect_database
from callgate.db.models import CALLS
from callgate.domain.states import CallState
from callgate.simulator.daemon import Pushed

CHANNELS = ("sse", "ws", "webhook")
ENTERPRISES = 5
SUBSCRIBERS = 100  # over every enterprise; half SSE, half WebSocket
ENDPOINTS = 10  # webhook endpoints over every enterprise
SPACING = 0.25  # seconds between two measured calls
TAIL = 4.0  # seconds after the last call is placed that the CPU window lasts at least
END_WAIT = 15.0  # seconds more for every client's terminal events (attached)
IDLE = 2.0  # seconds measured before the calls with the host live and nothing happening
GOAL_RATIO = 1.10
POLL_INTERVAL = 0.5  # the service's default `CALLGATE_WEBHOOK_POLL_INTERVAL`, set explicitly
FIRST_NUMBER = 367  # the enterprises' numbers: 0367 (`setup.seed_rows`'s), 0368, ...
NO_CONSOLE = -1  # `listening.caused_at`'s reference console: none here, every push counts
# Events a call of the scenario sends to each stream and endpoint of its enterprise: its
# `initiated`, then one per transition a line drives.
EVENTS_PER_CALL = 1 + len(listening.HEARD)


# -- pure parts -----------------------------------------------------------------------------


def numbers(count: int) -> list[str]:
    """The enterprises' numbers, the one `setup.seed_rows` makes first."""
    return [f"{FIRST_NUMBER + i:04d}" for i in range(count)]


def spread(total: int, parts: int) -> list[int]:
    """``total`` things over ``parts`` as evenly as can be (the first parts take the rest)."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def cause_times(placed: Iterable[Placed], pushes: Sequence[Pushed]) -> dict[tuple[str, str], float]:
    """When the simulator first wrote, to any console, the line that drives each heard
    transition (`listening.HEARD`) of each call: by (call id, state); a transition with no
    such line is left out."""
    found: dict[tuple[str, str], float] = {}
    for call in placed:
        for state in listening.HEARD:
            pattern = listening.cause(state, call.code, call.phone)
            at = None if pattern is None else listening.caused_at(pushes, pattern, NO_CONSOLE)
            if at is not None:
                found[call.call_id, state] = at[0]
    return found


def lags(arrivals: Iterable[Arrival], causes: Mapping[tuple[str, str], float]) -> list[float]:
    """Seconds from each arrival's line to the arrival, for the arrivals a line drives."""
    return [
        arrival.at - causes[arrival.call_id, arrival.state]
        for arrival in arrivals
        if (arrival.call_id, arrival.state) in causes
    ]


def summary(seconds: Iterable[float]) -> LagSummary:
    """`listening.LagSummary` of lags in seconds."""
    return LagSummary.of(listening.Lag("", "", value, True) for value in seconds)


@dataclass(frozen=True)
class Turn:
    """What one turn (one service, one mode) measured."""

    calls: int  # placed
    failed: int  # refused by the service
    unended: int  # placed calls whose row had not ended when the window closed
    window: float  # seconds
    cpu: Cpu
    idle: Cpu = field(default_factory=Cpu)  # over IDLE seconds before the calls
    lags: Mapping[str, Sequence[float]] = field(default_factory=dict)  # by channel
    expected: Mapping[str, int] = field(default_factory=dict)  # heard events due, by channel
    late: int = 0  # clients still missing a terminal event after END_WAIT (attached)


@dataclass(frozen=True)
class ModeResult:
    """One mode's turns pooled."""

    attached: bool
    turns: int = 0
    calls: int = 0
    failed: int = 0
    unended: int = 0
    window: float = 0.0
    cpu: Cpu = field(default_factory=Cpu)
    idle: Cpu = field(default_factory=Cpu)
    lags: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    expected: Mapping[str, int] = field(default_factory=dict)
    late: int = 0

    def add(self, turn: Turn) -> ModeResult:
        return ModeResult(
            attached=self.attached,
            turns=self.turns + 1,
            calls=self.calls + turn.calls,
            failed=self.failed + turn.failed,
            unended=self.unended + turn.unended,
            window=self.window + turn.window,
            cpu=self.cpu + turn.cpu,
            idle=self.idle + turn.idle,
            lags={
                channel: self.lags.get(channel, ()) + tuple(turn.lags.get(channel, ()))
                for channel in CHANNELS
            },
            expected={
                channel: self.expected.get(channel, 0) + turn.expected.get(channel, 0)
                for channel in CHANNELS
            },
            late=self.late + turn.late,
        )

    def per_call_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.calls if self.calls else 0.0

    def idle_ms_per_second(self, seconds: float) -> float:
        """CPU ms per second of the idle windows (IDLE s per turn)."""
        return seconds * 1000 / (self.turns * IDLE) if self.turns else 0.0

    def summary(self, channel: str) -> LagSummary:
        return summary(self.lags.get(channel, ()))


@dataclass(frozen=True)
class EventsResult:
    attached: ModeResult
    none: ModeResult
    enterprises: int = ENTERPRISES
    subscribers: int = SUBSCRIBERS
    endpoints: int = ENDPOINTS
    spacing: float = SPACING
    poll_interval: float = POLL_INTERVAL
    floor: events_floor.Floor | None = None  # the same run's (`bench.events_floor`)


def ratio(result: EventsResult) -> float | None:
    """The service's CPU per call attached over none (None without a measurement)."""
    attached = result.attached.per_call_ms(result.attached.cpu.service)
    none = result.none.per_call_ms(result.none.cpu.service)
    return attached / none if attached > 0 and none > 0 else None


def shares(result: EventsResult) -> tuple[float, float]:
    """The streams and endpoints of a call's enterprise, on average."""
    return result.subscribers / result.enterprises, result.endpoints / result.enterprises


def floor_extra_ms(result: EventsResult) -> float | None:
    """The least CPU per call that attaching can add: each of a call's events sent to its
    enterprise's share of the streams and endpoints at the floor's cost (None unmeasured)."""
    if result.floor is None:
        return None
    return EVENTS_PER_CALL * result.floor.per_event_ms(*shares(result))


def floor_ratio(result: EventsResult) -> float | None:
    """The best ratio attached / none the floor allows: none's CPU per call plus the least
    attaching adds, over none's (None without both measurements)."""
    extra = floor_extra_ms(result)
    none = result.none.per_call_ms(result.none.cpu.service)
    return (none + extra) / none if extra is not None and none > 0 else None


# -- the clients ------------------------------------------------------------------------------


class Inbox:
    """Arrivals of one client (a stream or an endpoint) of one enterprise."""

    def __init__(self, number: str) -> None:
        self.number = number
        self.arrivals: list[Arrival] = []

    def ended(self) -> set[str]:
        """The calls whose terminal event has arrived."""
        return {a.call_id for a in self.arrivals if CallState(a.state).is_terminal}


class SseInbox(Inbox):
    """`listening.SseClient`'s arrivals, with its enterprise."""

    def __init__(self, number: str, client: listening.SseClient) -> None:
        super().__init__(number)
        self.arrivals = client.arrivals  # the same list: filled as events come


class WsClient(Inbox):
    """`/v1/ws` with the Bearer header on the upgrade, started live (no resume); every
    event's arrival, as it comes."""

    def __init__(self, number: str, port: int, secret: str) -> None:
        super().__init__(number)
        self._url, self._secret = f"ws://127.0.0.1:{port}/v1/ws", secret
        self._socket: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WsClient:
        headers = {"Authorization": f"Bearer {self._secret}"}
        self._socket = await connect(self._url, additional_headers=headers, proxy=None)
        init = json.loads(await asyncio.wait_for(self._socket.recv(), 10))
        if init.get("op") != "init":
            raise RuntimeError(f"/v1/ws answered {init}")
        await self._socket.send(json.dumps({"op": "start"}))
        started = json.loads(await asyncio.wait_for(self._socket.recv(), 10))
        if started != {"op": "start", "code": 0}:
            raise RuntimeError(f"/v1/ws did not start: {started}")
        self._task = asyncio.create_task(self._read(self._socket))
        return self

    async def _read(self, socket: ClientConnection) -> None:
        async for raw in socket:
            at = time.time()
            message = json.loads(raw)
            if message.get("op") == "event":
                data = message["data"]
                self.arrivals.append(Arrival(data["call_id"], data["state"], at))

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._socket is not None:
            await self._socket.close()


class WebhookReceiver(Inbox):
    """One endpoint's receiver on 127.0.0.1: HTTP/1.1 with kept connections, a few lines as
    `bench/load.py` speaks it; records each delivery's event and answers 204 (the signature is
    not checked: that is the receiver's cost, not the service's)."""

    def __init__(self, number: str) -> None:
        super().__init__(number)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def __aenter__(self) -> WebhookReceiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:  # the dispatcher's kept connections
                writer.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                at = time.time()
                data = json.loads(body)["data"]
                self.arrivals.append(Arrival(data["call_id"], data["state"], at))
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        self._writers.discard(writer)
        writer.close()


# -- the measurement ------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench(listening.Bench):
    """`listening.Bench`, and how many streams and endpoints attached turns open."""

    subscribers: int = SUBSCRIBERS
    endpoints: int = ENDPOINTS


async def seed(url: str, sshd: SshdServer, count: int) -> dict[str, str]:
    """`setup.seed_rows`'s enterprise and host, and ``count - 1`` more enterprises on that
    host; every enterprise's secret by number."""
    first, *others = numbers(count)
    found = {first: await setup.seed_rows(url, sshd, "console")}
    database = connect_database(url)
    await database.open()
    try:
        for number in others:
            found[number] = secrets.token_hex(16)
            await add_enterprise(database, number, f"bench {number}", "127.0.0.1", found[number])
    finally:
        await database.close()
    return found


async def not_ended(url: str, call_ids: Sequence[str]) -> int:
    """How many of ``call_ids`` have no end in the call log."""
    if not call_ids:
        return 0
    database = connect_database(url)
    await database.open()
    try:
        query = select(CALLS.c.id).where(CALLS.c.id.in_(call_ids), CALLS.c.ended_at.is_not(None))
        return len(call_ids) - len(await database.rows(query))
    finally:
        await database.close()


async def add_endpoints(
    client: httpx.AsyncClient, bench: Bench, receivers: Sequence[WebhookReceiver]
) -> list[tuple[str, int]]:
    """One endpoint per receiver, added by its enterprise (`POST /v1/webhooks`); their
    (secret, id), to remove them."""
    added = []
    for receiver in receivers:
        auth = {"Authorization": f"Bearer {bench.secrets[receiver.number]}"}
        url = f"http://127.0.0.1:{receiver.port}/hooks"
        answer = await client.post("/v1/webhooks", json={"url": url}, headers=auth)
        if answer.status_code != 201:
            raise RuntimeError(f"POST /v1/webhooks answered {answer.status_code}: {answer.text}")
        added.append((bench.secrets[receiver.number], int(answer.json()["id"])))
    return added


async def remove_endpoints(client: httpx.AsyncClient, added: Sequence[tuple[str, int]]) -> None:
    for secret, endpoint_id in added:
        await client.delete(
            f"/v1/webhooks/{endpoint_id}", headers={"Authorization": f"Bearer {secret}"}
        )


async def all_ended(inboxes: Sequence[Inbox], by_number: Mapping[str, set[str]]) -> int:
    """Wait (at most END_WAIT) until every inbox has had the terminal event of each call of its
    enterprise; how many inboxes still lack one."""
    deadline = time.monotonic() + END_WAIT
    while True:
        short = sum(1 for inbox in inboxes if not by_number[inbox.number] <= inbox.ended())
        if not short or time.monotonic() > deadline:
            return short
        await asyncio.sleep(0.05)


async def heard(inboxes: Mapping[str, Sequence[Inbox]], number: str, call_id: str) -> None:
    """Wait (at most END_WAIT) until every client of enterprise ``number`` has had the call's
    ``connected`` event."""
    ours = [inbox for channel in CHANNELS for inbox in inboxes[channel] if inbox.number == number]
    deadline = time.monotonic() + END_WAIT
    while True:
        done = all(
            any(a.call_id == call_id and a.state == "connected" for a in inbox.arrivals)
            for inbox in ours
        )
        if done or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


async def turn(bench: Bench, attached: bool, index: int, calls: int) -> Turn:
    """One service, one mode: the sentinel, then ``calls`` measured calls (see the module)."""
    control = bench.host.control
    enterprises = list(bench.secrets)
    codes = [str(10000 + 1000 * index + i) for i in range(calls)]
    sentinel_code = str(9000 + index)
    for code in codes:
        await control.set_scenario(code, listening.SCENARIO)
    await control.set_scenario(sentinel_code, listening.SENTINEL)
    per_enterprise = max(spread(bench.subscribers, len(enterprises)))
    env = {
        "CALLGATE_STREAMS_PER_ENTERPRISE": str(per_enterprise + 1),
        "CALLGATE_WEBHOOK_ALLOW_PRIVATE": "true",  # the receivers are on 127.0.0.1
        "CALLGATE_WEBHOOK_POLL_INTERVAL": str(POLL_INTERVAL),
    }
    inboxes: dict[str, list[Inbox]] = {channel: [] for channel in CHANNELS}
    receivers: list[WebhookReceiver] = []
    async with (
        setup.callgate_service(bench.url, bench.host.workdir, env) as service,
        contextlib.AsyncExitStack() as clients,
        httpx.AsyncClient(base_url=service.base) as api,
    ):
        added: list[tuple[str, int]] = []
        if attached:
            for number, streams in zip(
                enterprises, spread(bench.subscribers, len(enterprises)), strict=True
            ):
                secret = bench.secrets[number]
                for i in range(streams):
                    if i % 2 == 0:
                        sse = listening.SseClient(service.port, secret)
                        await clients.enter_async_context(sse)
                        inboxes["sse"].append(SseInbox(number, sse))
                    else:
                        ws = WsClient(number, service.port, secret)
                        inboxes["ws"].append(await clients.enter_async_context(ws))
            for number, count in zip(
                enterprises, spread(bench.endpoints, len(enterprises)), strict=True
            ):
                for _ in range(count):
                    receivers.append(await clients.enter_async_context(WebhookReceiver(number)))
            inboxes["webhook"] += receivers
            added = await add_endpoints(api, bench, receivers)
        lane = HttpLane(service.port)
        try:
            started = time.time()
            first_secret = bench.secrets[enterprises[0]]
            sentinel = await legacy_call(lane, first_secret, sentinel_code, f"+375296{index:05d}")
            if sentinel is None:
                raise RuntimeError("the sentinel call failed")
            await asyncio.sleep(listening.SENTINEL_SETTLE)
            # Its events' deliveries (a poll behind) are not the idle window's.
            await heard(inboxes, enterprises[0], sentinel)
            quiet = bench.snapshot(service.pid)
            await asyncio.sleep(IDLE)  # what the service spends without calls
            before = bench.snapshot(service.pid)
            window_start = time.perf_counter()
            placed: list[Placed] = []
            by_number: dict[str, set[str]] = {number: set() for number in enterprises}
            failed = 0
            for i, code in enumerate(codes):
                await asyncio.sleep(max(0.0, window_start + i * SPACING - time.perf_counter()))
                number = enterprises[i % len(enterprises)]
                phone = f"+3752977{index:02d}{i:04d}"
                call_id = await legacy_call(lane, bench.secrets[number], code, phone)
                if call_id is None:
                    failed += 1
                    continue
                placed.append(Placed(call_id, code, phone))
                by_number[number].add(call_id)
            await asyncio.sleep(
                max(0.0, window_start + calls * SPACING + TAIL - time.perf_counter())
            )
            everyone = [inbox for channel in CHANNELS for inbox in inboxes[channel]]
            late = await all_ended(everyone, by_number) if attached else 0
            after = bench.snapshot(service.pid)
            window = time.perf_counter() - window_start
            await remove_endpoints(api, added)
            await control.rx("channel request hangup all")  # the sentinel
            pushes = await control.pushed(since=started)
        finally:
            lane.close()
    for code in [*codes, sentinel_code]:
        await control.set_scenario(code, None)
    causes = cause_times(placed, pushes)
    call_number = {
        call_id: number for number, call_ids in by_number.items() for call_id in call_ids
    }
    return Turn(
        calls=len(placed),
        failed=failed,
        unended=await not_ended(bench.url, [p.call_id for p in placed]),
        window=window,
        cpu=listening.spent(before, after),
        idle=listening.spent(quiet, before),
        lags={
            channel: [lag for inbox in inboxes[channel] for lag in lags(inbox.arrivals, causes)]
            for channel in CHANNELS
        },
        expected={
            channel: sum(
                1
                for inbox in inboxes[channel]
                for (call_id, _state) in causes
                if call_number.get(call_id) == inbox.number
            )
            for channel in CHANNELS
        },
        late=late,
    )


async def measure(
    host: setup.Stage, calls: int, rounds: int, subscribers: int = SUBSCRIBERS,
    endpoints: int = ENDPOINTS, enterprises: int = ENTERPRISES,
) -> EventsResult:  # fmt: skip
    """``rounds`` rounds of an attached turn and one with none (ABBA order); attached:
    ``subscribers`` streams and ``endpoints`` webhook endpoints."""
    if not 0 < calls < 1000:
        raise ValueError("calls per turn: 1 to 999 (each turn numbers its extensions apart)")
    pooled = {mode: ModeResult(attached=mode) for mode in (True, False)}
    async with setup.database() as url:
        found = await seed(url, host.sshd, enterprises)
        bench = Bench(host, url, found, subscribers, endpoints)
        for index, mode in enumerate(setup.abba((True, False), rounds)):
            pooled[mode] = pooled[mode].add(await turn(bench, mode, index, calls))
    floor = await events_floor.measure()
    return EventsResult(
        pooled[True], pooled[False], enterprises, subscribers, endpoints, floor=floor
    )


# -- the report -----------------------------------------------------------------------------

TITLES = {"sse": "SSE `/v1/events`", "ws": "WebSocket `/v1/ws`", "webhook": "webhook"}


def _cpu_row(name: str, mode: ModeResult) -> str:
    ms = mode.per_call_ms
    return (
        f"| {name} | {mode.calls} | {mode.window:.1f} | {ms(mode.cpu.service):.2f} | "
        f"{ms(mode.cpu.postgres):.2f} | {ms(mode.cpu.service + mode.cpu.postgres):.2f} |"
    )


def _ratio_text(result: EventsResult) -> str:
    found = ratio(result)
    return "no measurement" if found is None else f"{found:.2f} times ({(found - 1) * 100:+.0f} %)"


def section(result: EventsResult) -> list[str]:
    """The report's tables: lag per channel; the service's CPU per call, attached and none."""
    on, off = result.attached, result.none
    lines = [
        "## Events: from the simulator's line to SSE, WebSocket and webhooks",
        "",
        f"One host, {result.enterprises} enterprises on it; `callgate serve` once per turn, "
        f"attached or with none ({on.turns} + {off.turns} turns, ABBA order), {on.calls} + "
        f"{off.calls} calls through the legacy endpoint from the enterprises in turn, one every "
        f"{result.spacing:g} s. Attached: {result.subscribers} event streams (half SSE, half "
        f"WebSocket) and {result.endpoints} webhook endpoints (receivers on 127.0.0.1 answering "
        f"204; the dispatcher polls every {result.poll_interval:g} s), spread evenly over the "
        "enterprises. Lag: an event's arrival at a client minus the moment the simulator "
        "daemon wrote the line that drives it, over every client of the channel "
        "(`bench/events.py`).",
        "",
        "| channel | events/due | p50 ms | p99 ms | max ms | mean ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for channel in CHANNELS:
        found = on.summary(channel)
        lines.append(
            f"| {TITLES[channel]} | {found.count}/{on.expected.get(channel, 0)} | "
            f"{found.p50_ms:.1f} | {found.p99_ms:.1f} | {found.max_ms:.1f} | {found.mean_ms:.1f} |"
        )
    lines += [
        "",
        "| CPU per call | calls | window s | service ms | PostgreSQL ms | both ms |",
        "|---|---:|---:|---:|---:|---:|",
        _cpu_row(f"attached ({result.subscribers} streams, {result.endpoints} endpoints)", on),
        _cpu_row("none", off),
        "",
        f"Service attached / none: {_ratio_text(result)}. From just before the first call to "
        f"{TAIL:g} s after the last was placed (attached: and until every client had each "
        "terminal event); the scheduler's own count per process. Failed calls "
        f"{on.failed} attached, {off.failed} none; calls not ended when the window closed "
        f"{on.unended} attached, {off.unended} none; clients still missing a terminal event "
        f"after {END_WAIT:g} s more: {on.late}.",
        "",
        f"Without calls ({IDLE:g} s before them, the sentinel up and heard), the service spent "
        f"{on.idle_ms_per_second(on.idle.service):.1f} ms of CPU a second attached against "
        f"{off.idle_ms_per_second(off.idle.service):.1f} with none (PostgreSQL "
        f"{on.idle_ms_per_second(on.idle.postgres):.1f} against "
        f"{off.idle_ms_per_second(off.idle.postgres):.1f}): the part of the difference that "
        "does not grow with the calls (the dispatcher's polls, the streams' keep-alives).",
    ]
    floor, extra, best = result.floor, floor_extra_ms(result), floor_ratio(result)
    if floor is not None and extra and best is not None:
        spent = on.per_call_ms(on.cpu.service) - off.per_call_ms(off.cpu.service)
        streams, endpoints = shares(result)
        lines += [
            "",
            f"The floor, same run (`bench/events_floor.py`: the libraries alone, no callgate "
            f"code): a stream message {floor.message_ms:.3f} ms of a bare uvicorn and Starlette "
            f"server's CPU, a webhook request {floor.request_ms:.3f} ms of httpcore's. A call "
            f"sends {EVENTS_PER_CALL} events to {streams:g} streams and {endpoints:g} endpoints "
            f"of its enterprise: at the floor {extra:.2f} ms of CPU more per call, "
            f"{best:.2f} times none's ({(best - 1) * 100:+.0f} %; goal "
            f"{(GOAL_RATIO - 1) * 100:+.0f} %). The service spent {spent:.2f} ms more "
            f"({spent / extra:.1f} times the floor's).",
        ]
    return lines


def goals(result: EventsResult) -> list[tuple[str, bool | None, str]]:
    """(goal, met, numbers): the service's CPU per call attached against none; the lags.
    ``met`` is None (out of reach here) when every call went through and even the floor's
    ratio is over the goal, the rule of `bench.single`'s bars."""
    found, best = ratio(result), floor_ratio(result)
    on, off = result.attached, result.none
    complete = on.failed == off.failed == 0 and on.unended == off.unended == 0 and on.late == 0
    met: bool | None = found is not None and found <= GOAL_RATIO and complete
    if not met and complete and best is not None and best > GOAL_RATIO:
        met = None
    lag_text = "; ".join(
        f"{channel} p50 {found.p50_ms:.1f} ms, p99 {found.p99_ms:.1f} ms"
        for channel, found in ((channel, on.summary(channel)) for channel in CHANNELS)
    )
    return [
        (
            f"events: the service's CPU per call with {result.subscribers} subscribers and "
            f"{result.endpoints} webhook endpoints at most {(GOAL_RATIO - 1) * 100:.0f} % above "
            "none",
            met,
            f"{on.per_call_ms(on.cpu.service):.2f} against {off.per_call_ms(off.cpu.service):.2f} "
            f"ms: {_ratio_text(result)}{_floor_text(result)}; lag from the line: {lag_text}",
        )
    ]


def _floor_text(result: EventsResult) -> str:
    extra, best = floor_extra_ms(result), floor_ratio(result)
    if extra is None or best is None:
        return ""
    return f"; the floor alone adds {extra:.2f} ms: {best:.2f} times ({(best - 1) * 100:+.0f} %)"


# -- alone ----------------------------------------------------------------------------------


async def _alone(
    calls: int, rounds: int, subscribers: int, endpoints: int, enterprises: int
) -> EventsResult:
    with setup.stage("callgate-bench-events-") as host:
        return await measure(host, calls, rounds, subscribers, endpoints, enterprises)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="8 calls per turn, 1 round")
    parser.add_argument("--calls", type=int, default=None, help="measured calls per turn (30)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of two turns (2)")
    parser.add_argument(
        "--subscribers", type=int, default=SUBSCRIBERS, help="streams attached (half WS)"
    )
    parser.add_argument("--endpoints", type=int, default=ENDPOINTS, help="webhook endpoints")
    parser.add_argument(
        "--enterprises", type=int, default=ENTERPRISES, help="enterprises calling, in turn"
    )
    args = parser.parse_args(argv)
    calls = args.calls or (8 if args.quick else 30)
    rounds = args.rounds or (1 if args.quick else 2)
    procs.raise_open_files()
    if not 0 < args.enterprises < 1000:
        parser.error("--enterprises: 1 to 999")
    result = uvloop.run(_alone(calls, rounds, args.subscribers, args.endpoints, args.enterprises))
    print("\n".join([*section(result), "", *goal_lines(goals(result))]))


if __name__ == "__main__":
    main()
