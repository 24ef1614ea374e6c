"""Listening: how soon a transition Asterisk prints reaches `/v1/events`, and what the
listening console costs per call.

    python -m bench.listening [--calls N] [--rounds N]     # this part alone, about a minute

One host (the real sshd whose `asterisk` is the simulator, its daemon in a process of its own,
as `bench/setup.py` starts them), one fresh PostgreSQL database, and `callgate serve` as its own
process, started once per turn with listening on or off (`CALLGATE_TRACK_LISTEN`), in the order
on, off, off, on, ... so that a drift of the machine hits both modes alike. Each turn:

1. An SSE client on `/v1/events` (a few lines of HTTP/1.1 over one socket, as `bench/load.py`
   sends its requests) and a *reference console*: this process's own connection to the
   simulator daemon at `core set verbose 3` (straight to the daemon, no SSH), so that the
   simulator prints every call's lines whether or not the service listens.
2. A sentinel call, connected at once and never ended, keeps the host live for the whole turn:
   the tracker keeps its listening console open from before the first measured call to after
   the last (it closes it when the host has no live calls). What opening it cost is measured
   apart, over the sentinel's first ``SENTINEL_SETTLE`` seconds (which also hear its first lines).
3. ``calls`` calls through the legacy endpoint, one every ``SPACING`` s, each with its own
   extension and phone and the scenario ``SCENARIO`` (about 1.6 s a call: about four overlap).
4. The turn ends when every measured call's terminal event has arrived.

The lag of an event is its arrival at the SSE client (``time.time()`` in this process, just
after the chunk that completes it was read from the socket) minus the moment the simulator
wrote the line that causes it (``Pushed.at`` from ``SimulatorDaemon.pushed``: ``time.time()``
in the daemon's process just after the block was handed to the console's connection; one clock
for both processes). The causing line is the one `calls/hearing.py` turns into that state
(``cause``); its moment is that of its push to the service's listening console when it got it,
else (listening off, or a line printed before the listening console opened) to the reference
console, in the same flush of the daemon's pump, microseconds apart.

CPU per call, from just before the first measured call to just after the last terminal event:
each process's on-CPU time as the scheduler counts it (``procs.exact_cpu_seconds``) for
`callgate serve`, the simulator daemon (the simulated Asterisk; it also writes every line to
the reference console, in both modes alike), the sshd's process tree (the SSH sessions and the
simulated `asterisk -r` consoles: what a real host would run besides Asterisk) and the
database's PostgreSQL backends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import statistics
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

import uvloop
from tests.support.sshd import SshdServer

from bench import procs, setup
from bench.goals import goal_lines
from bench.load import HttpLane
from bench.stats import percentile
from callgate.domain.states import CallState
from callgate.simulator.daemon import HOST, Pushed, SimulatorControl
from callgate.simulator.timeline import Scenario

SCENARIO = Scenario(agent_answer_after=0.3, customer_answer_after=0.3, talk=0.5)
# Connected within 0.2 s, then up until it is hung up (whatever the number of calls).
SENTINEL = Scenario(
    agent_answer_after=0.1, customer_answer_after=0.1, talk=3600.0, agent_hold=3600.0
)
SPACING = 0.4  # seconds between two measured calls
SENTINEL_SETTLE = 1.0  # seconds for the sentinel to be followed and the console opened
END_WAIT = 15.0  # seconds after the last call for every terminal event
GOAL_MS = 100.0
# The transitions a heard line drives (README, "Transitions as they happen"), in call order.
HEARD = ("ringing_agent", "agent_answered", "ringing_customer", "connected", "completed")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BASE = r"[^\s;']+"  # the rest of a Local channel's base name after "<exten>@"


# -- pure parts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placed:
    """A measured call: its id and the extension and phone that name its channels."""

    call_id: str
    code: str
    phone: str


@dataclass(frozen=True, slots=True)
class Arrival:
    """An SSE event as it reached the client: ``at`` is the wall clock."""

    call_id: str
    state: str
    at: float


@dataclass(frozen=True, slots=True)
class Lag:
    """One event's lag; ``heard``: its line reached the service's listening console."""

    call_id: str
    state: str
    seconds: float
    heard: bool


def cause(state: str, code: str, phone: str) -> re.Pattern[str] | None:
    """The cleaned console line (``clean_lines``) that drives ``state`` of the call placed
    from extension ``code`` to ``phone`` (``calls/hearing.py``); None for other states."""
    first, customer = rf"Local/{re.escape(code)}@{_BASE}", rf"Local/{re.escape(phone)}@{_BASE}"
    patterns = {
        "ringing_agent": rf"-- {first};1 is ringing",
        "agent_answered": rf"-- {first};1 answered",
        "ringing_customer": rf"-- {customer};1 is ringing",
        "connected": rf"-- {customer};1 answered {first};1",
        "completed": rf"== Spawn extension \([^()]*\) exited non-zero on '{first};2'",
    }
    pattern = patterns.get(state)
    return None if pattern is None else re.compile(pattern)


def clean_lines(text: str) -> list[str]:
    """A pushed block's lines without the console's colours and margins."""
    return [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]


def caused_at(
    pushes: Sequence[Pushed], pattern: re.Pattern[str], reference: int
) -> tuple[float, bool] | None:
    """(when the simulator wrote the first line matching ``pattern``, whether that was to a
    listening console): the earliest push to a console other than ``reference`` (the
    benchmark's own), else the earliest to ``reference``; None if no line matches."""
    heard = [p.at for p in pushes if p.console != reference and _says(p.text, pattern)]
    if heard:
        return min(heard), True
    seen = [p.at for p in pushes if p.console == reference and _says(p.text, pattern)]
    return (min(seen), False) if seen else None


def _says(text: str, pattern: re.Pattern[str]) -> bool:
    return any(pattern.fullmatch(line) for line in clean_lines(text))


def match_lags(
    arrivals: Iterable[Arrival], placed: Iterable[Placed], pushes: Sequence[Pushed], reference: int
) -> tuple[list[Lag], int]:
    """The lag of every event of ``placed`` calls that a heard line drives (``HEARD``), and
    how many such events had no line to match (0 unless the simulator's record fell short)."""
    calls = {call.call_id: call for call in placed}
    lags: list[Lag] = []
    unmatched = 0
    for arrival in arrivals:
        call = calls.get(arrival.call_id)
        pattern = cause(arrival.state, call.code, call.phone) if call else None
        if pattern is None:
            continue
        found = caused_at(pushes, pattern, reference)
        if found is None:
            unmatched += 1
            continue
        lags.append(Lag(arrival.call_id, arrival.state, arrival.at - found[0], found[1]))
    return lags, unmatched


def sse_events(text: str) -> tuple[list[tuple[str, str]], str]:
    """Complete events in ``text`` as (event, data), and the incomplete rest; comments
    (``: keepalive``) and events without data are skipped."""
    *blocks, rest = text.replace("\r\n", "\n").split("\n\n")
    events = []
    for block in blocks:
        name, data = "message", []
        for line in block.split("\n"):
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
        if data:
            events.append((name, "\n".join(data)))
    return events, rest


@dataclass(frozen=True)
class LagSummary:
    """Lags of one mode (and one state, or all), in ms."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def of(cls, lags: Iterable[Lag]) -> LagSummary:
        ms = sorted(lag.seconds * 1000 for lag in lags)
        if not ms:
            return cls(0, 0.0, 0.0, 0.0, 0.0)
        return cls(len(ms), percentile(ms, 0.5), percentile(ms, 0.99), ms[-1], statistics.fmean(ms))


@dataclass(frozen=True)
class Cpu:
    """CPU seconds spent in a window, per side."""

    service: float = 0.0
    daemon: float = 0.0
    ssh: float = 0.0  # the sshd's process tree: sessions and simulated consoles
    ssh_started: float = 0.0  # of which processes started in the window
    ssh_ended: int = 0  # processes of the tree that ended in the window (their time is lost)
    postgres: float = 0.0

    def __add__(self, other: Cpu) -> Cpu:
        return Cpu(
            self.service + other.service,
            self.daemon + other.daemon,
            self.ssh + other.ssh,
            self.ssh_started + other.ssh_started,
            self.ssh_ended + other.ssh_ended,
            self.postgres + other.postgres,
        )


@dataclass(frozen=True)
class ModeResult:
    """One mode's turns pooled."""

    listen: bool
    turns: int = 0
    calls: int = 0
    failed_calls: int = 0
    unended_turns: int = 0  # turns whose calls did not all end within END_WAIT
    lags: tuple[Lag, ...] = ()
    unmatched: int = 0
    cpu: Cpu = field(default_factory=Cpu)  # over the measured calls' window
    opening: Cpu = field(default_factory=Cpu)  # over the sentinel's first second

    def add(self, turn: Turn) -> ModeResult:
        return ModeResult(
            listen=self.listen,
            turns=self.turns + 1,
            calls=self.calls + len(turn.placed),
            failed_calls=self.failed_calls + turn.failed,
            unended_turns=self.unended_turns + (not turn.ended),
            lags=self.lags + tuple(turn.lags),
            unmatched=self.unmatched + turn.unmatched,
            cpu=self.cpu + turn.cpu,
            opening=self.opening + turn.opening,
        )

    def summary(self, state: str | None = None) -> LagSummary:
        return LagSummary.of(lag for lag in self.lags if state is None or lag.state == state)

    def heard(self) -> int:
        return sum(1 for lag in self.lags if lag.heard)

    def per_call_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.calls if self.calls else 0.0


@dataclass(frozen=True)
class ListeningResult:
    on: ModeResult
    off: ModeResult
    spacing: float
    scenario: Scenario


# -- the measurement ------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """What one turn (one service, one mode) measured."""

    placed: list[Placed]
    failed: int
    ended: bool  # every measured call's terminal event arrived within END_WAIT
    lags: list[Lag]
    unmatched: int
    cpu: Cpu
    opening: Cpu


class SseClient:
    """`GET /v1/events` over one kept socket; every event's arrival, as it comes."""

    def __init__(self, port: int, secret: str) -> None:
        self._port, self._secret = port, secret
        self.arrivals: list[Arrival] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> SseClient:
        reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port)
        self._writer.write(
            f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            f"Authorization: Bearer {self._secret}\r\n\r\n".encode("ascii")
        )
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        if head.split(" ", 2)[1] != "200":
            raise RuntimeError(f"/v1/events answered {head.splitlines()[0]}")
        chunked = "transfer-encoding: chunked" in head.lower()
        connected = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._read(reader, chunked, connected))
        await asyncio.wait_for(connected, 10)  # the subscription exists from here on
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writer is not None:
            self._writer.close()

    async def _read(
        self, reader: asyncio.StreamReader, chunked: bool, connected: asyncio.Future[None]
    ) -> None:
        text = ""
        while True:
            if chunked:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    return
                data = (await reader.readexactly(size + 2))[:-2]
            else:
                data = await reader.read(65536)
                if not data:
                    return
            at = time.time()
            text += data.decode()
            if not connected.done() and ": connected" in text:
                connected.set_result(None)
            events, text = sse_events(text)
            for _, payload in events:
                body = json.loads(payload)
                self.arrivals.append(Arrival(body["call_id"], body["state"], at))
            if events:
                self._changed.set()

    async def wait_ended(self, call_ids: Iterable[str]) -> None:
        """Wait until each of ``call_ids`` has had a terminal event (bound it by a timeout)."""
        wanted = set(call_ids)
        while not wanted <= {a.call_id for a in self.arrivals if CallState(a.state).is_terminal}:
            self._changed.clear()
            await self._changed.wait()


async def ended_within(sse: SseClient, call_ids: Iterable[str], seconds: float) -> bool:
    """Whether each of ``call_ids`` had its terminal event within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            await sse.wait_ended(call_ids)
    except TimeoutError:
        return False
    return True


@contextlib.asynccontextmanager
async def reference_console(control: SimulatorControl) -> AsyncIterator[int]:
    """This process's own console on the daemon at verbose 3 (the daemon's ``cx`` protocol);
    its engine console id. What the daemon pushes to it is read and dropped."""
    before = {item["console"] for item in await control.consoles()}
    reader, writer = await asyncio.open_connection(HOST, control.port)
    command = b"core set verbose 3"
    writer.write(b"cx %d\n" % len(command) + command)

    async def drain() -> None:
        while True:  # "out <m>\n" or "<status> <m>\n", then m bytes
            header = await reader.readuntil(b"\n")
            await reader.readexactly(int(header.split()[-1]))

    task = asyncio.create_task(drain())
    try:
        for _ in range(200):
            new = [
                item
                for item in await control.consoles()
                if item["console"] not in before and item["verbose"] == 3
            ]
            if new:
                break
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError("the reference console did not reach verbose 3")
        yield int(new[0]["console"])
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError, asyncio.IncompleteReadError):
            await task
        writer.close()


@dataclass(frozen=True)
class Snapshot:
    service: float
    daemon: float
    ssh: dict[int, float]
    postgres: dict[int, float]


def snapshot(service_pid: int, daemon_pid: int, sshd: SshdServer, database: str) -> Snapshot:
    """Every measured process's on-CPU seconds now."""
    return Snapshot(
        procs.exact_cpu_seconds(service_pid),
        procs.exact_cpu_seconds(daemon_pid),
        {pid: procs.exact_cpu_seconds(pid) for pid in sshd.process_ids()},
        {pid: procs.exact_cpu_seconds(pid) for pid in procs.postgres_backends(database)},
    )


def spent(before: Snapshot, after: Snapshot) -> Cpu:
    """The CPU each side spent between two snapshots."""
    ssh, started, ended = procs.tree_cpu_delta(before.ssh, after.ssh)
    postgres, _, _ = procs.tree_cpu_delta(before.postgres, after.postgres)
    return Cpu(
        after.service - before.service, after.daemon - before.daemon, ssh, started, ended, postgres
    )


async def legacy_call(lane: HttpLane, secret: str, code: str, phone: str) -> str | None:
    """Place a call through the legacy endpoint; its id, or None if it failed."""
    query = urlencode({"code": code, "phone": phone, "clientId": secret})
    status, body = await lane.get(f"/api/makecallexternal?{query}")
    if status != 200:
        return None
    call_id: str = json.loads(body)["call_id"]
    return call_id


@dataclass(frozen=True)
class Bench:
    """What every turn shares: the single-host stage, the database, and the secrets of the
    enterprises on that host by number (the first: `setup.seed_rows`'s)."""

    host: setup.Stage
    url: str
    secrets: Mapping[str, str]

    @property
    def database(self) -> str:
        return self.url.rsplit("/", 1)[1]

    def snapshot(self, service_pid: int) -> Snapshot:
        """`snapshot` of the service ``service_pid`` and of this stage's other processes."""
        return snapshot(service_pid, self.host.daemon.pid, self.host.sshd, self.database)


async def turn(bench: Bench, listen: bool, index: int, calls: int) -> Turn:
    """One service, one mode: the sentinel, then ``calls`` measured calls (see the module)."""
    control = bench.host.control
    secret = next(iter(bench.secrets.values()))
    codes = [str(10000 + 1000 * index + i) for i in range(calls)]
    sentinel_code = str(9000 + index)
    for code in codes:
        await control.set_scenario(code, SCENARIO)
    await control.set_scenario(sentinel_code, SENTINEL)
    env = {"CALLGATE_TRACK_LISTEN": "true" if listen else "false"}
    async with (
        setup.callgate_service(bench.url, bench.host.workdir, env) as service,
        reference_console(control) as reference,
        SseClient(service.port, secret) as sse,
    ):
        lane = HttpLane(service.port)
        try:
            started = time.time()
            # The sentinel is the service's first call: the SSH connection and the command
            # console open for it in both modes, the listening console only when listening.
            opened = bench.snapshot(service.pid)
            sentinel = await legacy_call(lane, secret, sentinel_code, f"+375296{index:05d}")
            if sentinel is None:
                raise RuntimeError("the sentinel call failed")
            await asyncio.sleep(SENTINEL_SETTLE)
            before = bench.snapshot(service.pid)
            placed: list[Placed] = []
            failed = 0
            first = time.perf_counter()
            for i, code in enumerate(codes):
                await asyncio.sleep(max(0.0, first + i * SPACING - time.perf_counter()))
                phone = f"+3752977{index:02d}{i:04d}"
                call_id = await legacy_call(lane, secret, code, phone)
                if call_id is None:
                    failed += 1
                else:
                    placed.append(Placed(call_id, code, phone))
            ended = await ended_within(sse, [p.call_id for p in placed], END_WAIT)
            after = bench.snapshot(service.pid)
            await control.rx("channel request hangup all")  # the sentinel
            await ended_within(sse, [sentinel], END_WAIT)
            pushes = await control.pushed(since=started)
        finally:
            lane.close()
    for code in [*codes, sentinel_code]:
        await control.set_scenario(code, None)
    lags, unmatched = match_lags(sse.arrivals, placed, pushes, reference)
    return Turn(placed, failed, ended, lags, unmatched, spent(before, after), spent(opened, before))


async def measure(host: setup.Stage, calls: int, rounds: int) -> ListeningResult:
    """``rounds`` rounds of a turn with listening on and one with it off (ABBA order)."""
    if not 0 < calls < 1000:
        raise ValueError("calls per turn: 1 to 999 (each turn numbers its extensions apart)")
    pooled = {listen: ModeResult(listen=listen) for listen in (True, False)}
    async with setup.database() as url:
        bench = Bench(host, url, {"0367": await setup.seed_rows(url, host.sshd, "console")})
        for index, listen in enumerate(setup.abba((True, False), rounds)):
            pooled[listen] = pooled[listen].add(await turn(bench, listen, index, calls))
    return ListeningResult(pooled[True], pooled[False], SPACING, SCENARIO)


# -- the report -----------------------------------------------------------------------------


def _row(name: str, on: LagSummary, off: LagSummary, expected: tuple[int, int]) -> str:
    return (
        f"| {name} | {on.count}/{expected[0]} | {on.p50_ms:.1f} | {on.p99_ms:.1f} | "
        f"{on.max_ms:.1f} | {off.count}/{expected[1]} | {off.p50_ms:.1f} | {off.p99_ms:.1f} | "
        f"{off.max_ms:.1f} |"
    )


def missing(mode: ModeResult) -> dict[str, int]:
    """Per transition, how many of the mode's calls had no event of it (not in call order)."""
    counts = {state: mode.calls - mode.summary(state).count for state in HEARD}
    return {state: count for state, count in counts.items() if count}


def _missing_text(mode: ModeResult) -> str:
    gaps = missing(mode)
    return ", ".join(f"{state} {count}" for state, count in gaps.items()) or "none"


def _cpu_row(name: str, mode: ModeResult, cpu: Cpu) -> str:
    ms = mode.per_call_ms
    total = cpu.service + cpu.daemon + cpu.ssh + cpu.postgres
    return (
        f"| {name} | {ms(cpu.service):.2f} | {ms(cpu.daemon):.2f} | {ms(cpu.ssh):.2f} | "
        f"{ms(cpu.postgres):.2f} | {ms(total):.2f} |"
    )


def section(result: ListeningResult) -> list[str]:
    """The report's tables: lags per transition, on and off; CPU per call, on and off."""
    on, off, s = result.on, result.off, result.scenario
    lines = [
        "## Listening: from the simulator's line to the SSE event",
        "",
        f"One host (the real sshd, the simulator's `asterisk`), `callgate serve` once per turn "
        f"with `CALLGATE_TRACK_LISTEN` on or off ({on.turns} + {off.turns} turns, ABBA order), "
        f"{on.calls} + {off.calls} calls through the legacy endpoint, one every "
        f"{result.spacing:g} s (agent answers after {s.agent_answer_after:g} s, customer "
        f"{s.customer_answer_after:g} s later, talk {s.talk:g} s). Lag: the event's arrival at "
        "an SSE client on `/v1/events` minus the moment the simulator daemon wrote the line "
        "that drives it to the listening console (`bench/listening.py`).",
        "",
        "| transition | on: events/calls | p50 ms | p99 ms | max ms | off: events/calls "
        "| p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for state in HEARD:
        lines.append(_row(state, on.summary(state), off.summary(state), (on.calls, off.calls)))
    everything = (len(HEARD) * on.calls, len(HEARD) * off.calls)
    lines.append(_row("**all five**", on.summary(), off.summary(), everything))
    lines += [
        "",
        f"Events that never came: with listening on {_missing_text(on)}; off "
        f"{_missing_text(off)} (a listing skips a stage it never sees, and a skipped stage is "
        "not made up; `steps` in `src/callgate/domain/states.py`). With listening on, "
        f"{on.heard()} of {len(on.lags)} events followed a line that the listening console "
        "had received (whether the service moved on that line or on a listing). Failed calls "
        f"{on.failed_calls} on, {off.failed_calls} off; turns whose calls did not all end "
        f"within {END_WAIT:g} s {on.unended_turns} on, {off.unended_turns} off; events "
        f"without a line {on.unmatched + off.unmatched}. A heard end is stored at once (a "
        "hangup by another process holds it instead: `HANGUP_HOLD` in "
        "`src/callgate/db/call_tracking.py`).",
        "",
        "| CPU per call, ms | service | simulated Asterisk | sshd + consoles | PostgreSQL | all |",
        "|---|---:|---:|---:|---:|---:|",
        _cpu_row("listening on", on, on.cpu),
        _cpu_row("listening off", off, off.cpu),
        _difference_row(on, off),
        "",
        "From just before the first measured call to the last terminal event (a call that "
        "stays up keeps the host live, so the listening console stays open throughout); the "
        "scheduler's own count per process. The simulated Asterisk also writes every line to "
        "the benchmark's reference console, in both modes alike. With listening on the "
        "service also stores and sends the stages a listing skips. Opening the listening console "
        "(once per host and spell of live calls), on minus off over the first "
        f"{SENTINEL_SETTLE:g} s of the sentinel: service "
        f"{_opening_ms(on, off, 'service'):.1f} ms, simulated Asterisk "
        f"{_opening_ms(on, off, 'daemon'):.1f} ms, sshd + consoles "
        f"{_opening_ms(on, off, 'ssh'):.1f} ms per opening.",
    ]
    ended = on.cpu.ssh_ended + off.cpu.ssh_ended
    if ended:
        lines.append(
            f"{ended} host-side processes ended inside the windows: the sshd column is a "
            "lower bound."
        )
    return lines


def _difference_row(on: ModeResult, off: ModeResult) -> str:
    def diff(name: str) -> float:
        return on.per_call_ms(getattr(on.cpu, name)) - off.per_call_ms(getattr(off.cpu, name))

    parts = [diff(name) for name in ("service", "daemon", "ssh", "postgres")]
    cells = " | ".join(f"{value:+.2f}" for value in parts)
    return f"| difference (listening's cost) | {cells} | {sum(parts):+.2f} |"


def _opening_ms(on: ModeResult, off: ModeResult, name: str) -> float:
    def per_turn(mode: ModeResult) -> float:
        seconds: float = getattr(mode.opening, name)
        return seconds * 1000 / mode.turns if mode.turns else 0.0

    return per_turn(on) - per_turn(off)


def goals(result: ListeningResult) -> list[tuple[str, bool | None, str]]:
    """(goal, met, numbers): the listening run's p99 lag, every expected event heard."""
    on, off = result.on.summary(), result.off.summary()
    expected = len(HEARD) * result.on.calls
    met = (
        on.count == expected
        and result.on.unmatched == 0
        and result.on.failed_calls == 0
        and on.p99_ms <= GOAL_MS
    )
    return [
        (
            f"tracking: a heard transition reaches SSE within {GOAL_MS:.0f} ms (p99; every "
            "heard transition of every call sent)",
            met,
            f"listening on: p50 {on.p50_ms:.1f} ms, p99 {on.p99_ms:.1f} ms, max "
            f"{on.max_ms:.1f} ms, {on.count} of {expected} events (never came: "
            f"{_missing_text(result.on)}); off (the poll alone): p50 {off.p50_ms:.1f} ms, "
            f"p99 {off.p99_ms:.1f} ms",
        )
    ]


# -- alone ----------------------------------------------------------------------------------


async def _alone(calls: int, rounds: int) -> ListeningResult:
    with setup.stage("callgate-bench-listening-") as host:
        return await measure(host, calls, rounds)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.listening", description=__doc__)
    parser.add_argument("--calls", type=int, default=20, help="measured calls per turn")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of an on and an off turn")
    args = parser.parse_args(argv)
    procs.raise_open_files()
    result = uvloop.run(_alone(args.calls, args.rounds))
    print("\n".join([*section(result), "", *goal_lines(goals(result))]))


if __name__ == "__main__":
    main()
