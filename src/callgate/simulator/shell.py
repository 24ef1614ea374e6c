"""The few shell lines the service sends to a host, run against an engine without a shell.

The service runs either ``<asterisk> -rx '<cmd>'`` or a chain built by
``callgate.pbx.commands.rx_shell()``::

    <asterisk> -rx '<cmd 1>' && printf '\\n--callgate-separator--\\n' && <asterisk> -rx '<cmd 2>'

This module reads exactly that: words by ``shlex`` (as bash would split them), simple commands
joined by ``&&`` and stopping at the first failure. ``<asterisk>`` is any path whose basename
is ``asterisk``. Anything else is answered the way bash answers an unknown program.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

from callgate.simulator.engine import SimulatedAsterisk

# The same lines the bash program prints (see program.py), so both simulators agree.
RX_USAGE = 'Usage: asterisk -rx "<command>"  (callgate simulator: nothing else is served)\n'
CONSOLE_NOT_SIMULATED = "asterisk: the remote console (-r) is not simulated yet\n"
_PRINTF_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "a": "\a", "v": "\v", "f": "\f"}


@dataclass(frozen=True, slots=True)
class ShellResult:
    """What the exec'd line wrote and how it exited."""

    stdout: str
    stderr: str
    exit_status: int


def run_line(engine: SimulatedAsterisk, line: str) -> ShellResult:
    """Run one exec'd command line the way ``bash -c`` on a host would."""
    try:
        words = _split(line)
    except ValueError:  # an unclosed quote
        quote = "'" if line.count("'") % 2 else '"'
        message = f"bash: -c: line 1: unexpected EOF while looking for matching `{quote}'\n"
        return ShellResult("", message, 2)
    stdout: list[str] = []
    status = 0
    for simple in _commands(words):
        if not simple:  # `&& &&`, or a line that starts with `&&`
            return ShellResult("".join(stdout), "bash: syntax error near `&&'\n", 2)
        program = simple[0]
        if PurePosixPath(program).name == "asterisk":
            if len(simple) == 3 and simple[1] == "-rx":
                answer = engine.execute(simple[2])
                stdout.append(answer.output)
                status = answer.exit_status
            elif len(simple) >= 2 and re.fullmatch(r"-r[qv]*", simple[1]):
                return ShellResult("".join(stdout), CONSOLE_NOT_SIMULATED, 1)
            else:
                return ShellResult("".join(stdout), RX_USAGE, 1)
        elif program == "printf" and len(simple) >= 2:
            stdout.append(_printf(simple[1]))
            status = 0
        else:
            return ShellResult("".join(stdout), f"bash: {program}: command not found\n", 127)
        if status != 0:
            break  # `&&`: the rest does not run
    return ShellResult("".join(stdout), "", status)


def _split(line: str) -> list[str]:
    """Shell words; ``&&`` comes out as its own word even when not spaced."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # the service never sends comments; `#` in a word stays a character
    return list(lexer)


def _commands(words: list[str]) -> list[list[str]]:
    """Simple commands between ``&&``. Known limit: a quoted ``'&&'`` word reads as ``&&``."""
    commands: list[list[str]] = [[]]
    for word in words:
        if word == "&&":
            commands.append([])
        else:
            commands[-1].append(word)
    return commands if words else []


def _printf(template: str) -> str:
    """bash's printf for a format without conversions: backslash escapes and ``%%``."""
    out: list[str] = []
    index = 0
    while index < len(template):
        char = template[index]
        following = template[index + 1] if index + 1 < len(template) else ""
        if char == "\\" and following in _PRINTF_ESCAPES:
            out.append(_PRINTF_ESCAPES[following])
            index += 2
        elif char == "%" and following == "%":
            out.append("%")
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)
