"""The call state machine, and what one ``core show channels concise`` listing says of a call.

Pure: no I/O, no clock. Asterisk 22.7 (``recordings/asterisk``): an originate makes the first leg
``Local/<ext>@<ctx>-X;1/;2``; the agent answering makes ``;1`` run ``Dial`` and the customer pair
``Local/<phone>@<ctx>-Y;1/;2`` appear at once; both ``;1`` then share a bridge id when the
customer answers; at the end every channel is gone.

==================  =============================================  =======================
state               seen in a listing                              may become
==================  =============================================  =======================
initiated           originate verified: the first leg ``;1``       any later live state,
                                                                   failed, agent_no_answer
ringing_agent       first ``;1`` Ringing / ``;2`` Ring             later live states,
                                                                   agent_no_answer
agent_answered      first ``;1`` Up in Dial, no customer pair      later live states,
                                                                   customer_no_answer
ringing_customer    the customer pair, not bridged                 connected,
                                                                   customer_no_answer
connected           both ``;1`` legs share a bridge id             completed
completed           all gone after ``connected``                   (terminal)
failed              the PBX created nothing                        (terminal)
agent_no_answer     all gone before the agent answered             (terminal)
customer_no_answer  all gone after the agent answered, before      (terminal)
                    the customer did
canceled            all gone after a hangup through the API        (terminal)
lost                undecidable: host unreachable too long, or     (terminal)
                    the channels gone while nobody watched
==================  =============================================  =======================

Any live state may also become ``canceled`` or ``lost``. Live states only move forward, and
may be skipped (a slow poll may see ``connected`` right after ``ringing_agent``). Durations
come from the stored transition times (``durations``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

ORIGINATE_TIMEOUT = 30.0  # `channel originate` gives the first leg 30 s to answer


class CallState(StrEnum):
    """Where a call is; the values are stored in ``calls.state`` and ``call_events.state``."""

    INITIATED = "initiated"
    RINGING_AGENT = "ringing_agent"
    AGENT_ANSWERED = "agent_answered"
    RINGING_CUSTOMER = "ringing_customer"
    CONNECTED = "connected"
    COMPLETED = "completed"
    FAILED = "failed"
    AGENT_NO_ANSWER = "agent_no_answer"
    CUSTOMER_NO_ANSWER = "customer_no_answer"
    CANCELED = "canceled"
    LOST = "lost"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


LIVE = (
    CallState.INITIATED,
    CallState.RINGING_AGENT,
    CallState.AGENT_ANSWERED,
    CallState.RINGING_CUSTOMER,
    CallState.CONNECTED,
)
RANK = {state: rank for rank, state in enumerate(LIVE)}  # progress of a live call
TERMINAL = frozenset(CallState) - frozenset(LIVE)
# An API hangup or a lost trace can end a call in any state.
_ANY_END = {CallState.CANCELED, CallState.LOST}
TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    CallState.INITIATED: frozenset(
        {*LIVE[1:], CallState.FAILED, CallState.AGENT_NO_ANSWER, *_ANY_END}
    ),
    CallState.RINGING_AGENT: frozenset({*LIVE[2:], CallState.AGENT_NO_ANSWER, *_ANY_END}),
    CallState.AGENT_ANSWERED: frozenset({*LIVE[3:], CallState.CUSTOMER_NO_ANSWER, *_ANY_END}),
    CallState.RINGING_CUSTOMER: frozenset(
        {CallState.CONNECTED, CallState.CUSTOMER_NO_ANSWER, *_ANY_END}
    ),
    CallState.CONNECTED: frozenset({CallState.COMPLETED, *_ANY_END}),
} | {state: frozenset() for state in TERMINAL}


def is_terminal(state: CallState | str) -> bool:
    """True for the states a call never leaves."""
    return CallState(state) in TERMINAL


def can_transition(old: CallState | str, new: CallState | str) -> bool:
    """Whether a call in ``old`` may move to ``new`` (staying put is not a transition)."""
    return CallState(new) in TRANSITIONS[CallState(old)]


def steps(previous: CallState, new: CallState) -> tuple[CallState, ...]:
    """The transitions to record for a move from ``previous`` to ``new``.

    Dial rings the customer the very instant the agent answers (both show up in one listing),
    so ``ringing_customer`` seen from before ``agent_answered`` proves the agent answered at
    that same moment: it is recorded too. Other skipped states had an unknown time: not made up.
    """
    if new is CallState.RINGING_CUSTOMER and RANK[previous] < RANK[CallState.AGENT_ANSWERED]:
        return (CallState.AGENT_ANSWERED, CallState.RINGING_CUSTOMER)
    return (new,)


@dataclass(frozen=True, slots=True)
class CallDurations:
    """Seconds spent in each phase; None for a phase the call never reached or left."""

    agent_ringing: float | None  # originate -> agent answered (None: never answered)
    customer_ringing: float | None  # agent answered -> customer answered (or -> end)
    talk: float | None  # customer answered -> end
    total: float | None  # originate -> end


def durations(
    started_at: datetime,
    agent_answered_at: datetime | None,
    customer_answered_at: datetime | None,
    ended_at: datetime | None,
) -> CallDurations:
    """The phases of a call from ``calls.created_at`` and the times its transitions stored."""

    def span(start: datetime | None, end: datetime | None) -> float | None:
        return None if start is None or end is None else (end - start).total_seconds()

    return CallDurations(
        agent_ringing=span(started_at, agent_answered_at),
        customer_ringing=span(agent_answered_at, customer_answered_at or ended_at),
        talk=span(customer_answered_at, ended_at),
        total=span(started_at, ended_at),
    )
