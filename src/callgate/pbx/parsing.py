"""Pure parsers of what Asterisk 22's CLI prints (see the recorded transcripts in the tests)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from callgate.errors import AsteriskNotRunning, UnexpectedOutput

NOT_RUNNING_MARK = "Unable to connect to remote asterisk"
NO_SUCH_COMMAND_MARK = "No such command '"
# What Asterisk's ast_state2str() prints for a channel's state (``Mute`` in some versions;
# ``Unknown (<n>)`` for a state it has no name for).
CHANNEL_STATES = (
    "Down", "Rsrvd", "OffHook", "Dialing", "Ring", "Ringing", "Up", "Busy", "Dialing Offhook",
    "Pre-ring", "Mute", "Unknown",
)  # fmt: skip
_NO_SPACE = r"[^\s!\x00-\x1f\x7f]"  # not a space, a control character or the separator
# One whole ``core show channels concise`` record (recordings/asterisk/README.md, fact 3), as
# Asterisk's handle_chanlist() prints it, "%s!%s!%s!%d!%s!%s!%s!%s!%s!%s!%d!%s!%s!%s\n", with
# nothing escaped. An application's data may hold "!": it keeps every "!" up to the last seven,
# which separate fields that hold none (a caller id, accountcode or peeraccount with a "!" is
# read as if the text before it were data). A "!" in the context or extension makes the line
# no record. Free text (extension, data, caller id) may also hold a newline: see parse_channels.
_RECORD = re.compile(
    rf"(?P<name>[A-Za-z][A-Za-z0-9_-]*/{_NO_SPACE}+)"  # Tech/resource: Local/150@inoffice-…;1
    r"!(?P<context>[^!]*)!(?P<extension>[^!]*)"
    r"!(?P<priority>[0-9]+)"
    r"!(?P<state>" + "|".join(map(re.escape, CHANNEL_STATES)) + r"|Unknown \([0-9]+\))"
    rf"!(?P<application>{_NO_SPACE}+)"  # never empty: "(None)" when there is none
    r"!(?P<data>.*?)"  # lazy: the same split as greedy (one fits), found with less backtracking
    r"!(?P<caller_id>[^!]*)!(?P<accountcode>[^!]*)!(?P<peeraccount>[^!]*)"
    r"!(?P<amaflags>[0-9]+)"
    r"!(?P<duration>[0-9]+)"
    r"!(?P<bridge_id>(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?)"
    # Asterisk's own: "<epoch>.<n>", or "<systemname>-<epoch>.<n>" when asterisk.conf sets a
    # system name (its __ast_channel_alloc_ap()). One an AMI or ARI originator chose is free
    # text: not accepted (see parse_channels).
    rf"!(?P<uniqueid>(?:{_NO_SPACE}+-)?[0-9]+\.[0-9]+)"
)
_VERSION = re.compile(r"Asterisk (\S+) built by ", re.ASCII)
_COUNT = re.compile(
    r"(\d+) active channels?\n(\d+) active calls?\n(\d+) calls? processed", re.ASCII
)
_HANGUP_DONE = re.compile(r"Requested Hangup on channel '([^'\n]+)'")


@dataclass(frozen=True, slots=True)
class Channel:
    """One line of ``core show channels concise``."""

    name: str
    context: str
    extension: str
    priority: str
    state: str  # Ring, Ringing, Up, ...
    application: str
    data: str
    caller_id: str
    accountcode: str
    peeraccount: str
    amaflags: str
    duration: int  # seconds since the channel was created
    bridge_id: str  # shared by both legs once they are connected
    uniqueid: str

    @property
    def base_name(self) -> str:
        """The name without its ``;1``/``;2`` half: both halves of a Local pair share it."""
        return self.name.rsplit(";", 1)[0]

    @property
    def half(self) -> str:
        return self.name.rsplit(";", 1)[1] if ";" in self.name else ""


@dataclass(frozen=True, slots=True)
class ChannelCount:
    active_channels: int
    active_calls: int
    calls_processed: int


def check_cli_output(output: str, host: str = "", *, completed: int = 0) -> str:
    """Raise on the answers that mean the command did not run as a command; the error names
    ``host`` and counts the ``completed`` commands of its run before it."""
    if output.startswith(NOT_RUNNING_MARK):
        said = output.strip()
        raise AsteriskNotRunning(
            f"Asterisk is not running on {host or 'the host'} ({said})", host, completed=completed
        )
    if output.startswith(NO_SUCH_COMMAND_MARK):
        said = output.strip()[:200]
        raise UnexpectedOutput(
            f"Asterisk does not know the command: {said}", host, completed=completed
        )
    return output


def checked_answers(answers: Sequence[str], host: str, *, done: int = 0) -> list[str]:
    """``answers`` (of one run, after ``done`` others) through ``check_cli_output``, in order:
    the first that says its command did not run raises, counting those before it."""
    for index, answer in enumerate(answers):
        check_cli_output(answer, host, completed=done + index)
    return list(answers)


class Listing(list[Channel]):
    """The channels ``parse_channels`` trusts in one listing, and how many of its lines were
    fragments (not a whole record)."""

    def __init__(self, channels: Iterable[Channel] = (), fragments: int = 0) -> None:
        super().__init__(channels)
        self.fragments = fragments

    @property
    def conclusive(self) -> bool:
        """Whether a channel the listing does not show is gone. Not when a line was a fragment:
        the record it belonged to, and the lines next to it, are not shown (one of them may
        have been a channel of ours)."""
        return self.fragments == 0


def parse_channels(output: str, name_prefix: str = "") -> Listing:
    """Parse ``core show channels concise``: one ``!``-separated record per line, no header.

    Only whole records count (``_RECORD``: a ``Tech/…`` name, a known state, numeric priority,
    amaflags and duration, an empty or UUID bridge id, an Asterisk-made uniqueid). Asterisk
    prints the extension, the data and the caller id unescaped, and callers set them: one with
    a newline cuts its record in two or more lines, and its text after the newline may read as
    a channel (``…!evil\\nLocal/150@inoffice-00000099;1!inoffice!150!1!Up!Dial!…``). So:

    * a line (up to a ``\\n``, the only line end: ``str.splitlines`` would also cut at ``\\r``,
      ``\\x1e`` or ``\\u2028``) that is not a whole record is a *fragment*, and so is a last line
      without its newline;
    * a whole record next to a fragment is not trusted as a channel: it may be text of the
      record the fragment belongs to (the fragment before a forged line, or after it);
    * ``Listing.fragments`` counts the fragments, so that a caller treats a listing that had
      any as inconclusive about the channels it does not show.

    Text with newlines but no ``!`` before its last newline (in a record whose other free text
    has none) cannot forge a channel this way (tests/unit/test_parsing_strict.py checks it for
    any such caller id). Text holding both can spell whole records all the way through: no rule
    on the listing alone tells those apart from Asterisk's.

    ``name_prefix``: only the channels whose name starts with it (a record starts with its
    channel's name); the other lines are matched only where they neighbour such a line (an
    originate's check looks for one channel in a busy PBX's whole listing), and only those are
    counted in ``fragments``.
    """
    lines = output.split("\n")
    cut_short = lines[-1] != ""  # no newline after the last line: not known to be whole
    if not cut_short:
        lines.pop()  # the newline that ends the last record
    wanted = [at for at, line in enumerate(lines) if line.startswith(name_prefix)]
    examined: Iterable[int] = range(len(lines))
    if name_prefix:
        examined = sorted({n for at in wanted for n in (at - 1, at, at + 1) if 0 <= n < len(lines)})
    records: list[re.Match[str] | None] = [None] * len(lines)
    for at in examined:
        records[at] = _RECORD.fullmatch(lines[at])
    if cut_short:
        records[-1] = None
    channels = []
    for at in wanted:
        match, around = records[at], records[max(at - 1, 0) : at + 2]
        if match is not None and None not in around:  # next to a fragment: maybe a caller's text
            channels.append(_channel(match))
    return Listing(channels, sum(records[at] is None for at in examined))


def _channel(record: re.Match[str]) -> Channel:
    """The channel of a whole record: ``_RECORD``'s groups are ``Channel``'s fields, in order."""
    (name, context, exten, priority, state, app, data, caller, account, peer, ama, duration,
     bridge, uniqueid) = record.groups()  # fmt: skip
    return Channel(
        name, context, exten, priority, state, app, data, caller, account, peer, ama,
        int(duration), bridge, uniqueid,
    )  # fmt: skip


def parse_version(output: str) -> str:
    match = _VERSION.search(output)
    if not match:
        raise UnexpectedOutput("cannot read the Asterisk version from: " + output.strip()[:200])
    return match.group(1)


def parse_count(output: str) -> ChannelCount:
    match = _COUNT.search(output)
    if not match:
        raise UnexpectedOutput("cannot read the channel count from: " + output.strip()[:200])
    return ChannelCount(*(int(group) for group in match.groups()))


def parse_hangup(output: str) -> list[str]:
    """Names of the channels Asterisk accepted a hangup for (an unknown one gives none)."""
    return _HANGUP_DONE.findall(output)
