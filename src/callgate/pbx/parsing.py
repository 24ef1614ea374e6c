"""Pure parsers of what Asterisk 22's CLI prints (see the recorded transcripts in the tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from callgate.errors import AsteriskNotRunning, UnexpectedOutput

NOT_RUNNING_MARK = "Unable to connect to remote asterisk"
NO_SUCH_COMMAND_MARK = "No such command '"
_FIELDS = 14
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


def check_cli_output(output: str) -> str:
    """Raise on the answers that mean the command did not run as a command."""
    if output.startswith(NOT_RUNNING_MARK):
        raise AsteriskNotRunning("Asterisk is not running on the host (" + output.strip() + ")")
    if output.startswith(NO_SUCH_COMMAND_MARK):
        raise UnexpectedOutput("Asterisk does not know the command: " + output.strip()[:200])
    return output


def parse_channels(output: str, name_prefix: str = "") -> list[Channel]:
    """Parse ``core show channels concise``: one ``!``-separated line per channel, no header.

    ``name_prefix``: only the channels whose name starts with it (a line starts with its
    channel's name), the others not even split: an originate's check looks for one channel
    in a busy PBX's whole listing.
    """
    channels = []
    for line in output.splitlines():
        if not line.startswith(name_prefix):
            continue
        parts = line.split("!")
        if len(parts) < _FIELDS:
            continue  # not a channel line (empty output, a stray message)
        if len(parts) > _FIELDS:  # an application's data contained '!': rejoin it
            parts = [*parts[:6], "!".join(parts[6 : len(parts) - 7]), *parts[-7:]]
        try:
            duration = int(parts[11])
        except ValueError:
            continue
        channels.append(
            Channel(
                name=parts[0],
                context=parts[1],
                extension=parts[2],
                priority=parts[3],
                state=parts[4],
                application=parts[5],
                data=parts[6],
                caller_id=parts[7],
                accountcode=parts[8],
                peeraccount=parts[9],
                amaflags=parts[10],
                duration=duration,
                bridge_id=parts[12],
                uniqueid=parts[13],
            )
        )
    return channels


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
