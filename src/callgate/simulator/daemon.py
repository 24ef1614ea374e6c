"""The engine served to many processes, the way Asterisk serves its control socket.

A TCP server on 127.0.0.1 (never another address: it has no authentication). One request per
connection, length-prefixed so that any bytes can pass:

* ``rx <n>\\n<n bytes of command>`` -> ``<exit status>\\n<output bytes>``, then close;
* ``cx <n>\\n<n bytes of command>`` -> ``<exit status> <m>\\n<m output bytes>``, and the
  connection stays open for the next ``cx``: a simulated remote console keeps one connection,
  as a real one keeps its socket to Asterisk, instead of connecting per command. Such a
  connection is a console of the engine (its own ``core set verbose`` level), and the daemon
  also writes on it, at any time, ``out <m>\\n<m bytes>``: a block Asterisk writes to that
  console on its own (verbose lines of every call at verbose 2-3, log lines such as
  core_local.c's NOTICE at any verbosity; ``console-verbose-outcomes.repr.txt``), or the first
  line of an answer with held blocks after it (``set_logs_mid_listing``);
* ``ctl <n>\\n<n bytes of JSON>`` -> a JSON object, then close. Operations (``op``):
  ``commands``, ``reset``, ``set_running`` (``running``), ``set_default_scenario``
  (``scenario``), ``set_scenario`` (``extension``, ``scenario`` or null), ``set_contexts``
  (``contexts``), ``set_missing_extensions`` (``context``, ``extensions``: an originate to one
  of them is doomed, as to an unknown context), ``calls``, ``consoles`` (open consoles and
  their verbosity), ``set_delay`` (``seconds``: how long the answer to each ``channel
  originate`` is held back, after the command ran; 0 by default and after ``reset``),
  ``set_logs_mid_listing`` (``on``: blocks due for a console wait for its next line-by-line
  answer and are written after that answer's first line, as when Asterisk's logger writes
  between the lines of a listing; off by default and after ``reset``), ``pushed`` (``since``,
  optional, wall clock: the blocks written to consoles on the daemon's own since then, see
  below).
  Answers are ``{"ok": true, ...}`` or ``{"ok": false, "error"}``.

Every block the daemon writes to a console on its own (an ``out`` frame) is also recorded, for
benchmarks that time what a listener makes of it (``bench/listening.py``): ``Pushed`` (the wall
clock, ``time.time()``, just after the frame was handed to the connection; the console; the
text), the last ``PUSHED_KEPT`` of them in ``SimulatorDaemon.pushed``, or through the
``pushed`` operation (``SimulatorControl.pushed()``) from another process.

The engine is used from the event loop only, so requests are applied one at a time and
counters stay consistent however many clients connect at once. A ``ConsolePump`` writes the
consoles' blocks when they are due in the engine's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from callgate.simulator.console import LINE_BY_LINE, split_first_line
from callgate.simulator.engine import CliAnswer, RecordedCommand, SimulatedAsterisk
from callgate.simulator.pump import ConsolePump
from callgate.simulator.timeline import Scenario
from callgate.tasks import cancel_and_wait

HOST = "127.0.0.1"
MAX_REQUEST = 1 << 20  # a CLI command or a control request is far smaller
REQUEST_TIMEOUT = 10.0  # a client that stalls mid-request is dropped
ENCODING = ("utf-8", "surrogateescape")  # any byte survives the round trip through str
_MAX_HEADER = 32
MAX_DELAY = REQUEST_TIMEOUT / 2  # a held answer must still fit in the request's time bound
PUSHED_KEPT = 10_000  # blocks kept in ``SimulatorDaemon.pushed`` (the oldest go first)


@dataclass(frozen=True, slots=True)
class Pushed:
    """One block written to a console on the daemon's own: when (wall clock), to which
    console, what."""

    at: float
    console: int
    text: str


class SimulatorDaemon:
    """An in-process server: ``port = await daemon.start()`` ... ``await daemon.stop()``."""

    def __init__(self, engine: SimulatedAsterisk | None = None, *, port: int = 0) -> None:
        self.engine = engine if engine is not None else SimulatedAsterisk()
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.port = 0
        # A slow PBX for fault tests: the originate runs at once (it is recorded and the call
        # exists), only its answer is late, so a test can break the link while it is in flight.
        self.originate_delay = 0.0
        self._pump = ConsolePump(self.engine, self._push)
        self._consoles: dict[int, asyncio.StreamWriter] = {}  # engine console -> connection
        # The blocks written to consoles on the daemon's own, newest last (bounded).
        self.pushed: deque[Pushed] = deque(maxlen=PUSHED_KEPT)

    async def start(self) -> int:
        """Listen on 127.0.0.1 and return the bound port (useful with port 0)."""
        if self._server is not None:
            raise RuntimeError("the simulator daemon is already started")
        self._server = await asyncio.start_server(self._accept, HOST, self._requested_port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Stop listening and drop the connections still open."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await self._pump.stop()
        await cancel_and_wait(*self._clients)
        await server.wait_closed()

    async def __aenter__(self) -> SimulatorDaemon:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # a connection callback always runs in a task
        self._clients.add(task)
        link = _Link(writer)
        try:
            header = await asyncio.wait_for(reader.readuntil(b"\n"), REQUEST_TIMEOUT)
            while True:
                answer = self._answer(header, reader, link)
                kind, data = await asyncio.wait_for(answer, REQUEST_TIMEOUT)
                writer.write(data)
                if kind in ("rx", "cx"):
                    self._pump.after_command()  # what the command caused comes after it
                await writer.drain()
                if kind != "cx":
                    break
                # A console's connection: it may stay quiet for as long as the console idles.
                header = await reader.readuntil(b"\n")
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or stalled: nobody is left to answer
        except asyncio.CancelledError:
            # stop() drops the connection. Ending normally spares asyncio's stream callback
            # (Python 3.11) from calling exception() on a cancelled task and logging an error.
            pass
        finally:
            self._clients.discard(task)
            self._close_console(link)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(
        self, header: bytes, reader: asyncio.StreamReader, link: _Link
    ) -> tuple[str, bytes]:
        """(the request's kind, the bytes that answer it)."""
        kind, _, size = header[:-1].decode("ascii", "replace").partition(" ")
        if len(header) > _MAX_HEADER or not size.isdigit() or int(size) > MAX_REQUEST:
            return "", b"2\ncallgate simulator: malformed request\n"
        body = (await reader.readexactly(int(size))).decode(*ENCODING)
        if kind == "rx":
            status, output = await self._run(body, None)
            return kind, f"{status}\n{output}".encode(*ENCODING)
        if kind == "cx":
            console = self._open_console(link)
            status, output = await self._run(body, console)
            return kind, self._console_answer(console, body, status, output)
        if kind == "ctl":
            return kind, json.dumps(self._control(body)).encode()
        return "", b"2\ncallgate simulator: unknown request kind\n"

    async def _run(self, command: str, console: int | None) -> tuple[int, str]:
        """(exit status, output) of one CLI command, as ``asterisk -rx`` would end."""
        at = self._pump.before_command()  # lines due earlier are written before the answer
        try:
            result = self.engine.execute(command, console, at=at)
        except Exception as exc:  # a simulator bug: say so rather than hang up silently
            return 255, f"callgate simulator: internal error: {exc!r}\n"
        if self.originate_delay and command.lower().split()[:2] == ["channel", "originate"]:
            await asyncio.sleep(self.originate_delay)
        return result.exit_status, result.output

    def _open_console(self, link: _Link) -> int:
        """The connection's console, opened at its first ``cx``."""
        if link.console is None:
            self._pump.flush()  # lines due before it connected are not this console's
            link.console = self.engine.open_console()
            self._consoles[link.console] = link.writer
        return link.console

    def _close_console(self, link: _Link) -> None:
        if link.console is not None:
            self.engine.close_console(link.console)
            self._consoles.pop(link.console, None)
            self._pump.forget(link.console)

    def _console_answer(self, console: int, command: str, status: int, output: str) -> bytes:
        """A ``cx`` answer; blocks held for the console go after a listing's first line."""
        held = self._pump.take_held(console) if command in LINE_BY_LINE else []
        if not held:
            return _answer_frame(status, output)
        first, rest = split_first_line(output)
        pieces = [first, *held] if first else held
        at = time.time()  # written with the answer, at once
        self.pushed.extend(Pushed(at, console, block) for block in held)
        return b"".join(_out_frame(piece) for piece in pieces) + _answer_frame(status, rest)

    def _push(self, console: int, blocks: list[str]) -> None:
        """The pump's delivery: each block as an ``out`` frame on the console's connection."""
        writer = self._consoles.get(console)
        if writer is not None and not writer.is_closing():
            writer.write(b"".join(_out_frame(block) for block in blocks))
            at = time.time()
            self.pushed.extend(Pushed(at, console, block) for block in blocks)

    def _control(self, body: str) -> dict[str, Any]:
        """Apply one control operation; errors are answered, never raised."""
        try:
            request = json.loads(body)
            if not isinstance(request, dict):
                raise ValueError("a control request is a JSON object")
            return {"ok": True} | self._operate(request)
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def _operate(self, request: dict[str, Any]) -> dict[str, Any]:
        engine, op = self.engine, request["op"]
        if op == "commands":
            return {"commands": [asdict(command) for command in engine.commands]}
        if op == "reset":
            engine.reset()
            self.originate_delay = 0.0
            self._pump.hold(False)
        elif op == "set_delay":
            seconds = request["seconds"]
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                raise TypeError("seconds must be a number")
            if not 0 <= seconds <= MAX_DELAY:
                raise ValueError(f"seconds must be a number from 0 to {MAX_DELAY:g}")
            self.originate_delay = float(seconds)
        elif op == "set_running":
            if not isinstance(request["running"], bool):
                raise TypeError("running must be true or false")
            engine.running = request["running"]
        elif op == "set_default_scenario":
            engine.default_scenario = Scenario.from_json(request["scenario"])
        elif op == "set_scenario":
            scenario = request["scenario"]
            chosen = None if scenario is None else Scenario.from_json(scenario)
            engine.set_scenario(str(request["extension"]), chosen)
        elif op == "set_contexts":
            engine.set_contexts(str(context) for context in request["contexts"])
        elif op == "set_missing_extensions":
            extensions = (str(exten) for exten in request["extensions"])
            engine.set_missing_extensions(str(request["context"]), extensions)
        elif op == "set_logs_mid_listing":
            if not isinstance(request["on"], bool):
                raise TypeError("on must be true or false")
            self._pump.hold(request["on"])
        elif op == "calls":
            return {"calls": [asdict(call) for call in engine.live_calls()]}
        elif op == "consoles":
            levels = {console: engine.console_verbosity(console) for console in self._consoles}
            return {"consoles": [{"console": c, "verbose": v} for c, v in levels.items()]}
        elif op == "pushed":
            since = request.get("since")
            number = isinstance(since, int | float) and not isinstance(since, bool)
            if since is not None and not number:
                raise TypeError("since must be a number (wall clock) or null")
            kept = [item for item in self.pushed if since is None or item.at >= since]
            return {"pushed": [asdict(item) for item in kept]}
        else:
            raise ValueError(f"unknown operation {op!r}")
        return {}


class _Link:
    """One client connection; a console's once it sent a ``cx``."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.console: int | None = None


def _answer_frame(status: int, output: str) -> bytes:
    data = output.encode(*ENCODING)
    return b"%d %d\n" % (status, len(data)) + data


def _out_frame(text: str) -> bytes:
    data = text.encode(*ENCODING)
    return b"out %d\n" % len(data) + data


class SimulatorControl:
    """An async client of a running daemon, for tests: commands and control operations."""

    def __init__(self, port: int, *, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout

    async def rx(self, command: str) -> CliAnswer:
        """What ``asterisk -rx <command>`` would print, without starting a program."""
        raw = await self._exchange("rx", command.encode(*ENCODING))
        status, _, output = raw.partition(b"\n")
        return CliAnswer(output.decode(*ENCODING), int(status))

    async def commands(self) -> list[RecordedCommand]:
        answer = await self.request("commands")
        return [RecordedCommand(**item) for item in answer["commands"]]

    async def reset(self) -> None:
        await self.request("reset")

    async def set_running(self, running: bool) -> None:
        await self.request("set_running", running=running)

    async def set_default_scenario(self, scenario: Scenario) -> None:
        await self.request("set_default_scenario", scenario=scenario.to_json())

    async def set_scenario(self, extension: str, scenario: Scenario | None) -> None:
        payload = None if scenario is None else scenario.to_json()
        await self.request("set_scenario", extension=extension, scenario=payload)

    async def set_delay(self, seconds: float) -> None:
        """Hold each ``channel originate``'s answer back for ``seconds`` (it still runs first)."""
        await self.request("set_delay", seconds=seconds)

    async def set_contexts(self, contexts: Iterable[str]) -> None:
        await self.request("set_contexts", contexts=sorted(contexts))

    async def set_missing_extensions(self, context: str, extensions: Iterable[str]) -> None:
        """Extensions ``context`` lacks: an originate to one is doomed (empty: none)."""
        await self.request("set_missing_extensions", context=context, extensions=sorted(extensions))

    async def set_logs_mid_listing(self, on: bool) -> None:
        """While on, consoles' pushed blocks wait for their next line-by-line answer and are
        written after its first line."""
        await self.request("set_logs_mid_listing", on=on)

    async def consoles(self) -> list[dict[str, int]]:
        """The open consoles: ``{"console": id, "verbose": level}`` each."""
        answer = await self.request("consoles")
        return list(answer["consoles"])

    async def calls(self) -> list[dict[str, Any]]:
        answer = await self.request("calls")
        return list(answer["calls"])

    async def pushed(self, since: float | None = None) -> list[Pushed]:
        """The blocks the daemon wrote to consoles on its own (``SimulatorDaemon.pushed``),
        those from ``since`` (wall clock) on if given, oldest first."""
        answer = await self.request("pushed", since=since)
        return [Pushed(**item) for item in answer["pushed"]]

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one control operation; a refusal raises RuntimeError with the daemon's reason."""
        raw = await self._exchange("ctl", json.dumps({"op": op, **fields}).encode())
        answer: dict[str, Any] = json.loads(raw)
        if not answer.get("ok"):
            raise RuntimeError(f"simulator refused {op!r}: {answer.get('error')}")
        return answer

    async def _exchange(self, kind: str, body: bytes) -> bytes:
        async def exchange() -> bytes:
            reader, writer = await asyncio.open_connection(HOST, self.port)
            try:
                writer.write(f"{kind} {len(body)}\n".encode() + body)
                await writer.drain()
                return await reader.read()  # the daemon closes after its answer
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

        return await asyncio.wait_for(exchange(), self.timeout)
