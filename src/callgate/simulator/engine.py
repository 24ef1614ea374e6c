"""``SimulatedAsterisk``: a fake Asterisk 22.7 that answers CLI commands byte for byte.

Pure state and text, no I/O: ``execute("core show channels concise")`` returns what
``asterisk -rx "core show channels concise"`` would print and its exit status. Calls progress
as a function of the injected clock (see ``timeline``), so nothing runs in the background and
tests can step time by hand. Not thread-safe: use one engine from one thread (an event loop).

It also holds what Asterisk holds of its remote consoles: each open console's verbosity
(``core set verbose`` on a console sets that console's only) and which of the lines Asterisk
writes to consoles on its own each has been given. ``console_output()`` hands out the lines
due by now, per console: the verbose lines of every call (``script``) to consoles at verbose 3
(or 2 for the ``==`` ones), and log lines (core_local.c's NOTICE for a doomed originate) to
every console, byte for byte as in ``recordings/asterisk/console-verbose-outcomes.repr.txt``.
``next_console_line_at()`` says when the next one is due, so that a server can sleep until then.
A doomed originate (``channel originate`` to a context that does not exist, or to an extension
the context lacks, see ``set_missing_extensions``) still shows its pair for a few milliseconds,
as Asterisk does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from callgate.simulator import clitext
from callgate.simulator.logtext import ConsoleLine
from callgate.simulator.script import console_script
from callgate.simulator.timeline import (
    Call,
    LocalPair,
    Row,
    Scenario,
    dial_peer,
    dial_target,
    dial_timeout_ms,
    local_data,
)

DEFAULT_CONTEXTS = frozenset({"inoffice"})
# The thread number in log lines (the recording's; Asterisk logs the one that called).
LOG_THREAD = 16379


@dataclass(frozen=True, slots=True)
class CliAnswer:
    """What ``asterisk -rx`` prints on stdout, and its exit status."""

    output: str
    exit_status: int


@dataclass(frozen=True, slots=True)
class RecordedCommand:
    """A command as received: its text, the engine clock and the wall clock at arrival."""

    command: str
    at: float
    wall: float


@dataclass(frozen=True, slots=True)
class CallInfo:
    """A live call, for tests and control clients."""

    agent_channel: str  # the agent pair's base name: "Local/150@inoffice-00000006"
    extension: str
    context: str
    appdata: str
    elapsed: float
    channels: tuple[str, ...]


class SimulatedAsterisk:
    """The state of one simulated Asterisk and its CLI.

    ``next_channel_number``, ``next_uniqueid`` and ``calls_processed`` are public so that a
    test can start from a PBX that has been up a while (the transcripts' counters).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        bridge_ids: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.clock = clock
        self.wall_clock = wall_clock
        self._bridge_ids = bridge_ids
        self.log_thread = LOG_THREAD
        # Open remote consoles and their verbosity; they are connections, not PBX state, so
        # reset() keeps them.
        self._consoles: dict[int, int] = {}
        self._last_console = 0
        # Bumped when something console lines depend on changes: ``_moments()`` is cached by it.
        self._generation = 0
        self._moments_cache: tuple[tuple[int, int], float | None, float | None] | None = None
        self.reset()

    def reset(self) -> None:
        """Back to a freshly started Asterisk: no calls, counters at 0, default behaviour."""
        self.running = True  # False: the control socket cannot be reached
        self.started_at = self.clock()  # for `core show uptime`
        self.commands: list[RecordedCommand] = []
        self.contexts: frozenset[str] = DEFAULT_CONTEXTS
        self.missing_extensions: dict[str, frozenset[str]] = {}
        self.default_scenario = Scenario()
        # The transcripts' dialplan: extension 199 rings but never answers.
        self.scenarios: dict[str, Scenario] = {"199": Scenario(agent_answer_after=None)}
        self.next_channel_number = 0  # Local channels' 8-hex-digit suffix
        self.next_uniqueid = 0  # the ".<n>" of uniqueids, shared by all channels
        self.calls_processed = 0  # dialplan runs started: `core show channels count`
        self._calls: list[Call] = []
        self._originates = 0
        self._changed()

    # -- configuration -----------------------------------------------------------------

    def set_scenario(self, extension: str, scenario: Scenario | None) -> None:
        """Override how calls to ``extension`` go (None: back to the default scenario)."""
        if scenario is None:
            self.scenarios.pop(extension, None)
        else:
            self.scenarios[extension] = scenario

    def set_contexts(self, contexts: Iterable[str]) -> None:
        """The dialplan contexts that exist; an originate elsewhere is doomed."""
        self.contexts = frozenset(contexts)

    def set_missing_extensions(self, context: str, extensions: Iterable[str]) -> None:
        """Extensions ``context`` lacks (its other extensions all exist, as the README's
        patterns make them); an originate to one is doomed. Empty: none missing."""
        missing = frozenset(extensions)
        if missing:
            self.missing_extensions[context] = missing
        else:
            self.missing_extensions.pop(context, None)

    def extension_exists(self, exten: str, context: str) -> bool:
        """Whether the dialplan has ``exten`` in ``context`` (local_call()'s check)."""
        return context in self.contexts and exten not in self.missing_extensions.get(context, ())

    def scenario_for(self, extension: str) -> Scenario:
        return self.scenarios.get(extension, self.default_scenario)

    # -- the CLI -------------------------------------------------------------------------

    def execute(
        self, command: str, console: int | None = None, *, at: float | None = None
    ) -> CliAnswer:
        """Run one CLI command as ``asterisk -rx "<command>"`` would, or as typed on the open
        ``console`` (``open_console()``): only ``core set verbose`` tells them apart.

        ``at``: the engine time to run it at (default: now), for a server that has just given
        the consoles their lines up to that time, so that none falls between the two.
        """
        now = self.clock() if at is None else at
        self.commands.append(RecordedCommand(command, now, self.wall_clock()))
        if not self.running:
            return CliAnswer(clitext.NOT_RUNNING, 1)  # no trailing newline, as Asterisk prints it
        self._advance(now)
        words = clitext.parse_args(command)
        if not words:
            return CliAnswer("", 0)  # cli.c ignores an empty line
        entry = clitext.find_cli(words, 0)
        handler = self._handlers(console).get(entry.key) if entry else None
        result = handler(words, now) if handler else None
        if result is None:  # not a command (or a form of one that is not simulated)
            return CliAnswer(clitext.no_such_command(command, words), 0)
        if isinstance(result, _Usage):
            return CliAnswer(entry.usage if entry else "", 0)  # CLI_SHOWUSAGE
        return CliAnswer(result, 0)

    def _handlers(self, console: int | None) -> dict[str, Callable[[list[str], float], _Answer]]:
        return {
            "originate": self._originate,
            "hangup": self._hangup,
            "verbose": lambda words, now: self._verbose(words, console),
            "channels": self._channels,
            "uptime": self._uptime,
            "version": self._version,
        }

    def _version(self, words: list[str], now: float) -> _Answer:
        return _SHOW_USAGE if len(words) != 3 else clitext.VERSION_LINE + "\n"

    def _uptime(self, words: list[str], now: float) -> _Answer:
        seconds = int(now - self.started_at)  # no reload is simulated: both lines agree
        if len(words) == 4 and words[3].lower() == "seconds":
            return f"System uptime: {seconds}\nLast reload: {seconds}\n"
        if len(words) != 3:
            return _SHOW_USAGE
        text = clitext.uptime_text(seconds)
        return f"System uptime: {text}\nLast reload: {text}\n"

    def _verbose(self, words: list[str], console: int | None) -> _Answer:
        """handle_verbose() on one console; each ``-rx`` is a new console, whose level is OFF."""
        request = clitext.verbose_request(words)
        if request is None:
            return _SHOW_USAGE
        level, atleast, silent = request
        old = self._consoles.get(console, 0) if console is not None else 0
        new = level if not atleast or level > old else old
        if console in self._consoles:
            self._consoles[console] = new
            self._changed()
        return "" if silent else clitext.verbose_status(old, new)

    def _channels(self, words: list[str], now: float) -> _Answer:
        form = words[3].lower() if len(words) == 4 else None
        if len(words) > 4 or form not in (None, "concise", "verbose", "count"):
            return _SHOW_USAGE
        rows = self._rows(now)
        if form == "concise":
            return "".join(row.line(now) for row in rows)
        if form == "count":
            channels = len(rows)
            calls = sum(1 for row in rows if row.name.endswith(";2"))  # dialplans running
            processed = self.calls_processed
            return (
                f"{channels} active channel{clitext.ess(channels)}\n"
                f"{calls} active call{clitext.ess(calls)}\n"
                f"{processed} call{clitext.ess(processed)} processed\n"
            )
        return None  # the table and `verbose` forms are not simulated

    def _hangup(self, words: list[str], now: float) -> _Answer:
        if len(words) != 4:
            return _SHOW_USAGE
        wanted = words[3]
        if wanted.lower() == "all":
            lines = [f"Requested Hangup on channel '{row.name}'\n" for row in self._rows(now)]
            for call in self._live(now):
                call.hangup_at = now
            self._changed()
            self._advance(now)
            return "".join(lines)
        for call in self._live(now):
            for row in call.rows(now):
                # ast_channel_get_by_name(): the name without regard to case, then a uniqueid.
                if row.name.lower() == wanted.lower() or row.tail.endswith("!" + wanted):
                    call.hangup_at = now  # a Local pair's hangup takes the whole call down
                    self._changed()
                    self._advance(now)
                    return f"Requested Hangup on channel '{row.name}'\n"
        return f"{wanted} is not a known channel\n"

    def _originate(self, words: list[str], now: float) -> _Answer:
        """``channel originate``: prints nothing whether or not a call was created."""
        if len(words) < 4 or "/" not in words[2]:
            return _SHOW_USAGE
        mode = words[3].lower()
        if mode == "application" and len(words) < 5:
            return _SHOW_USAGE
        if mode not in ("application", "extension"):
            return _SHOW_USAGE
        tech, data = words[2].split("/", 1)
        if tech.lower() != "local":
            return ""  # no such channel technology: nothing is created, nothing is said
        exten, context = local_data(data)
        wall = self.wall_clock()
        # The pair is allocated (counters move on) even when the dialplan will refuse it.
        pair = self._new_pair(exten, context, now, wall)
        doomed = not self.extension_exists(exten, context)
        appdata = words[5] if len(words) > 5 else ""
        dial = mode == "application" and words[4].lower() == "dial"
        target = dial_target(appdata) if dial else None
        self._originates += 1
        call = Call(
            seq=self._originates,
            agent=pair,
            exten=exten,
            context=context,
            appdata=appdata,
            scenario=self.scenario_for(exten),
            target=target,
            target_exists=target is not None and self.extension_exists(*target),
            wall_started=wall,
            device=data,
            peer=dial_peer(appdata),
            dial_timeout_ms=dial_timeout_ms(appdata) if dial else None,
            doomed=doomed,
            log_thread=self.log_thread,
        )
        self._calls.append(call)
        self._changed()
        if not doomed:
            self.calls_processed += 1  # the ;2 half starts running the dialplan
        return ""

    # -- state -------------------------------------------------------------------------

    def live_calls(self) -> list[CallInfo]:
        """The calls that still have channels, oldest first."""
        now = self.clock()
        self._advance(now)
        return [
            CallInfo(
                agent_channel=call.agent.base,
                extension=call.exten,
                context=call.context,
                appdata=call.appdata,
                elapsed=now - call.started,
                channels=tuple(row.name for row in call.rows(now)),
            )
            for call in self._live(now)
        ]

    def _live(self, now: float) -> list[Call]:
        """The calls that still have channels (ended ones may wait for their last lines)."""
        return [call for call in self._calls if call.end() > now]

    def _rows(self, now: float) -> list[Row]:
        """Every live channel, in the order Asterisk lists them (its hash buckets)."""
        rows = [row for call in self._live(now) for row in call.rows(now)]
        # sorted() is stable: channels sharing a bucket stay in creation order.
        return sorted(rows, key=lambda row: clitext.channel_bucket(row.name))

    def _advance(self, now: float) -> None:
        """Apply, in time order, what happened since the last look; forget finished calls.

        Channel numbers and uniqueids are handed out here, so they follow the order in which
        channels were created in simulated time, whoever looked when.
        """
        events = [(event, call) for call in self._calls for event in call.pending(now)]
        for (at, _, kind), call in sorted(events, key=lambda item: (*item[0][:2], item[1].seq)):
            if kind == "customer" and call.target is not None:
                exten, context = call.target
                call.customer = self._new_pair(exten, context, at, call.wall_at(at))
                if call.target_exists:
                    self.calls_processed += 1
            elif kind == "bridge":
                call.bridge_id = self._bridge_ids()
            self._changed()
        # An ended call stays while an open console has not been given its last lines.
        kept = [call for call in self._calls if call.end() > now or self._unsaid(call)]
        if len(kept) != len(self._calls):
            self._calls = kept
            self._changed()

    # -- remote consoles ----------------------------------------------------------------

    def open_console(self) -> int:
        """A remote console connects (verbosity OFF); it gets the lines due from now on."""
        now = self.clock()
        self._advance(now)
        if not self._consoles:  # nobody was given the lines due so far: nobody will be
            for call in self._calls:
                call.said = sum(1 for line in console_script(call) if line.at <= now)
        self._last_console += 1
        self._consoles[self._last_console] = 0
        self._changed()
        return self._last_console

    def close_console(self, console: int) -> None:
        self._consoles.pop(console, None)
        self._changed()

    def console_verbosity(self, console: int) -> int:
        """An open console's ``core set verbose`` level (0: OFF)."""
        return self._consoles[console]

    def next_console_line_at(self) -> float | None:
        """When (engine clock) the next line that an open console would print is due; None if
        no console is open or nothing is coming. It may be a moment when a call's next lines
        become known (a channel is named), with nothing to print yet."""
        return self._moments()[0] if self._consoles else None

    def console_output(self, until: float | None = None) -> dict[int, list[str]]:
        """The lines due by ``until`` (default: now) that no console has been given yet: for
        each open console that prints some, its blocks (the lines of one instant, as Asterisk
        writes them at once)."""
        now = self.clock() if until is None else until
        self._advance(now)
        if not self._consoles:
            return {}  # nobody to give them to (open_console() skips them)
        first = self._moments()[1]
        if first is None or first > now:
            return {}  # the usual case, asked around every command: nothing new
        due: list[tuple[float, int, int, ConsoleLine]] = []
        for call in self._calls:
            script = console_script(call)
            while call.said < len(script) and script[call.said].at <= now:
                due.append((script[call.said].at, call.seq, call.said, script[call.said]))
                call.said += 1
        self._calls = self._live(now)  # every ended call has now said all it had to say
        self._changed()
        lines = [line for *_, line in sorted(due, key=lambda item: item[:3])]
        output = {console: _blocks(lines, level) for console, level in self._consoles.items()}
        return {console: blocks for console, blocks in output.items() if blocks}

    def _changed(self) -> None:
        """Calls, consoles or what they were given changed: the cached moments are stale."""
        self._generation += 1

    def _moments(self) -> tuple[float | None, float | None]:
        """(when an open console prints something next, or a call's next lines become known;
        when the first line not given out yet is due, whoever prints it), cached until
        ``_changed()``: servers ask around every command."""
        top = max(self._consoles.values())
        key = (self._generation, top)
        if self._moments_cache is None or self._moments_cache[0] != key:
            self._moments_cache = (key, *self._find_moments(top))
        return self._moments_cache[1], self._moments_cache[2]

    def _find_moments(self, top: int) -> tuple[float | None, float | None]:
        shown_at: list[float] = []
        unsaid_at: list[float] = []
        for call in self._calls:
            unsaid = console_script(call)[call.said :]
            if unsaid:
                unsaid_at.append(unsaid[0].at)
            shown = (line.at for line in unsaid if line.verbose is None or line.verbose <= top)
            shown_at += [at for at in (next(shown, None), call.next_event()) if at is not None]
        return min(shown_at, default=None), min(unsaid_at, default=None)

    def _unsaid(self, call: Call) -> bool:
        """Whether an open console has yet to be given some of ``call``'s lines."""
        return bool(self._consoles) and call.said < len(console_script(call))

    def _new_pair(self, exten: str, context: str, at: float, wall: float) -> LocalPair:
        """Allocate a Local pair's name and its two uniqueids (``<epoch>.<sequence>``)."""
        base = f"Local/{exten}@{context}-{self.next_channel_number & 0xFFFFFFFF:08x}"
        self.next_channel_number += 1
        first, second = self.next_uniqueid, self.next_uniqueid + 1
        self.next_uniqueid += 2
        epoch = int(wall)
        return LocalPair(base, at, (f"{epoch}.{first}", f"{epoch}.{second}"))


def _blocks(lines: list[ConsoleLine], level: int) -> list[str]:
    """The lines a console at verbosity ``level`` prints, one block per instant."""
    blocks: list[str] = []
    last: float | None = None
    for line in lines:
        if line.verbose is not None and line.verbose > level:
            continue
        if line.at == last:
            blocks[-1] += line.text
        else:
            blocks.append(line.text)
            last = line.at
    return blocks


class _Usage:
    """A handler's CLI_SHOWUSAGE: the engine prints the command's usage text instead."""


_SHOW_USAGE = _Usage()
# What a handler returns: the output, the usage marker, or None for "not simulated".
_Answer = str | _Usage | None
