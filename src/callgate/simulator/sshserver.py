"""An in-process SSH server in front of an engine: a whole simulated PBX host, no sshd.

For ``make run`` and for benchmarks with hundreds of hosts in one process. It serves exec
requests only and reads them with ``shell.run_line`` (``asterisk -rx`` and ``rx_shell()``
chains), as a host's bash would; ``asterisk -r…`` with a pty is the remote console, written by
``console.ConsoleScreen`` as the bash program's console client writes it: each console is one of
the engine's (its own ``core set verbose``), and a ``ConsolePump`` writes it the verbose and log
lines Asterisk prints on its own when they are due, while it idles or between answers
(``recordings/asterisk/console-verbose-outcomes.repr.txt``). Modelled on asyncssh's own tests:
``create_server`` on port 0 with a ``process_factory``.

To keep many of them cheap, every simulator started without a host key shares one key,
generated once per process (an Ed25519 key: fast to make and to use).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from callgate.simulator.console import (
    LINE_BY_LINE,
    LOGGER_MUTE,
    NEEDS_TERMINAL,
    Ask,
    ConsoleScreen,
    LineReader,
    split_first_line,
)
from callgate.simulator.engine import RecordedCommand, SimulatedAsterisk
from callgate.simulator.pump import ConsolePump
from callgate.simulator.shell import run_line

_shared_host_key: asyncssh.SSHKey | None = None

AuthorizedKeys = asyncssh.SSHAuthorizedKeys | str | Path | Sequence[asyncssh.SSHKey]


def shared_host_key() -> asyncssh.SSHKey:
    """The host key of every simulator that was not given one (made on first use)."""
    global _shared_host_key
    if _shared_host_key is None:
        _shared_host_key = asyncssh.generate_private_key("ssh-ed25519")
    return _shared_host_key


CONSOLE_OFF = "asterisk: the remote console is switched off (callgate simulator)\n"


@dataclass
class SshSimulator:
    """A running simulated host; ``exec_commands`` records every exec'd command line.

    Console switches, for tests: ``console_enabled = False`` makes ``asterisk -r`` fail at
    once (exit 1); ``console_hang = True`` makes open consoles echo but never answer, like an
    Asterisk that stopped responding; ``set_logs_mid_listing(True)`` makes the lines Asterisk
    writes on its own wait for a console's next listing and come after its first line.
    """

    engine: SimulatedAsterisk
    host: str
    port: int
    host_key: str  # public key, one OpenSSH line ("ssh-ed25519 AAAA...")
    exec_commands: list[RecordedCommand] = field(default_factory=list)
    console_hostname: str = "vm"  # the name in the console's banner and prompt
    console_enabled: bool = True
    console_hang: bool = False
    _acceptor: asyncssh.SSHAcceptor | None = None
    _connections: set[asyncssh.SSHServerConnection] = field(default_factory=set)
    _pump: ConsolePump | None = None  # made when the first console opens (none: no cost)
    _screens: dict[int, tuple[ConsoleScreen, asyncssh.SSHServerProcess[str]]] = field(
        default_factory=dict
    )
    _hold_logs: bool = False

    def set_logs_mid_listing(self, on: bool) -> None:
        """While on, consoles' pushed blocks wait for their next line-by-line answer and are
        written after its first line."""
        self._hold_logs = on
        if self._pump is not None:
            self._pump.hold(on)

    async def close(self) -> None:
        """Stop listening and close the open connections: the host is gone."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is None:
            return
        if self._pump is not None:
            await self._pump.stop()
        acceptor.close()  # asyncssh leaves accepted connections open: close them too
        connections = list(self._connections)
        for conn in connections:
            conn.close()
        await asyncio.gather(*(conn.wait_closed() for conn in connections))
        await acceptor.wait_closed()

    async def _serve(self, process: asyncssh.SSHServerProcess[str]) -> None:
        """One session: an exec request runs its line; a shell or subsystem is refused."""
        line = process.command
        if line is None:
            process.stderr.write("callgate simulator: only exec requests are served\n")
            process.exit(1)
            return
        self.exec_commands.append(RecordedCommand(line, self.engine.clock(), time.time()))
        if _is_console(line):
            await self._console(process)
            return
        if self._pump is not None:
            self._pump.before_command()
        result = run_line(self.engine, line)
        if self._pump is not None:
            self._pump.after_command()  # an -rx prints no log lines; the consoles do
        if result.stdout:
            process.stdout.write(result.stdout)
        if result.stderr:
            process.stderr.write(result.stderr)
        process.exit(result.exit_status)

    async def _console(self, process: asyncssh.SSHServerProcess[str]) -> None:
        """``asterisk -r``: the banner, then echo and answers, until ``exit`` or EOF."""
        if process.get_terminal_type() is None:
            process.stderr.write(NEEDS_TERMINAL)
            process.exit(1)
            return
        if not self.console_enabled:
            process.stderr.write(CONSOLE_OFF)
            process.exit(1)
            return
        output, status = self._ask(LOGGER_MUTE)
        if status != 0:
            process.stdout.write(output)  # Asterisk is down: the -rx message, exit 1
            process.exit(1)
            return
        screen = ConsoleScreen(self.console_hostname, os.getpid())
        process.stdout.write(screen.banner())
        console = self._open_console(screen, process)
        try:
            await self._type(screen, process, self._asker(console, screen, process))
        finally:
            self._close_console(console)
        process.exit(screen.exit_status or 0)

    async def _type(
        self, screen: ConsoleScreen, process: asyncssh.SSHServerProcess[str], ask: Ask
    ) -> None:
        """Echo and answer what is typed, until ``exit`` or EOF."""
        reader = LineReader()
        while screen.exit_status is None:
            try:
                data = await process.stdin.read(65536)
            except asyncssh.TerminalSizeChanged:
                continue
            if not data:
                break
            lines = reader.feed(data)
            if self.console_hang:
                process.stdout.write(screen.echo(lines))  # the keys, but never an answer
                continue
            for piece in screen.respond(lines, ask):
                process.stdout.write(piece)

    def _open_console(self, screen: ConsoleScreen, process: asyncssh.SSHServerProcess[str]) -> int:
        """A console of the engine, fed by the pump (started with the first console)."""
        if self._pump is None:
            self._pump = ConsolePump(self.engine, self._push)
            self._pump.hold(self._hold_logs)
        self._pump.flush()  # lines due before it connected are not this console's
        console = self.engine.open_console()
        self._screens[console] = (screen, process)
        self._pump.arm()  # calls already running have lines coming for it
        return console

    def _close_console(self, console: int) -> None:
        self.engine.close_console(console)
        self._screens.pop(console, None)
        if self._pump is not None:
            self._pump.forget(console)

    def _push(self, console: int, blocks: list[str]) -> None:
        """The pump's delivery: the blocks on the console's screen, as Asterisk wrote them
        (none while ``console_hang``: an Asterisk that stopped responding writes nothing)."""
        screen, process = self._screens[console]
        if self.console_hang or process.is_closing():
            return
        with contextlib.suppress(OSError):  # the channel just closed: its task ends it
            process.stdout.write("".join(screen.pushed(block) for block in blocks))

    def _asker(
        self, console: int, screen: ConsoleScreen, process: asyncssh.SSHServerProcess[str]
    ) -> Ask:
        """How the console asks the engine: lines due earlier are written before the answer,
        those the command caused after it (once the typed batch is answered)."""
        pump = self._pump
        assert pump is not None  # the console is open

        def ask(command: str) -> tuple[str, int]:
            at = pump.before_command()
            answer = self.engine.execute(command, console, at=at)
            asyncio.get_running_loop().call_soon(pump.after_command)
            output = answer.output
            held = pump.take_held(console) if command in LINE_BY_LINE else []
            if held:  # written here, before respond() writes the rest of the answer
                first, output = split_first_line(output)
                pushed = "".join(screen.pushed(block) for block in held)
                process.stdout.write(screen.output(command, first) + pushed)
            return output, answer.exit_status

        return ask

    def _ask(self, command: str) -> tuple[str, int]:
        answer = self.engine.execute(command)
        return answer.output, answer.exit_status


def _is_console(line: str) -> bool:
    """``<…/asterisk> -r`` (``-rq``, ``-r -q`` …): the console, not an exec'd ``-rx``."""
    try:
        words = shlex.split(line)
    except ValueError:
        return False
    return (
        len(words) >= 2
        and Path(words[0]).name == "asterisk"
        and re.fullmatch(r"-r[qv]*", words[1]) is not None
        and all(re.fullmatch(r"-[qv]+", word) for word in words[2:])
    )


class _Login(asyncssh.SSHServer):
    """Lets exactly one user in, by password and/or by authorized public key."""

    def __init__(
        self,
        simulator: SshSimulator,
        username: str,
        password: str | None,
        keys: asyncssh.SSHAuthorizedKeys | None,
    ) -> None:
        self._simulator = simulator
        self._username = username
        self._password = password
        self._keys = keys
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._simulator._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._simulator._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        # Keys are trusted for the expected user only; any other name finds none.
        if username == self._username and self._keys is not None and self._conn is not None:
            self._conn.set_authorized_keys(self._keys)
        return True  # authentication is always required

    def password_auth_supported(self) -> bool:
        return self._password is not None

    def validate_password(self, username: str, password: str) -> bool:
        expected = self._password
        return (
            expected is not None
            and username == self._username
            and secrets.compare_digest(password.encode(), expected.encode())
        )

    def public_key_auth_supported(self) -> bool:
        return self._keys is not None


def _authorized(keys: AuthorizedKeys | None) -> asyncssh.SSHAuthorizedKeys | None:
    """Accept keys as asyncssh does: an authorized_keys file name, SSHKey objects, or parsed."""
    if keys is None or isinstance(keys, asyncssh.SSHAuthorizedKeys):
        return keys
    if isinstance(keys, str | Path):
        return asyncssh.read_authorized_keys(str(keys))
    lines = (key.export_public_key("openssh").decode("ascii") for key in keys)
    return asyncssh.import_authorized_keys("".join(lines))


async def start_ssh_simulator(
    engine: SimulatedAsterisk,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    username: str,
    password: str | None = None,
    authorized_client_keys: AuthorizedKeys | None = None,
    server_host_key: asyncssh.SSHKey | None = None,
) -> SshSimulator:
    """Start serving ``engine`` over SSH; ``port=0`` picks a free port (see ``.port``)."""
    keys = _authorized(authorized_client_keys)
    if password is None and keys is None:
        raise ValueError("give a password or authorized client keys: nobody could log in")
    host_key = server_host_key if server_host_key is not None else shared_host_key()
    public = host_key.export_public_key("openssh").decode("ascii").strip()
    simulator = SshSimulator(engine, host, port, public)
    simulator._acceptor = await asyncssh.create_server(
        lambda: _Login(simulator, username, password, keys),
        host,
        port,
        server_host_keys=[host_key],
        process_factory=simulator._serve,
        encoding="utf-8",
        errors="surrogateescape",  # a stray byte in a command must not kill the session
        line_editor=False,  # a console's pty is raw: the screen writes every byte itself
        allow_scp=False,
        sftp_factory=None,
        agent_forwarding=False,
        x11_forwarding=False,
    )
    simulator.port = simulator._acceptor.get_port()
    return simulator
