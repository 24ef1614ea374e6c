"""One simulated call: what its channels show at any moment, as a pure function of time.

The shapes come from ``call-lifecycle-answered.txt``, ``call-lifecycle-agent-no-answer.txt``
and ``console-verbose-outcomes.repr.txt`` (Asterisk 22.7 running the README's dialplan, all in
``recordings/asterisk``). Times are seconds since the originate:

* ``[0, SETTLE)``: the originate's pair in its first states, ``;1`` Down in AppDial2 and
  ``;2`` Ring in ``(None)`` (no dialplan step yet), whether or not the call will go on.
* a doomed originate (no such context, or no such extension in it) keeps those states for
  ``DOOMED_LIFETIME``, then vanishes: core_local.c refuses the call (a NOTICE, see ``script``).
* an agent who is busy (or congested) runs ``Busy(5)`` (``Congestion(5)``) at ``SETTLE``; the
  originate sees it ``INDICATION_DELAY`` later and everything ends.
* ``[SETTLE, A)``: the agent pair rings. ``;1`` Ringing in AppDial2, ``;2`` Ring in ``Wait(A)``.
* at ``A`` the agent answers: ``;2`` runs ``Answer`` for ``AGENT_ANSWER_WAIT``, then waits in
  ``Wait(60)``; ``;1`` runs ``Dial(<appdata>)`` and the customer pair appears (its ``;1``
  ringing in AppDial, its ``;2`` in ``Wait(C)``).
* at ``A+C`` the customer answers (both ``;1`` legs share a bridge id; the customer ``;2`` sits
  in ``Answer`` for 0.5 s, then in ``Wait(talk)``; when that ends everything hangs up), or is
  busy/congested (``Busy(5)``, seen ``INDICATION_DELAY`` later, and everything ends).
* a customer who does not answer rings until the first of: Dial's own timeout (``Dial(…,5)``),
  the customer's ``Wait()`` running out, the agent's ``Wait(60)`` running out.
* an agent that does not answer is given up by the originate's own 30 s timeout
  (``Scenario.originate_timeout``: shorter in tests that must not wait 30 s).

A's times count from the originate, as before ``SETTLE`` was simulated: a scenario's "answers
after 1 s" still means 1 s after the originate, not after the first dialplan step.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

from callgate.simulator.logtext import ConsoleLine

ORIGINATE_TIMEOUT = 30.0  # res_clioriginate: "given a timeout of 30 seconds"
ANSWER_SETTLE = 0.5  # __ast_answer() waits up to 500 ms for media on a channel that rang
NEVER_ANSWER_WAIT = 45.0  # the dialplan's extension 199: Wait(45), longer than the timeout
AMAFLAGS = 3  # AST_AMA_DOCUMENTATION, on every line of every transcript
# console-verbose-outcomes.repr.txt: the first listing, typed with the originate, shows the pair
# unstarted; "-- Called 150@inoffice" (the first step) follows about 1 ms later.
SETTLE = 0.001
# The same recording: a doomed pair is listed, and "a few milliseconds" later (README fact 1)
# it is gone and the NOTICE is printed.
DOOMED_LIFETIME = 0.002
# The same recording: "is busy" follows the Busy() step within the millisecond.
INDICATION_DELAY = 0.001
# The same recording: the agent's Wait(60) step comes 20 ms after its Answer() in every call.
AGENT_ANSWER_WAIT = 0.02
REFUSAL_ARG = "5"  # the dialplan's Busy(5) / Congestion(5)
HANGUP_PRIORITY = 6  # the dialplan's Hangup() after the last Wait()
OUTGOING = "(Outgoing Line)"

ANSWER, BUSY, CONGESTION = "answer", "busy", "congestion"
OUTCOMES = (ANSWER, BUSY, CONGESTION)
REFUSAL_APP = {BUSY: "Busy", CONGESTION: "Congestion"}
_OUTCOME_FIELDS = ("agent_outcome", "customer_outcome")
_NEVER_FIELDS = ("agent_answer_after", "customer_answer_after")
# sscanf("%lf"): blanks, a sign, digits with an optional point and exponent.
_SSCANF_FLOAT = re.compile(r"[ \t\n\r\f\v]*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")


@dataclass(frozen=True, slots=True)
class Scenario:
    """How the people on a call behave, in seconds; None means "never answers".

    ``agent_outcome``: ``answer`` (rings ``agent_answer_after`` s, then answers), ``busy`` or
    ``congestion`` (the agent's dialplan runs ``Busy(5)`` / ``Congestion(5)`` at once).
    ``customer_outcome``: what the customer's phone does after ringing
    ``customer_answer_after`` s: ``answer``, ``busy`` (``Busy(5)``) or ``congestion``.
    """

    agent_answer_after: float | None = 1.0
    customer_answer_after: float | None = 2.0
    talk: float = 20.0
    customer_ring_timeout: float = 30.0  # the customer leg's Wait() before it gives up
    agent_hold: float = 60.0  # the agent leg's Wait(60) after answering; its end hangs up too
    # The CLI originate's own timeout (fixed at 30 s in Asterisk): an agent who has not
    # answered by then is given up. Settable so that tests need not wait 30 s.
    originate_timeout: float = ORIGINATE_TIMEOUT
    agent_outcome: str = ANSWER
    customer_outcome: str = ANSWER

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in _OUTCOME_FIELDS:
                if value not in OUTCOMES:
                    raise ValueError(f"{item.name} must be one of {OUTCOMES}, not {value!r}")
            elif value is None and item.name in _NEVER_FIELDS:
                continue  # "never answers"
            elif value is None or not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{item.name} must be a finite number >= 0, not {value!r}")

    def to_json(self) -> dict[str, float | str | None]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Scenario:
        """Build from JSON; unknown keys are an error, missing ones take the defaults (so the
        JSON of an older client, without the outcome fields, still reads)."""
        known = {item.name for item in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown scenario fields: {sorted(unknown)}")
        values = {name: _json_value(name, value) for name, value in data.items()}
        return cls(**values)  # type: ignore[arg-type]  # __post_init__ checks each value

    @property
    def customer_wait(self) -> float:
        """The customer leg's ``Wait()``: until it answers or refuses, else its ring timeout."""
        c = self.customer_answer_after
        return c if c is not None and c < self.customer_ring_timeout else self.customer_ring_timeout


def _json_value(name: str, value: object) -> float | str | None:
    """One JSON value of a scenario field, as the field takes it."""
    if name in _OUTCOME_FIELDS:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be one of {OUTCOMES}")
        return value
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"{name} must be a number or null")


class Ending(enum.Enum):
    """Why a call's channels are gone (each ends with its own console lines, see ``script``)."""

    DOOMED = "no such context or extension"
    AGENT_REFUSED = "the agent's dialplan said busy or congestion"
    ORIGINATE_TIMEOUT = "the agent did not answer within the originate's timeout"
    NOT_SIMULATED = "the agent answered; what its Dial does is not simulated"
    DIAL_FAILED = "the agent answered; its Dial's Local channel has no such context/extension"
    CUSTOMER_REFUSED = "the customer's dialplan said busy or congestion"
    DIAL_TIMEOUT = "the customer did not answer within Dial's timeout"
    RING_TIMEOUT = "the customer's Wait() ran out without an answer"
    TALK_END = "the customer's Wait(talk) ran out after the call was answered"
    AGENT_HOLD_END = "the agent's Wait(60) ran out"
    HANGUP = "channel request hangup"


@dataclass(frozen=True, slots=True)
class Plan:
    """The moments of a call, in seconds since the originate, and why it ends."""

    end: float
    ending: Ending
    answer: float | None = None  # the agent's Answer() step
    customer: float | None = None  # the agent's Dial creates the customer pair
    outcome: float | None = None  # the customer answers, or its Busy()/Congestion() step
    bridge: float | None = None  # both ;1 legs join the bridge


@dataclass(frozen=True, slots=True)
class LocalPair:
    """A Local channel pair: ``<base>;1`` and ``<base>;2``, created at one instant."""

    base: str  # "Local/150@inoffice-00000006"
    created: float  # engine clock
    uniqueids: tuple[str, str]

    @property
    def first(self) -> str:
        return f"{self.base};1"

    @property
    def second(self) -> str:
        return f"{self.base};2"


@dataclass(slots=True)
class Call:
    """One originate and everything it led to.

    ``target`` is where the agent's Dial goes once the agent answers: ``(exten, context)`` of a
    Local channel, or None when nothing that the simulator plays follows (a Dial that fails, an
    originate to an extension or to another application); the call then ends at the answer.
    """

    seq: int  # originate order, to break ties between simultaneous events
    agent: LocalPair
    exten: str
    context: str
    appdata: str
    scenario: Scenario
    target: tuple[str, str] | None
    target_exists: bool  # the target's context and extension exist, so its channel can ring
    wall_started: float  # wall clock at the originate, for uniqueids of later channels
    device: str = ""  # the originate's <data> as typed: "Called 150@inoffice"
    peer: str = ""  # the Dial's channel as typed: "Called Local/+375…@inoffice"
    dial_timeout_ms: int | None = None  # Dial's own answer timeout, e.g. Dial(…,5): 5000
    doomed: bool = False  # no such context or extension: refused once the pair exists
    log_thread: int = 0  # the thread number in the call's log lines
    customer: LocalPair | None = None
    bridge_id: str | None = None
    hangup_at: float | None = None
    said: int = 0  # how many of its console lines (``script``) consoles were given
    script_cache: tuple[object, list[ConsoleLine]] | None = None  # ``script``'s, by state
    plan: Plan = field(init=False)

    def __post_init__(self) -> None:
        self.plan = _plan(self)

    @property
    def started(self) -> float:
        return self.agent.created

    def end(self) -> float:
        """When every channel of the call is gone (engine clock)."""
        natural = self.started + self.plan.end
        return natural if self.hangup_at is None else min(natural, self.hangup_at)

    def ending(self) -> Ending:
        """Why the call ends (or will end, if nothing changes)."""
        if self.hangup_at is not None and self.hangup_at < self.started + self.plan.end:
            return Ending.HANGUP
        return self.plan.ending

    def _events(self) -> list[tuple[float, int, str]]:
        """Events that give the call a name or an id, not applied yet: (time, order, kind)."""
        events = []
        if self.plan.customer is not None and self.customer is None:
            events.append((self.started + self.plan.customer, 0, "customer"))
        if self.plan.bridge is not None and self.bridge_id is None:
            events.append((self.started + self.plan.bridge, 1, "bridge"))
        # An event at the very end still happens: a Dial that fails allocates its pair first.
        return [event for event in events if event[0] <= self.end()]

    def pending(self, now: float) -> list[tuple[float, int, str]]:
        """Events not yet applied that happened by ``now``: (time, order, kind)."""
        return [event for event in self._events() if event[0] <= now]

    def next_event(self) -> float | None:
        """When the next event not yet applied happens (its console lines wait for it)."""
        return min((event[0] for event in self._events()), default=None)

    def wall_at(self, at: float) -> float:
        return self.wall_started + (at - self.started)

    def bridged(self, elapsed: float) -> bool:
        return self.plan.bridge is not None and elapsed >= self.plan.bridge

    def customer_rings(self) -> bool:
        """Whether the customer pair exists and plays (its context and extension exist)."""
        return self.customer is not None and self.target is not None and self.target_exists

    def agent_priority(self, elapsed: float) -> int:
        """The agent ``;2``'s dialplan priority: NoOp 1, Ringing/Busy 2, Wait 3, Answer 4 …"""
        plan = self.plan
        if elapsed < SETTLE:
            return 1
        if plan.ending is Ending.AGENT_REFUSED:
            return 2
        if plan.answer is None or elapsed < plan.answer:
            return 3
        return 4 if elapsed < plan.answer + AGENT_ANSWER_WAIT else 5

    def customer_priority(self, elapsed: float) -> int:
        """The customer ``;2``'s priority: Wait 3, Answer or Busy/Congestion 4, Wait(talk) 5."""
        plan = self.plan
        if plan.outcome is None or elapsed < plan.outcome:
            return 3
        if plan.bridge is None or elapsed < plan.bridge + ANSWER_SETTLE:
            return 4
        return 5

    def agent_wait(self) -> float:
        """The agent leg's ``Wait()`` while it rings."""
        answer = self.scenario.agent_answer_after
        return NEVER_ANSWER_WAIT if answer is None else answer

    def rows(self, now: float) -> list[Row]:
        """The channels alive at ``now``, in creation order (the engine sorts them)."""
        if now >= self.end():
            return []
        elapsed = now - self.started
        first, second = self._agent_fields(elapsed)
        rows = [Row.make(self.agent, 0, first), Row.make(self.agent, 1, second)]
        if self.customer is not None and self.customer_rings():
            first, second = self._customer_fields(elapsed)
            rows += [Row.make(self.customer, 0, first), Row.make(self.customer, 1, second)]
        return rows

    def _agent_fields(self, elapsed: float) -> tuple[_Fields, _Fields]:
        ctx, ext, s = self.context, self.exten, self.scenario
        priority = self.agent_priority(elapsed)
        if elapsed < SETTLE or self.doomed:
            return (
                (ctx, ext, 1, "Down", "AppDial2", OUTGOING, "", ""),
                (ctx, ext, 1, "Ring", "(None)", "", "", ""),
            )
        if self.plan.ending is Ending.AGENT_REFUSED:
            app = REFUSAL_APP[s.agent_outcome]  # indicate_busy(): AST_STATE_BUSY, "Busy"
            return (
                (ctx, ext, 1, "Down", "AppDial2", OUTGOING, "", ""),
                (ctx, ext, priority, "Busy", app, REFUSAL_ARG, "", ""),
            )
        if priority == 3:
            return (
                (ctx, ext, 1, "Ringing", "AppDial2", OUTGOING, "", ""),
                (ctx, ext, 3, "Ring", "Wait", dialplan_arg(self.agent_wait()), "", ""),
            )
        bridge = (self.bridge_id or "") if self.bridged(elapsed) else ""
        first = (ctx, ext, 1, "Up", "Dial", self.appdata, "", bridge)
        if priority == 4:
            return first, (ctx, ext, 4, "Up", "Answer", "", "", "")
        return first, (ctx, ext, 5, "Up", "Wait", dialplan_arg(s.agent_hold), "", "")

    def _customer_fields(self, elapsed: float) -> tuple[_Fields, _Fields]:
        assert self.target is not None  # only called for a customer pair that plays
        phone, phone_ctx = self.target
        ctx, ext, s = self.context, self.exten, self.scenario
        priority = self.customer_priority(elapsed)
        if self.bridged(elapsed):
            # Once connected, the dialed ;1 loses its extension (transcript, t=+3.02s).
            first = (ctx, "", 1, "Up", "AppDial", OUTGOING, ext, self.bridge_id or "")
            if priority == 4:
                return first, (phone_ctx, phone, 4, "Up", "Answer", "", "", "")
            return first, (phone_ctx, phone, 5, "Up", "Wait", dialplan_arg(s.talk), "", "")
        # The dialed ;1 inherits the caller's context and extension, and shows the agent's
        # extension as its caller id.
        first = (ctx, ext, 1, "Ringing", "AppDial", OUTGOING, ext, "")
        if priority == 4:  # Busy()/Congestion(), until the Dial sees it
            app = REFUSAL_APP[s.customer_outcome]
            return first, (phone_ctx, phone, 4, "Busy", app, REFUSAL_ARG, "", "")
        return first, (phone_ctx, phone, 3, "Ring", "Wait", dialplan_arg(s.customer_wait), "", "")


# context, exten, priority, state, application, data, caller id, bridge id
_Fields = tuple[str, str, int, str, str, str, str, str]


@dataclass(frozen=True, slots=True)
class Row:
    """One ``core show channels concise`` line, minus the duration that depends on "now"."""

    name: str
    head: str  # "<name>!<context>!...!<amaflags>!"
    tail: str  # "!<bridge id>!<uniqueid>"
    created: float

    @classmethod
    def make(cls, pair: LocalPair, half: int, values: _Fields) -> Row:
        """Fields: context exten priority state application data callerid, then bridge id."""
        context, exten, priority, state, app, data, caller, bridge = values
        name = f"{pair.base};{half + 1}"
        # accountcode and peeraccount are always empty here, as in every transcript line.
        head = f"{name}!{context}!{exten}!{priority}!{state}!{app}!{data}!{caller}!!!{AMAFLAGS}!"
        return cls(name, head, f"!{bridge}!{pair.uniqueids[half]}", pair.created)

    def line(self, now: float) -> str:
        """The full line; the duration is whole seconds since the channel was created."""
        return f"{self.head}{int(now - self.created)}{self.tail}\n"


def _plan(call: Call) -> Plan:
    """The moments of ``call`` (see the module docstring), fixed at the originate."""
    s = call.scenario
    if call.doomed:
        return Plan(DOOMED_LIFETIME, Ending.DOOMED)
    if s.agent_outcome != ANSWER:
        return Plan(SETTLE + INDICATION_DELAY, Ending.AGENT_REFUSED)
    if s.agent_answer_after is None or s.agent_answer_after >= s.originate_timeout:
        return Plan(s.originate_timeout, Ending.ORIGINATE_TIMEOUT)
    a = max(s.agent_answer_after, SETTLE)  # nothing answers before the dialplan has started
    if call.target is None:
        return Plan(a, Ending.NOT_SIMULATED, answer=a)
    if not call.target_exists:
        return Plan(a, Ending.DIAL_FAILED, answer=a, customer=a)
    return _customer_plan(call, a)


def _customer_plan(call: Call, a: float) -> Plan:
    """The plan of a call whose agent answered at ``a`` and dialled a customer who exists."""
    s = call.scenario
    hold_end = a + AGENT_ANSWER_WAIT + s.agent_hold
    dial_end = math.inf if call.dial_timeout_ms is None else a + call.dial_timeout_ms / 1000
    c = s.customer_answer_after
    outcome = a + c if c is not None and c < s.customer_ring_timeout else None
    if outcome is not None and outcome < min(dial_end, hold_end):
        if s.customer_outcome != ANSWER:
            end = outcome + INDICATION_DELAY
            return Plan(end, Ending.CUSTOMER_REFUSED, answer=a, customer=a, outcome=outcome)
        talk_end = outcome + ANSWER_SETTLE + s.talk
        ending = Ending.TALK_END if talk_end < hold_end else Ending.AGENT_HOLD_END
        end = min(talk_end, hold_end)
        return Plan(end, ending, answer=a, customer=a, outcome=outcome, bridge=outcome)
    ring_end = a + s.customer_ring_timeout
    end, ending = min(
        (dial_end, Ending.DIAL_TIMEOUT),
        (ring_end, Ending.RING_TIMEOUT),
        (hold_end, Ending.AGENT_HOLD_END),
        key=lambda choice: choice[0],
    )
    return Plan(end, ending, answer=a, customer=a)


def dialplan_arg(seconds: float) -> str:
    """A number as a dialplan argument: ``Wait(1)`` rather than ``Wait(1.0)``."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def local_data(data: str) -> tuple[str, str]:
    """``<exten>@<context>[/options]`` of a Local channel; no context means ``default``."""
    data = data.split("/", 1)[0]
    exten, _, context = data.partition("@")
    return exten, context or "default"


def dial_peer(appdata: str) -> str:
    """The channel(s) argument of ``Dial(<appdata>)``, as typed."""
    return appdata.split(",", 1)[0]


def dial_target(appdata: str) -> tuple[str, str] | None:
    """Where ``Dial(<appdata>)`` rings, if it is one Local channel; None if the Dial fails."""
    peer = dial_peer(appdata)
    tech, slash, data = peer.partition("/")
    if not slash or tech.lower() != "local" or "&" in peer:
        return None  # no argument, another technology, or several peers: not simulated
    return local_data(data)


def dial_timeout_ms(appdata: str) -> int | None:
    """Dial's answer timeout in ms, read as app_dial.c's dial_exec_full() reads its second
    argument (``sscanf("%lf")`` of the part before any ``^``, seconds); None: no timeout."""
    arguments = appdata.split(",")
    if len(arguments) < 2:
        return None
    match = _SSCANF_FLOAT.match(arguments[1].split("^", 1)[0])
    seconds = float(match.group(1)) if match else 0.0
    return int(seconds * 1000) if seconds > 0 else None  # C's double-to-int truncation
