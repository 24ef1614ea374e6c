"""What Asterisk 22.7 writes to its remote consoles on its own: verbose messages and log lines.

The bytes are those of ``recordings/asterisk/console-verbose-outcomes.repr.txt`` (a remote
console at verbose 3): a verbose message starts with its level's marker in dark grey, dialplan
steps colour the application and its arguments as pbx.c's ``COLORIZE`` does, and a log line
carries its date, level, thread and source position in the logger's colours. Every text here
ends with ``\\n``; the console's screen turns it into ``\\r\\n``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

RESET = "\x1b[0m"
GREY = "\x1b[1;30m"  # the verbose markers
CYAN = "\x1b[1;36m"  # COLOR_BRCYAN: an application's name
MAGENTA = "\x1b[1;35m"  # COLOR_BRMAGENTA: an application's channel and arguments
YELLOW = "\x1b[1;33m"  # the NOTICE level
WHITE = "\x1b[1;37m"  # a log line's file, line and function
# The verbose prefixes of Asterisk's logger (VERBOSE_PREFIX_2 and _3).
_MARKERS = {2: "  == ", 3: "    -- "}
# The only bridge the simulated calls use: technology "simple_bridge", v_table "basic".
BASIC_BRIDGE = "'simple_bridge' basic-bridge"
# core_local.c's local_call() logs its refusal from this line of Asterisk 22.7.0.
LOCAL_CALL = ("core_local.c", 753, "local_call")


@dataclass(frozen=True, slots=True)
class ConsoleLine:
    """One line Asterisk writes to its consoles: when (engine clock), to whom, what.

    ``verbose`` is the level a console needs to see it; None marks a log line (a NOTICE), which
    every console prints whatever its verbosity.
    """

    at: float
    verbose: int | None
    text: str


def verbose(level: int, message: str) -> str:
    """A verbose message as a remote console prints it (levels 2 and 3 are used)."""
    return f"{GREY}{_MARKERS[level]}{RESET}{message}\n"


def executing(exten: str, context: str, priority: int, app: str, channel: str, data: str) -> str:
    """pbx.c's pbx_extension_helper(): the line of each dialplan step, at verbose 3."""
    return (
        f"Executing [{exten}@{context}:{priority}] {CYAN}{app}{RESET}"
        f'("{MAGENTA}{channel}{RESET}", "{MAGENTA}{data}{RESET}") in new stack'
    )


def spawn_exited(context: str, exten: str, priority: int, channel: str) -> str:
    """pbx.c's __ast_pbx_run(): a dialplan ended by an application's -1 (a hangup, Busy())."""
    return f"Spawn extension ({context}, {exten}, {priority}) exited non-zero on '{channel}'"


def bridge_change(channel: str, change: str, bridge_id: str) -> str:
    """bridge_channel.c: ``joined`` (bridge_channel_internal_push_full()) or ``left``
    (bridge_channel_internal_pull()) a basic bridge."""
    return f"Channel {channel} {change} {BASIC_BRIDGE} <{bridge_id}>"


def everyone_busy(busy: int, congestion: int, nochan: int) -> str:
    """app_dial.c's wait_for_answer() when its one peer failed: ``(lines:busy/congestion/nochan)``.

    Verbose 2; the counts come from handle_cause() (AST_CAUSE_BUSY, _CONGESTION, else nochan).
    """
    return f"Everyone is busy/congested at this time (1:{busy}/{congestion}/{nochan})"


def no_such_extension(exten: str, context: str) -> str:
    """core_local.c's local_call() when the dialplan has no ``exten`` in ``context``."""
    return f"No such extension/context {exten}@{context} while calling Local channel"


def notice(wall: float, thread: int, message: str) -> str:
    """A NOTICE from local_call(), dated with the host's local time as logger.c does."""
    date = time.strftime("%b %e %H:%M:%S", time.localtime(wall))
    source, line, function = LOCAL_CALL
    return (
        f"[{date}] {YELLOW}NOTICE{RESET}[{thread}]: {WHITE}{source}{RESET}:{WHITE}{line}{RESET} "
        f"{WHITE}{function}{RESET}: {message}\n"
    )
