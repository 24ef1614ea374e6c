"""The engine served to many processes, the way Asterisk serves its control socket.

A TCP server on 127.0.0.1 (never another address: it has no authentication). One request per
connection, length-prefixed so that any bytes can pass:

* ``rx <n>\\n<n bytes of command>`` -> ``<exit status>\\n<output bytes>``, then close;
* ``cx <n>\\n<n bytes of command>`` -> ``<exit status> <m>\\n<m output bytes>``, and the
  connection stays open for the next ``cx``: a simulated remote console keeps one connection,
  as a real one keeps its socket to Asterisk, instead of connecting per command;
* ``ctl <n>\\n<n bytes of JSON>`` -> a JSON object, then close. Operations (``op``):
  ``commands``, ``reset``, ``set_running`` (``running``), ``set_default_scenario``
  (``scenario``), ``set_scenario`` (``extension``, ``scenario`` or null), ``set_contexts``
  (``contexts``), ``calls``, ``set_delay`` (``seconds``: how long the answer to each
  ``channel originate`` is held back, after the command ran; 0 by default and after ``reset``).
  Answers are ``{"ok": true, ...}`` or ``{"ok": false, "error"}``.

The engine is used from the event loop only, so requests are applied one at a time and
counters stay consistent however many clients connect at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from callgate.simulator.engine import CliAnswer, RecordedCommand, SimulatedAsterisk
from callgate.simulator.timeline import Scenario

HOST = "127.0.0.1"
MAX_REQUEST = 1 << 20  # a CLI command or a control request is far smaller
REQUEST_TIMEOUT = 10.0  # a client that stalls mid-request is dropped
ENCODING = ("utf-8", "surrogateescape")  # any byte survives the round trip through str
_MAX_HEADER = 32
MAX_DELAY = REQUEST_TIMEOUT / 2  # a held answer must still fit in the request's time bound


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
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
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
        try:
            header = await asyncio.wait_for(reader.readuntil(b"\n"), REQUEST_TIMEOUT)
            while True:
                kind, answer = await asyncio.wait_for(self._answer(header, reader), REQUEST_TIMEOUT)
                writer.write(answer)
                await writer.drain()
                if kind != "cx":
                    break
                # A console's connection: it may stay quiet for as long as the console idles.
                header = await reader.readuntil(b"\n")
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or stalled: nobody is left to answer
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(self, header: bytes, reader: asyncio.StreamReader) -> tuple[str, bytes]:
        """(the request's kind, the bytes that answer it)."""
        kind, _, size = header[:-1].decode("ascii", "replace").partition(" ")
        if len(header) > _MAX_HEADER or not size.isdigit() or int(size) > MAX_REQUEST:
            return "", b"2\ncallgate simulator: malformed request\n"
        body = (await reader.readexactly(int(size))).decode(*ENCODING)
        if kind in ("rx", "cx"):
            status, output = await self._run(body)
            if kind == "rx":
                return kind, f"{status}\n{output}".encode(*ENCODING)
            data = output.encode(*ENCODING)
            return kind, b"%d %d\n" % (status, len(data)) + data
        if kind == "ctl":
            return kind, json.dumps(self._control(body)).encode()
        return "", b"2\ncallgate simulator: unknown request kind\n"

    async def _run(self, command: str) -> tuple[int, str]:
        """(exit status, output) of one CLI command, as ``asterisk -rx`` would end."""
        try:
            result = self.engine.execute(command)
        except Exception as exc:  # a simulator bug: say so rather than hang up silently
            return 255, f"callgate simulator: internal error: {exc!r}\n"
        if self.originate_delay and command.lower().split()[:2] == ["channel", "originate"]:
            await asyncio.sleep(self.originate_delay)
        return result.exit_status, result.output

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
        elif op == "calls":
            return {"calls": [asdict(call) for call in engine.live_calls()]}
        else:
            raise ValueError(f"unknown operation {op!r}")
        return {}


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

    async def calls(self) -> list[dict[str, Any]]:
        answer = await self.request("calls")
        return list(answer["calls"])

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
