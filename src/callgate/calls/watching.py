"""Following an enterprise's calls as they change: the tracker's transitions of its calls only.

The tracker hands every stored transition to every subscriber; a feed keeps those of one
enterprise's calls, reading each new call's owner once (a call never changes owner).
"""

from __future__ import annotations

import asyncio

from callgate.calls.history import Subscription, Transition
from callgate.calls.reading import CallReads
from callgate.calls.tracker import CallTracker


class EnterpriseFeed:
    """``async for transition in feed``: a transition of the enterprise's calls, or None
    after ``quiet`` seconds without one (time for a keep-alive); it ends when the tracker
    stops. ``close()`` when done."""

    def __init__(
        self, subscription: Subscription, reads: CallReads, enterprise_number: str, quiet: float
    ) -> None:
        self._subscription = subscription
        self._reads = reads
        self._enterprise_number = enterprise_number
        self._quiet = quiet
        self._owned: dict[str, bool] = {}  # call id -> one of this enterprise's calls

    def __aiter__(self) -> EnterpriseFeed:
        return self

    async def __anext__(self) -> Transition | None:
        while True:
            try:
                transition = await asyncio.wait_for(anext(self._subscription), self._quiet)
            except TimeoutError:
                return None
            # Outside the wait: a read cut short by the timeout would lose the transition.
            if await self._owns(transition.call_id):
                return transition

    async def _owns(self, call_id: str) -> bool:
        owned = self._owned.get(call_id)
        if owned is None:
            owned = self._owned[call_id] = await self._reads.owns(self._enterprise_number, call_id)
        return owned

    def close(self) -> None:
        self._subscription.close()


class Watching:
    def __init__(self, tracker: CallTracker, reads: CallReads) -> None:
        self._tracker = tracker
        self._reads = reads

    def feed(self, enterprise_number: str, *, quiet: float) -> EnterpriseFeed:
        """From now on: no transition stored after this call is missed."""
        return EnterpriseFeed(self._tracker.subscribe(), self._reads, enterprise_number, quiet)

    def follows(self, call_id: str) -> bool:
        """Whether this process's tracker follows the call (another process may)."""
        return call_id in self._tracker.live_calls()
