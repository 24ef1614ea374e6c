"""calls.watching: transitions routed to their own enterprise's feeds only (nothing read to
filter them), keep-alive gaps, a cap per enterprise, a disabled enterprise's feeds end."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from callgate.calls import watching
from callgate.calls.history import Transition
from callgate.calls.tracker import CallTracker
from callgate.calls.watching import TooManyStreams, Watching
from callgate.db.executor import Executor
from callgate.domain.states import CallState
from callgate.settings import Settings

OURS, THEIRS = "0367", "0999"


class Enterprises:
    """The database as `active_numbers` reads it; counts the reads."""

    def __init__(self, active: set[str]) -> None:
        self.active = active
        self.reads = 0

    async def rows(self, _statement: object, _values: object = None) -> Sequence[dict[str, Any]]:
        self.reads += 1
        return [{"number": number} for number in self.active]


def _tracker() -> CallTracker:
    return CallTracker(cast(Any, None), cast(Any, None), Settings())


def _move(call_id: str, state: CallState, enterprise: str) -> Transition:
    return Transition(call_id, state, datetime.now(UTC), "test", enterprise_number=enterprise)


async def test_each_feed_gets_its_own_enterprises_calls_only() -> None:
    tracker, database = _tracker(), Enterprises({OURS, THEIRS})
    cases = Watching(tracker, cast(Executor, database), streams_per_enterprise=5)
    ours, theirs = await cases.feed(OURS, quiet=5.0), await cases.feed(THEIRS, quiet=5.0)
    everything = tracker.subscribe()  # `calls watch`: every enterprise's
    for call_id, state, owner in [
        ("b", CallState.RINGING_AGENT, THEIRS),
        ("a", CallState.RINGING_AGENT, OURS),
        ("b", CallState.CONNECTED, THEIRS),
        ("a", CallState.CONNECTED, OURS),
    ]:
        tracker._publish(_move(call_id, state, owner))
    await tracker.stop()
    seen = [(t.call_id, t.state) async for t in ours if t is not None]
    assert seen == [("a", CallState.RINGING_AGENT), ("a", CallState.CONNECTED)]
    assert [t.call_id async for t in theirs if t is not None] == ["b", "b"]
    assert [t.call_id async for t in everything] == ["b", "a", "b", "a"]
    await cases.aclose()


async def test_quiet_gives_none_then_the_transition() -> None:
    tracker = _tracker()
    cases = Watching(tracker, cast(Executor, Enterprises({OURS})), streams_per_enterprise=5)
    feed = await cases.feed(OURS, quiet=0.02)
    assert await anext(feed) is None  # nothing within `quiet`: time for a keep-alive
    tracker._publish(_move("a", CallState.RINGING_AGENT, OURS))
    found = await anext(feed)
    assert found is not None and found.call_id == "a"
    feed.close()
    assert [t async for t in feed] == []
    await cases.aclose()


async def test_feeds_per_enterprise_are_capped_and_a_closed_one_frees_its_place() -> None:
    cases = Watching(_tracker(), cast(Executor, Enterprises({OURS})), streams_per_enterprise=2)
    first, _second = await cases.feed(OURS, quiet=5.0), await cases.feed(OURS, quiet=5.0)
    with pytest.raises(TooManyStreams):
        await cases.feed(OURS, quiet=5.0)
    await cases.feed(THEIRS, quiet=5.0)  # another enterprise's share is its own
    first.close()
    await cases.feed(OURS, quiet=5.0)
    await cases.aclose()


async def test_a_disabled_enterprises_feeds_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watching, "RECHECK", 0.05)
    database = Enterprises({OURS, THEIRS})
    cases = Watching(_tracker(), cast(Executor, database), streams_per_enterprise=5)
    ours, theirs = await cases.feed(OURS, quiet=0.01), await cases.feed(THEIRS, quiet=0.01)
    database.active = {THEIRS}  # `callgate enterprise disable 0367`
    ended = [t async for t in ours]  # keep-alives until the check closes it
    assert set(ended) <= {None}
    assert await anext(theirs) is None  # still open
    assert database.reads >= 1
    theirs.close()
    await asyncio.sleep(0.15)
    assert cases._feeds == {}  # no key stays for an enterprise without feeds
    await cases.aclose()
