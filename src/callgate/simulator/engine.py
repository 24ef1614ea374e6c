"""``SimulatedAsterisk``: a fake Asterisk 22.7 that answers CLI commands byte for byte.

Pure state and text, no I/O: ``execute("core show channels concise")`` returns what
``asterisk -rx "core show channels concise"`` would print and its exit status. Calls progress
as a function of the injected clock (see ``timeline``), so nothing runs in the background and
tests can step time by hand. Not thread-safe: use one engine from one thread (an event loop).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from callgate.simulator import clitext
from callgate.simulator.timeline import Call, LocalPair, Row, Scenario, dial_target, local_data

DEFAULT_CONTEXTS = frozenset({"inoffice"})


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
        self.reset()

    def reset(self) -> None:
        """Back to a freshly started Asterisk: no calls, counters at 0, default behaviour."""
        self.running = True  # False: the control socket cannot be reached
        self.started_at = self.clock()  # for `core show uptime`
        self.commands: list[RecordedCommand] = []
        self.contexts: frozenset[str] = DEFAULT_CONTEXTS
        self.default_scenario = Scenario()
        # The transcripts' dialplan: extension 199 rings but never answers.
        self.scenarios: dict[str, Scenario] = {"199": Scenario(agent_answer_after=None)}
        self.next_channel_number = 0  # Local channels' 8-hex-digit suffix
        self.next_uniqueid = 0  # the ".<n>" of uniqueids, shared by all channels
        self.calls_processed = 0  # dialplan runs started: `core show channels count`
        self._calls: list[Call] = []
        self._originates = 0

    # -- configuration -----------------------------------------------------------------

    def set_scenario(self, extension: str, scenario: Scenario | None) -> None:
        """Override how calls to ``extension`` go (None: back to the default scenario)."""
        if scenario is None:
            self.scenarios.pop(extension, None)
        else:
            self.scenarios[extension] = scenario

    def set_contexts(self, contexts: Iterable[str]) -> None:
        """The dialplan contexts that exist; an originate elsewhere creates no channel."""
        self.contexts = frozenset(contexts)

    def scenario_for(self, extension: str) -> Scenario:
        return self.scenarios.get(extension, self.default_scenario)

    # -- the CLI -------------------------------------------------------------------------

    def execute(self, command: str) -> CliAnswer:
        """Run one CLI command as ``asterisk -rx "<command>"`` would."""
        now = self.clock()
        self.commands.append(RecordedCommand(command, now, self.wall_clock()))
        if not self.running:
            return CliAnswer(clitext.NOT_RUNNING, 1)  # no trailing newline, as Asterisk prints it
        self._advance(now)
        words = clitext.parse_args(command)
        if not words:
            return CliAnswer("", 0)  # cli.c ignores an empty line
        entry = clitext.find_cli(words, 0)
        handler = self._handlers().get(entry.key) if entry else None
        result = handler(words, now) if handler else None
        if result is None:  # not a command (or a form of one that is not simulated)
            return CliAnswer(clitext.no_such_command(command, words), 0)
        if isinstance(result, _Usage):
            return CliAnswer(entry.usage if entry else "", 0)  # CLI_SHOWUSAGE
        return CliAnswer(result, 0)

    def _handlers(self) -> dict[str, Callable[[list[str], float], _Answer]]:
        return {
            "originate": self._originate,
            "hangup": self._hangup,
            "verbose": self._verbose,
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

    def _verbose(self, words: list[str], now: float) -> _Answer:
        """handle_verbose(); each ``-rx`` is a new console, so the old level is always OFF."""
        if len(words) <= 3:
            return _SHOW_USAGE
        if len(words) == 4 and words[3].lower() == "off":
            level = 0
        else:
            atleast = int(words[3].lower() == "atleast")
            silent = int(len(words) == 5 + atleast and words[4 + atleast].lower() == "silent")
            parsed = clitext.sscanf_int(words[3 + atleast]) if len(words) > 3 + atleast else None
            if len(words) != 4 + atleast + silent or parsed is None:
                return _SHOW_USAGE
            level = parsed if not atleast or parsed > 0 else 0
            if silent:
                return ""
        if level == 0:
            return "Console verbose is still OFF.\n"
        return f"Console verbose was OFF and is now {level}.\n"

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
            for call in self._calls:
                call.hangup_at = now
            self._advance(now)
            return "".join(lines)
        for call in self._calls:
            for row in call.rows(now):
                # ast_channel_get_by_name(): the name without regard to case, then a uniqueid.
                if row.name.lower() == wanted.lower() or row.tail.endswith("!" + wanted):
                    call.hangup_at = now  # a Local pair's hangup takes the whole call down
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
        pair = self._new_pair(exten, context, now, wall)
        if context not in self.contexts:
            return ""  # the pair is allocated (counters move on), then the call fails at once
        appdata = words[5] if len(words) > 5 else ""
        target = None
        if mode == "application" and words[4].lower() == "dial":
            target = dial_target(appdata)
        self._originates += 1
        call = Call(
            seq=self._originates,
            agent=pair,
            exten=exten,
            context=context,
            appdata=appdata,
            scenario=self.scenario_for(exten),
            target=target,
            target_exists=target is not None and target[1] in self.contexts,
            wall_started=wall,
        )
        self._calls.append(call)
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
            for call in self._calls
        ]

    def _rows(self, now: float) -> list[Row]:
        """Every live channel, in the order Asterisk lists them (its hash buckets)."""
        rows = [row for call in self._calls for row in call.rows(now)]
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
        self._calls = [call for call in self._calls if call.end() > now]

    def _new_pair(self, exten: str, context: str, at: float, wall: float) -> LocalPair:
        """Allocate a Local pair's name and its two uniqueids (``<epoch>.<sequence>``)."""
        base = f"Local/{exten}@{context}-{self.next_channel_number & 0xFFFFFFFF:08x}"
        self.next_channel_number += 1
        first, second = self.next_uniqueid, self.next_uniqueid + 1
        self.next_uniqueid += 2
        epoch = int(wall)
        return LocalPair(base, at, (f"{epoch}.{first}", f"{epoch}.{second}"))


class _Usage:
    """A handler's CLI_SHOWUSAGE: the engine prints the command's usage text instead."""


_SHOW_USAGE = _Usage()
# What a handler returns: the output, the usage marker, or None for "not simulated".
_Answer = str | _Usage | None
