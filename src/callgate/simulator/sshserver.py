"""An in-process SSH server in front of an engine: a whole simulated PBX host, no sshd.

For ``make run`` and for benchmarks with hundreds of hosts in one process. It serves exec
requests only and reads them with ``shell.run_line`` (``asterisk -rx`` and ``rx_shell()``
chains), as a host's bash would; ``asterisk -r…`` with a pty is the remote console, written by
``console.ConsoleScreen`` as the bash program's console client writes it. Modelled on asyncssh's
own tests: ``create_server`` on port 0 with a ``process_factory``.

To keep many of them cheap, every simulator started without a host key shares one key,
generated once per process (an Ed25519 key: fast to make and to use).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from callgate.simulator.console import LOGGER_MUTE, NEEDS_TERMINAL, ConsoleScreen, LineReader
from callgate.simulator.engine import RecordedCommand, SimulatedAsterisk
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
    Asterisk that stopped responding.
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

    async def close(self) -> None:
        """Stop listening and close the open connections: the host is gone."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is None:
            return
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
        result = run_line(self.engine, line)
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
        screen, reader = ConsoleScreen(self.console_hostname, os.getpid()), LineReader()
        process.stdout.write(screen.banner())
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
            for piece in screen.respond(lines, self._ask):
                process.stdout.write(piece)
        process.exit(screen.exit_status or 0)

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
