"""The floors of a verified call through HTTP: each necessary part alone, with nothing else.

A call through the legacy endpoint does three things that no implementation can skip: it
answers an HTTP request, reads the secret's enterprise and host from the database, and has
the PBX originate and list the new channel. Each is measured here on its own, from the
benchmark's process, on the same event loop as the service's (uvloop), with the service's own
code where it has one:

- the PBX: ``PbxClient.originate`` over an open console (callgate's console transport, the
  originate and its listing typed together), as the 1.8 ms measurement on a real Asterisk
  (recordings/asterisk/README.md) did, plus the parsing that finds the new channel and the
  wait for the dialplan to be seen taking the call, heard on a listening console as the
  service's tracker keeps one;
- HTTP: ``GET /health`` on the running service over a kept connection (HTTP/1.1, the
  framework's routing and middleware, a constant answer);
- the database: the service's authorisation read (``db.enterprises.by_secret_with_host``)
  on the service's own `Database` (asyncpg's pool on PostgreSQL).

Beside them, the same round times what a check that trusted the pair would cost: the
originate and one listing typed together, nothing more (``unchecked``). A real Asterisk shows
the new pair for a refused call too (``recordings/asterisk/README.md``, fact 1), so callgate
lists again until the dialplan has visibly taken the call; the difference is what that honest
check costs, and ``checks`` how many listings it took.

Their sum, round by round, is the least a verified call through HTTP can take on this machine
when the three run one after another, as they must (the originate waits for the secret to be
checked). The seed's median over that sum is the best ratio that any service doing the same
on the same components (uvicorn and FastAPI, asyncssh, asyncpg, the same sshd and simulated
Asterisk) could show here.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from types import TracebackType

from pydantic import SecretStr
from tests.support.sshd import SshdServer

from bench.load import HttpLane
from callgate.db.enterprises import by_secret_with_host
from callgate.db.executor import Database, connect
from callgate.pbx import commands
from callgate.pbx.client import PbxClient
from callgate.pbx.console import ConsoleTransport
from callgate.pbx.console_listener import ConsoleListener
from callgate.pbx.rx import RxTransport
from callgate.pbx.ssh import PoolLimits, SshPool
from callgate.pbx.transport import HostTarget
from callgate.settings import HostKeyPolicy, Transport

EXTENSION = "150"
UNCHECKED = "151"  # another agent: the pair-alone originate must not disturb the verified one


@dataclass(frozen=True)
class FloorRound:
    """Seconds each part took in one round."""

    pbx: float
    http: float
    database: float
    unchecked: float  # the originate and one listing, typed together: the pair alone
    checks: int  # listings the verified originate took

    @property
    def total(self) -> float:
        return self.pbx + self.http + self.database


class Floors:
    """The three parts, each ready to be timed (console open, pool warm, connection kept)."""

    def __init__(self, sshd: SshdServer, url: str, service_port: int, secret: str) -> None:
        pool = SshPool(PoolLimits())
        self._transport = ConsoleTransport(pool, RxTransport(pool))
        self._listener = ConsoleListener(pool)
        self._listening: asyncio.Task[None] | None = None
        self._pbx = PbxClient(self._transport)
        # The bench's own client of a loopback sshd it started: no host key to check.
        self._target = HostTarget(
            sshd.host,
            sshd.port,
            sshd.username,
            SecretStr(sshd.password),
            host_key_policy=HostKeyPolicy.OFF,
            transport=Transport.CONSOLE,
        )
        self._database: Database = connect(url)
        self._lane, self._secret = HttpLane(service_port), secret  # a kept connection

    async def __aenter__(self) -> Floors:
        await self._database.open()
        self._listening = asyncio.create_task(self._listen())
        return self

    async def _listen(self) -> None:
        """What the service's tracker does for its client: a listening console's lines."""
        async with self._listener.listen(self._target) as heard:
            self._pbx.listening(self._target, True)
            async for line in heard:
                if line is not None:
                    self._pbx.heard(self._target, line)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lane.close()
        if self._listening is not None:
            self._listening.cancel()
            await asyncio.gather(self._listening, return_exceptions=True)
        await self._transport.aclose()
        await self._database.close()

    async def measure(self, phone: str) -> FloorRound:
        """One round: the originate (hang it up afterwards), /health, the read."""
        started = time.perf_counter()
        placed = await self._pbx.originate(self._target, EXTENSION, phone)
        pbx = time.perf_counter() - started

        originate = commands.originate(UNCHECKED, phone, self._target.dial_context)
        started = time.perf_counter()
        await self._transport.run(self._target, [originate, commands.CHANNELS_CONCISE])
        unchecked = time.perf_counter() - started

        started = time.perf_counter()
        status, _ = await self._lane.get("/health")
        http = time.perf_counter() - started
        if status != 200:
            raise RuntimeError(f"/health answered {status}")

        started = time.perf_counter()
        found = await by_secret_with_host(self._database, self._secret)
        database = time.perf_counter() - started
        if found is None:
            raise RuntimeError("the authorisation read found no enterprise")
        return FloorRound(pbx, http, database, unchecked, placed.checks)
