"""Why each side of a call ended: the agent (the extension rung first) and the customer.

Pure: no I/O, no clock. A CRM tells a busy line from a phone nobody picked up (RetailCRM:
``answered | busy | cancel | failed | no answered``); the state machine (``states``) says only
which side did not answer. When a call ends, ``decide`` gives each side a ``SideResult`` from
the terminal state, the times the tracker saw, and what Asterisk itself said when someone heard
it (``Words``: its verbose console lines, ``recordings/asterisk/console-verbose-outcomes.txt``).

A channel listing shows channels only while they live: once a leg is gone it cannot say why,
so without Asterisk's words a side that did not answer is ``unknown``, never a guess. The one
exception is a fact: the CLI originate gives the agent 30 s (``states.ORIGINATE_TIMEOUT``), so
a first leg that rang that long and ended unanswered was not answered in time (``no_answer``).

==================  ===========================  ===========================================
terminal state      agent                        customer
==================  ===========================  ===========================================
completed           answered                     answered
customer_no_answer  answered                     unknown
agent_no_answer     no_answer after the 30 s     null (never dialled)
                    timeout, else unknown
canceled            answered if it had, else     answered if it had, canceled if it rang,
                    canceled                     null if never dialled
failed              failed, with the reason      null
lost                answered if it had, else     answered if it had, unknown if it was
                    unknown                      dialled, null if never dialled
==================  ===========================  ===========================================

What Asterisk said of a side wins over the row above for that side (an agent that said busy is
``busy``), but for ``failed``: the PBX created nothing, nothing of it can have been said.
Asterisk speaking of the customer proves the agent answered (Dial runs only then).

Ring times, in seconds: the agent's from the originate to its answer (or to the end when it
never answered), the customer's from the agent's answer to the customer's (or to the end), or
the milliseconds Asterisk printed (``Nobody picked up in 5000 ms``). None when they are not
known: a side never reached, a failed originate, the live sides of a ``lost`` call (its end is
when the tracker gave up, not when anything stopped ringing).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from callgate.domain.states import ORIGINATE_TIMEOUT, TERMINAL, CallState

# states._ended's slack: the leg's 30 s and the tracker's start of the call (when the originate
# was sent) are a round trip apart, on two clocks.
TIMEOUT_SLACK = 1.0


class SideOutcome(StrEnum):
    """How one side of a call ended."""

    # Stored as they are in calls.agent_outcome / customer_outcome (migration 0003 copies them).
    ANSWERED = "answered"
    BUSY = "busy"
    CONGESTION = "congestion"
    NO_ANSWER = "no_answer"
    CANCELED = "canceled"
    FAILED = "failed"
    UNKNOWN = "unknown"


R = SideOutcome
# What Asterisk's console lines can say of a side: "… answered", "… is busy", "Everyone is
# busy/congested at this time (1:1/0/0)", "Nobody picked up in 5000 ms".
SAYABLE = frozenset({R.ANSWERED, R.BUSY, R.CONGESTION, R.NO_ANSWER})


@dataclass(frozen=True, slots=True)
class SideResult:
    """One side's end: its outcome, how long it rang (s), and for ``failed`` the reason."""

    outcome: SideOutcome
    ring_s: float | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Sides:
    """Both sides of an ended call; None for a side never reached."""

    agent: SideResult | None
    customer: SideResult | None


@dataclass(frozen=True, slots=True)
class Words:
    """What Asterisk said of each side (its verbose console lines): the evidence ``decide``
    takes. None: it said nothing of that side, or nobody heard it.

    Only what those lines can say counts (``SAYABLE``): a ``canceled``, ``failed`` or
    ``unknown`` here is no word at all. ``customer_ring_ms``: the milliseconds Asterisk printed
    (``Nobody picked up in 5000 ms``), the customer's ring time when it said something of the
    customer.
    """

    agent: SideOutcome | None = None
    customer: SideOutcome | None = None
    customer_ring_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Seen:
    """When the tracker saw each phase begin, in seconds on any one clock; None: not seen.

    ``agent_answered``: the first leg answered (``agent_answered``); ``customer_seen``: the
    customer pair appeared (``ringing_customer``); ``connected``: both legs bridged.
    """

    originated: float
    ended: float
    agent_answered: float | None = None
    customer_seen: float | None = None
    connected: float | None = None


def decide(
    state: CallState,
    seen: Seen,
    *,
    reason: str | None = None,
    words: Words = Words(),
    originate_timeout: float = ORIGINATE_TIMEOUT,
) -> Sides:
    """Both sides of a call that ended in ``state`` (see the module docstring).

    ``reason``: the call's end reason, given to a ``failed`` agent. ValueError for a live state.
    """
    if state not in TERMINAL:
        raise ValueError(f"a call in {state.value} has not ended")
    if state is CallState.FAILED:  # the PBX created nothing: nothing rang, nothing was said of it
        return Sides(SideResult(R.FAILED, None, reason), None)
    agent_said = words.agent if words.agent in SAYABLE else None
    customer_said = words.customer if words.customer in SAYABLE else None
    # Dial rings the customer the instant the agent answers, and a bridge needs both: a later
    # phase seen proves the agent's answer by then at the latest.
    agent_up = _first(seen.agent_answered, seen.customer_seen, seen.connected)
    ended = (
        None if state is CallState.LOST else seen.ended
    )  # a lost call's end is not when it stopped

    agent = _agent_by_listing(state, seen, agent_up, ended, originate_timeout)
    if agent_said is not None:
        agent = _by_word(agent_said, seen.originated, agent_up, ended)
    elif customer_said is not None and agent.outcome is not R.ANSWERED:
        # Asterisk spoke of the customer: the agent's Dial ran, so the agent had answered.
        agent = SideResult(R.ANSWERED, _span(seen.originated, agent_up))

    if customer_said is not None:
        customer: SideResult | None = _by_word(customer_said, agent_up, seen.connected, ended)
        if words.customer_ring_ms is not None and words.customer_ring_ms >= 0:
            customer = SideResult(customer_said, round(words.customer_ring_ms / 1000, 3))
    elif agent.outcome is not R.ANSWERED:
        customer = None  # never dialled
    else:
        customer = _customer_by_listing(state, seen, agent_up, ended)
    return Sides(agent, customer)


def _agent_by_listing(
    state: CallState,
    seen: Seen,
    agent_up: float | None,
    ended: float | None,
    originate_timeout: float,
) -> SideResult:
    if agent_up is not None or state in (CallState.COMPLETED, CallState.CUSTOMER_NO_ANSWER):
        return SideResult(R.ANSWERED, _span(seen.originated, agent_up))
    rang = _span(seen.originated, ended)
    if state is CallState.AGENT_NO_ANSWER:
        timed_out = rang is not None and rang >= originate_timeout - TIMEOUT_SLACK
        return SideResult(R.NO_ANSWER if timed_out else R.UNKNOWN, rang)
    if state is CallState.CANCELED:
        return SideResult(R.CANCELED, rang)
    return SideResult(R.UNKNOWN, rang)  # lost


def _customer_by_listing(
    state: CallState, seen: Seen, agent_up: float | None, ended: float | None
) -> SideResult:
    if seen.connected is not None or state is CallState.COMPLETED:
        return SideResult(R.ANSWERED, _span(agent_up, seen.connected))
    rang = _span(agent_up, ended)
    if state is CallState.CANCELED:
        return SideResult(R.CANCELED, rang)
    return SideResult(R.UNKNOWN, rang)  # customer_no_answer, lost, or an agent's word


def _by_word(
    said: SideOutcome, start: float | None, answered: float | None, ended: float | None
) -> SideResult:
    """A side as Asterisk said it ended, rung as long as the tracker saw."""
    return SideResult(said, _span(start, answered if said is R.ANSWERED else ended))


def _first(*moments: float | None) -> float | None:
    return next((moment for moment in moments if moment is not None), None)


def _span(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, end - start), 3)
