"""The tracker never ends a call on a channel listing that had fragments (a caller's text cut
by a newline, see ``parsing.parse_channels``): such a listing may hide the call's channels."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from callgate.calls.tracker import CallTracker
from callgate.pbx import commands
from callgate.pbx.client import PbxClient
from callgate.pbx.parsing import Listing, parse_channels
from callgate.pbx.transport import HostTarget
from tests.support.tracking import LONG, Rig, make_rig, until

# The first part of an outsider's record whose caller id holds a newline: not a whole record.
FRAGMENT = "PJSIP/trunk-00000007!from-outside!s!2!Up!Wait!60!evil"


class _Listings:
    """The rig's PBX client, whose channel listings can be changed on the way: ``fragments``
    puts a fragment before each line (every channel is then next to one, so none is trusted),
    ``empty`` drops every line (the channels look gone, with nothing to doubt)."""

    def __init__(self, pbx: PbxClient) -> None:
        self.pbx = pbx
        self.change = ""
        self.seen: list[Listing] = []

    async def channels(self, target: HostTarget) -> Listing:
        (listing,) = await self.pbx.transport.run(target, [commands.CHANNELS_CONCISE])
        if self.change == "fragments":
            listing = "".join(f"{FRAGMENT}\n{line}\n" for line in listing.splitlines())
        elif self.change == "empty":
            listing = ""
        parsed = parse_channels(listing)
        self.seen.append(parsed)
        return parsed

    async def hangup(self, target: HostTarget, channel: str) -> list[str]:
        return await self.pbx.hangup(target, channel)

    def listen(self, target: HostTarget) -> None:
        return None  # no listening console: the listings alone follow the call


@pytest.fixture
async def rig(sqlite_url: str) -> AsyncIterator[Rig]:
    async with make_rig(sqlite_url) as made:
        yield made


async def test_a_listing_with_fragments_does_not_end_a_call(rig: Rig) -> None:
    rig.engine.set_scenario("150", LONG)
    listings = _Listings(rig.pbx)
    tracker = CallTracker(cast(Any, listings), rig.database, rig.settings, interval=0.05)
    rig.trackers.append(tracker)  # stopped by the rig
    await tracker.start()
    call_id = await rig.place(tracker)
    await rig.reaches(call_id, "connected")

    listings.change = "fragments"
    asked = len(listings.seen)

    async def ten_more() -> bool:
        return len(listings.seen) >= asked + 10

    await until(ten_more)
    doubtful = listings.seen[asked:]
    assert all(listing == [] and not listing.conclusive for listing in doubtful)
    assert await rig.state(call_id) == "connected" and call_id in tracker.live_calls()

    listings.change = ""  # the channels are back in view: the call goes on
    asked = len(listings.seen)
    await until(ten_more)
    assert await rig.state(call_id) == "connected"

    listings.change = "empty"  # the same channels missing from a conclusive listing: the end
    await rig.reaches(call_id, "completed", within=5)
