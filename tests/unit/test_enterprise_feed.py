"""calls.watching.EnterpriseFeed: one enterprise's transitions only, keep-alive gaps, its end."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from callgate.calls.history import Subscription, Transition
from callgate.calls.reading import CallReads
from callgate.calls.watching import EnterpriseFeed
from callgate.domain.states import CallState

OURS, THEIRS = "0367", "0999"


class Owners(CallReads):
    """Who owns each call, as the database would say; counts the reads."""

    def __init__(self, owners: dict[str, str], delay: float = 0.0) -> None:
        self._owners = owners
        self._delay = delay
        self.reads: list[str] = []

    async def owns(self, enterprise_number: str, call_id: str) -> bool:
        self.reads.append(call_id)
        await asyncio.sleep(self._delay)
        return self._owners.get(call_id) == enterprise_number


def _move(call_id: str, state: CallState) -> Transition:
    return Transition(call_id, state, datetime.now(UTC), "test")


async def test_only_the_enterprises_calls_each_owner_read_once() -> None:
    subscription = Subscription(set(), 100)
    reads = Owners({"a": OURS, "b": THEIRS})
    feed = EnterpriseFeed(subscription, reads, OURS, quiet=5.0)
    for call_id, state in [("b", CallState.RINGING_AGENT), ("a", CallState.RINGING_AGENT)]:
        subscription.offer(_move(call_id, state))
    subscription.offer(_move("b", CallState.CONNECTED))
    subscription.offer(_move("a", CallState.CONNECTED))
    subscription.close()
    seen = [(t.call_id, t.state) async for t in feed if t is not None]
    assert seen == [("a", CallState.RINGING_AGENT), ("a", CallState.CONNECTED)]
    assert sorted(reads.reads) == ["a", "b"]  # a call never changes owner: read once


async def test_quiet_gives_none_and_a_slow_owner_read_loses_nothing() -> None:
    subscription = Subscription(set(), 100)
    feed = EnterpriseFeed(subscription, Owners({"a": OURS}, delay=0.1), OURS, quiet=0.02)
    assert await anext(feed) is None  # nothing within `quiet`: time for a keep-alive
    subscription.offer(_move("a", CallState.RINGING_AGENT))
    # The owner's read takes longer than `quiet`: the transition still comes, not a gap.
    found = await anext(feed)
    assert found is not None and found.call_id == "a"
    feed.close()
    assert [t async for t in feed] == []
