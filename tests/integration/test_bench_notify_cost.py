"""`python -m bench.notify_cost`, the measurement the README and `db.notifications` cite for
what a notification costs its hearer: with small counts, every notification sent is heard by
the listener's process, and its CPU per notification is measured (not zero, not absurd)."""

from __future__ import annotations

from bench import notify_cost


async def test_the_listener_hears_every_notification_and_its_cost_is_measured(
    pg_url: str,
) -> None:
    """``pg_url``: PostgreSQL must be reachable (the bench uses its admin database)."""
    for wake in (True, False):
        heard, per_ms = await notify_cost.measure(rate=100.0, seconds=1.0, wake=wake)
        assert 95 <= heard <= 101, heard
        assert 0 < per_ms < 50, per_ms
