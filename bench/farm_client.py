"""The bench's side of ``bench.farm``: start the farm process and ask it things."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from bench import procs

FARM_USER = "pbx"
ANSWER_TIMEOUT = 120.0  # starting a thousand hosts takes a few seconds; nothing takes this long


@dataclass(frozen=True)
class FarmHost:
    """One simulated host: where it listens, and how to log in."""

    address: str
    port: int
    host_key: str


class FarmClient:
    """Requests to the farm process, one at a time (its answers come back in order)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._lock = asyncio.Lock()
        self.username = FARM_USER
        self.password = secrets.token_hex(12)

    @property
    def pid(self) -> int:
        """The farm process's id (its CPU time is the simulated hosts')."""
        return self._proc.pid

    async def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return its answer; RuntimeError if the farm refused it."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        async with self._lock, asyncio.timeout(ANSWER_TIMEOUT):
            self._proc.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
            await self._proc.stdin.drain()
            line = await self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the simulator farm exited")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(f"simulator farm: {answer.get('error')}")
        return answer

    async def start(
        self,
        group: int,
        count: int,
        scenario: dict[str, float | None],
        address: str | None = None,
    ) -> list[FarmHost]:
        """Start ``count`` hosts in ``group`` whose calls follow ``scenario`` (or one host on
        ``address``)."""
        answer = await self.ask(
            "start",
            group=group,
            count=count,
            username=self.username,
            password=self.password,
            scenario=scenario,
            address=address,
        )
        return [FarmHost(host, port, answer["host_key"]) for host, port in answer["hosts"]]

    async def blackhole(self) -> int:
        """The port of the farm's blackhole on 127.0.0.1 (accepts, never answers)."""
        return int((await self.ask("blackhole"))["port"])

    async def listings(
        self, addresses: list[str], since: float, until: float
    ) -> dict[str, list[float]]:
        """Wall-clock times of the channel listings each host answered in [since, until)."""
        answer = await self.ask("listings", addresses=addresses, since=since, until=until)
        return {host: list(times) for host, times in answer["times"].items()}

    async def hangup(self) -> int:
        """Hang up every call on every host; returns how many calls were live."""
        return int((await self.ask("hangup"))["hung_up"])

    async def forget(self) -> None:
        """Drop the hosts' command logs (memory)."""
        await self.ask("forget")

    async def stats(self) -> dict[str, Any]:
        """Hosts, open SSH connections, live calls and blackholed connections, now."""
        return await self.ask("stats")


@contextlib.asynccontextmanager
async def farm_process() -> AsyncIterator[FarmClient]:
    """``python -m bench.farm`` as a child process; stopped (politely, then by force) at exit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.farm", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, limit=16 * 1024 * 1024,
    )  # fmt: skip
    try:
        yield FarmClient(proc)
    finally:
        if proc.returncode is None:
            assert proc.stdin is not None
            with contextlib.suppress(OSError):
                proc.stdin.write(b'{"op": "quit"}\n')
                proc.stdin.close()
            await procs.ended(proc, 20)
