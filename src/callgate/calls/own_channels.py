"""Which of a host's channels belong to one enterprise's calls (`GET /v1/channels`).

Enterprises may share a PBX host; a listing shows every channel on it, caller ids included. An
enterprise sees only the channels of its own calls: both halves of each Local pair its calls
created (the first leg and the customer leg stored with the call), and whatever is bridged to
one of those (the trunk leg that carries the customer's audio).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta

from callgate.pbx.parsing import Channel

# A call's channels may outlive its end by a moment (a hangup in progress): still its own.
RECENT = timedelta(seconds=60)
# Older calls are no longer live (the tracker ends them at start: `tracker.STALE_AFTER`).
OLDEST = timedelta(hours=6)


def own_channels(
    listing: Sequence[Channel], calls: Iterable[tuple[str | None, str | None, str | None]]
) -> list[Channel]:
    """The channels of ``listing`` that belong to ``calls`` (first leg, customer leg, bridge)."""
    bases: set[str] = set()
    bridges: set[str] = set()
    for first, customer, bridge in calls:
        bases.update(name.rsplit(";", 1)[0] for name in (first, customer) if name)
        if bridge:
            bridges.add(bridge)
    bridges.update(c.bridge_id for c in listing if c.bridge_id and c.base_name in bases)
    return [c for c in listing if c.base_name in bases or (c.bridge_id and c.bridge_id in bridges)]
