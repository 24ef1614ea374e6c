"""The simulator daemon and its bash ``asterisk`` program, run as real processes (no sshd)."""

from __future__ import annotations

import asyncio
import re
import signal
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

    def broken(command: str) -> None:
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
