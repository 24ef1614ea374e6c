"""Typing a verified originate's listing ahead: which commands go together, and what a console
that ends half-way through a typed-ahead batch means for each command: a command that changes
the PBX, once written, is never written again (its echo missing proves nothing)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, cast

import pytest

from callgate import errors
from callgate.errors import ConsoleUnavailable, SafeToResend
from callgate.pbx import commands
from callgate.pbx.console import ConsoleTransport, typed_ahead
from callgate.pbx.console_session import Console, _Output
from callgate.pbx.transport import HostTarget
from callgate.settings import Transport
from callgate.simulator.console import ConsoleScreen

ORIGINATE = commands.originate("150", "+375296254070", "inoffice")
LISTING = commands.CHANNELS_CONCISE
HANGUP = commands.hangup("Local/150@inoffice-00000000;1")


def test_only_read_only_commands_are_typed_ahead() -> None:
    """A listing rides with the command before it; a command that changes something never."""
    assert typed_ahead([ORIGINATE, LISTING]) == [[ORIGINATE, LISTING]]
    assert typed_ahead([LISTING, ORIGINATE]) == [[LISTING], [ORIGINATE]]
    assert typed_ahead([HANGUP, HANGUP, LISTING, commands.VERSION]) == [
        [HANGUP],
        [HANGUP, LISTING, commands.VERSION],
    ]
    assert typed_ahead([ORIGINATE, ORIGINATE]) == [[ORIGINATE], [ORIGINATE]]


class _Channel:
    """Stands in for the SSH channel: each write is answered by ``play`` (a simulated console
    that may stop after some lines), as a pty would deliver it."""

    def __init__(self, output: _Output, answer_lines: int) -> None:
        self.output, self.answer_lines = output, answer_lines
        self.screen = ConsoleScreen("vm", 1)
        self.written: list[bytes] = []
        self.closed = False
        self.hangs = False  # after its lines: stays open without a word (else: ends)

    def write(self, data: bytes) -> None:
        self.written.append(data)
        asyncio.get_running_loop().call_soon(self.play, data.decode())

    def play(self, typed: str) -> None:
        """Echo and answer the first ``answer_lines`` lines, then end like a dead console (or
        hang like a stuck one)."""
        lines = typed.splitlines()[: self.answer_lines]
        answers = {ORIGINATE: "", LISTING: "Local/150@inoffice-00000000;1!inoffice!150!1\n"}

        def ask(line: str) -> tuple[str, int]:
            if re.fullmatch(r"cgsync[0-9a-f]+", line):
                return f"No such command '{line}' (type 'core show help {line}' for more)\n", 0
            return answers[line], 0

        screen = "".join(self.screen.respond(lines, ask))
        self.output.data_received(screen.encode(), cast(Any, None))
        if len(lines) < len(typed.splitlines()) and not self.hangs:
            self.output.eof_received()

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def _console(answer_lines: int) -> tuple[Console, _Channel]:
    output = _Output()
    channel = _Channel(output, answer_lines)
    console = Console("pbx", contextlib.AsyncExitStack(), cast(Any, channel), output)
    console.prompt = b"vm*CLI> "
    return console, channel


async def test_a_batch_is_typed_in_one_write() -> None:
    console, channel = _console(answer_lines=4)
    answers = await console.execute_many([ORIGINATE, LISTING], 5, 10_000)
    assert answers == ["", "Local/150@inoffice-00000000;1!inoffice!150!1\n"]
    assert len(channel.written) == 1 and channel.written[0].count(b"\n") == 4
    assert console.usable


async def test_ended_before_reading_the_listing() -> None:
    """The originate was answered, the listing never read: SafeToResend carries the first
    answer, so that only the listing (it only reads) is typed again, on another console."""
    console, _ = _console(answer_lines=2)  # the originate and its sentinel
    with pytest.raises(SafeToResend) as raised:
        await console.execute_many([ORIGINATE, LISTING], 5, 10_000)
    assert raised.value.answers == [""]


@pytest.mark.parametrize("batch", [[ORIGINATE, LISTING], [ORIGINATE], [HANGUP]])
async def test_ended_before_echoing_a_written_change(batch: list[str]) -> None:
    """Written, then the console ended without even an echo: the console on the host may have
    read the line and passed it to Asterisk while its echo was lost. Unknown, never resent."""
    console, channel = _console(answer_lines=0)
    with pytest.raises(errors.ConnectionLost) as raised:
        await console.execute_many(batch, 5, 10_000)
    assert raised.value.maybe_executed and raised.value.completed == 0
    assert len(channel.written) == 1 and not console.usable


async def test_ended_before_echoing_a_listing() -> None:
    """A listing written and lost with its echo only reads: it may be typed again."""
    console, _ = _console(answer_lines=0)
    with pytest.raises(SafeToResend) as raised:
        await console.execute_many([LISTING, commands.VERSION], 5, 10_000)
    assert raised.value.answers == []


async def test_a_console_that_had_ended_gets_nothing_written() -> None:
    """Ended before the write: not a byte goes out, so even an originate may go elsewhere."""
    console, channel = _console(answer_lines=4)
    console._output.connection_lost(None)
    with pytest.raises(SafeToResend):
        await console.execute_many([ORIGINATE, LISTING], 5, 10_000)
    assert channel.written == []


async def test_ended_after_reading_the_originate() -> None:
    """Echoed but not answered: it may have run, and nothing of the batch was completed."""
    console, _ = _console(answer_lines=1)
    with pytest.raises(errors.ConnectionLost) as raised:
        await console.execute_many([ORIGINATE, LISTING], 5, 10_000)
    assert raised.value.completed == 0 and not console.usable


async def test_timeout_counts_the_answers_that_came() -> None:
    """The listing's answer never comes: a timeout, with the originate counted as done."""
    console, channel = _console(answer_lines=2)
    channel.hangs = True  # it reads no more, and stays open
    with pytest.raises(errors.CommandTimeout) as raised:
        await console.execute_many([ORIGINATE, LISTING], 0.2, 10_000)
    assert raised.value.completed == 1 and not console.usable


class _ScriptedConsole:
    """A console of the transport's, answering each batch with what ``answer`` gives."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.batches: list[list[str]] = []
        self.usable, self.hostname, self.last_used = True, "vm", 0.0

    async def execute_many(
        self, batch: list[str], within: float, limit: int, logs: list[str] | None = None
    ) -> list[str]:
        self.batches.append(list(batch))
        result = self.answer(batch)
        if isinstance(result, BaseException):
            self.usable = False
            raise result
        return list(result)

    async def close(self, *, polite: bool = False) -> None:
        self.usable = False


async def test_a_console_that_dies_mid_batch_never_gets_the_originate_again() -> None:
    """The first console answered the originate, then ended before reading the listing: the
    listing alone goes to a fresh console; the originate reached the PBX exactly once."""
    listing = "Local/150@inoffice-00000000;1!inoffice!150!1\n"
    first = _ScriptedConsole(lambda batch: SafeToResend("ended", "127.0.0.1", [""]))
    second = _ScriptedConsole(lambda batch: [listing] * len(batch))
    fresh = iter([first, second])
    transport = ConsoleTransport(cast(Any, None), cast(Any, None))

    async def take(host: Any, target: Any) -> Any:
        return next(fresh)

    transport._take = take  # type: ignore[method-assign]
    target = HostTarget("127.0.0.1", 22, "callgate", transport=Transport.CONSOLE)
    assert await transport.run(target, [ORIGINATE, LISTING]) == ["", listing]
    assert first.batches == [[ORIGINATE, LISTING]]
    assert second.batches == [[LISTING]]


class _Fallback:
    """Stands in for rx: records what it is asked to run, answers each command with ``""``."""

    def __init__(self) -> None:
        self.runs: list[list[str]] = []

    async def run(
        self, target: HostTarget, cli: list[str], *, notices: list[str] | None = None
    ) -> list[str]:
        self.runs.append(list(cli))
        return [""] * len(cli)

    def status(self) -> dict[str, object]:
        return {}

    async def aclose(self) -> None:
        pass


def _transport(*consoles: Any) -> tuple[ConsoleTransport, _Fallback]:
    """A console transport whose consoles are ``consoles`` in turn; ConsoleUnavailable once
    they are used up (the host cannot open another)."""
    fallback = _Fallback()
    transport = ConsoleTransport(cast(Any, None), cast(Any, fallback))
    fresh = iter(consoles)

    async def take(host: Any, target: Any) -> Any:
        try:
            return next(fresh)
        except StopIteration:
            raise ConsoleUnavailable("no console", "127.0.0.1") from None

    transport._take = take  # type: ignore[method-assign]
    return transport, fallback


TARGET = HostTarget("127.0.0.1", 22, "callgate", transport=Transport.CONSOLE)


def _lost(batch: list[str]) -> errors.PbxError:
    return errors.ConnectionLost("the console ended after the command was sent")


@pytest.mark.parametrize("command", [ORIGINATE, HANGUP])
async def test_a_written_change_is_never_sent_again(command: str) -> None:
    """The console ended after the command was written: unknown outcome, and neither another
    console nor the fallback ever gets it."""
    first, second = _ScriptedConsole(_lost), _ScriptedConsole(lambda batch: [""] * len(batch))
    transport, fallback = _transport(first, second)
    with pytest.raises(errors.ConnectionLost) as raised:
        await transport.run(TARGET, [command, LISTING])
    assert raised.value.maybe_executed and raised.value.completed == 0
    assert first.batches == [[command, LISTING]]
    assert second.batches == [] and fallback.runs == []


async def test_a_read_only_command_is_sent_again_on_a_fresh_console() -> None:
    """A listing lost with its console (written or not) is typed again on another one."""
    listing = "Local/150@inoffice-00000000;1!inoffice!150!1\n"
    first = _ScriptedConsole(lambda batch: SafeToResend("ended", "127.0.0.1"))
    second = _ScriptedConsole(lambda batch: [listing] * len(batch))
    transport, fallback = _transport(first, second)
    assert await transport.run(TARGET, [LISTING]) == [listing]
    assert first.batches == second.batches == [[LISTING]] and fallback.runs == []


async def test_the_fallback_gets_only_what_may_be_sent_again() -> None:
    """The originate was answered, its listing lost, and no console opens any more: the
    fallback runs the listing and the commands after it, never the originate."""
    lost = SafeToResend("ended", "127.0.0.1", [""])  # the originate answered, not the listing
    first = _ScriptedConsole(lambda batch: lost if LISTING in batch else [""])
    transport, fallback = _transport(first)
    answers = await transport.run(TARGET, [ORIGINATE, LISTING, HANGUP])
    assert answers == ["", "", ""]
    assert first.batches == [[ORIGINATE, LISTING]]
    assert fallback.runs == [[LISTING, HANGUP]]


async def test_a_shared_failure_after_the_originate_is_counted_on_a_new_error() -> None:
    """The originate was answered, the console ended, and the connection for the next one
    fails with the pool's shared error (every caller of that attempt gets the same object):
    the run raises a new error caused by it that counts the originate, and the shared one
    stays as it was for the other callers."""
    shared = errors.SshConnectTimeout("SSH connection to 127.0.0.1 timed out", "127.0.0.1")
    first = _ScriptedConsole(lambda batch: SafeToResend("ended", "127.0.0.1", [""]))
    fresh = iter([first])
    transport = ConsoleTransport(cast(Any, None), cast(Any, None))

    async def take(host: Any, target: Any) -> Any:
        try:
            return next(fresh)
        except StopIteration:
            raise shared from None

    transport._take = take  # type: ignore[method-assign]
    with pytest.raises(errors.SshConnectTimeout) as raised:
        await transport.run(TARGET, [ORIGINATE, LISTING])
    assert raised.value is not shared and raised.value.__cause__ is shared
    assert raised.value.completed == 1 and shared.completed == 0


async def test_a_refusal_in_an_answer_names_the_host_and_counts_those_before() -> None:
    """Asterisk stopped between the originate and its listing: the listing's answer says so,
    and the error, raised once, names the host and counts the originate."""
    stopped = "Unable to connect to remote asterisk (does /var/run/asterisk/asterisk.ctl exist?)"
    first = _ScriptedConsole(lambda batch: ["", stopped])
    transport, fallback = _transport(first)
    with pytest.raises(errors.AsteriskNotRunning) as raised:
        await transport.run(TARGET, [ORIGINATE, LISTING])
    assert raised.value.host == TARGET.label and raised.value.completed == 1
    assert fallback.runs == []
