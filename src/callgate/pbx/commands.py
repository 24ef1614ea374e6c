"""Pure builders of Asterisk CLI commands and of the shell line that runs them on a host.

This is the only module that puts request values into a command, and the only one that quotes.
Every value has passed ``callgate.validation`` before it gets here; quoting is the second wall.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from callgate.validation import (
    normalize_phone,
    validate_channel,
    validate_context,
    validate_extension,
)

CHANNELS_CONCISE = "core show channels concise"
CHANNELS_COUNT = "core show channels count"
VERSION = "core show version"
HANGUP_ALL = "channel request hangup all"
# Commands that only read: running one changes nothing on the PBX, whatever happened before it.
READ_ONLY = frozenset({CHANNELS_CONCISE, CHANNELS_COUNT, VERSION})

# Printed by the host's shell between the outputs of chained commands (a shell builtin: no
# process is started for it). It starts with a newline because an output may not end in one.
SEPARATOR = "\n--callgate-separator--\n"
_PRINT_SEPARATOR = r" && printf '\n--callgate-separator--\n' && "  # printf turns \n into SEPARATOR


def originate(code: str, phone: str, context: str, ring_timeout: int | None = None) -> str:
    """Ring extension `code`; once it answers, Asterisk dials `phone` through the same context.

    `ring_timeout` becomes Dial's own timeout argument (`Dial(Local/…,25)`): how long the
    customer's phone may ring. The agent's side is bounded by the CLI originate's fixed 30 s.
    """
    code = validate_extension(code, max_length=32)
    phone = normalize_phone(phone)
    context = validate_context(context)
    dial = f"Local/{phone}@{context}"
    if ring_timeout is not None:
        if not isinstance(ring_timeout, int) or not 1 <= ring_timeout <= 600:
            raise ValueError("ring_timeout must be an integer of 1 to 600 seconds")
        dial += f",{ring_timeout}"
    return f"channel originate Local/{code}@{context} application Dial {dial}"


def first_leg_prefix(code: str, context: str) -> str:
    """The start of the first leg's channel names: ``Local/<code>@<context>-``."""
    return f"Local/{code}@{context}-"


def hangup(channel: str) -> str:
    return f"channel request hangup {validate_channel(channel)}"


def rx_shell(asterisk_bin: str, cli_commands: Sequence[str]) -> str:
    """One shell line running each CLI command with ``asterisk -rx``, stopping at a failure.

    Outputs are kept apart by SEPARATOR so that the caller can split them again.
    """
    if not cli_commands:
        raise ValueError("no command to run")
    program = shlex.quote(asterisk_bin)
    runs = [f"{program} -rx {shlex.quote(command)}" for command in cli_commands]
    return _PRINT_SEPARATOR.join(runs)


def split_outputs(stdout: str) -> list[str]:
    return stdout.split(SEPARATOR)
