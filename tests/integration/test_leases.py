"""Leases (`calls.leases`, `db.leases`): one owner per name at a time, a token that fences a
stale owner's writes, and trackers that follow only the hosts they own, adopt the calls
placed elsewhere on them and take a dead owner's hosts over.

The trackers here share one process and one database (the rig of `support.tracking`);
`test_instances` does the same with three `callgate serve` processes and a SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from callgate.calls.leases import Leases
from callgate.calls.reconcile import SWEEP_LEASE, reconcile_pending, settle_before, sweep_orphans
from callgate.calls.tracker import ADOPT_SOON, CallTracker
from callgate.db import leases
from callgate.db.call_tracking import TransitionResult, move
from callgate.db.calls import finish_call, finish_values, get_call
from callgate.db.executor import Database
from callgate.db.migrate import upgrade
from callgate.db.models import CALLS, HOST_LEASES, utcnow
from callgate.domain.states import CallState
from callgate.simulator import Scenario
from callgate.tasks import cancel_and_wait
from tests.support.database import opened
from tests.support.tracking import Rig, Watched, make_rig, new_call, until

S = CallState


@pytest.fixture
async def rig(pg_url: str) -> AsyncIterator[Rig]:
    async with make_rig(pg_url) as made:
        yield made


TALK = Scenario(agent_answer_after=0.3, customer_answer_after=0.3, talk=4.0)
NOTHING = {"success": 0, "failed": 0, "unknown": 0}


async def _migrated(db_url: str) -> None:
    await asyncio.to_thread(upgrade, db_url)


async def test_a_lease_has_one_owner_until_it_expires_or_is_released(db_url: str) -> None:
    await _migrated(db_url)
    async with opened(db_url) as database:
        now, ttl = utcnow(), timedelta(seconds=10)
        assert await leases.acquire(database, "h", "a", now=now, until=now + ttl) == 1
        assert await leases.acquire(database, "h", "b", now=now, until=now + ttl) is None
        assert await leases.renew_all(database, "a", now + ttl) == {"h": 1}
        # Expired: the next taker gets it, with a new token; the old owner's renewal fails.
        later = now + 2 * ttl
        assert await leases.acquire(database, "h", "b", now=later, until=later + ttl) == 2
        assert await leases.renew_all(database, "a", later + ttl) == {}
        await leases.release(database, "h", "a", 1)  # not a's any more: nothing changes
        assert await leases.acquire(database, "h", "a", now=later, until=later + ttl) is None
        await leases.release(database, "h", "b", 2)  # free at once, the token kept
        assert await leases.acquire(database, "h", "a", now=later, until=later + ttl) == 3
        assert await leases.token_of(database, "h") == 3


async def test_an_instance_knows_whether_it_is_alone(db_url: str) -> None:
    """`Leases.alone`: what only several instances need (the shared double-click guard and
    originate order) is skipped while no other instance holds its instance lease."""
    await _migrated(db_url)
    async with opened(db_url) as database:
        first, second = Leases(database, "a", 10.0), Leases(database, "b", 10.0)
        assert not first.alone  # before any look: not alone, the safe answer
        await first.acquire(first.instance)
        assert not await first.look_for_others() and first.alone
        await second.acquire(second.instance)
        assert await first.look_for_others() and not first.alone
        assert await second.look_for_others()
        await second.aclose()  # a clean stop lets its instance lease go
        assert not await first.look_for_others() and first.alone
        await first.aclose()


async def test_a_stale_owners_move_is_fenced(db_url: str) -> None:
    await _migrated(db_url)
    async with opened(db_url) as database:
        call_id = await new_call(database, host="10.0.0.1")
        now, ttl = utcnow(), timedelta(seconds=10)
        old = await leases.acquire(database, "10.0.0.1", "a", now=now, until=now)
        assert old == 1
        first = await _move(database, call_id, S.INITIATED, S.INITIATED, ("10.0.0.1", old))
        assert first.applied
        new = await leases.acquire(database, "10.0.0.1", "b", now=now + ttl, until=now + 2 * ttl)
        assert new == 2
        stale = await _move(database, call_id, S.INITIATED, S.RINGING_AGENT, ("10.0.0.1", old))
        assert (stale.applied, stale.fenced, stale.current) == (False, True, S.INITIATED)
        owner = await _move(database, call_id, S.INITIATED, S.RINGING_AGENT, ("10.0.0.1", new))
        assert owner.applied and not owner.fenced
        # Unfenced (a single instance, or the placer's opening event): no lease looked at.
        assert (await _move(database, call_id, S.RINGING_AGENT, S.AGENT_ANSWERED, None)).applied


async def _move(
    database: Database,
    call_id: str,
    expected: CallState,
    state: CallState,
    fence: tuple[str, int] | None,
) -> TransitionResult:
    return await move(database, call_id, state, expected=expected, at=utcnow(), fence=fence)


async def _tracker(rig: Rig, owner: str, ttl: float) -> tuple[CallTracker, Leases]:
    held = Leases(rig.database, owner, ttl)
    held.start()
    tracker = await rig.tracker(leases=held, adopt_every=0.1, takeover_every=0.2)
    return tracker, held


@pytest.mark.postgres
async def test_the_owner_follows_calls_placed_elsewhere_and_a_dead_owner_is_replaced(
    rig: Rig,
) -> None:
    rig.engine.set_scenario("150", TALK)
    rig.engine.set_scenario("151", TALK)
    first, first_leases = await _tracker(rig, "first", ttl=1.5)
    second, second_leases = await _tracker(rig, "second", ttl=1.5)
    try:
        mine = await rig.place(first, "150")  # first takes the host's lease
        await rig.reaches(mine, "ringing_agent", within=5)
        elsewhere = await rig.place(second, "151")  # placed by second, followed by first

        async def first_follows_both() -> bool:
            return set(first.live_calls()) == {mine, elsewhere}

        await until(first_follows_both, within=5)
        shown: Any = first.status()["leases"]  # /api/status, for an operator
        assert shown == {"instance": "first", "held": {"instance:first": 1, "127.0.0.1": 1}}
        assert second.live_calls() == {} and second_leases.token("127.0.0.1") is None
        await rig.reaches(elsewhere, "connected", within=5)
        # first dies: no renewal, no release, no more moves (its tasks just stop).
        await _die(first, first_leases)
        died = time.monotonic()

        async def second_follows_both() -> bool:
            return set(second.live_calls()) == {mine, elsewhere}

        await until(second_follows_both, within=5)
        taken_over = time.monotonic() - died
        assert taken_over < 1.5 + 0.2 + 1.0  # the ttl, a takeover round, and some slack
        assert second_leases.token("127.0.0.1") == 2
        for call_id in (mine, elsewhere):
            await rig.reaches(call_id, "completed", within=10)
        assert len([c for c in rig.engine.commands if c.command.startswith("channel orig")]) == 2
    finally:
        await second_leases.aclose()


async def _die(tracker: CallTracker, held: Leases) -> None:
    """What SIGKILL leaves of an instance: its leases neither renewed nor released, and none
    of its writes any more."""
    await held._renewals.aclose()
    held._held.clear()  # nothing released at its stop: the rows expire by themselves
    await cancel_and_wait(*tracker._tasks)
    tracker._hosts.clear()
    tracker._unstored.clear()


@pytest.mark.postgres
async def test_a_stale_owner_stops_following_at_its_first_fenced_move(rig: Rig) -> None:
    """An owner paused past its lease (no renewal reached the database) while another took
    the host: its next move is refused, and it lets the host's calls go at once."""
    rig.engine.set_scenario("150", TALK)
    stale, stale_leases = await _tracker(rig, "stale", ttl=60)
    await stale_leases._renewals.aclose()  # paused: it renews nothing
    call_id = await rig.place(stale, "150")
    await rig.reaches(call_id, "ringing_agent", within=5)
    # Its lease expires (as a pause longer than the ttl lets it): another instance takes over.
    expired = HOST_LEASES.update().values(expires_at=utcnow() - timedelta(seconds=1))
    await rig.database.rowcount(expired)
    other, other_leases = await _tracker(rig, "other", ttl=60)
    try:

        async def stale_let_go() -> bool:
            return stale.live_calls() == {} and stale_leases.token("127.0.0.1") is None

        await until(stale_let_go, within=10)
        await rig.reaches(call_id, "completed", within=10)
        assert call_id in other.live_calls() or await rig.state(call_id) == "completed"
    finally:
        await other_leases.aclose()


@pytest.mark.postgres
async def test_a_starting_instance_leaves_the_calls_another_one_is_placing(pg_url: str) -> None:
    """Pending rows are settled at start only when no other instance runs: else they may be
    calls another instance is placing right now (only rows older than any placing are)."""
    await _migrated(pg_url)
    async with opened(pg_url) as database:
        placing = await new_call(database, host="10.0.0.1")  # pending: being placed
        other, starting = Leases(database, "other", 10), Leases(database, "starting", 10)
        other.start()
        bound = timedelta(seconds=60)
        started = utcnow()

        async def other_runs() -> bool:
            return other.token(other.instance) is not None

        await until(other_runs, within=5)
        try:
            before = await settle_before(started, starting, bound)
            assert before == started - bound
            assert await reconcile_pending(database, before=before) == NOTHING
        finally:
            await other.aclose()  # a clean stop: its instance lease released
        assert await settle_before(started, starting, bound) == started
        assert (await reconcile_pending(database, before=started))["unknown"] == 1
        record = await get_call(database, placing)
        assert record is not None and (record.outcome, record.state) == ("unknown", "lost")


@pytest.mark.postgres
async def test_the_sweep_settles_the_row_of_a_placer_that_died(pg_url: str) -> None:
    await _migrated(pg_url)
    async with opened(pg_url) as database:
        orphan = await new_call(database, host="10.0.0.1")
        an_hour_ago = utcnow() - timedelta(hours=1)  # placed by an instance killed meanwhile
        await database.rowcount(
            CALLS.update().where(CALLS.c.id == orphan).values(created_at=an_hour_ago)
        )
        young = await new_call(database, host="10.0.0.1")
        sweeper = Leases(database, "sweeper", 10)
        sweeping = asyncio.create_task(
            sweep_orphans(database, sweeper, timedelta(minutes=5), every=0.1)
        )
        try:

            async def settled() -> bool:
                record = await get_call(database, orphan)
                return record is not None and record.state == "lost"

            await until(settled, within=5)
            assert sweeper.token(SWEEP_LEASE) is not None
            record = await get_call(database, young)
            assert record is not None and record.outcome == "pending"  # maybe being placed
        finally:
            sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeping
            await sweeper.aclose()


@pytest.mark.postgres
async def test_a_call_placed_elsewhere_that_ends_before_the_owner_looks_is_not_lost(
    rig: Rig,
) -> None:
    """The owner adopts a call placed by another instance as if it had tracked it: channels
    already gone at its first listing are an end to derive (the agent did not answer), not
    the `lost` of a call resumed after nobody watched it."""
    rig.engine.set_scenario("150", TALK)
    rig.engine.set_scenario("151", Scenario(agent_answer_after=None, originate_timeout=0.5))
    owner_leases = Leases(rig.database, "owner", 10)
    owner = await rig.tracker(leases=owner_leases, adopt_every=2.0, takeover_every=2.0)
    placer_leases = Leases(rig.database, "placer", 10)
    placer = await rig.tracker(leases=placer_leases, adopt_every=2.0, takeover_every=2.0)
    try:
        await rig.reaches(await rig.place(owner, "150"), "ringing_agent", within=5)
        quick = await rig.place(placer, "151")
        await rig.reaches(quick, "agent_no_answer", within=10)
        assert placer.live_calls() == {}
    finally:
        await owner_leases.aclose()
        await placer_leases.aclose()


@pytest.mark.postgres
async def test_the_owner_adopts_a_call_placed_elsewhere_once_it_hears_its_lines(
    pg_url: str,
) -> None:
    """On a console host, the owner's listening console hears the lines of a call another
    instance placed there: the owner looks for it a moment later, not at its next round
    (30 s here), so that the call's moves are stored as they happen; a call placed on the
    owner itself is taken in hand as before and sets no look going."""
    async with make_rig(pg_url, "console") as rig:
        rig.engine.set_scenario("150", TALK)
        rig.engine.set_scenario("151", TALK)
        rig.engine.set_scenario("152", TALK)
        owner_leases, placer_leases = (
            Leases(rig.database, "owner", 10),
            Leases(rig.database, "placer", 10),
        )
        looks: list[dict[str, list[str]]] = []
        owner = await rig.tracker(leases=owner_leases, adopt_every=30.0, takeover_every=30.0)
        original = owner._adopt_started

        async def counted(pairs: dict[str, list[str]]) -> int:
            looks.append(pairs)
            return await original(pairs)

        owner._adopt_started = counted  # type: ignore[method-assign]
        placer = await rig.tracker(leases=placer_leases, adopt_every=30.0, takeover_every=30.0)
        try:
            own = await rig.place(owner, "150")  # the host's lease taken
            await rig.reaches(own, "ringing_agent", within=5)
            again = await rig.place(owner, "152")  # heard starting on a host it owns
            await rig.reaches(again, "ringing_agent", within=5)
            await asyncio.sleep(4 * ADOPT_SOON)  # a look it had set going would have run
            assert not owner_leases.alone  # until a look says so: others may place calls
            assert looks == []  # its own calls, claimed before then, set no look going
            elsewhere = await rig.place(placer, "151")
            await until(lambda: _followed_by(owner, elsewhere), within=3)
            assert looks and all(list(pairs) == ["127.0.0.1"] for pairs in looks)
            await rig.reaches(elsewhere, "connected", within=5)
            assert placer.live_calls() == {}
        finally:
            await owner_leases.aclose()
            await placer_leases.aclose()


async def _followed_by(tracker: CallTracker, call_id: str) -> bool:
    return call_id in tracker.live_calls()


@pytest.mark.postgres
async def test_a_look_reads_the_calls_heard_starting_by_their_first_legs(pg_url: str) -> None:
    """`leases.owned_calls_on`: the followable live calls of one host whose first legs are
    the channels given, read whole with the host's row, only for the lease's owner."""
    await _migrated(pg_url)
    async with opened(pg_url) as database:
        now = utcnow()
        until = now + timedelta(seconds=60)
        assert await leases.acquire(database, "h", "owner", now=now, until=until)
        placed = await new_call(database, host="h")
        await finish_call(database, finish_values(placed, "success", channel="Local/150@x-1;1"))
        other = await new_call(database, host="h")  # another call on the host: not asked for
        await finish_call(database, finish_values(other, "success", channel="Local/151@x-3;1"))
        elsewhere = await new_call(database, host="g")  # the same channel on another host
        await finish_call(database, finish_values(elsewhere, "success", channel="Local/150@x-1;1"))
        wanted = ["Local/150@x-1;1", "Local/152@x-4;1"]
        found = await leases.owned_calls_on(database, "owner", "h", wanted)
        assert [(row.id, row.channel, host) for row, host in found] == [
            (placed, "Local/150@x-1;1", None)
        ]
        assert await leases.owned_calls_on(database, "other", "h", wanted) == []


async def test_a_lease_is_lost_when_taken_over_or_not_renewed_for_a_ttl(db_url: str) -> None:
    """A renewal that finds another owner loses the lease at once; one that cannot reach the
    database loses it once a whole ttl has gone by since the last renewal."""
    await _migrated(db_url)
    async with opened(db_url) as database:
        watched = Watched(database)
        mine = Leases(watched, "mine", ttl=1.0)
        lost: list[str] = []
        mine.on_lost(lost.append)
        assert await mine.acquire("taken") == 1 and await mine.acquire("lapsing") == 1
        expire = HOST_LEASES.update().where(HOST_LEASES.c.host == "taken")
        await database.rowcount(expire.values(expires_at=utcnow() - timedelta(seconds=1)))
        now = utcnow()
        assert await leases.acquire(database, "taken", "other", now=now, until=now) == 2
        await mine.renew()
        assert lost == ["taken"] and mine.token("lapsing") == 1
        watched.down = True
        await mine.renew()  # within the ttl: still counted on
        assert mine.token("lapsing") == 1
        await asyncio.sleep(1.0)
        await mine.renew()
        assert lost == ["taken", "lapsing"] and mine.held() == {}


async def test_a_host_held_elsewhere_is_not_asked_for_again_at_every_call(db_url: str) -> None:
    """`acquire_unless_held` (a call placed on a host another instance may follow): after a
    refusal, None without a statement for ``renew_every``; then the database is asked again.
    `acquire` (the takeover's) always asks."""
    await _migrated(db_url)
    async with opened(db_url) as database:
        owner, placer = Leases(database, "owner", ttl=0.6), Leases(database, "placer", ttl=0.6)
        token = await owner.acquire("h")
        assert token == 1
        assert await placer.acquire_unless_held("h") is None  # asked: held elsewhere
        await leases.release(database, "h", "owner", token)  # free from now on
        assert await placer.acquire_unless_held("h") is None  # not asked again yet
        await asyncio.sleep(placer.renew_every)
        assert await placer.acquire_unless_held("h") == 2  # asked again: taken
        third = Leases(database, "third", ttl=0.6)
        assert await third.acquire_unless_held("h") is None
        await leases.release(database, "h", "placer", 2)
        assert await third.acquire("h") == 3  # the takeover's way asks every time
