"""What one ``core show channels concise`` listing says of the calls followed on a host.

Pure: no I/O, no clock. Asterisk 22.7 (``recordings/asterisk``): an originate makes the first leg
``Local/<ext>@<ctx>-X;1/;2``; the agent answering makes ``;1`` run ``Dial`` and the customer pair
``Local/<phone>@<ctx>-Y;1/;2`` appear at once; both ``;1`` then share a bridge id when the
customer answers; at the end every channel is gone. The states and their moves are
``callgate.domain.states``'.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from callgate.domain.states import LIVE, ORIGINATE_TIMEOUT, RANK, TERMINAL, CallState
from callgate.pbx.parsing import Channel

RINGING = frozenset({"Ring", "Ringing"})
# A resumed call's first leg must be about as old as the call: a much younger channel of the
# same name is another call (Asterisk restarted and its channel counter began again).
AGE_SLACK = 10.0


@dataclass(frozen=True, slots=True)
class CallChannels:
    """The channels of one call in one listing: its first leg pair and its customer pair."""

    first: tuple[Channel, ...] = ()
    customer: tuple[Channel, ...] = ()

    @classmethod
    def split(cls, channels: Iterable[Channel], first_base: str) -> CallChannels:
        """Split one call's channels: the first leg by its base name, the rest is the customer."""
        listed = list(channels)
        return cls(
            first=tuple(c for c in listed if c.base_name == first_base),
            customer=tuple(c for c in listed if c.base_name != first_base),
        )

    @property
    def gone(self) -> bool:
        return not self.first and not self.customer

    @property
    def first_leg(self) -> Channel | None:
        return _one(self.first)

    @property
    def customer_leg(self) -> Channel | None:
        return _one(self.customer)


def observe(channels: CallChannels) -> CallState | None:
    """The live state one listing shows, or None when every channel of the call is gone."""
    if channels.gone:
        return None
    first, customer = channels.first_leg, channels.customer_leg
    # Bridged: the same id on the first leg, or the first leg already gone mid-hangup.
    if customer and customer.bridge_id and (not first or first.bridge_id == customer.bridge_id):
        return CallState.CONNECTED
    if channels.customer:
        return CallState.RINGING_CUSTOMER
    if first is not None and first.state == "Up":
        return CallState.AGENT_ANSWERED
    if any(c.state in RINGING for c in channels.first):
        return CallState.RINGING_AGENT
    return CallState.INITIATED  # e.g. Down: created, not yet ringing


_LIVE_REASONS = {  # derive() never moves a call *to* initiated
    CallState.RINGING_AGENT: "the agent's phone is ringing",
    CallState.AGENT_ANSWERED: "the agent answered; dialling the customer",
    CallState.RINGING_CUSTOMER: "the customer's phone is ringing",
    CallState.CONNECTED: "the customer answered: agent and customer are bridged",
}


def derive(channels: CallChannels, previous: CallState, elapsed: float) -> tuple[CallState, str]:
    """The call's state after this listing, and why; ``elapsed``: seconds since the originate.

    A listing never moves a call backwards, and a call that ended stays ended.
    """
    if previous in TERMINAL:
        return previous, "already ended"
    seen = observe(channels)
    if seen is None:
        return _ended(previous, elapsed)
    if RANK[seen] <= RANK[previous]:
        return previous, "no change"
    return seen, _LIVE_REASONS[seen]


def _ended(previous: CallState, elapsed: float) -> tuple[CallState, str]:
    """How a call ended, from the last state seen before all its channels went away."""
    if previous is CallState.CONNECTED:
        return CallState.COMPLETED, "hung up after the conversation"
    if previous in (CallState.AGENT_ANSWERED, CallState.RINGING_CUSTOMER):
        return (
            CallState.CUSTOMER_NO_ANSWER,
            f"the customer did not answer (ended after {elapsed:.1f} s)",
        )
    if elapsed >= ORIGINATE_TIMEOUT - 1:  # the originate gave up on the agent
        return (
            CallState.AGENT_NO_ANSWER,
            "the agent did not answer within the originate's 30 s timeout",
        )
    return CallState.AGENT_NO_ANSWER, f"the agent's leg ended unanswered after {elapsed:.1f} s"


class Followed(Protocol):
    """What matching needs to know of a followed call (the tracker's record of it)."""

    call_id: str
    first_base: str  # "Local/150@inoffice-0000000a"
    first_uniqueid: str  # "" until seen (a resumed call)
    customer_prefix: str  # "Local/<phone>@<ctx>-"
    extension: str
    customer_base: str  # "" until matched
    started: float  # when the call was originated, same clock as ``now``
    state: CallState

    @property
    def answered(self) -> float:
        """When the agent was seen answering (inf: not yet)."""
        ...


def assign_channels(
    listing: Iterable[Channel], calls: Sequence[Followed], now: float
) -> dict[str, CallChannels]:
    """Split one host's listing between its followed calls, by call id.

    The first leg by its exact base name (and uniqueid once known). A customer pair by a bridge
    id shared with the first leg; else a pair given before stays; else a new pair (newer than
    the first leg, its ``;1`` showing the agent's extension as caller id) goes to a call whose
    agent answered, earliest answer first: two live calls to one phone never swap legs.
    """
    pairs: defaultdict[str, list[Channel]] = defaultdict(list)
    for channel in listing:
        pairs[channel.base_name].append(channel)
    firsts = {c.call_id: _first_pair(c, pairs.get(c.first_base, []), now) for c in calls}
    taken = {c.first_base for c in calls}
    given: dict[str, str] = {}  # call id -> customer pair base

    def give(base: str, call_id: str) -> None:
        if base not in taken and call_id not in given:
            given[call_id] = base
            taken.add(base)

    bridged = {leg.bridge_id: c.call_id for c in calls if (leg := _one(firsts[c.call_id]))}
    bridged.pop("", None)
    for base, channels in pairs.items():
        if (leg := _one(channels)) is not None and leg.bridge_id in bridged:
            give(base, bridged[leg.bridge_id])
    for call in calls:
        if call.customer_base in pairs:
            give(call.customer_base, call.call_id)
    # A call that had its pair never gets another: Dial to one Local target makes one pair.
    answered = [c for c in calls if not c.customer_base and _answered(c, firsts[c.call_id])]
    for call in sorted(answered, key=lambda c: (c.answered, _counter(c.first_base))):
        fresh = [
            base
            for base, channels in pairs.items()
            if base.startswith(call.customer_prefix)
            and base not in taken
            and _counter(base) > _counter(call.first_base)
            and (leg := _one(channels)) is not None
            and leg.caller_id == call.extension
        ]
        if fresh:
            give(min(fresh, key=_counter), call.call_id)
    customer = {call_id: tuple(pairs[base]) for call_id, base in given.items()}
    return {
        c.call_id: CallChannels(tuple(firsts[c.call_id]), customer.get(c.call_id, ()))
        for c in calls
    }


def _first_pair(call: Followed, channels: list[Channel], now: float) -> list[Channel]:
    """The call's first leg pair, unless the channels of that name are another call's."""
    leg = _one(channels)
    if leg is None:
        return channels
    if call.first_uniqueid:
        return channels if leg.uniqueid == call.first_uniqueid else []
    return channels if leg.duration + AGE_SLACK >= now - call.started else []


def _answered(call: Followed, first: list[Channel]) -> bool:
    leg = _one(first)
    return (leg is not None and leg.state == "Up") or call.state in LIVE[2:]


def _one(channels: Iterable[Channel]) -> Channel | None:
    """The ``;1`` half of a pair."""
    return next((channel for channel in channels if channel.half == "1"), None)


def _counter(base: str) -> int:
    """The hex counter Asterisk gives Local channels (``…-0000000a``): it only grows."""
    try:
        return int(base.rsplit("-", 1)[1], 16)
    except (IndexError, ValueError):
        return -1
