"""`python -m bench.ablation`'s services, started side by side as the command starts them, on
the service as it is now: the README sends people to the command, and each variant changes
the service's internals at start (`bench.ablation.prepare`), which the service's own changes
can break. It does not stand for what broke the command once (its variants shared one
database, where services coordinate as instances, and after the command's warm-up the shared
double-click guard answered a variant's call with 500): this test passes on one shared
database too, the coordination not yet under way this early."""

from __future__ import annotations

import contextlib

from bench import ablation, setup, ways

from tests.support.sshd import require_sshd


async def test_each_variant_serves_and_places_calls(pg_url: str) -> None:
    """``pg_url``: PostgreSQL must be reachable (the bench makes databases of its own)."""
    require_sshd()
    with setup.stage("callgate-test-ablation-") as stage:
        async with contextlib.AsyncExitStack() as stack:
            started = await ablation.start(stack, stage, ablation.DEFAULT)
            assert set(started) == {"full", "remembered", "bare"}
            for index in range(2):
                for lane, secret in started.values():  # a round: the same number on each
                    took = await ways.legacy_way(lane, secret, 100000 + index)
                    assert 0 < took < 10  # seconds; a call answered other than 200 raises
                    await stage.control.rx("channel request hangup all")
