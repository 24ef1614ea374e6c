"""The simulator daemon and its bash ``asterisk`` program, run as real processes (no sshd)."""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callgate.pbx import commands
from callgate.pbx.parsing import parse_channels, parse_count
from callgate.simulator import (
    Scenario,
    SimulatedAsterisk,
    SimulatorControl,
    SimulatorDaemon,
    install_program,
)
from callgate.simulator.clitext import NOT_RUNNING

TRANSCRIPTS = Path(__file__).parents[2] / "recordings" / "asterisk"
PHONE = "+375296254070"
# Commands of the CLI transcript whose answer does not depend on calls in progress.
STATELESS = re.compile(
    r"core show version|no such command here|channel request hangup Local/999.*"
    r"|channel originate( Local/150@inoffice)?|channel originate (Foo/150|Local/150@nosuch).*"
)


def transcript_exchanges() -> list[tuple[str, str, int]]:
    """(command, output, exit status) of the CLI transcript; a missing file fails."""
    path = TRANSCRIPTS / "real-asterisk-22.7.0-cli.txt"
    if not path.is_file():
        pytest.fail(f"transcript missing: {path}")
    block = re.compile(r'^\$ asterisk -rx "([^\n]*)"\n(.*?)^\[exit status (\d+)\]\n', re.M | re.S)
    text = path.read_text(encoding="utf-8")
    return [(c, o, int(s)) for c, o, s in block.findall(text)]


async def run(program: Path, *args: str) -> tuple[bytes, bytes, int]:
    """Run the program without blocking the loop (the daemon answers from this same loop)."""
    process = await asyncio.create_subprocess_exec(
        str(program), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return stdout, stderr, process.returncode


@pytest.fixture
async def daemon() -> AsyncIterator[SimulatorDaemon]:
    async with SimulatorDaemon(SimulatedAsterisk()) as started:
        yield started


@pytest.fixture
def program(daemon: SimulatorDaemon, tmp_path: Path) -> Path:
    return install_program(tmp_path / "bin", daemon.port)


async def test_program_prints_transcript_bytes(program: Path) -> None:
    """Through bash and TCP, stateless transcript commands print the recorded bytes exactly."""
    checked = 0
    for command, output, status in transcript_exchanges():
        if STATELESS.fullmatch(command):
            assert await run(program, "-rx", command) == (output.encode(), b"", status), command
            checked += 1
    assert checked == 7


async def test_program_plays_a_call(program: Path) -> None:
    """An originate through the program shows up in the listing, which the service parses."""
    assert await run(program, "-rx", commands.originate("150", PHONE, "inoffice")) == (
        b"",
        b"",
        0,
    )
    listing, _, status = await run(program, "-rx", commands.CHANNELS_CONCISE)
    names = {channel.name for channel in parse_channels(listing.decode())}
    assert status == 0
    assert names == {"Local/150@inoffice-00000000;1", "Local/150@inoffice-00000000;2"}
    hangup, _, _ = await run(program, "-rx", commands.HANGUP_ALL)
    assert hangup.count(b"Requested Hangup on channel") == 2
    assert (await run(program, "-rx", commands.CHANNELS_CONCISE))[0] == b""


async def test_not_running_and_daemon_down(daemon: SimulatorDaemon, program: Path) -> None:
    """Switched off, or with the daemon gone: the exact message, no newline, exit 1."""
    control = SimulatorControl(daemon.port)
    await control.set_running(False)
    expected = (NOT_RUNNING.encode(), b"", 1)
    assert await run(program, "-rx", commands.VERSION) == expected
    await control.set_running(True)
    assert (await run(program, "-rx", commands.VERSION))[2] == 0
    await daemon.stop()
    assert await run(program, "-rx", commands.VERSION) == expected


async def test_program_argument_forms(program: Path) -> None:
    """Only `-rx <command>` is served; `-r` has its own branch; the rest get a usage line."""
    for args in ((), ("-rx",), ("-x", "core show version"), ("-rx", "a", "b")):
        stdout, stderr, status = await run(program, *args)
        assert (stdout, status) == (b"", 1) and stderr.startswith(b"Usage: asterisk -rx")
    stdout, stderr, status = await run(program, "-r", "-q")
    assert (stdout, status) == (b"", 1) and b"remote console (-r)" in stderr


def test_install_program_writes_an_executable_bash_script(tmp_path: Path) -> None:
    """The program is a 0755 bash script for the given port, rewritten in place on reinstall."""
    first = install_program(tmp_path / "bin", 40001)
    second = install_program(tmp_path / "bin", 40002)
    assert first == second == tmp_path / "bin" / "asterisk"
    assert second.stat().st_mode & 0o777 == 0o755
    text = second.read_text()
    assert text.startswith("#!/bin/bash\n") and "/dev/tcp/127.0.0.1/40002" in text
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["asterisk"]
    with pytest.raises(ValueError, match="not a TCP port"):
        install_program(tmp_path / "bin", 0)


async def test_multibyte_command_is_length_prefixed_in_bytes(
    daemon: SimulatorDaemon, program: Path
) -> None:
    """A UTF-8 command arrives whole: the program counts bytes, not characters."""
    command = "channel request hangup Local/ñoño@дом-1;1"
    stdout, _, status = await run(program, "-rx", command)
    assert (stdout.decode(), status) == (command[23:] + " is not a known channel\n", 0)
    assert (await SimulatorControl(daemon.port).commands())[-1].command == command


async def test_parallel_program_calls_keep_counters(daemon: SimulatorDaemon, program: Path) -> None:
    """50 originates at once: 50 distinct, consecutive channel numbers and exact counts."""
    results = await asyncio.gather(
        *(
            run(program, "-rx", commands.originate(f"1{n:02d}", PHONE, "inoffice"))
            for n in range(50)
        )
    )
    assert all(result == (b"", b"", 0) for result in results)
    control = SimulatorControl(daemon.port)
    listing = parse_channels((await control.rx(commands.CHANNELS_CONCISE)).output)
    numbers = sorted({int(channel.base_name.rsplit("-", 1)[1], 16) for channel in listing})
    assert numbers == list(range(50))
    assert sorted(channel.uniqueid.split(".")[1] for channel in listing) == sorted(
        str(n) for n in range(100)
    )
    count = parse_count((await control.rx(commands.CHANNELS_COUNT)).output)
    assert (count.active_channels, count.active_calls, count.calls_processed) == (100, 50, 50)


async def test_program_call_time(program: Path, tmp_path: Path) -> None:
    """Measure one program call (printed, not asserted); every answer must be right."""
    expected = (await run(program, "-rx", commands.VERSION))[0]
    timings = []
    for _ in range(30):
        started = time.perf_counter()
        assert (await run(program, "-rx", commands.VERSION))[0] == expected
        timings.append((time.perf_counter() - started) * 1000)
    loop = tmp_path / "loop.sh"
    loop.write_text(f'for i in $(seq 100); do "{program}" -rx "core show version"; done\n')
    started = time.perf_counter()
    stdout, _, status = await run(Path("/bin/bash"), str(loop))
    per_call = (time.perf_counter() - started) * 10  # 100 calls, in ms each
    assert status == 0 and stdout == expected * 100
    print(
        f"\nasterisk -rx via the simulator program: median {statistics.median(timings):.1f} ms "
        f"per call from asyncio (incl. process spawn), {per_call:.1f} ms per call in a bash loop"
    )


async def test_control_operations(daemon: SimulatorDaemon, program: Path) -> None:
    """Control: commands seen, scenarios, contexts, live calls, reset, refusals."""
    control = SimulatorControl(daemon.port)
    await control.set_default_scenario(Scenario(agent_answer_after=None))
    await control.set_scenario("151", Scenario(agent_answer_after=0))
    await control.set_contexts({"inoffice", "sales"})
    await run(program, "-rx", commands.originate("150", PHONE, "sales"))
    await run(program, "-rx", commands.originate("151", PHONE, "inoffice"))
    await asyncio.sleep(0.01)  # even an agent answering "at once" waits for its dialplan (1 ms)
    calls = await control.calls()
    assert [(call["extension"], len(call["channels"])) for call in calls] == [
        ("150", 2),
        ("151", 4),
    ]
    assert [c.command for c in await control.commands()][-2:] == [
        commands.originate("150", PHONE, "sales"),
        commands.originate("151", PHONE, "inoffice"),
    ]
    await control.set_scenario("151", None)
    assert daemon.engine.scenario_for("151") == Scenario(agent_answer_after=None)
    await control.reset()
    assert await control.calls() == [] and await control.commands() == []
    with pytest.raises(RuntimeError, match="unknown operation"):
        await control.request("explode")
    with pytest.raises(RuntimeError, match="unknown scenario fields"):
        await control.request("set_default_scenario", scenario={"ring": 3})


async def test_malformed_requests_and_loopback_only(daemon: SimulatorDaemon) -> None:
    """A bad request gets an error status; the daemon listens on 127.0.0.1 and keeps going."""
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    writer.write(b"bogus request\n")
    assert (await reader.read()).startswith(b"2\n")
    writer.close()
    assert (await SimulatorControl(daemon.port).rx(commands.VERSION)).exit_status == 0
    server = daemon._server
    assert server is not None
    assert {sock.getsockname()[0] for sock in server.sockets} == {"127.0.0.1"}


async def test_engine_failure_is_reported(
    daemon: SimulatorDaemon, program: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A simulator bug answers status 255 with its reason instead of a silent hang-up."""

    def broken(command: str, console: int | None = None, *, at: float | None = None) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(daemon.engine, "execute", broken)
    stdout, _, status = await run(program, "-rx", commands.VERSION)
    assert status == 255 and b"internal error: RuntimeError('boom')" in stdout


async def test_module_daemon_with_port_file(tmp_path: Path) -> None:
    """`python -m callgate.simulator daemon --port 0 --port-file F` serves until SIGTERM."""
    port_file = tmp_path / "port"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "callgate.simulator", "daemon", "--port", "0", "--port-file", str(port_file)),
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if port_file.exists():
                break
            await asyncio.sleep(0.05)
        port = int(port_file.read_text())
        program = install_program(tmp_path / "bin", port)
        assert (await run(program, "-rx", commands.VERSION))[0].startswith(b"Asterisk 22.7.0 ")
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0


# -- consoles: what Asterisk writes to them on its own ------------------------------------

QUICK = Scenario(agent_answer_after=0.05, customer_answer_after=0.05, talk=0.1)


class RawConsole:
    """A console's connection to the daemon (``cx``), read frame by frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> RawConsole:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(self, command: str) -> None:
        body = command.encode()
        self.writer.write(b"cx %d\n" % len(body) + body)

    async def frame(self) -> tuple[str, str]:
        """(``out`` or the exit status, text) of the next frame (within 5 s)."""
        header = await asyncio.wait_for(self.reader.readuntil(b"\n"), 5)
        kind, size = header.decode().split()
        return kind, (await self.reader.readexactly(int(size))).decode()

    async def ask(self, command: str) -> str:
        """Send a command and return its answer; pushed blocks before it must not come."""
        self.send(command)
        kind, text = await self.frame()
        assert kind == "0", (kind, text)
        return text

    async def blocks_until(self, needle: str) -> list[str]:
        """Pushed blocks up to the one containing ``needle``."""
        blocks: list[str] = []
        while not blocks or needle not in blocks[-1]:
            kind, text = await self.frame()
            assert kind == "out", (kind, text)
            blocks.append(text)
        return blocks

    def close(self) -> None:
        self.writer.close()


async def test_consoles_are_pushed_lines_as_calls_progress(daemon: SimulatorDaemon) -> None:
    """Each console gets what its verbosity shows, in real time, without typing anything: the
    verbose-3 one every step of a call, the verbose-0 one only the doomed call's NOTICE."""
    control = SimulatorControl(daemon.port)
    await control.set_default_scenario(QUICK)
    loud, quiet = await RawConsole.open(daemon.port), await RawConsole.open(daemon.port)
    try:
        assert await loud.ask("core set verbose 3") == "Console verbose was OFF and is now 3.\n"
        assert await quiet.ask("core show version") != ""
        levels = {console["verbose"] for console in await control.consoles()}
        assert levels == {0, 3}
        assert (await control.rx(commands.originate("150", PHONE, "inoffice"))).output == ""
        blocks = await loud.blocks_until("left 'simple_bridge'")
        text = "".join(blocks)
        for step in ("Called 150@inoffice", "is ringing", "answered", "joined", "Hangup"):
            assert step in text, step
        await control.set_scenario("120", Scenario(agent_outcome="busy"))
        await control.rx(commands.originate("120", PHONE, "inoffice"))
        busy = "".join(await loud.blocks_until("exited non-zero on 'Local/120@inoffice-"))
        assert "-00000002;1 is busy\n" in busy
        assert (await control.rx(commands.originate("150", PHONE, "nosuchcontext"))).output == ""
        notice = "No such extension/context 150@nosuchcontext while calling Local channel\n"
        for console in (quiet, loud):
            (block,) = await console.blocks_until(notice)
            assert "\x1b[1;33mNOTICE\x1b[0m[16379]: " in block
    finally:
        loud.close()
        quiet.close()


async def test_missing_extension_is_doomed_and_noticed(daemon: SimulatorDaemon) -> None:
    """`set_missing_extensions`: the pair is listed at first, then gone with the NOTICE."""
    control = SimulatorControl(daemon.port)
    await control.set_missing_extensions("inoffice", {"150"})
    console = await RawConsole.open(daemon.port)
    try:
        console.send(commands.originate("150", PHONE, "inoffice"))
        console.send(commands.CHANNELS_CONCISE)
        assert await console.frame() == ("0", "")
        kind, listing = await console.frame()
        assert kind == "0" and "!Ring!(None)!" in listing and "!Down!AppDial2!" in listing
        await console.blocks_until("No such extension/context 150@inoffice")
        assert await console.ask(commands.CHANNELS_CONCISE) == ""
        await control.set_missing_extensions("inoffice", ())
        assert daemon.engine.missing_extensions == {}
    finally:
        console.close()


async def test_logs_mid_listing_come_after_its_first_line(daemon: SimulatorDaemon) -> None:
    """With the switch on, a NOTICE waits for the console's next listing and comes between
    its lines: first line, NOTICE, then the rest as the answer."""
    control = SimulatorControl(daemon.port)
    await control.set_logs_mid_listing(True)
    console = await RawConsole.open(daemon.port)
    try:
        await console.ask("core show version")
        await control.rx(commands.originate("199", PHONE, "inoffice"))  # rings for 30 s
        await control.rx(commands.originate("150", PHONE, "nosuchcontext"))
        await asyncio.sleep(0.05)  # the NOTICE is due, and held
        console.send(commands.CHANNELS_CONCISE)
        (kind1, first), (kind2, notice), (kind3, rest) = [await console.frame() for _ in "abc"]
        assert (kind1, kind2, kind3) == ("out", "out", "0")
        assert first.count("\n") == 1 and rest.count("\n") == 1
        assert "-00000000;" in first and "-00000000;" in rest and "NOTICE" in notice
        await control.reset()  # switches it off again
        await control.rx(commands.originate("150", PHONE, "nosuchcontext"))
        await console.blocks_until("No such extension/context")
    finally:
        console.close()


async def test_program_console_shows_pushed_lines_while_idle(
    daemon: SimulatorDaemon, program: Path
) -> None:
    """`asterisk -r` on a pty: at verbose 3 the steps of a call placed elsewhere appear on the
    idle console as Asterisk writes them (erase the prompt, the lines, redraw the prompt)."""
    master, slave = os.openpty()
    process = await asyncio.create_subprocess_exec(
        str(program), "-r", "-q", stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    screen = PtyReader(master)
    try:
        await screen.until("*CLI> ")
        os.write(master, b"core set verbose 3\r")
        await screen.until("Console verbose was OFF and is now 3.\r\n\r\r\n")
        await SimulatorControl(daemon.port).set_default_scenario(QUICK)
        await SimulatorControl(daemon.port).rx(commands.originate("150", PHONE, "inoffice"))
        text = await screen.until("left 'simple_bridge'")
        idle = text[text.index("is now 3.") :]
        assert "\r\x1b[0K\x1b[1;30m    -- \x1b[0mCalled 150@inoffice\r\n" in idle
        assert f"-00000000;1 is ringing\r\n\r\r\n{socket.gethostname()}*CLI> " in idle
        os.write(master, b"exit\r")
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(master)


class PtyReader:
    """What a pty's master reads, accumulated; read in a thread (the daemon runs in this loop)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.text = ""

    async def until(self, needle: str) -> str:
        """Everything read once ``needle`` has been (within 10 s)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while needle not in self.text:
            left = deadline - loop.time()
            assert left > 0, f"{needle!r} not seen in {self.text[-500:]!r}"
            chunk = await loop.run_in_executor(None, self._read, min(left, 0.5))
            self.text += chunk.decode("utf-8", "surrogateescape")
        return self.text

    def _read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        return os.read(self.fd, 65536) if ready else b""


async def test_notice_comes_before_any_listing_without_the_pair(daemon: SimulatorDaemon) -> None:
    """On the wire, whatever the timing: a listing that no longer shows a doomed pair comes
    after its NOTICE (as the pair's end follows local_call()'s refusal in Asterisk)."""
    console = await RawConsole.open(daemon.port)
    try:
        for code in ("150", "151", "152", "153", "154"):
            console.send(commands.originate(code, PHONE, "nosuchcontext"))
            assert await console.frame() == ("0", "")
            noticed = False
            while True:
                console.send(commands.CHANNELS_CONCISE)
                kind, text = await console.frame()
                while kind == "out":
                    noticed = noticed or f"context {code}@nosuchcontext while" in text
                    kind, text = await console.frame()
                if f"Local/{code}@nosuchcontext-" not in text:
                    break
                await asyncio.sleep(0.0003)
            assert noticed, code
    finally:
        console.close()
