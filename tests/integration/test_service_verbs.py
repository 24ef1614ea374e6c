"""`callgate service start|stop|restart|status|logs|test` as an operator runs them: each verb a
process of the console script, the service a real background process (SQLite in the test's
directory, the demo's simulated PBX, as `make run`), with the exit codes a monitoring script
reads; and `/ready`, which says 503 while the service drains or its database does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from callgate import __version__
from callgate.db.enterprises import list_enterprises
from callgate.db.migrate import upgrade
from callgate.demo import DEMO_NUMBER
from callgate.settings import Settings
from callgate.simulator.daemon import SimulatorControl, SimulatorDaemon
from callgate.simulator.program import install_program
from tests.support.database import opened
from tests.support.dbproxy import DbProxy
from tests.support.hygiene import REGISTRY, STACK_PHONE
from tests.support.service import free_port, running_service
from tests.support.sshd import SshdServer
from tests.support.stack import prepare_database, sshd_host_row

CALLGATE = Path(sys.executable).with_name("callgate")
RUNNING, DEAD, NOT_RUNNING = 0, 1, 3


@dataclass
class Operator:
    """The operator's shell: the service's settings in the environment, its directory as the
    working directory."""

    directory: Path
    env: dict[str, str]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.directory / "callgate.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / "callgate.log"

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CALLGATE), *args],
            env=self.env,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(CALLGATE), *args],
            env=self.env,
            cwd=self.directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def pid(self) -> int:
        return int(self.pid_file.read_text().strip())

    def secret(self) -> str:
        """The demo enterprise's secret, read from the database."""

        async def read() -> str:
            async with opened(self.env["CALLGATE_DATABASE_URL"]) as database:
                found = await list_enterprises(database)
            return next(secret for row, secret in found if row.number == DEMO_NUMBER)

        secret = asyncio.run(read())
        REGISTRY.record_stack(secret, self.log_file)  # leak hygiene: never in clear in the log
        return secret


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


def fields(output: str) -> dict[str, str]:
    """`status`'s `name: value` lines."""
    return dict(line.split(": ", 1) for line in output.splitlines() if ": " in line)


@pytest.fixture
def operator(tmp_path: Path) -> Iterator[Operator]:
    """A migrated SQLite database in tmp_path; whatever service a test started is stopped."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGATE_")}
    env |= {
        "CALLGATE_DEMO": "1",
        "CALLGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'callgate.db'}",
        "CALLGATE_LOG_FILE": str(tmp_path / "callgate.log"),
        "CALLGATE_PORT": str(port),
        "CALLGATE_TRACK_INTERVAL": "0.2",
    }
    shell = Operator(tmp_path, env, port)
    upgraded = shell.run("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    try:
        yield shell
    finally:
        if shell.pid_file.exists():
            with_pid = shell.pid()
            if not gone(with_pid):
                os.kill(with_pid, signal.SIGKILL)


def test_start_status_restart_stop(operator: Operator) -> None:
    """The life of a service through the verbs, with their exit codes and the pid file."""
    status = operator.run("service", "status")
    assert status.returncode == NOT_RUNNING, status.stdout
    assert "not running" in status.stdout
    assert operator.run("service", "stop").returncode == 0  # nothing to stop: done

    started = operator.run("service", "start")
    assert started.returncode == 0, started.stderr
    pid = operator.pid()
    assert f"pid {pid}, port {operator.port}" in started.stdout
    assert stat.S_IMODE(operator.pid_file.stat().st_mode) == 0o600
    assert httpx.get(operator.base_url + "/health").status_code == 200

    again = operator.run("service", "start")
    assert again.returncode == 1
    assert f"already running (pid {pid}" in again.stderr
    assert operator.pid() == pid

    status = operator.run("service", "status")
    assert status.returncode == RUNNING, status.stdout + status.stderr
    shown = fields(status.stdout)
    assert shown["state"] == "running"
    assert shown["pid"] == str(pid)
    assert shown["port"] == str(operator.port)
    assert shown["version"] == __version__
    assert shown["health"].startswith('200 {"status":"healthy"')
    assert shown["ready"].startswith('200 {"status":"ready"')
    hours, minutes, seconds = map(int, shown["uptime"].split(":"))
    assert 0 <= hours * 3600 + minutes * 60 + seconds < 600

    restarted = operator.run("service", "restart")
    assert restarted.returncode == 0, restarted.stderr
    assert "stopped (pid" in restarted.stdout and "started: pid" in restarted.stdout
    assert gone(pid)
    new_pid = operator.pid()
    assert new_pid != pid

    stopped = operator.run("service", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped (pid {new_pid}" in stopped.stdout
    assert gone(new_pid)
    assert not operator.pid_file.exists()
    assert operator.run("service", "status").returncode == NOT_RUNNING


def test_a_stale_pid_file(operator: Operator) -> None:
    """A pid file whose process is gone: `status` says dead (1); `stop` and `start` remove it."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    operator.pid_file.write_text(f"{ended.pid}\n")
    status = operator.run("service", "status")
    assert status.returncode == DEAD, status.stdout
    assert f"names pid {ended.pid}, not running" in status.stdout
    stopped = operator.run("service", "stop")
    assert stopped.returncode == 0
    assert "stale pid file" in stopped.stdout
    assert not operator.pid_file.exists()

    operator.pid_file.write_text("not a number\n")
    assert operator.run("service", "status").returncode == DEAD
    started = operator.run("service", "start")
    assert started.returncode == 0, started.stderr
    assert "removed a stale pid file" in started.stdout
    assert operator.run("service", "stop").returncode == 0


def test_start_reports_a_service_that_cannot_start(operator: Operator) -> None:
    """The port is taken: `start` says how `serve` ended, exits 1 and leaves no pid file."""
    with silent_listener() as port:
        operator.env["CALLGATE_PORT"] = str(port)
        started = operator.run("service", "start")
    assert started.returncode == 1
    assert "exited with status" in started.stderr
    assert not operator.pid_file.exists()


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A loopback port held by a listening socket that answers nothing."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port: int = sock.getsockname()[1]
        yield port


def test_logs_prints_the_last_lines_and_follows_rotation(operator: Operator) -> None:
    """`logs -n N --no-follow` prints the last N lines; `logs` keeps printing what is added,
    also after the file is rotated (renamed and started anew, as the log handler does)."""
    log = operator.log_file
    log.write_text("".join(f"line {n}\n" for n in range(1, 2001)))
    tail = operator.run("service", "logs", "-n", "3", "--no-follow")
    assert tail.returncode == 0
    assert tail.stdout == "line 1998\nline 1999\nline 2000\n"
    assert operator.run("service", "logs", "-n", "0", "--no-follow").stdout == ""

    follower = operator.spawn("service", "logs", "-n", "1")
    assert follower.stdout is not None
    try:
        assert follower.stdout.readline() == "line 2000\n"
        with log.open("a") as handle:
            handle.write("added 1\n")
        assert follower.stdout.readline() == "added 1\n"
        log.rename(log.with_name("callgate.log.1"))
        log.write_text("after rotation\n")
        assert follower.stdout.readline() == "after rotation\n"
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 0


def test_logs_without_a_log_file(operator: Operator) -> None:
    operator.env["CALLGATE_LOG_FILE"] = str(operator.directory / "absent.log")
    done = operator.run("service", "logs", "--no-follow")
    assert done.returncode == 1
    assert "cannot read the log file" in done.stderr


def test_test_checks_database_hosts_and_places_a_call(operator: Operator) -> None:
    """`test` against the running demo: the database, the simulated host's login and Asterisk
    version, a test call followed to its end; then a host that refuses fails it (exit 1)."""
    assert operator.run("service", "start").returncode == 0
    operator.secret()  # recorded: the checks must not write it to the log in clear
    checked = operator.run(
        "service",
        "test",
        "--enterprise",
        DEMO_NUMBER,
        "--extension",
        "150",
        "--phone",
        STACK_PHONE,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = checked.stdout.splitlines()
    assert lines[0].startswith("ok    database: 1 enterprises")
    assert "ok    host 127.0.0.1: 22.7.0" in lines
    assert lines[-1] == f"ok    call {DEMO_NUMBER} 150 -> {STACK_PHONE}: placed, ended completed"
    assert any(" connected " in line for line in lines)  # its transitions, as they came
    assert checked.stderr == ""  # the checks' log lines went to the log file

    # A second enterprise whose host refuses connections.
    refused_port = free_port()
    added = operator.run(
        "enterprise", "add", "--number", "0999", "--name", "gone", "--ip", "127.0.0.2"
    )
    assert added.returncode == 0, added.stderr
    assert operator.run("host", "set", "127.0.0.2", "--ssh-port", str(refused_port)).returncode == 0
    operator.env["CALLGATE_SSH_PASSWORD"] = "never-sent"  # a login to try
    checked = operator.run("service", "test")
    assert checked.returncode == 1
    assert "ok    host 127.0.0.1: 22.7.0" in checked.stdout
    assert "FAIL  host 127.0.0.2: pbx_connection_refused" in checked.stdout, checked.stdout

    # A test call that the policy refuses: reported, exit 1.
    refused = operator.run(
        "service", "test", "--enterprise", "0367", "--extension", "150", "--phone", "+88212345"
    )
    assert refused.returncode == 1
    assert "FAIL  call 0367 150 -> +88212345:" in refused.stdout
    assert operator.run("service", "test", "--enterprise", "0367").returncode == 2


def test_test_reports_a_database_without_tables(tmp_path: Path, operator: Operator) -> None:
    operator.env["CALLGATE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    checked = operator.run("service", "test")
    assert checked.returncode == 1
    assert checked.stdout.startswith("FAIL  database:")
    assert "callgate db upgrade" in checked.stdout


def test_ready_says_503_while_draining(operator: Operator) -> None:
    """`stop` with a drain notice: from the SIGTERM on, /ready answers 503 (draining) while
    /health and calls are still served; then the service ends and `stop` returns 0."""
    notice = 3.0
    operator.env["CALLGATE_DRAIN_NOTICE"] = str(notice)
    assert operator.run("service", "start").returncode == 0
    secret = operator.secret()
    base = operator.base_url
    assert httpx.get(base + "/ready").json() == {"status": "ready", "database": "connected"}
    pid = operator.pid()

    began = time.monotonic()
    stopping = operator.spawn("service", "stop")
    # `stop` is a process of its own: on a loaded machine its start alone can take seconds
    # before its SIGTERM; from then on /ready says 503 for the whole notice.
    deadline = time.monotonic() + 30
    while (ready := httpx.get(base + "/ready")).status_code == 200:
        assert time.monotonic() < deadline, "/ready never said 503"
        time.sleep(0.05)
    assert ready.status_code == 503
    assert ready.json()["reason"] == "draining"
    assert ready.headers["retry-after"] == "1"
    assert httpx.get(base + "/health").json()["status"] == "healthy"  # /health: the seed's
    params = {"code": "150", "phone": STACK_PHONE, "clientId": secret}
    call = httpx.get(base + "/api/makecallexternal", params=params, timeout=30)
    assert call.status_code == 200, call.text  # still served while draining

    out, err = stopping.communicate(timeout=120)
    assert stopping.returncode == 0, out + err
    assert time.monotonic() - began >= notice
    assert gone(pid)
    assert not operator.pid_file.exists()
    assert "stopping: draining" in operator.log_file.read_text()


@pytest.mark.postgres
async def test_ready_says_503_when_the_database_does_not_answer(
    pg_url: str, tmp_path: Path
) -> None:
    """A database that stops answering (blackholed): /ready says 503 within its bound, while
    /health stays the seed's 200; once it answers again, 200."""
    await asyncio.to_thread(upgrade, pg_url)
    proxy = await DbProxy.start(make_url(pg_url).port or 5432)
    values: dict[str, Any] = {
        "database_url": proxy.url(pg_url),
        "port": free_port(),
        "log_file": tmp_path / "callgate.log",
    }
    try:
        async with running_service(Settings(**values)) as service:
            assert (await service.client.get("/ready")).status_code == 200
            await proxy.blackhole()
            began = time.monotonic()
            ready = await service.client.get("/ready")
            assert ready.status_code == 503
            assert ready.json()["reason"] == "database"
            assert "TimeoutError" in ready.json()["detail"]
            assert time.monotonic() - began < 4  # bounded: READY_DATABASE_WITHIN, 2 s
            assert (await service.client.get("/health")).status_code == 200
            await proxy.up()
            for _ in range(100):
                if (await service.client.get("/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("/ready did not recover")
    finally:
        await proxy.close()


@pytest.mark.sshd
async def test_stop_waits_for_a_call_in_flight(
    operator: Operator, sshd: SshdServer, sqlite_url: str
) -> None:
    """A call whose PBX answers late is in flight when `stop` runs: /ready says 503 at once,
    the call still ends 200, and `stop` returns (0) only after the process has finished it."""
    async with SimulatorDaemon() as daemon:
        install_program(sshd.bin_dir, daemon.port)
        secret = "stop-waits-" + os.urandom(8).hex()
        host = sshd_host_row(sshd, transport="rx")
        await prepare_database(sqlite_url, sshd, secret=secret, host=host)
        REGISTRY.record_stack(secret, operator.log_file)
        operator.env |= {
            "CALLGATE_DEMO": "0",
            "CALLGATE_DATABASE_URL": sqlite_url,
            "CALLGATE_DRAIN_NOTICE": "1",
            "CALLGATE_SSH_COMMAND_TIMEOUT": "6",
        }
        started = await asyncio.to_thread(operator.run, "service", "start")
        assert started.returncode == 0, started.stderr
        control = SimulatorControl(daemon.port)
        await control.set_delay(2.5)  # the originate runs at once; its answer comes late
        params = {"code": "150", "phone": STACK_PHONE, "clientId": secret}
        async with httpx.AsyncClient(base_url=operator.base_url, timeout=60) as client:
            call = asyncio.create_task(client.get("/api/makecallexternal", params=params))
            while not any(  # noqa: ASYNC110 - the PBX's side, polled
                c.command.startswith("channel originate") for c in await control.commands()
            ):
                await asyncio.sleep(0.02)
            began = time.monotonic()
            stopping = asyncio.create_task(asyncio.to_thread(operator.run, "service", "stop"))
            async with httpx.AsyncClient(base_url=operator.base_url, timeout=5) as probe:
                while (ready := await probe.get("/ready")).status_code == 200:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert ready.json()["reason"] == "draining"
            response = await call
        assert response.status_code == 200, response.text
        stopped = await stopping
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert time.monotonic() - began >= 2  # it waited for the PBX's late answer
        assert not operator.pid_file.exists()
