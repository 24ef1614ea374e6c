"""What Asterisk's output says of a fresh originate: taken, refused, or not yet known. Pure.

From a real Asterisk 22.7 (``recordings/asterisk/README.md`` fact 1 and
``recordings/asterisk/console-verbose-outcomes.repr.txt``): right after `channel originate`
the first leg's pair exists whether or not the dialplan will take the call, as
``…;1!…!Down!AppDial2!(Outgoing Line)!…`` and ``…;2!…!Ring!(None)!…``. A good call moves on
within about a millisecond (``;2`` runs the dialplan, ``;1`` rings); a refused one vanishes
while every console prints
``[<date>] NOTICE[<thread>]: core_local.c:753 local_call: No such extension/context
150@nosuchcontext while calling Local channel``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from callgate.pbx.parsing import Channel

UNSTARTED = "(None)"  # the application of a ;2 leg whose dialplan has not started
TAKEN_STATES = frozenset({"Ringing", "Up"})
# logger.c's prefix: "[<date>] <LEVEL>[<thread>][<call id>]: <file>:<line> <function>: "
_LOG_PREFIX = re.compile(r"^\[[^\]]*\] [A-Z]+\[\d+\](?:\[[^\]]*\])?: \S+:\d+ \S+: ")


def progressed(first: Channel, listed: Iterable[Channel]) -> bool:
    """Whether a listing (its channels, parsed) shows that the dialplan took the call whose
    first leg is ``first``.

    Evidence: ``;1`` ringing or up, or its ``;2`` running an application. The pair in its
    first states (``;1`` Down, ``;2`` Ring in ``(None)``) is not: a refused call shows it too.
    """
    if first.state in TAKEN_STATES:
        return True
    second = first.base_name + ";2"
    return any(leg.name == second and leg.application != UNSTARTED for leg in listed)


def refusal_mark(code: str, context: str) -> str:
    """The words of core_local.c's notice when the dialplan has no ``code`` in ``context``."""
    return f"local_call: No such extension/context {code}@{context} while calling Local channel"


def log_text(line: str) -> str:
    """A log line's message without its date, level, thread and source position."""
    return _LOG_PREFIX.sub("", line, count=1).strip()
