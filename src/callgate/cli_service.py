"""`callgate service start|stop|restart|status|logs|test`: the seed's management script
(`asterisk.sh start|stop|restart|status|logs|test`) as commands of the CLI.

`start` runs `callgate serve` in the background and keeps its process id in CALLGATE_PID_FILE
(default `callgate.pid` beside the log file); the other verbs find the service through that
file, so they read the same settings (`CALLGATE_*`, `.env`, the same working directory for
relative paths). Under systemd (`deploy/callgate.service`) systemd starts and stops the
service instead; `logs` and `test` work either way.

The exit codes follow the LSB init-script conventions, for monitoring scripts:

- `status`: 0 running and `/health` answers; 1 the pid file names a process that is gone;
  3 not running; 4 running, but `/health` does not answer.
- `start`: 0 started and answering `/health`; 1 already running, or it did not start (its
  last output is printed). `stop`: 0 stopped, or was not running; 1 still running after the
  wait. `restart`: `stop`, then `start`, the first failure's code.
- `logs`: 0; 1 no log file. `test`: 0 every check passed; 1 one failed.
- 2 for a bad setting or argument, as for every command.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer

from callgate import __version__
from callgate.cli_common import fail as _fail
from callgate.cli_common import settings as _settings
from callgate.errors import CallgateError, ConfigurationError
from callgate.private_files import owner_only_opener
from callgate.settings import Settings

service_app = typer.Typer(
    help="Run the service in the background and look after it (start, stop, status, ...).",
    no_args_is_help=True,
)

_T = TypeVar("_T")
DEFAULT_PID_NAME = "callgate.pid"
START_WAIT = 30.0  # seconds `start` waits for /health by default
STOP_MARGIN = 15.0  # seconds beyond the graceful timeout: the lifespan's own closing steps
POLL = 0.1
HTTP_TIMEOUT = 3.0
DATABASE_WITHIN = 10.0  # seconds `test` gives the database
HOSTS_AT_ONCE = 8  # hosts `test` logs in to at the same time
TAIL_BLOCK = 64 * 1024

# LSB init-script exit codes of `status`.
RUNNING, DEAD, NOT_RUNNING, UNKNOWN = 0, 1, 3, 4


def pid_path(settings: Settings) -> Path:
    """CALLGATE_PID_FILE, else `callgate.pid` beside the log file (the working directory when
    there is no log file)."""
    if settings.pid_file is not None:
        return settings.pid_file
    base = settings.log_file.parent if settings.log_file is not None else Path()
    return base / DEFAULT_PID_NAME


def output_path(pid_file: Path) -> Path:
    """Where a started service's standard error goes (a start failure, a crash): beside the
    pid file. Its log lines are in the log file."""
    return pid_file.with_suffix(".out")


def base_url(settings: Settings) -> str:
    host = settings.host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{settings.port}" if ":" in host else f"http://{host}:{settings.port}"


@dataclass
class PidFile:
    """What the pid file says: ``pid`` None when there is no file or it holds no number."""

    path: Path
    exists: bool
    pid: int | None

    @property
    def alive(self) -> bool:
        return self.pid is not None and process_alive(self.pid)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def read_pid_file(path: Path) -> PidFile:
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return PidFile(path, False, None)
    except OSError as exc:
        _fail(f"cannot read the pid file {path}: {exc.strerror}")
    first = text.split()[0] if text.split() else ""
    pid = int(first) if first.isdecimal() and int(first) > 0 else None
    return PidFile(path, True, pid)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running `callgate serve` (not a zombie, not a process that got the
    number of one that ended)."""
    with contextlib.suppress(ChildProcessError):  # our own child: reap it once it ended
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process with that number: its command line says whose
    proc = Path("/proc", str(pid))
    with contextlib.suppress(OSError):
        if _stat_fields(pid)[0] == "Z":
            return False
    try:
        command = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (not Linux): the signal test is all there is
    return any(b"callgate" in part for part in command) and b"serve" in command


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat from its third field on (the state); the command name in parentheses
    may hold spaces, so the split starts after its closing one."""
    text = Path("/proc", str(pid), "stat").read_text(encoding="ascii", errors="replace")
    return text[text.rindex(")") + 2 :].split()


def uptime(pid: int, pid_file: Path) -> float | None:
    """Seconds since the process started: from /proc, else from the pid file's time."""
    try:
        started_ticks = int(_stat_fields(pid)[19])  # field 22, starttime, in clock ticks
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return time.time() - (boot + started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, StopIteration):
        with contextlib.suppress(OSError):
            return time.time() - pid_file.stat().st_mtime
    return None


def _duration(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


def _get(url: str, path: str) -> httpx.Response | None:
    try:
        return httpx.get(url + path, timeout=HTTP_TIMEOUT)
    except httpx.HTTPError:
        return None


def _healthy(url: str) -> bool:
    response = _get(url, "/health")
    return response is not None and response.status_code == 200


# -- start / stop ---------------------------------------------------------------------------


@service_app.command("start")
def start(
    wait: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for /health to answer.")
    ] = START_WAIT,
) -> None:
    """Start `callgate serve` in the background (its pid in CALLGATE_PID_FILE) and wait until
    /health answers."""
    raise typer.Exit(_start(_settings(), wait))


def _start(settings: Settings, wait: float) -> int:
    found = read_pid_file(pid_path(settings))
    if found.alive:
        typer.echo(f"error: already running (pid {found.pid}, {found.path})", err=True)
        return 1
    if found.exists:
        found.remove()  # stale: its process is gone
        typer.echo(f"removed a stale pid file ({found.path})")
    url = base_url(settings)
    if _healthy(url):
        typer.echo(f"error: a service already answers at {url} (not started from here)", err=True)
        return 1
    output = output_path(found.path)
    try:
        err = open(output, "w", encoding="utf-8", opener=owner_only_opener)  # noqa: SIM115
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror}")
    with err:
        # Log lines go to the log file; with no log file, to `output` with the errors.
        out = err if settings.log_file is None else subprocess.DEVNULL
        process = subprocess.Popen(
            [sys.executable, "-m", "callgate", "serve"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # not stopped with this terminal's session
        )
    try:
        with open(found.path, "x", encoding="ascii", opener=owner_only_opener) as pid_file:
            pid_file.write(f"{process.pid}\n")
    except OSError as exc:  # another start raced this one, or the directory is not writable
        process.terminate()
        process.wait(30)
        _fail(f"cannot write the pid file {found.path}: {exc.strerror or exc}")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            found.remove()
            typer.echo(f"error: callgate serve exited with status {process.returncode}", err=True)
            _show_tail(output)
            return 1
        if _healthy(url):
            typer.echo(
                f"started: pid {process.pid}, port {settings.port}, {url} "
                f"(log {settings.log_file or output}, pid file {found.path})"
            )
            return 0
        time.sleep(POLL)
    typer.echo(f"error: /health did not answer within {wait:g} s; stopping it", err=True)
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_MARGIN)
    found.remove()
    _show_tail(output)
    return 1


def _show_tail(output: Path, lines: int = 20) -> None:
    with contextlib.suppress(OSError):
        for line in output.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]:
            typer.echo(f"  {line}", err=True)


@service_app.command("stop")
def stop() -> None:
    """SIGTERM the started service and wait while it finishes the calls in flight."""
    raise typer.Exit(_stop(_settings()))


def stop_wait(settings: Settings) -> float:
    """The longest a stop may take: the drain notice, the requests in flight (`graceful_timeout`)
    and the lifespan's closing steps."""
    from callgate.app import graceful_timeout  # lazily: the HTTP app loads only here

    return settings.drain_notice + graceful_timeout(settings) + STOP_MARGIN


def _stop(settings: Settings) -> int:
    found = read_pid_file(pid_path(settings))
    if not found.exists:
        typer.echo(f"not running (no pid file {found.path})")
        return 0
    if found.pid is None or not found.alive:
        found.remove()
        typer.echo(f"not running; removed the stale pid file {found.path}")
        return 0
    pid, bound = found.pid, stop_wait(settings)
    began = time.monotonic()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it ended meanwhile
    except PermissionError:
        _fail(f"not allowed to signal pid {pid} (started by another user?)")
    typer.echo(f"stopping pid {pid} (calls in flight finish; at most {bound:g} s)")
    while process_alive(pid):
        if time.monotonic() - began > bound:
            typer.echo(
                f"error: pid {pid} still runs after {bound:g} s; `kill -KILL {pid}` ends it at "
                "once (a call in flight then gets its outcome at the next start)",
                err=True,
            )
            return 1
        time.sleep(POLL)
    found.remove()
    typer.echo(f"stopped (pid {pid}, {time.monotonic() - began:.1f} s)")
    return 0


@service_app.command("restart")
def restart(
    wait: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for /health to answer.")
    ] = START_WAIT,
) -> None:
    """Stop (if running), then start."""
    settings = _settings()
    code = _stop(settings)
    raise typer.Exit(code or _start(settings, wait))


# -- status ---------------------------------------------------------------------------------


@service_app.command("status")
def status() -> None:
    """Pid, port, uptime, version, /health and /ready of the started service. Exit status:
    0 running and healthy, 1 dead (stale pid file), 3 not running, 4 not answering /health."""
    settings = _settings()
    found = read_pid_file(pid_path(settings))
    url = base_url(settings)
    if not found.exists:
        typer.echo(f"state: not running (no pid file {found.path})")
        if _healthy(url):
            typer.echo(f"note: a service answers at {url}, not started by `callgate service start`")
        raise typer.Exit(NOT_RUNNING)
    if found.pid is None or not found.alive:
        typer.echo(f"state: dead (pid file {found.path} names pid {found.pid}, not running)")
        raise typer.Exit(DEAD)
    health = _get(url, "/health")
    ready = _get(url, "/ready")
    about = _get(url, "/api/status")
    version = __version__
    if about is not None and about.status_code == 200:
        with contextlib.suppress(ValueError, AttributeError):
            version = str(about.json().get("version", version))
    age = uptime(found.pid, found.path)
    healthy = health is not None and health.status_code == 200
    typer.echo(f"state: {'running' if healthy else 'running, not answering /health'}")
    typer.echo(f"pid: {found.pid}")
    typer.echo(f"port: {settings.port}")
    typer.echo(f"uptime: {'?' if age is None else _duration(age)}")
    typer.echo(f"version: {version}")
    typer.echo(f"health: {_answer(health)}")
    typer.echo(f"ready: {_answer(ready)}")
    raise typer.Exit(RUNNING if healthy else UNKNOWN)


def _answer(response: httpx.Response | None) -> str:
    if response is None:
        return "no answer"
    return f"{response.status_code} {' '.join(response.text.split())[:300]}"


# -- logs -----------------------------------------------------------------------------------


@service_app.command("logs")
def logs(
    lines: Annotated[int, typer.Option("-n", "--lines", min=0, help="Last lines shown.")] = 50,
    follow: Annotated[bool, typer.Option(help="Keep printing what is added.")] = True,
) -> None:
    """Print the log file's last lines (CALLGATE_LOG_FILE) and follow it, across rotations."""
    settings = _settings()
    path = settings.log_file
    if path is None:
        _fail("CALLGATE_LOG_FILE is empty: the log goes to standard output only")
    try:
        handle = path.open("rb")
    except OSError as exc:
        _fail(f"cannot read the log file {path}: {exc.strerror}")
    with handle:
        _write(_tail(handle, lines))
        if follow:
            _follow(path, handle)


def _tail(handle: Any, lines: int) -> bytes:
    """The last ``lines`` lines of an open file (read backwards in blocks); the file is left at
    its end."""
    end = handle.seek(0, os.SEEK_END)
    if lines == 0:
        return b""
    position, data = end, b""
    while position > 0 and data.count(b"\n") <= lines:
        step = min(TAIL_BLOCK, position)
        position -= step
        handle.seek(position)
        data = handle.read(step) + data
    handle.seek(end)
    return b"".join(data.splitlines(keepends=True)[-lines:])


def _write(data: bytes) -> None:
    if data:
        sys.stdout.write(data.decode("utf-8", errors="replace"))
        sys.stdout.flush()


def _follow(path: Path, handle: Any) -> None:
    """Print what is appended, until interrupted (SIGINT, SIGTERM). A rotation (the log handler
    renames the file and starts a new one) is noticed by the name's inode changing; the new
    file is read from its start, after what was left in the old one.

    An interruption is noted and acted on between two reads, never in the middle of a write
    to the terminal or the pipe (a KeyboardInterrupt could land there)."""
    stopped: list[int] = []
    signals = (signal.SIGINT, signal.SIGTERM)
    before = [signal.signal(n, lambda number, _frame: stopped.append(number)) for n in signals]
    try:
        inode = os.fstat(handle.fileno()).st_ino
        while not stopped:
            _write(handle.read())
            try:
                current = path.stat()
            except FileNotFoundError:  # between the rename and the new file
                current = None
            if current is not None and (current.st_ino != inode or current.st_size < handle.tell()):
                _write(handle.read())
                handle.close()
                handle = path.open("rb")
                inode = os.fstat(handle.fileno()).st_ino
                continue
            time.sleep(0.25)
    finally:  # the caller's handlers again (an in-process run, as the tests make)
        handle.close()  # after a rotation, not the one the caller opened
        for number, handler in zip(signals, before, strict=True):
            signal.signal(number, handler)


# -- test -----------------------------------------------------------------------------------


@service_app.command("test")
def test(
    enterprise: Annotated[
        str | None, typer.Option(metavar="NUMBER", help="Test call: the enterprise's number.")
    ] = None,
    extension: Annotated[
        str | None, typer.Option(metavar="EXT", help="Test call: the extension rung first.")
    ] = None,
    phone: Annotated[
        str | None, typer.Option(metavar="NUMBER", help="Test call: the number dialled next.")
    ] = None,
) -> None:
    """Check the database, log in to every PBX host (the enterprises' and `host set` ones)
    and read its Asterisk version; with --enterprise, --extension and --phone, place a test
    call as `call place --direct` does and follow it to its end. Exit status 1 if any fails."""
    call = (enterprise, extension, phone)
    if any(v is not None for v in call) and not all(v is not None for v in call):
        _fail("a test call needs --enterprise, --extension and --phone", 2)
    settings = _settings()
    from callgate.logs import configure_logging

    # The checks' own log lines go to the service's log file, not between these lines.
    configure_logging(
        settings.log_file, settings.log_format.value, settings.log_level, console=False
    )
    failures = 0

    def report(ok: bool, what: str, detail: str) -> None:
        nonlocal failures
        failures += not ok
        typer.echo(f"{'ok  ' if ok else 'FAIL'}  {what}: {' '.join(detail.split())}")

    try:
        found = _run(lambda: _database(settings))
    except CallgateError as exc:
        report(False, "database", exc.message)
        raise typer.Exit(1) from None
    listed, host_rows = found
    report(True, "database", f"{len(listed)} enterprises, {len(host_rows)} hosts with settings")
    addresses = sorted({row.ip for row, _ in listed if row.active} | set(host_rows))
    if not addresses:
        typer.echo("skip  hosts: none (no active enterprise, no `callgate host set`)")
    for address, (ok, detail) in _run(lambda: _hosts(settings, addresses)):
        report(ok, f"host {address}", detail)
    if enterprise is not None and extension is not None and phone is not None:
        secrets = [secret for row, secret in listed if row.number == enterprise and row.active]
        what = f"call {enterprise} {extension} -> {phone}"
        if not secrets:
            report(False, what, f"no active enterprise numbered {enterprise!r}")
        else:
            ok, detail = _test_call(secrets[0], extension, phone)
            report(ok, what, detail)
    raise typer.Exit(1 if failures else 0)


def _run(work: Callable[[], Awaitable[_T]]) -> _T:
    async def awaited() -> _T:
        return await work()

    try:
        return asyncio.run(awaited())
    except ConfigurationError as exc:
        _fail(exc.message, 2)


async def _database(settings: Settings) -> tuple[list[Any], list[str]]:
    """The enterprises (with their secrets) and the addresses with host settings; the
    database's failure as DatabaseUnavailable (or a timeout, reported as one)."""
    from callgate.calls import admin
    from callgate.errors import DatabaseUnavailable

    url = settings.database_url
    try:
        async with asyncio.timeout(DATABASE_WITHIN):
            listed = await admin.list_enterprises(url)
            hosts = [row.address for row in await admin.list_hosts(url)]
    except TimeoutError:
        raise DatabaseUnavailable(f"no answer within {DATABASE_WITHIN:g} s") from None
    return listed, hosts


async def _hosts(settings: Settings, addresses: list[str]) -> list[tuple[str, tuple[bool, str]]]:
    """Each host's login and Asterisk version, a few hosts at a time."""
    from callgate.calls import admin
    from callgate.wiring import check_host  # lazily: asyncssh loads only here

    gate = asyncio.Semaphore(HOSTS_AT_ONCE)
    within = settings.ssh_connect_timeout + settings.ssh_command_timeout + 5

    async def one(address: str) -> tuple[bool, str]:
        async with gate:
            try:
                async with asyncio.timeout(within), admin.opened(settings.database_url) as db:
                    return True, await check_host(settings, db, address)
            except TimeoutError:
                return False, f"no answer within {within:g} s"
            except CallgateError as exc:
                return False, f"{exc.code}: {exc.message}"

    results = await asyncio.gather(*(one(address) for address in addresses))
    return list(zip(addresses, results, strict=True))


def _test_call(secret: str, extension: str, phone: str) -> tuple[bool, str]:
    """Place the call as `call place --direct` does (it prints the call and its transitions);
    passed unless it is refused or ends `failed` or `lost`."""
    from callgate.cli_calls import place_direct

    try:
        state = asyncio.run(place_direct(secret, extension, phone))
    except ConfigurationError as exc:
        _fail(exc.message, 2)
    except CallgateError as exc:
        return False, f"{exc.code}: {exc.message}"
    return state not in ("failed", "lost"), f"placed, ended {state}"
