"""``python -m bench.farm``: many simulated PBX hosts in one process, apart from the service.

Each host is a ``SimulatedAsterisk`` behind its own in-process SSH server
(``start_ssh_simulator``, all sharing one host key) on its own loopback address and port:
``pbx_hosts`` rows are keyed by address, so each host needs an address of its own
(``127.<group>.<i // 250>.<i % 250 + 1>``, all on the loopback). It runs in its own process so
that the simulated hosts do not take the service's CPU. The bench drives it with one JSON
object per line on stdin and reads one JSON answer per line on stdout (``farm_client``):

* ``start`` ``group``, ``count``, ``username``, ``password``, ``scenario`` [, ``address``]
  -> ``hosts``, ``host_key``
* ``blackhole`` -> ``port``: a TCP server on 127.0.0.1 that accepts and never answers
* ``listings`` ``addresses``, ``since``, ``until`` -> ``times``: wall clock of each
  ``core show channels concise`` each host answered in [since, until)
* ``hangup`` -> ``hung_up``: every call on every host is hung up
* ``forget``: drop the command logs; ``stats`` -> hosts, connections, live calls; ``quit``
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from callgate.simulator import Scenario, SimulatedAsterisk, SshSimulator, start_ssh_simulator

LISTING = "core show channels concise"
BLACKHOLE_HOLD = 120.0  # seconds a blackholed connection is held before it is dropped
BLACKHOLE_MAX = 2000  # connections held at most; more are closed at once


def address(group: int, index: int) -> str:
    """The loopback address of host ``index`` of ``group``."""
    if not 0 < group < 255 or not 0 <= index < 250 * 250:
        raise ValueError(f"no address for host {index} of group {group}")
    return f"127.{group}.{index // 250}.{index % 250 + 1}"


class Farm:
    """The simulated hosts and the blackhole, and the answers to the bench's requests."""

    def __init__(self) -> None:
        self.hosts: dict[str, SshSimulator] = {}
        self.blackhole: asyncio.Server | None = None
        self.held: set[asyncio.StreamWriter] = set()

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one request (see the module docstring); ValueError for an unknown op."""
        op = request.get("op")
        if op == "start":
            return await self.start(request)
        if op == "blackhole":
            return await self.start_blackhole()
        if op == "listings":
            return self.listings(request["addresses"], request["since"], request["until"])
        if op == "hangup":
            hung = 0
            for sim in self.hosts.values():
                hung += len(sim.engine.live_calls())
                sim.engine.execute("channel request hangup all")
            return {"hung_up": hung}
        if op == "forget":
            for sim in self.hosts.values():
                sim.engine.commands.clear()
                sim.exec_commands.clear()
            return {}
        if op == "stats":
            return {
                "hosts": len(self.hosts),
                "connections": sum(len(sim._connections) for sim in self.hosts.values()),
                "live_calls": sum(len(sim.engine.live_calls()) for sim in self.hosts.values()),
                "blackholed": len(self.held),
            }
        raise ValueError(f"unknown op {op!r}")

    async def start(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start ``count`` hosts of ``group``, each with the given default scenario; with
        ``address``, one host there instead (``127.0.0.1``, say)."""
        group, count = int(request["group"]), int(request["count"])
        chosen = request.get("address")
        if chosen is not None and count != 1:
            raise ValueError("one host per given address")
        scenario = Scenario.from_json(request.get("scenario") or {})
        started: list[list[Any]] = []
        host_key = ""
        for index in range(count):
            engine = SimulatedAsterisk()
            engine.default_scenario = scenario
            sim = await start_ssh_simulator(
                engine,
                host=chosen or address(group, index),
                username=request["username"],
                password=request["password"],
            )
            self.hosts[sim.host] = sim
            started.append([sim.host, sim.port])
            host_key = sim.host_key
        return {"hosts": started, "host_key": host_key}

    async def start_blackhole(self) -> dict[str, Any]:
        """The blackhole's port (started on first use)."""
        if self.blackhole is None:
            self.blackhole = await asyncio.start_server(self._swallow, "127.0.0.1", 0)
        return {"port": self.blackhole.sockets[0].getsockname()[1]}

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Accept, read what comes, never answer; drop the connection after a while."""
        if len(self.held) >= BLACKHOLE_MAX:
            writer.close()
            return
        self.held.add(writer)
        try:
            async with asyncio.timeout(BLACKHOLE_HOLD):
                while await reader.read(65536):
                    pass
        except (TimeoutError, OSError):
            pass
        finally:
            self.held.discard(writer)
            writer.close()

    def listings(self, addresses: list[str], since: float, until: float) -> dict[str, Any]:
        """When each host answered a channel listing, within [since, until) (wall clock)."""
        times = {
            host: [
                c.wall
                for c in self.hosts[host].engine.commands
                if c.command == LISTING and since <= c.wall < until
            ]
            for host in addresses
        }
        return {"times": times}

    async def close(self) -> None:
        """Drop the blackholed connections and close every host."""
        for writer in list(self.held):
            writer.close()
        if self.blackhole is not None:
            self.blackhole.close()
        for sim in self.hosts.values():
            await sim.close()


async def serve() -> None:
    """Answer requests from stdin until ``quit`` or EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    farm = Farm()
    try:
        while line := await reader.readline():
            request = json.loads(line)
            if request.get("op") == "quit":
                break
            try:
                answer = {"ok": True, **await farm.handle(request)}
            except Exception as exc:  # the bench reports it; the farm stays up
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    finally:
        await farm.close()


if __name__ == "__main__":
    asyncio.run(serve())
