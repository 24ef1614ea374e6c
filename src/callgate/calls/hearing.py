"""What a listening console's line means for the calls followed on its host. Pure.

``pbx.verbose`` reads a line into a ``Heard``; ``hear()`` says which followed call it concerns
and what changes: a state reached (as the listing would show it a moment later), the customer
pair learnt, and why a side ended, in Asterisk's words (``busy``, ``congestion``,
``no_answer``). Lines about channels of calls not followed here (another enterprise's, another
service's) concern none. The rules come from ``recordings/asterisk/console-verbose-outcomes.txt``:

* ``<first;1> is ringing`` → ``ringing_agent``; ``<first;1> answered`` → ``agent_answered``;
* ``<customer;1> is ringing`` (a pair of the call's phone, after its agent answered) →
  ``ringing_customer``; ``<customer;1> answered <first;1>`` → ``connected``;
* ``<leg;1> is busy`` / ``is circuit-busy`` → that side said busy / congestion;
* ``Nobody picked up in N ms`` names no channel: it is Dial giving up on the customer, so it
  goes to the one call of the host whose customer has rung about N ms (none if that is not
  exactly one call: never a guess);
* ``Spawn extension (…) exited non-zero on '<first;2>'``: the agent's leg ended, and a Local
  pair takes its other half and whatever it dialled with it: the call is over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from callgate.calls.channels import CallChannels, Followed, derive
from callgate.domain.states import LIVE, RANK, CallState
from callgate.pbx.verbose import Heard, Said

# How far "Nobody picked up in N ms" may be from the ring time seen here (the listing's and the
# console's clocks differ by the round trips in between).
RING_SLACK = 1.5
_SIDE_WORDS = {Said.BUSY: "busy", Said.CONGESTION: "congestion"}


@dataclass(frozen=True, slots=True)
class Heed:
    """What one heard line changes for one call."""

    call_id: str
    state: CallState | None = None  # a state to move to (None: no move)
    reason: str = ""
    customer_base: str = ""  # the customer pair, once known
    agent_said: str | None = None  # "busy" | "congestion"
    customer_said: str | None = None  # "busy" | "congestion" | "no_answer"
    customer_ring_ms: int | None = None  # as Asterisk printed it (no_answer)


def hear(heard: Heard, calls: Sequence[Followed], now: float) -> Heed | None:
    """What ``heard`` changes for one of ``calls`` (the live calls of one host), or None."""
    if heard.said is Said.NO_ANSWER:
        return _nobody_picked_up(heard, calls, now)
    for call in calls:
        first = call.first_base + ";1"
        if heard.channel == first:
            return _agent(heard, call, now)
        if heard.channel == call.first_base + ";2" and heard.said is Said.ENDED:
            return _ended(call, now)
        if heard.said is Said.ANSWERED and heard.peer == first:
            base = _base(heard.channel)
            return _move(call, CallState.CONNECTED, "the customer answered", customer_base=base)
    owner = _customer_owner(heard.channel, calls)
    if owner is not None:
        return _customer(heard, owner)
    return None


def _agent(heard: Heard, call: Followed, now: float) -> Heed | None:
    if heard.said is Said.RINGING:
        return _move(call, CallState.RINGING_AGENT, "the agent's phone is ringing")
    if heard.said is Said.ANSWERED:
        return _move(call, CallState.AGENT_ANSWERED, "the agent answered; dialling the customer")
    if heard.said in _SIDE_WORDS:
        return Heed(call.call_id, agent_said=_SIDE_WORDS[heard.said])
    return None


def _customer(heard: Heard, call: Followed) -> Heed | None:
    base = _base(heard.channel)
    if heard.said is Said.RINGING:
        return _move(call, CallState.RINGING_CUSTOMER, "the customer's phone is ringing", base)
    if heard.said in _SIDE_WORDS:
        return Heed(call.call_id, customer_base=base, customer_said=_SIDE_WORDS[heard.said])
    if heard.said is Said.JOINED:
        return _move(call, CallState.CONNECTED, "the customer answered", customer_base=base)
    return None


def _customer_owner(channel: str, calls: Sequence[Followed]) -> Followed | None:
    """The call a customer leg belongs to: the one it was given, else the earliest-answered
    call of that phone still waiting for its pair (as ``channels.assign_channels`` does)."""
    if not channel.endswith(";1"):
        return None
    base = _base(channel)
    for call in calls:
        if call.customer_base == base:
            return call
    waiting = [
        call
        for call in calls
        if not call.customer_base
        and base.startswith(call.customer_prefix)
        and call.state in LIVE[2:]  # the agent answered: Dial rings the customer now
    ]
    return min(waiting, key=lambda call: call.answered, default=None)


def _nobody_picked_up(heard: Heard, calls: Sequence[Followed], now: float) -> Heed | None:
    assert heard.ms is not None
    ringing = [
        call
        for call in calls
        if call.state in (CallState.AGENT_ANSWERED, CallState.RINGING_CUSTOMER)
        and abs((now - call.answered) - heard.ms / 1000) <= RING_SLACK
    ]
    if len(ringing) != 1:
        return None
    (call,) = ringing
    return Heed(call.call_id, customer_said="no_answer", customer_ring_ms=heard.ms)


def _ended(call: Followed, now: float) -> Heed | None:
    state, reason = derive(CallChannels(), call.state, now - call.started)
    if state is call.state:
        return None
    return Heed(call.call_id, state, reason)


def _move(call: Followed, state: CallState, reason: str, customer_base: str = "") -> Heed | None:
    """A forward move only (as a listing's), keeping what the line taught of the pair."""
    ahead = call.state in RANK and RANK[state] > RANK[call.state]
    if not ahead and not customer_base:
        return None
    return Heed(call.call_id, state if ahead else None, reason, customer_base)


def _base(channel: str) -> str:
    return channel.rsplit(";", 1)[0]
