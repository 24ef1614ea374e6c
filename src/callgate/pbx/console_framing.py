"""Pure byte handling of Asterisk's remote console (``asterisk -r -q`` on a pty): no I/O.

What a console writes (see ``recordings/asterisk/remote-console-over-ssh-pty.txt``, recorded on a
real Asterisk 22.7, and ``ast_el_read_char()`` in its ``main/asterisk.c``):

* a banner ending in ``Connected to Asterisk <v> currently running on <host> (pid = N)\\r\\n``
  and the prompt ``<host>*CLI> ``; the host name is not known in advance, so it is read here;
* the echo of each line typed, ``<line>\\r\\n``, then the next prompt;
* each block of output read from Asterisk as a *batch*: ``\\r\\x1b[0K`` (erase the prompt), the
  text with ``\\n`` as ``\\r\\n``, and, when the block ends a line, ``\\r\\r\\n<prompt>`` (the
  redraw, which looks like a blank line). A listing written line by line gets a redraw
  *between* its lines; a block cut mid-line is continued by the next without ``\\r\\x1b[0K``.

A request is the command and a sentinel, an unknown command with a fresh token, written
together: editline reads typed keys before Asterisk's output, so both echoes come first and
the batches after them are the command's answer, then ``No such command '<token>' …``. The
answer is the batch text after the command's echo and before that line, with the terminal's
bytes taken out; it equals what ``asterisk -rx`` prints.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from callgate.pbx.parsing import NO_SUCH_COMMAND_MARK, NOT_RUNNING_MARK

# Terminal size asked for the pty. Asterisk never wraps output, but editline wraps the echo of
# a typed line longer than the terminal (prompt + command) with cursor moves that would break
# the echo we look for; 1024 columns leave room for a 255-character host name in the prompt
# and any command callgate sends (MAX_COMMAND; an originate is at most ~260 characters).
COLUMNS, ROWS = 1024, 24
MAX_COMMAND = 512
CLEAR_LINE = b"\r\x1b[0K"
REFRESH = b"\r\r\n"
NOT_RUNNING = NOT_RUNNING_MARK.encode()
DISCONNECTED = b"Disconnected from Asterisk server"
SENTINEL_PREFIX = "cgsync"
MAX_BANNER = 64 * 1024
_CONNECTED = re.compile(rb"Connected to Asterisk \S+ currently running on (\S+) \(pid = \d+\)\r\n")
# Terminal control sequences: CSI (colours, erase), then any other two-byte escape.
_ESCAPES = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
# A log line the console shows on its own (logger.c's format, any date format), with its
# optional call id: `[Nov 26 15:40:00] WARNING[6968][C-00000001]: chan.c:12 f: text`.
_LOG_LINE = re.compile(
    r"\[[^\]\n]{1,64}\] (?:DEBUG|TRACE|NOTICE|WARNING|ERROR|VERBOSE|DTMF|SECURITY)"
    r"\[\d+\](?:\[[^\]\n]*\])?: [^\n]*(?:\n|\Z)"
)
# Printable ASCII only: a control byte would be an editing key, a newline a second command;
# `?` is bound to help and TAB to completion in Asterisk's editline. The console itself runs
# a line starting with `!` in a shell and ends on `exit`/`quit` (any case). Those go via rx.
_SAFE = re.compile(r"[ !-~]+", re.ASCII)
_LOCAL = ("exit", "quit")


class ConsoleGarbage(ValueError):
    """The console's bytes do not have the structure of a console answer.

    What these pure parsers raise for bytes they cannot read, as ``int()`` raises ValueError:
    it names no host and decides nothing. Their callers in pbx translate it at once into the
    error tree (``errors.UnexpectedOutput``, or ``errors.ConsoleUnavailable`` while opening).
    """


@dataclass(frozen=True, slots=True)
class Banner:
    hostname: str
    prompt: bytes
    prompt_at: int  # where the first prompt starts in the buffer: what is before is banner


def console_safe(command: str) -> bool:
    """Whether ``command`` can be typed into a console as one line, unchanged."""
    words = command.split()
    return (
        len(command) <= MAX_COMMAND
        and _SAFE.fullmatch(command) is not None
        and "?" not in command
        and bool(words)
        and not words[0].startswith("!")
        and not words[0].lower().startswith(_LOCAL)
    )


def new_token() -> str:
    """A sentinel command no Asterisk knows, unique to one request."""
    return SENTINEL_PREFIX + secrets.token_hex(8)


def request(command: str, token: str) -> bytes:
    """The bytes typed for one command: the command line, then the sentinel line."""
    return f"{command}\n{token}\n".encode("ascii")


def requests(commands: Sequence[str], tokens: Sequence[str]) -> bytes:
    """The bytes typed for several commands at once, each followed by its sentinel."""
    pairs = zip(commands, tokens, strict=True)
    return b"".join(request(command, token) for command, token in pairs)


def read_banner(buffer: bytes | bytearray) -> Banner | None:
    """The host name and prompt once the banner and first prompt are in; None: not yet."""
    match = _CONNECTED.search(buffer)
    if match is None:
        if len(buffer) > MAX_BANNER:
            raise ConsoleGarbage("no Asterisk banner in the console's first 64 KiB")
        return None
    prompt = match.group(1) + b"*CLI> "
    at = buffer.find(prompt, match.end())
    if at < 0:
        if len(buffer) - match.end() > MAX_BANNER:
            raise ConsoleGarbage("no prompt after the console's banner")
        return None
    return Banner(match.group(1).decode("utf-8", "replace"), prompt, at)


class AnswerEnd:
    """Finds where one request's answer ends in a growing buffer: after the sentinel's line.

    It does not wait for the redraw after that line: a block of exactly 511 bytes gets none,
    and the prompt that may follow is left for the next request to skip.
    """

    def __init__(self, token: str) -> None:
        self.needle = sentinel_needle(token)
        self._from = 0

    def find(self, buffer: bytes | bytearray) -> int | None:
        at = buffer.find(self.needle, self._from)
        if at < 0:
            self._from = max(0, len(buffer) - len(self.needle))
            return None
        self._from = at
        newline = buffer.find(b"\n", at)
        return None if newline < 0 else newline + 1


def sentinel_needle(token: str) -> bytes:
    """The start of Asterisk's answer to the sentinel: `No such command '<token>'`."""
    return f"{NO_SUCH_COMMAND_MARK}{token}'".encode("ascii")


def parse_answer(raw: bytes, command: str, token: str, prompt: bytes) -> str:
    """The answer to ``command`` in ``raw`` (up to the end found by AnswerEnd), as -rx prints it.

    Batches before the command's echo came from before it was read (log lines, the redraw
    left by the previous request) and are not part of it.
    """
    return parse_answers(raw, [(command, token)], prompt)[0]


def parse_answers(
    raw: bytes,
    requests: Sequence[tuple[str, str]],
    prompt: bytes,
    logs: list[str] | None = None,
) -> list[str]:
    """The answers to several requests typed at once, each ``(command, token)``, in order.

    ``logs`` gets the log lines Asterisk printed in ``raw``, inside the answers or before them
    (while the console idled since its last request): they are taken out of the answers, as
    ``-rx`` never prints them, but one may say why a command did nothing (``local_call: No such
    extension/context …``, see ``recordings/asterisk/console-verbose-outcomes.repr.txt``).

    Echoes come in typed order, each before its command's answer, but where they fall between
    the answers depends on timing: editline may read every typed line before Asterisk's first
    output, or echo a line only after the answer before it. So each echo is counted wherever
    it comes, and an answer is only collected once its own command has been echoed. One batch
    may hold the end of one answer, its sentinel's line and the start of the next answer.
    """
    if not requests:
        raise ValueError("no request to parse")
    echoes = [command.encode("ascii") + b"\r\n" for command, _ in requests]
    needles = [sentinel_needle(token) for _, token in requests]
    answers: list[str] = []
    echoed = 0  # how many commands have been echoed, in typed order
    content = bytearray()
    rest_of_line = False  # a sentinel's line was cut by the batch's end: its rest follows
    for inside, run in _runs(raw, prompt):
        if not inside:
            at = 0
            while echoed < len(echoes) and (found := run.find(echoes[echoed], at)) >= 0:
                at, echoed = found + len(echoes[echoed]), echoed + 1
            if any(needle in run for needle in needles[len(answers) :]):
                raise ConsoleGarbage("the sentinel's answer came outside the console's output")
            continue
        if rest_of_line:
            newline = run.find(b"\n")
            rest_of_line = newline < 0
            run = b"" if rest_of_line else run[newline + 1 :]
        while run and echoed > len(answers):  # before its echo: not part of the answer
            at = run.find(needles[len(answers)])
            if at < 0:
                content, run = content + run, b""
                break
            answers.append(clean(bytes(content + run[:at]), logs))
            content = bytearray()
            if len(answers) == len(requests):
                return answers
            newline = run.find(b"\n", at)
            rest_of_line = newline < 0
            run = b"" if rest_of_line else run[newline + 1 :]
        if run and logs is not None:  # output from before the echo: only its log lines count
            clean(run, logs)
    if echoed <= len(answers):
        raise ConsoleGarbage("the console did not echo the command")
    raise ConsoleGarbage("the sentinel's answer is missing")


def answers_done(buffer: bytes | bytearray, tokens: Sequence[str], start: int = 0) -> int:
    """How many of the requests (by token, in order) have their sentinel's answer in buffer."""
    done, at = 0, start
    for token in tokens:
        found = buffer.find(sentinel_needle(token), at)
        if found < 0:
            break
        done, at = done + 1, found
    return done


def _runs(raw: bytes, prompt: bytes) -> list[tuple[bool, bytes]]:
    """Split into (inside a batch, bytes) runs: a batch runs from ``\\r\\x1b[0K`` to the redraw
    ``\\r\\r\\n<prompt>`` (whose prompt starts the next outside run) or to the next erase."""
    runs: list[tuple[bool, bytes]] = []
    end_mark, pos = REFRESH + prompt, 0
    while pos < len(raw):
        start = raw.find(CLEAR_LINE, pos)
        if start < 0:
            runs.append((False, raw[pos:]))
            break
        runs.append((False, raw[pos:start]))
        pos = start + len(CLEAR_LINE)
        while True:  # inside a batch, possibly followed at once by another
            stop, erase = raw.find(end_mark, pos), raw.find(CLEAR_LINE, pos)
            if erase >= 0 and (stop < 0 or erase < stop):
                runs.append((True, raw[pos:erase]))
                pos = erase + len(CLEAR_LINE)
                continue
            if stop < 0:
                runs.append((True, raw[pos:]))
                return runs
            runs.append((True, raw[pos:stop]))
            pos = stop + len(REFRESH)
            break
    return runs


def clean(content: bytes, logs: list[str] | None = None) -> str:
    """Batch text as ``-rx`` prints it: no terminal codes, no ``\\r``, no log lines (appended to
    ``logs`` when given, without their newline)."""
    text = _ESCAPES.sub(b"", content).replace(b"\r", b"").decode("utf-8", "replace")

    def drop(match: re.Match[str]) -> str:
        if not _line_start(text, match.start()):
            return match.group(0)
        if logs is not None:
            logs.append(match.group(0).rstrip("\n"))
        return ""

    return _LOG_LINE.sub(drop, text)


def _line_start(text: str, at: int) -> bool:
    """Log lines are whole lines; the same words inside a line are an answer's text."""
    return at == 0 or text[at - 1] == "\n"


def console_ended(buffer: bytes | bytearray) -> str:
    """A short, printable summary of what a console that ended said (for logs and status)."""
    text = clean(bytes(buffer)).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "no output")[:160]


def says_not_running(buffer: bytes | bytearray) -> bool:
    """The console could not reach Asterisk (same message as `asterisk -rx`)."""
    return NOT_RUNNING in buffer


def screen_lines(raw: bytes | bytearray, prompt: bytes) -> tuple[list[str], int]:
    """The whole lines in what a console wrote while nobody typed (a listening console), as
    text, and how many bytes they took: the rest is an unfinished line, to read again with
    what follows. Each block Asterisk sends is written over the prompt (``\\r\\x1b[0K``) and
    followed by a redraw (``\\r\\r\\n<prompt>``); neither is a line of Asterisk's."""
    end = raw.rfind(b"\n") + 1
    lines = []
    for row in bytes(raw[:end]).split(b"\n")[:-1]:
        row = row[row.rfind(CLEAR_LINE) + len(CLEAR_LINE) :] if CLEAR_LINE in row else row
        row = row.removeprefix(prompt)
        text = _ESCAPES.sub(b"", row).replace(b"\r", b"").decode("utf-8", "replace")
        if text.strip():
            lines.append(text)
    return lines, end
