"""Asterisk 22's CLI machinery, ported: word splitting, command lookup, fixed texts, orderings.

Everything here reproduces what ``main/cli.c`` does, because the bytes are the contract: the
transcripts in ``recordings/asterisk`` are the reference, and where they show nothing the C
source is. Texts that only the source shows (not a transcript) are marked so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

NOT_RUNNING = "Unable to connect to remote asterisk (does /var/run/asterisk/asterisk.ctl exist?)"
VERSION_LINE = (
    "Asterisk 22.7.0 built by root @ vm on a x86_64 running Linux on 2026-11-26 15:39:59 UTC"
)

# Transcript: `channel originate` with a wrong usage prints this, byte for byte.
ORIGINATE_USAGE = (
    "  There are two ways to use this command. A call can be originated between a\n"
    "channel and a specific application, or between a channel and an extension in\n"
    "the dialplan. This is similar to call files or the manager originate action.\n"
    "Calls originated with this command are given a timeout of 30 seconds.\n\n"
    "Usage1: channel originate <tech/data> application <appname> [appdata]\n"
    "  This will originate a call between the specified channel tech/data and the\n"
    "given application. Arguments to the application are optional. If the given\n"
    "arguments to the application include spaces, all of the arguments to the\n"
    "application need to be placed in quotation marks.\n\n"
    "Usage2: channel originate <tech/data> extension [exten@][context]\n"
    "  This will originate a call between the specified channel tech/data and the\n"
    "given extension. If no context is specified, the 'default' context will be\n"
    "used. If no extension is given, the 's' extension will be used.\n"
)
# The usages below come from Asterisk's source (main/cli.c, main/asterisk.c); no transcript
# shows them.
HANGUP_USAGE = (
    "Usage: channel request hangup <channel>|<all>\n"
    "       Request that a channel be hung up. The hangup takes effect\n"
    "       the next time the driver reads or writes from the channel.\n"
    "       If 'all' is specified instead of a channel name, all channels\n"
    "       will see the hangup request.\n"
)
VERSION_USAGE = "Usage: core show version\n       Shows Asterisk version information.\n"
UPTIME_USAGE = (
    "Usage: core show uptime [seconds]\n"
    "       Shows Asterisk uptime information.\n"
    "       The seconds word returns the uptime in seconds only.\n"
)
CHANNELS_USAGE = (
    "Usage: core show channels [concise|verbose|count]\n"
    "       Lists currently defined channels and some information about them. If\n"
    "       'concise' is specified, the format is abridged and in a more easily\n"
    "       machine parsable format. If 'verbose' is specified, the output includes\n"
    "       more and longer fields. If 'count' is specified only the channel and call\n"
    "       count is output.\n"
    "\tThe 'concise' option is deprecated and will be removed from future versions\n"
    "\tof Asterisk.\n"
)
VERBOSE_USAGE = (
    "Usage: core set verbose [atleast] <level> [silent]\n"
    "       core set verbose off\n"
    "\n"
    "       Sets level of verbose messages to be displayed.\n"
    "       0 or off means no verbose messages should be displayed.\n"
    "       The silent option means the command does not report what\n"
    "       happened to the verbose level.\n"
    "       Equivalent to -v[v[...]] on startup\n"
)

_AST_MAX_ARGS = 64  # parse_args() keeps at most 63 words
_RESERVED = "[]{}|*%"  # cli.c's cli_rsvd: a command word starting with one is a pattern
_CHANNEL_BUCKETS = 1567  # AST_NUM_CHANNEL_BUCKETS: the channel containers' hash size
_SSCANF_INT = re.compile(r"[ \t\n\r\f\v]*([+-]?\d{1,29})", re.ASCII)


@dataclass(frozen=True, slots=True)
class CliEntry:
    """One registered CLI command: its words (patterns included), its usage, a handler key."""

    words: tuple[str, ...]
    usage: str
    key: str


# The simulated command table. "!" (asterisk.c's shell escape) is there only because it makes
# find_best() keep the first word of any unknown command, as the transcripts show; the engine
# does not run it.
COMMANDS: tuple[CliEntry, ...] = (
    CliEntry(("!",), "", "bang"),
    CliEntry(("channel", "originate"), ORIGINATE_USAGE, "originate"),
    CliEntry(("channel", "request", "hangup"), HANGUP_USAGE, "hangup"),
    CliEntry(("core", "set", "verbose"), VERBOSE_USAGE, "verbose"),
    CliEntry(("core", "show", "channels", "[concise|verbose|count]"), CHANNELS_USAGE, "channels"),
    CliEntry(("core", "show", "uptime", "[seconds]"), UPTIME_USAGE, "uptime"),
    CliEntry(("core", "show", "version"), VERSION_USAGE, "version"),
)


def parse_args(line: str) -> list[str]:
    """Split a command line into words exactly as cli.c's parse_args() does.

    Only space and tab separate words; double quotes group; a backslash escapes one character.
    """
    words: list[str] = []
    quoted = escaped = False
    in_space = True
    for char in line.lstrip(" \t\n\r\f\v"):
        if len(words) >= _AST_MAX_ARGS - 1:
            break  # "Too many arguments, truncating"
        if char == '"' and not escaped:
            quoted = not quoted
            if quoted and in_space:  # a quoted string after whitespace starts a new word
                words.append("")
                in_space = False
        elif char in " \t" and not (quoted or escaped):
            in_space = True  # ends the current word, if any
        elif char == "\\" and not escaped:
            escaped = True
        else:
            if in_space:
                words.append("")
                in_space = False
            words[-1] += char
            escaped = False
    return words


def _word_match(token: str | None, pattern: str | None) -> bool:
    """cli.c's word_match(): plain words compare without case; ``[a|b]`` lists alternatives."""
    if not token or not pattern:
        return False
    if pattern[0] not in _RESERVED:
        return token.lower() == pattern.lower()
    if pattern[0] == "%":
        return True
    alternatives = re.split(r"[\[\]{}|*%]", pattern.lower())
    return token.lower() in alternatives[1:]


def find_cli(words: Sequence[str], match_type: int) -> CliEntry | None:
    """cli.c's find_cli(): 0 = the words may run past the entry, -1 = last word may differ."""
    candidate: CliEntry | None = None
    best = -1
    for entry in COMMANDS:
        src = dst = 0
        while _word_match(_at(words, src), _at(entry.words, dst)):
            src += 1
            dst += 1
        pattern = _at(entry.words, dst)
        if not pattern or (pattern[0] == "[" and not _at(entry.words, dst + 1)):
            if not _at(words, src):
                return entry  # exact match, cannot do better
            if match_type != 0:
                continue
        else:
            if not _at(words, src):
                continue  # the words are shorter than the entry
            if match_type != -1 or _at(words, src + 1) or _at(entry.words, dst + 1):
                continue
        if src > best:
            best, candidate = src, entry
    return candidate


def find_best(words: Sequence[str]) -> str:
    """The words shown in "type 'core show help <words>'": as long a prefix as still matches."""
    kept: list[str] = []
    for word in words:
        kept.append(word)
        if find_cli(kept, -1) is None:
            break
    joined = " ".join(kept).encode("utf-8", "surrogateescape")[:79]  # static char cmdline[80]
    return joined.decode("utf-8", "surrogateescape")


def no_such_command(line: str, words: Sequence[str]) -> str:
    """The answer to a command that is not in the table."""
    return (
        f"No such command '{line}' (type 'core show help {find_best(words)}' "
        "for other possible commands)\n"
    )


def verbose_request(words: Sequence[str]) -> tuple[int, bool, bool] | None:
    """What ``core set verbose …`` asks, as handle_verbose() reads it: (level, atleast, silent);
    None for a usage error."""
    if len(words) <= 3:
        return None
    if len(words) == 4 and words[3].lower() == "off":
        return 0, False, False
    atleast = words[3].lower() == "atleast"
    silent = len(words) == 5 + atleast and words[4 + atleast].lower() == "silent"
    level = sscanf_int(words[3 + atleast]) if len(words) > 3 + atleast else None
    if len(words) != 4 + atleast + silent or level is None:
        return None
    return level, atleast, silent


def verbose_status(old: int, new: int) -> str:
    """status_debug_verbose(): ``Console verbose was 3 and is now OFF.`` (0 reads OFF)."""
    was = str(old) if old else "OFF"
    if old == new:
        return f"Console verbose is still {was}.\n"
    return f"Console verbose was {was} and is now {new if new else 'OFF'}.\n"


def ess(count: int) -> str:
    """Asterisk's ESS(): the plural "s" unless the count is exactly 1."""
    return "" if count == 1 else "s"


def uptime_text(seconds: int) -> str:
    """print_uptimestr(): years, weeks, days, hours, minutes, seconds; note the strict ``>``."""
    parts: list[str] = []
    for unit, size in (
        ("year", 365 * 86400),
        ("week", 7 * 86400),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
    ):
        if seconds > size:  # cli.c compares with '>', so exactly 60 s prints "60 seconds"
            count, seconds = divmod(seconds, size)
            parts.append(f"{count} {unit}{ess(count)}")
    if seconds > 0 or not parts:
        parts.append(f"{seconds} second{ess(seconds)}")
    return ", ".join(parts)


def sscanf_int(text: str) -> int | None:
    """``sscanf(text, "%30d")``: leading blanks, a sign, digits; None if there are none."""
    match = _SSCANF_INT.match(text)
    return int(match.group(1)) if match else None


def channel_bucket(name: str) -> int:
    """The hash bucket of a channel name, which is the order Asterisk lists channels in.

    ast_str_case_hash() (djb2 over lower-cased bytes, 32-bit unsigned) modulo the 1567 buckets;
    iterating the container walks the buckets in order. Every listing in the transcripts
    (``;2`` before ``;1`` included) follows it.
    """
    value = 5381
    for byte in name.encode("utf-8", "surrogateescape"):
        if 65 <= byte <= 90:  # tolower() in the C locale touches ASCII letters only
            byte += 32
        value = ((value * 33) ^ byte) & 0xFFFFFFFF
    return value % _CHANNEL_BUCKETS


def _at(items: Sequence[str], index: int) -> str | None:
    """``items[index]``, or None past the end (the NULL that ends C's argv arrays)."""
    return items[index] if index < len(items) else None
