"""The benchmark's stage: a real sshd whose `asterisk` is the simulator, a database, callgate."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx
from tests.support.service import free_port
from tests.support.sshd import SshdServer, sim_user_session

from bench import procs
from bench.farm_client import FarmClient, FarmHost
from callgate.db.enterprises import add_enterprise
from callgate.db.executor import connect
from callgate.db.hosts import set_host
from callgate.db.migrate import upgrade
from callgate.simulator.daemon import SimulatorControl
from callgate.simulator.program import install_program

T = TypeVar("T")

POSTGRES_ADMIN = os.environ.get(
    "CALLGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@dataclass(frozen=True)
class Daemon:
    """The simulator daemon behind the real sshd's `asterisk` program."""

    port: int
    pid: int


@contextlib.contextmanager
def simulator_daemon(workdir: Path) -> Iterator[Daemon]:
    """The simulated Asterisk as its own process, like the real daemon."""
    port_file = workdir / "sim.port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "callgate.simulator", "daemon", "--port", "0",
         "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(500):
            if port_file.exists() and port_file.read_text().strip():
                break
            time.sleep(0.01)
        yield Daemon(int(port_file.read_text()), proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.asynccontextmanager
async def database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database (production's choice); SQLite if none is reachable."""
    name = f"callgate_bench_{secrets.token_hex(4)}"
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError):
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite+aiosqlite:///{tmp}/bench.db"
        return
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = POSTGRES_ADMIN.rsplit("/", 1)[0]
        yield f"postgresql+asyncpg://{base.split('://', 1)[1]}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def migrate(url: str) -> None:
    """callgate's tables in the database at ``url``."""
    await asyncio.to_thread(upgrade, url)


async def seed_rows(url: str, sshd: SshdServer, transport: str) -> str:
    """The single-host comparison's enterprise, bound to the real sshd on 127.0.0.1."""
    await migrate(url)
    database = connect(url)
    await database.open()
    secret = secrets.token_hex(16)
    try:
        await add_enterprise(database, "0367", "june", "127.0.0.1", secret)
        changes = {
            "ssh_port": sshd.port,
            "ssh_user": sshd.username,
            "ssh_password": sshd.password,
            "host_key_policy": "accept-new",
            "transport": transport,
        }
        await set_host(database, "127.0.0.1", changes)
    finally:
        await database.close()
    return secret


async def sessions_opened(database: str) -> int:
    """PostgreSQL's count of sessions ever opened to ``database`` (0 without PostgreSQL)."""
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return 0
    try:
        query = "SELECT sessions FROM pg_stat_database WHERE datname = $1"
        return int(await admin.fetchval(query, database) or 0)
    finally:
        await admin.close()


ADMIN_TOKEN = secrets.token_hex(16)  # the bench's services' admin token, new each run
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass(frozen=True)
class Service:
    """A running `callgate serve`: its base URL, port and process id."""

    base: str
    port: int
    pid: int


LIMITS_OFF = (
    "CALLGATE_LIMIT_ENTERPRISE_PER_SECOND",
    "CALLGATE_LIMIT_ENTERPRISE_PER_MINUTE",
    "CALLGATE_LIMIT_EXTENSION_PER_MINUTE",
    "CALLGATE_LIMIT_DESTINATION_PER_10_MINUTES",
    "CALLGATE_LIMIT_DESTINATION_PER_DAY",
    "CALLGATE_LIMIT_LIVE_CALLS_PER_ENTERPRISE",
    "CALLGATE_LIMIT_LIVE_CALLS_PER_HOST",
)


@contextlib.asynccontextmanager
async def callgate_service(
    url: str,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    command: Sequence[str] | None = None,
) -> AsyncIterator[Service]:
    """`callgate serve` as its own process, as in production (or ``command``, which serves
    the same way: `bench.ablation`'s changed services)."""
    port = free_port()
    env = {
        **os.environ,
        "CALLGATE_DATABASE_URL": url,
        "CALLGATE_PORT": str(port),
        "CALLGATE_LOG_FILE": os.environ.get("BENCH_LOG_FILE", str(workdir / "callgate.log")),
        # The service's default level: a line per step of every call, as in production.
        "CALLGATE_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        # /api/status shows the pool and the tracker only to an admin (the footprint reads them).
        "CALLGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        # One enterprise places every call of a run: its rate limits would answer most with
        # 429. The limits' own cost per call is measured by `python -m bench.rate_limits`.
        **dict.fromkeys(LIMITS_OFF, "0"),
        **(extra_env or {}),
    }
    argv = command or [str(Path(sys.executable).with_name("callgate")), "serve"]
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/health")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("callgate did not start")
        yield Service(base, port, proc.pid)
    finally:
        proc.terminate()
        await procs.ended(proc, 30)


class HostSwitch:
    """Change the 127.0.0.1 host's row while the service runs, as `callgate host set` does:
    its transport between samples, or its SSH port (a healthy host, then the blackhole)."""

    def __init__(self, url: str) -> None:
        self._database = connect(url)  # its pool opens on first use

    async def use(self, transport: str) -> None:
        """Set the host's transport."""
        await self._database.open()
        await set_host(self._database, "127.0.0.1", {"transport": transport})

    async def point(self, port: int) -> None:
        """Point the host's row at ``port`` on 127.0.0.1."""
        await self._database.open()
        await set_host(self._database, "127.0.0.1", {"ssh_port": port})

    async def close(self) -> None:
        """Release the database connections."""
        await self._database.close()


def install(sshd: SshdServer, daemon_port: int) -> SimulatorControl:
    """Put the simulator's `asterisk` program on the sshd user's PATH; its control client."""
    install_program(sshd.bin_dir, daemon_port)
    return SimulatorControl(daemon_port)


@dataclass(frozen=True)
class Stage:
    """A working directory, the real sshd whose `asterisk` is the simulator, and its daemon."""

    workdir: Path
    sshd: SshdServer
    daemon: Daemon
    control: SimulatorControl


def abba(modes: Sequence[T], rounds: int) -> Iterator[T]:
    """``rounds`` rounds of every mode, every other round in reverse (A B, B A, A B, ...): a
    drift of the machine during a run hits every mode alike."""
    for round_ in range(rounds):
        yield from modes if round_ % 2 == 0 else reversed(modes)


@contextlib.contextmanager
def stage(prefix: str) -> Iterator[Stage]:
    """The single-host set-up every measurement starts from, torn down afterwards."""
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as tmp,
        sim_user_session() as user,
        SshdServer(user) as sshd,
        simulator_daemon(Path(tmp)) as daemon,
    ):
        yield Stage(Path(tmp), sshd, daemon, install(sshd, daemon.port))


async def seed_farm_rows(
    url: str, hosts: list[FarmHost], farm: FarmClient, *, prefix: str, transport: str
) -> list[str]:
    """One enterprise per farm host (number ``<prefix><i>``), each bound to its host's row
    (its port, the farm's login, its pinned key); returns their secrets, in host order."""
    database = connect(url)
    await database.open()
    gate = asyncio.Semaphore(8)

    async def one(index: int, host: FarmHost) -> str:
        secret = secrets.token_hex(16)
        async with gate:
            number = f"{prefix}{index:04d}"
            await add_enterprise(database, number, f"bench {number}", host.address, secret)
            changes = {
                "ssh_port": host.port,
                "ssh_user": farm.username,
                "ssh_password": farm.password,
                "host_key_policy": "accept-new",
                "host_key": host.host_key,
                "transport": transport,
            }
            await set_host(database, host.address, changes)
        return secret

    try:
        return list(await asyncio.gather(*(one(i, h) for i, h in enumerate(hosts))))
    finally:
        await database.close()
