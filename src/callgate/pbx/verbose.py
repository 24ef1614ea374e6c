"""What a console at verbose 3 says about calls, one line at a time. Pure.

A remote console at ``core set verbose 3`` (the console's own level: other consoles keep
theirs) prints, for every call on the PBX, lines like these (``recordings/asterisk/
console-verbose-outcomes.repr.txt``; colours and the console's prompt already taken out):

    -- Executing [151@inoffice:1] NoOp("Local/151@inoffice-00000065;2", "…") in new stack
    -- Local/151@inoffice-00000065;1 is ringing
    -- Local/151@inoffice-00000065;1 answered
    -- Local/+375296254070@inoffice-00000066;1 answered Local/151@inoffice-00000065;1
    -- Local/120@inoffice-00000060;1 is busy
  == Everyone is busy/congested at this time (1:1/0/0)
    -- Nobody picked up in 5000 ms
    -- Channel Local/151@inoffice-00000065;1 joined 'simple_bridge' basic-bridge <a406…>
  == Spawn extension (inoffice, 150, 5) exited non-zero on 'Local/150@inoffice-00000063;2'

and, at any level, the log line of a refused originate (``local_call: No such
extension/context 150@nosuchcontext while calling Local channel``). ``heard()`` turns the lines
that matter for a call's progress and outcome into a ``Heard``; every other line is None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_CHANNEL = r"([A-Za-z][\w-]*/[^\s';!]+;[12])"
_PATTERNS = (
    ("started", re.compile(rf'-- Executing \[[^\]\s]+\] \w+\("{_CHANNEL}", .*\) in new stack')),
    ("ringing", re.compile(rf"-- {_CHANNEL} is ringing")),
    ("answered", re.compile(rf"-- {_CHANNEL} answered(?: {_CHANNEL})?")),
    ("busy", re.compile(rf"-- {_CHANNEL} is busy")),
    ("congestion", re.compile(rf"-- {_CHANNEL} is circuit-busy")),
    ("no_answer", re.compile(r"-- Nobody picked up in (\d+) ms")),
    ("joined", re.compile(rf"-- Channel {_CHANNEL} joined '[^']*' [\w-]+ <([^<>\s]+)>")),
    ("ended", re.compile(rf"== Spawn extension \([^()]*\) exited non-zero on '{_CHANNEL}'")),
    (
        "refused",
        re.compile(
            r"\[[^\]]*\] NOTICE\[\d+\](?:\[[^\]]*\])?: core_local\.c:\d+ local_call: "
            r"No such extension/context (\S+) while calling Local channel"
        ),
    ),
)


class Said(StrEnum):
    STARTED = "started"  # the channel runs the dialplan (its first steps: the call was taken)
    RINGING = "ringing"  # the channel rings (an agent's ;1, or the customer's ;1)
    ANSWERED = "answered"  # the channel answered; ``peer``: the caller it answered
    BUSY = "busy"  # the far end said busy
    CONGESTION = "congestion"  # the far end said congestion (circuit-busy)
    NO_ANSWER = "no_answer"  # Dial gave up ringing after ``ms`` (names no channel)
    JOINED = "joined"  # the channel joined a bridge (``peer``: the bridge id)
    ENDED = "ended"  # the channel's dialplan ended (``;2`` legs: their call is over)
    REFUSED = "refused"  # the dialplan has no ``peer`` (``<exten>@<context>``)


@dataclass(frozen=True, slots=True)
class Heard:
    said: Said
    channel: str = ""
    peer: str = ""
    ms: int | None = None


def heard(line: str) -> Heard | None:
    """The call event one cleaned console line carries, or None."""
    text = line.strip()
    for name, pattern in _PATTERNS:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        said = Said(name)
        if said is Said.NO_ANSWER:
            return Heard(said, ms=int(match.group(1)))
        if said is Said.REFUSED:
            return Heard(said, peer=match.group(1))
        peer = match.group(2) if said in (Said.ANSWERED, Said.JOINED) else None
        return Heard(said, match.group(1), peer or "")
    return None
