"""The in-process SSH simulator, driven by a real asyncssh client as the service drives a host."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from callgate.pbx import commands
from callgate.pbx.parsing import parse_channels, parse_count
from callgate.simulator import Scenario, SimulatedAsterisk, SshSimulator, start_ssh_simulator
from callgate.simulator.clitext import NOT_RUNNING
from callgate.simulator.shell import run_line

TRANSCRIPTS = Path(__file__).parents[2] / "recordings" / "asterisk"
USER, PASSWORD = "pbx", "sim-password"
PHONE = "+375296254070"


def transcript_exchanges() -> list[tuple[str, str, int]]:
    """(command, output, exit status) of the CLI transcript; a missing file fails."""
    path = TRANSCRIPTS / "real-asterisk-22.7.0-cli.txt"
    if not path.is_file():
        pytest.fail(f"transcript missing: {path}")
    block = re.compile(r'^\$ asterisk -rx "([^\n]*)"\n(.*?)^\[exit status (\d+)\]\n', re.M | re.S)
    text = path.read_text(encoding="utf-8")
    return [(c, o, int(s)) for c, o, s in block.findall(text)]


@contextlib.asynccontextmanager
async def connect(
    simulator: SshSimulator, **options: Any
) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """An isolated client (no ~/.ssh, no agent) that pins the simulator's host key."""
    known = asyncssh.import_known_hosts(f"[127.0.0.1]:{simulator.port} {simulator.host_key}\n")
    settings: dict[str, Any] = {
        "username": USER,
        "password": PASSWORD,
        "known_hosts": known,
        "client_keys": None,
        "agent_path": None,
        "config": [],
    }
    async with asyncssh.connect("127.0.0.1", simulator.port, **(settings | options)) as conn:
        yield conn


@pytest.fixture
async def simulator() -> AsyncIterator[SshSimulator]:
    started = await start_ssh_simulator(SimulatedAsterisk(), username=USER, password=PASSWORD)
    try:
        yield started
    finally:
        await started.close()


async def test_rx_prints_transcript_bytes(simulator: SshSimulator) -> None:
    """Over SSH, `asterisk -rx` prints each stateless transcript answer byte for byte."""
    checked = 0
    async with connect(simulator) as conn:
        for command, output, status in transcript_exchanges():
            if command.startswith(
                ("core show version", "no such", "channel request hangup Local/9")
            ):
                result = await conn.run(f"asterisk -rx {shlex.quote(command)}")
                assert (result.stdout, result.stderr, result.exit_status) == (output, "", status)
                checked += 1
    assert checked == 3


async def test_rx_shell_chain_is_split_and_parsed(simulator: SshSimulator) -> None:
    """An rx_shell() chain runs every command; its outputs split and parse as the service does."""
    cli = [commands.originate("150", PHONE, "inoffice"), commands.CHANNELS_CONCISE]
    line = commands.rx_shell("/usr/sbin/asterisk", [*cli, commands.CHANNELS_COUNT])
    async with connect(simulator) as conn:
        result = await conn.run(line)
    assert result.exit_status == 0 and result.stderr == ""
    assert isinstance(result.stdout, str)
    originate, listing, count = commands.split_outputs(result.stdout)
    assert originate == ""
    assert [c.name for c in parse_channels(listing)] == [
        "Local/150@inoffice-00000000;2",  # Asterisk's hash order puts this ;2 first
        "Local/150@inoffice-00000000;1",
    ]
    assert parse_count(count).active_calls == 1
    assert [c.command for c in simulator.exec_commands] == [line]
    assert [c.command for c in simulator.engine.commands] == [*cli, commands.CHANNELS_COUNT]


async def test_chain_stops_at_first_failure(simulator: SshSimulator) -> None:
    """Asterisk down: the first `-rx` fails, `&&` runs nothing more, exit 1, no newline."""
    simulator.engine.running = False
    line = commands.rx_shell("asterisk", [commands.VERSION, commands.CHANNELS_CONCISE])
    async with connect(simulator) as conn:
        result = await conn.run(line)
    assert (result.stdout, result.exit_status) == (NOT_RUNNING, 1)
    assert len(simulator.engine.commands) == 1


async def test_other_programs_are_not_found(simulator: SshSimulator) -> None:
    """Anything but asterisk and printf gets bash's "command not found", exit 127."""
    async with connect(simulator) as conn:
        alone = await conn.run("ls -la /")
        after = await conn.run("asterisk -rx 'core show version' && rm -rf /tmp/x")
        lookalike = await conn.run("/usr/bin/notasterisk -rx 'core show version'")
    assert (alone.stdout, alone.stderr, alone.exit_status) == (
        "",
        "bash: ls: command not found\n",
        127,
    )
    assert isinstance(after.stdout, str) and after.stdout.startswith("Asterisk 22.7.0")
    assert (after.stderr, after.exit_status) == ("bash: rm: command not found\n", 127)
    assert lookalike.exit_status == 127


async def test_only_exec_requests_are_served(simulator: SshSimulator) -> None:
    """A shell session is refused with a message and exit 1; nothing reaches the engine."""
    async with connect(simulator) as conn:
        process = await conn.create_process()  # no command: a shell request
        result = await process.wait()
    assert result.exit_status == 1 and "only exec requests" in str(result.stderr)
    assert simulator.engine.commands == [] and simulator.exec_commands == []


async def test_logins_by_password_and_key() -> None:
    """The one user gets in by password or key; other names and wrong secrets do not."""
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    own_host_key = asyncssh.generate_private_key("ssh-ed25519")
    simulator = await start_ssh_simulator(
        SimulatedAsterisk(),
        username=USER,
        password=PASSWORD,
        authorized_client_keys=[client_key],
        server_host_key=own_host_key,
    )
    try:
        assert simulator.host_key == own_host_key.export_public_key().decode().strip()
        async with connect(simulator, password=None, client_keys=[client_key]) as conn:
            assert (await conn.run("asterisk -rx 'core show version'")).exit_status == 0
        for wrong in (
            {"password": "nope"},
            {"username": "root"},
            {"username": "root", "password": None, "client_keys": [client_key]},
        ):
            with pytest.raises(asyncssh.PermissionDenied):
                async with connect(simulator, **wrong):
                    pass
    finally:
        await simulator.close()
    with pytest.raises(ValueError, match="nobody could log in"):
        await start_ssh_simulator(SimulatedAsterisk(), username=USER)


async def test_many_simulators_share_a_host_key() -> None:
    """100 simulators start quickly in one process, on distinct ports, with one host key."""
    started = time.perf_counter()
    simulators = await asyncio.gather(
        *(
            start_ssh_simulator(SimulatedAsterisk(), username=USER, password=PASSWORD)
            for _ in range(100)
        )
    )
    elapsed = time.perf_counter() - started
    try:
        assert len({s.port for s in simulators}) == 100
        assert len({s.host_key for s in simulators}) == 1
        for simulator in simulators[::25]:
            async with connect(simulator) as conn:
                result = await conn.run(f"asterisk -rx {shlex.quote(commands.VERSION)}")
            assert result.exit_status == 0
    finally:
        await asyncio.gather(*(s.close() for s in simulators))
    print(f"\n100 SSH simulators started in {elapsed * 1000:.0f} ms")


async def test_close_drops_open_connections() -> None:
    """Closing a simulator also closes the connections a client still holds (host gone)."""
    simulator = await start_ssh_simulator(SimulatedAsterisk(), username=USER, password=PASSWORD)
    async with connect(simulator) as conn:
        assert (await conn.run("asterisk -rx 'core show version'")).exit_status == 0
        await simulator.close()
        await asyncio.wait_for(conn.wait_closed(), 5)
        with pytest.raises((asyncssh.Error, OSError)):
            await conn.run("asterisk -rx 'core show version'")


def test_shell_line_reader() -> None:
    """printf escapes, empty lines, bad quotes and wrong asterisk arguments, without SSH."""
    engine = SimulatedAsterisk()
    assert run_line(engine, "printf '\\n--x--\\n' && printf '50%% \\t'").stdout == "\n--x--\n50% \t"
    assert run_line(engine, "") == run_line(engine, "   ")
    assert run_line(engine, "").exit_status == 0
    assert run_line(engine, "asterisk -rx 'unclosed").exit_status == 2
    assert run_line(engine, "&& asterisk -rx x").exit_status == 2
    usage = run_line(engine, "asterisk -x 'core show version'")
    assert (usage.stdout, usage.exit_status) == ("", 1) and usage.stderr.startswith("Usage:")
    assert run_line(engine, "asterisk -r").stderr.endswith("not simulated yet\n")
    assert engine.commands == []


# -- consoles: what Asterisk writes to them on its own ------------------------------------

QUICK = Scenario(agent_answer_after=0.05, customer_answer_after=0.05, talk=0.1)
DOOMED = commands.originate("150", PHONE, "nosuchcontext")
NOTICE = "No such extension/context 150@nosuchcontext while calling Local channel\r\n"


class Screen:
    """What an `asterisk -r` session over SSH has written so far."""

    def __init__(self, process: asyncssh.SSHClientProcess[str]) -> None:
        self.process = process
        self.text = ""

    async def until(self, needle: str) -> str:
        """Read until ``needle`` appears after what was read before (within 5 s); return the
        new text."""
        start = len(self.text)
        async with asyncio.timeout(5):
            while needle not in self.text[start:]:
                chunk = await self.process.stdout.read(65536)
                assert chunk, f"the console ended before {needle!r}"
                self.text += chunk
        return self.text[start:]

    def type(self, line: str) -> None:
        self.process.stdin.write(line + "\r")


@contextlib.asynccontextmanager
async def console(
    simulator: SshSimulator,
) -> AsyncIterator[tuple[asyncssh.SSHClientConnection, Screen]]:
    async with connect(simulator) as conn:
        process = await conn.create_process("asterisk -r -q", term_type="dumb")
        screen = Screen(process)
        await screen.until("vm*CLI> ")
        try:
            yield conn, screen
        finally:
            process.close()


async def test_console_is_pushed_the_lines_of_its_verbosity(simulator: SshSimulator) -> None:
    """At verbose 0 only the NOTICE of a doomed call; at verbose 3 every step of a call,
    written on the idle console as a block from Asterisk is."""
    simulator.engine.default_scenario = QUICK
    async with console(simulator) as (conn, screen):
        await conn.run(f"asterisk -rx {shlex.quote(commands.originate('150', PHONE, 'inoffice'))}")
        result = await conn.run(f"asterisk -rx {shlex.quote(DOOMED)}")
        assert result.stdout == ""  # -rx prints no log lines
        quiet = await screen.until(NOTICE)
        assert "Called" not in quiet and quiet.startswith("\r\x1b[0K[")
        assert quiet.endswith(NOTICE + "\r\r\nvm*CLI> ")
        screen.type("core set verbose 3")
        await screen.until("Console verbose was OFF and is now 3.\r\n\r\r\nvm*CLI> ")
        await conn.run(f"asterisk -rx {shlex.quote(commands.originate('151', PHONE, 'inoffice'))}")
        loud = await screen.until("-00000003;1 left 'simple_bridge'")
        called = "\r\x1b[0K\x1b[1;30m    -- \x1b[0mCalled 151@inoffice\r\n"
        assert loud.startswith(called) and "-00000002;1 is ringing\r\n\r\r\nvm*CLI> " in loud
        screen.type("core set verbose 0")
        await screen.until("Console verbose was 3 and is now OFF.\r\n")


async def test_console_lines_mid_listing(simulator: SshSimulator) -> None:
    """With the switch on, the NOTICE comes between the lines of the next listing."""
    simulator.set_logs_mid_listing(True)
    async with console(simulator) as (conn, screen):
        await conn.run(f"asterisk -rx {shlex.quote(commands.originate('199', PHONE, 'inoffice'))}")
        await conn.run(f"asterisk -rx {shlex.quote(DOOMED)}")
        await asyncio.sleep(0.05)
        screen.type(commands.CHANNELS_CONCISE)
        screen.type("cgsync1")  # its answer marks the end of the listing's
        shown = await screen.until("No such command 'cgsync1'")
        lines = [line for line in shown.split("\r\n") if "!" in line or "NOTICE" in line]
        assert ["NOTICE" in line for line in lines] == [False, True, False]
        simulator.set_logs_mid_listing(False)
