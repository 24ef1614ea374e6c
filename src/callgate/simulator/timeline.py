"""One simulated call: what its channels show at any moment, as a pure function of time.

The shapes come from ``call-lifecycle-answered.txt`` and ``call-lifecycle-agent-no-answer.txt``
(Asterisk 22.7 running the README's dialplan). Times are seconds since the originate:

* ``[0, A)``: the agent pair rings. ``;1`` Ringing in AppDial2, ``;2`` Ring in ``Wait(A)``.
* at ``A`` the agent answers: ``;1`` runs ``Dial(<appdata>)``, ``;2`` waits in ``Wait(60)``,
  and the customer pair appears (its ``;1`` ringing in AppDial, its ``;2`` in ``Wait(C)``).
* at ``A+C`` the customer answers: both ``;1`` legs share a bridge id; the customer ``;2`` sits
  in ``Answer`` for 0.5 s (Answer() waits that long for media a Local leg never sends), then in
  ``Wait(talk)``; when that ends everything hangs up at once.
* an agent that does not answer is given up by the originate's own 30 s timeout
  (``Scenario.originate_timeout``: shorter in tests that must not wait 30 s).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

ORIGINATE_TIMEOUT = 30.0  # res_clioriginate: "given a timeout of 30 seconds"
ANSWER_SETTLE = 0.5  # __ast_answer() waits up to 500 ms for media on a channel that rang
NEVER_ANSWER_WAIT = 45.0  # the dialplan's extension 199: Wait(45), longer than the timeout
AMAFLAGS = 3  # AST_AMA_DOCUMENTATION, on every line of every transcript


@dataclass(frozen=True, slots=True)
class Scenario:
    """How the people on a call behave, in seconds; None means "never answers"."""

    agent_answer_after: float | None = 1.0
    customer_answer_after: float | None = 2.0
    talk: float = 20.0
    customer_ring_timeout: float = 30.0  # the customer leg's Wait() before it gives up
    agent_hold: float = 60.0  # the agent leg's Wait(60) after answering; its end hangs up too
    # The CLI originate's own timeout (fixed at 30 s in Asterisk): an agent who has not
    # answered by then is given up. Settable so that tests need not wait 30 s.
    originate_timeout: float = ORIGINATE_TIMEOUT

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None and item.name in ("agent_answer_after", "customer_answer_after"):
                continue  # "never answers"
            if value is None or not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{item.name} must be a finite number >= 0, not {value!r}")

    def to_json(self) -> dict[str, float | None]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Scenario:
        """Build from JSON; unknown keys are an error, missing ones take the defaults."""
        known = {item.name for item in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown scenario fields: {sorted(unknown)}")
        values: dict[str, float | None] = {}
        for name, value in data.items():
            if value is None:
                values[name] = None
            elif isinstance(value, int | float) and not isinstance(value, bool):
                values[name] = float(value)
            else:
                raise ValueError(f"{name} must be a number or null")
        return cls(**values)  # type: ignore[arg-type]  # __post_init__ refuses a None talk


@dataclass(frozen=True, slots=True)
class LocalPair:
    """A Local channel pair: ``<base>;1`` and ``<base>;2``, created at one instant."""

    base: str  # "Local/150@inoffice-00000006"
    created: float  # engine clock
    uniqueids: tuple[str, str]


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
    target_exists: bool  # the target's context exists, so its channel can ring
    wall_started: float  # wall clock at the originate, for uniqueids of later channels
    customer: LocalPair | None = None
    bridge_id: str | None = None
    hangup_at: float | None = None
    # Offsets since the originate, fixed at creation (see _plan()).
    plan: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.plan = _plan(self.scenario, self.target is not None and self.target_exists)
        if self.target is None:  # no customer leg will be created, nothing plays after answer
            self.plan.pop("customer", None)

    @property
    def started(self) -> float:
        return self.agent.created

    def end(self) -> float:
        """When every channel of the call is gone (engine clock)."""
        natural = self.started + self.plan["end"]
        return natural if self.hangup_at is None else min(natural, self.hangup_at)

    def pending(self, now: float) -> list[tuple[float, int, str]]:
        """Events not yet applied that happened by ``now``: (time, order, kind)."""
        events = []
        if "customer" in self.plan and self.customer is None:
            events.append((self.started + self.plan["customer"], 0, "customer"))
        if "bridge" in self.plan and self.bridge_id is None:
            events.append((self.started + self.plan["bridge"], 1, "bridge"))
        # An event at the very end still happens: a Dial that fails allocates its pair first.
        return [event for event in events if event[0] <= now and event[0] <= self.end()]

    def wall_at(self, at: float) -> float:
        return self.wall_started + (at - self.started)

    def rows(self, now: float) -> list[Row]:
        """The channels alive at ``now``, in creation order (the engine sorts them)."""
        if now >= self.end():
            return []
        elapsed, plan, s = now - self.started, self.plan, self.scenario
        answered = "answer" in plan and elapsed >= plan["answer"]
        bridged = "bridge" in plan and elapsed >= plan["bridge"]
        bridge = (self.bridge_id or "") if bridged else ""
        ctx, ext = self.context, self.exten
        if answered:
            first = (ctx, ext, 1, "Up", "Dial", self.appdata, "", bridge)
            second = (ctx, ext, 5, "Up", "Wait", _arg(s.agent_hold), "", "")
        else:
            wait = NEVER_ANSWER_WAIT if s.agent_answer_after is None else s.agent_answer_after
            first = (ctx, ext, 1, "Ringing", "AppDial2", "(Outgoing Line)", "", "")
            second = (ctx, ext, 3, "Ring", "Wait", _arg(wait), "", "")
        rows = [Row.make(self.agent, 0, first), Row.make(self.agent, 1, second)]
        if self.customer is not None and self.target is not None and self.target_exists:
            phone, phone_ctx = self.target
            if bridged:
                # Once connected, the dialed ;1 loses its extension (transcript, t=+3.02s).
                first = (ctx, "", 1, "Up", "AppDial", "(Outgoing Line)", ext, bridge)
                if elapsed >= plan["bridge"] + ANSWER_SETTLE:
                    second = (phone_ctx, phone, 5, "Up", "Wait", _arg(s.talk), "", "")
                else:
                    second = (phone_ctx, phone, 4, "Up", "Answer", "", "", "")
            else:
                ring = plan.get("customer_wait", s.customer_ring_timeout)
                # The dialed ;1 inherits the caller's context and extension, and shows the
                # agent's extension as its caller id.
                first = (ctx, ext, 1, "Ringing", "AppDial", "(Outgoing Line)", ext, "")
                second = (phone_ctx, phone, 3, "Ring", "Wait", _arg(ring), "", "")
            rows += [Row.make(self.customer, 0, first), Row.make(self.customer, 1, second)]
        return rows


@dataclass(frozen=True, slots=True)
class Row:
    """One ``core show channels concise`` line, minus the duration that depends on "now"."""

    name: str
    head: str  # "<name>!<context>!...!<amaflags>!"
    tail: str  # "!<bridge id>!<uniqueid>"
    created: float

    @classmethod
    def make(
        cls, pair: LocalPair, half: int, values: tuple[str, str, int, str, str, str, str, str]
    ) -> Row:
        """Fields: context exten priority state application data callerid, then bridge id."""
        context, exten, priority, state, app, data, caller, bridge = values
        name = f"{pair.base};{half + 1}"
        # accountcode and peeraccount are always empty here, as in every transcript line.
        head = f"{name}!{context}!{exten}!{priority}!{state}!{app}!{data}!{caller}!!!{AMAFLAGS}!"
        return cls(name, head, f"!{bridge}!{pair.uniqueids[half]}", pair.created)

    def line(self, now: float) -> str:
        """The full line; the duration is whole seconds since the channel was created."""
        return f"{self.head}{int(now - self.created)}{self.tail}\n"


def _plan(s: Scenario, target_rings: bool) -> dict[str, float]:
    """The moments of a call, in seconds since the originate (see the module docstring)."""
    a, c = s.agent_answer_after, s.customer_answer_after
    if a is None or a >= s.originate_timeout:
        return {"end": s.originate_timeout}
    plan = {"answer": a, "customer": a}
    if not target_rings:  # the Dial fails (or nothing simulated follows): all hang up at once
        return plan | {"end": a}
    if c is not None and c < s.customer_ring_timeout:
        plan |= {"bridge": a + c, "customer_wait": c}
        end = a + c + ANSWER_SETTLE + s.talk
    else:
        end = a + s.customer_ring_timeout
    return plan | {"end": min(end, a + s.agent_hold)}


def _arg(seconds: float) -> str:
    """A number as a dialplan argument: ``Wait(1)`` rather than ``Wait(1.0)``."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def local_data(data: str) -> tuple[str, str]:
    """``<exten>@<context>[/options]`` of a Local channel; no context means ``default``."""
    data = data.split("/", 1)[0]
    exten, _, context = data.partition("@")
    return exten, context or "default"


def dial_target(appdata: str) -> tuple[str, str] | None:
    """Where ``Dial(<appdata>)`` rings, if it is one Local channel; None if the Dial fails."""
    peer = appdata.split(",", 1)[0]
    tech, slash, data = peer.partition("/")
    if not slash or tech.lower() != "local" or "&" in peer:
        return None  # no argument, another technology, or several peers: not simulated
    return local_data(data)
