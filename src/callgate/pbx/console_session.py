"""One remote console (``asterisk -r -q``) over one SSH channel with a pty: open, run, close.

The pty is asked for with terminal type ``dumb`` (no colours, no cursor tricks) and
``console_framing.COLUMNS`` columns, so that editline never wraps the echo of a command. The
bytes are read through an ``SSHClientSession`` callback rather than a stream, so output that
arrives between commands (log lines) is trimmed as it comes and never stalls the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import AsyncIterator, Sequence
from typing import cast

import asyncssh

from callgate import errors
from callgate.errors import ConsoleUnavailable, SafeToResend
from callgate.pbx import console_framing as framing
from callgate.pbx.commands import READ_ONLY
from callgate.pbx.transport import HostTarget

_IDLE_KEEP = 64 * 1024  # output that arrives between commands is never an answer: keep little
VERBOSE_OFF = "core set verbose 0"  # no verbose messages on this console, only answers
# Commands that change nothing on the PBX (VERBOSE_OFF sets only this console's own level):
# the only ones typed again after a console ended with them written but unanswered.
HARMLESS = READ_ONLY | {VERBOSE_OFF}


class _Output(asyncssh.SSHClientSession[bytes]):
    """Collects what the console writes and wakes the one reader waiting for it."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.ended = False
        self.busy = False  # a command (or the banner) is being read: keep every byte
        self._wake = asyncio.Event()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.buffer += data
        if not self.busy and len(self.buffer) > _IDLE_KEEP:
            del self.buffer[:-_IDLE_KEEP]
        self._wake.set()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self._wake.set()

    async def more(self) -> None:
        """Wait for new bytes or the end; call right after looking at the buffer."""
        self._wake.clear()
        await self._wake.wait()


class Console:
    """An open console; ``stack`` holds the pool's session slot until :meth:`close`."""

    def __init__(
        self,
        label: str,
        stack: contextlib.AsyncExitStack,
        channel: asyncssh.SSHClientChannel[bytes],
        output: _Output,
    ) -> None:
        self.label = label
        self.prompt = b""
        self.hostname = ""  # learnt from the banner
        self.last_used = 0.0
        self.broken = False
        self._stack, self._channel, self._output = stack, channel, output

    @classmethod
    async def open(
        cls,
        conn: asyncssh.SSHClientConnection,
        target: HostTarget,
        stack: contextlib.AsyncExitStack,
    ) -> Console:
        """Start ``asterisk -r -q`` on ``conn``; the console is ready for commands.

        Raises AsteriskNotRunning, or ConsoleUnavailable with a short reason; asyncssh's errors
        when the channel cannot be opened are left to the caller.
        """
        channel, session = await conn.create_session(
            _Output,
            f"{shlex.quote(target.asterisk_bin)} -r -q",
            term_type="dumb",
            term_size=(framing.COLUMNS, framing.ROWS),
            encoding=None,
        )
        console = cls(target.label, stack, channel, cast(_Output, session))
        try:
            await console._banner(target.command_timeout)
            try:
                answer = await console.execute(VERBOSE_OFF, target.command_timeout, _IDLE_KEEP)
            except errors.AsteriskNotRunning:
                raise errors.AsteriskNotRunning(
                    f"Asterisk on {target.label} went away as the console started",
                    host=target.label,
                ) from None
            except errors.PbxError as exc:
                why = f"no answer to '{VERBOSE_OFF}' ({exc.message})"
                raise ConsoleUnavailable(why, target.label) from None
            except framing.ConsoleGarbage as exc:
                why = f"unreadable console output ({exc})"
                raise ConsoleUnavailable(why, target.label) from None
            if not answer.startswith("Console verbose"):
                why = f"unexpected answer to '{VERBOSE_OFF}': {answer[:80]!r}"
                raise ConsoleUnavailable(why, target.label)
        except BaseException:
            await console.close()
            raise
        return console

    @property
    def usable(self) -> bool:
        return not (self.broken or self._output.ended or self._channel.is_closing())

    async def _banner(self, within: float) -> None:
        """Read the banner up to the first prompt, learning the host name it shows."""
        output = self._output
        output.busy = True
        try:
            async with asyncio.timeout(within):
                while (banner := framing.read_banner(output.buffer)) is None:
                    if framing.says_not_running(output.buffer):
                        raise errors.AsteriskNotRunning(
                            f"Asterisk is not running on {self.label} (the console could not "
                            "connect to it)",
                            host=self.label,
                        )
                    if output.ended:
                        said = framing.console_ended(output.buffer)
                        why = f"the console ended at start: {said}"
                        raise ConsoleUnavailable(why, self.label)
                    await output.more()
        except TimeoutError:
            why = f"no console banner within {within:g} s"
            raise ConsoleUnavailable(why, self.label) from None
        except framing.ConsoleGarbage as exc:
            raise ConsoleUnavailable(str(exc), self.label) from None
        finally:
            output.busy = False
        self.hostname, self.prompt = banner.hostname, banner.prompt
        del output.buffer[: banner.prompt_at]  # the prompt stays: the first echo follows it

    async def execute(self, command: str, within: float, limit: int) -> str:
        """Type ``command`` and its sentinel; return the answer as ``asterisk -rx`` prints it."""
        (answer,) = await self.execute_many([command], within, limit)
        return answer

    async def execute_many(
        self,
        commands: Sequence[str],
        within: float,
        limit: int,
        logs: list[str] | None = None,
    ) -> list[str]:
        """Type every command with its sentinel at once; their answers, in order (``logs``: see
        ``console_framing.parse_answers``).

        Typed ahead, the commands cost one round trip instead of one each; Asterisk still runs
        them one after another. The caller only types ahead commands that are harmless to run
        whatever the one before them did (see ``ConsoleTransport``). ``within`` and
        ``limit * len(commands)`` bound the whole exchange. After any failure but SafeToResend the
        console is out of step (an answer may still come) and marked broken; the caller closes
        it. A PbxError raised here carries in ``completed`` how many commands were answered.
        """
        output = self._output
        tokens = [framing.new_token() for _ in commands]
        start, end_of = len(output.buffer), framing.AnswerEnd(tokens[-1])
        if not self.usable:
            raise SafeToResend("the console had ended", self.label)  # nothing written
        output.busy = True
        try:
            try:
                self._channel.write(framing.requests(commands, tokens))
            except (OSError, asyncssh.Error):  # the channel refused the bytes: nothing written
                raise SafeToResend("the console refused the command", self.label) from None
            async with asyncio.timeout(within):
                while True:
                    end = end_of.find(output.buffer)
                    size = (len(output.buffer) if end is None else end) - start
                    if size > limit * len(commands):
                        raise errors.OutputTooLarge(
                            f"answer from {self.label} exceeded {limit} bytes",
                            host=self.label,
                            completed=framing.answers_done(output.buffer, tokens, start),
                        )
                    if end is not None:
                        break
                    if output.ended:
                        raise self._ended(commands, tokens, start, logs)
                    await output.more()
        except TimeoutError:
            self.broken = True
            raise errors.CommandTimeout(
                f"command on {self.label} timed out after {within:g} s",
                host=self.label,
                completed=framing.answers_done(output.buffer, tokens, start),
            ) from None
        except BaseException:
            self.broken = True
            raise
        finally:
            output.busy = False
        raw = bytes(output.buffer[:end])
        del output.buffer[:end]
        try:
            requests = list(zip(commands, tokens, strict=True))
            return framing.parse_answers(raw, requests, self.prompt, logs)
        except framing.ConsoleGarbage:
            self.broken = True
            raise

    def _ended(
        self, commands: Sequence[str], tokens: Sequence[str], start: int, logs: list[str] | None
    ) -> errors.PbxError:
        """What a console that ended in the middle of ``commands`` means for them.

        They were all written. Whether the console read the next one (its echo) proves
        nothing: the line may have reached Asterisk while its echo was lost with the
        connection. So the rest may be sent again only if none of it changes the PBX; else its
        outcome is unknown (a PbxError with ``maybe_executed``, never sent again).
        """
        buffer = self._output.buffer
        done = framing.answers_done(buffer, tokens, start)
        if all(command in HARMLESS for command in commands[done:]):
            if done == 0:
                return SafeToResend("the console ended", self.label)
            end = framing.AnswerEnd(tokens[done - 1]).find(buffer)
            if end is not None:
                requests = list(zip(commands[:done], tokens[:done], strict=True))
                with contextlib.suppress(framing.ConsoleGarbage):
                    raw = bytes(buffer[:end])
                    answers = framing.parse_answers(raw, requests, self.prompt, logs)
                    return SafeToResend("the console ended", self.label, answers)
        if framing.DISCONNECTED in buffer[start:]:
            return errors.AsteriskWentAway(
                f"Asterisk on {self.label} went away during the command (it may have run)",
                host=self.label,
                completed=done,
            )
        return errors.ConnectionLost(
            f"the console on {self.label} ended during the command",
            host=self.label,
            completed=done,
        )

    async def listen(self, quiet: float) -> AsyncIterator[str | None]:
        """Every line the console shows from now on, as text, until it ends (a console kept
        for listening: nothing is typed on it any more); None after each ``quiet`` seconds
        without a line, so that the listener may decide to stop."""
        output = self._output
        output.busy = True  # every byte counts now
        while True:
            lines, used = framing.screen_lines(output.buffer, self.prompt)
            if used:  # bytes may come while a line is handled: look again before waiting
                del output.buffer[:used]
                for line in lines:
                    yield line
                continue
            if output.ended:
                return
            if len(output.buffer) > _IDLE_KEEP:  # no line end in 64 KiB: not Asterisk's lines
                output.buffer.clear()
            try:
                async with asyncio.timeout(quiet):
                    await output.more()
            except TimeoutError:
                yield None

    async def close(self, *, polite: bool = False) -> None:
        """Close the channel (sshd hangs up the console's terminal) and free the slot."""
        if polite and self.usable:
            with contextlib.suppress(OSError, asyncssh.Error):
                self._channel.write(b"exit\n")  # a clean goodbye, as a person would type
        self.broken = True
        self._channel.close()
        await self._stack.aclose()
