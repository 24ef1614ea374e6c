"""LiveCalls: the live-call caps per enterprise and per host, their release and resumption."""

from __future__ import annotations

import pytest

from callgate.calls.rate_limits import LIVE_RETRY_AFTER, LiveCalls, RateLimited


def test_the_enterprise_cap_refuses_the_next_call_and_frees_a_failed_ones_place() -> None:
    live = LiveCalls(per_enterprise=2, per_host=0, followed=lambda: ())
    live.reserve("a", "0367", "h1")
    live.reserve("b", "0367", "h2")
    with pytest.raises(RateLimited) as refused:
        live.reserve("c", "0367", "h3")
    assert refused.value.retry_after == LIVE_RETRY_AFTER
    assert "enterprise" in refused.value.message
    live.reserve("x", "0999", "h1")  # another enterprise has its own count
    live.release("a")  # its originate failed
    live.reserve("c", "0367", "h3")
    assert len(live) == 3


def test_the_host_cap_counts_every_enterprise_on_the_host() -> None:
    live = LiveCalls(per_enterprise=0, per_host=2, followed=lambda: ())
    live.reserve("a", "0367", "h1")
    live.reserve("b", "0999", "h1")
    with pytest.raises(RateLimited, match="host"):
        live.reserve("c", "0555", "h1")
    live.reserve("d", "0555", "h2")


def test_a_call_the_tracker_no_longer_follows_gives_its_place_back() -> None:
    followed: set[str] = set()
    live = LiveCalls(per_enterprise=1, per_host=0, followed=lambda: followed)
    live.reserve("a", "0367", "h1")
    with pytest.raises(RateLimited):  # still being dialled: not followed yet, but held
        live.reserve("b", "0367", "h1")
    live.placed("a")
    followed.add("a")
    with pytest.raises(RateLimited):  # followed: live
        live.reserve("b", "0367", "h1")
    followed.discard("a")  # ended
    live.reserve("b", "0367", "h1")
    assert len(live) == 1


def test_adopted_calls_of_a_previous_run_count_once() -> None:
    followed = {"old-1", "old-2"}
    live = LiveCalls(per_enterprise=2, per_host=0, followed=lambda: followed)
    live.adopt([("old-1", "0367", "h1"), ("old-2", "0367", "h1"), ("old-1", "0367", "h1")])
    assert len(live) == 2
    with pytest.raises(RateLimited):
        live.reserve("new", "0367", "h1")
    followed.discard("old-1")
    live.reserve("new", "0367", "h1")


def test_zero_turns_a_cap_off() -> None:
    live = LiveCalls(per_enterprise=0, per_host=0, followed=lambda: ())
    for number in range(100):
        live.reserve(str(number), "0367", "h1")
    assert len(live) == 100


def test_an_enterprise_s_own_cap_replaces_the_default() -> None:
    live = LiveCalls(per_enterprise=1, per_host=0, followed=lambda: ())
    live.reserve("a", "0367", "h1", enterprise_cap=2)
    live.reserve("b", "0367", "h1", enterprise_cap=2)
    with pytest.raises(RateLimited):
        live.reserve("c", "0367", "h1", enterprise_cap=2)
    live.reserve("d", "0999", "h1")
    with pytest.raises(RateLimited):
        live.reserve("e", "0999", "h1")
