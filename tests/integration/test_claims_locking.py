"""The originate lock taken and let go by statements a call runs anyway, on a real PostgreSQL:
tried by the double-click claim (`db.claims.claim_locking`, `AdvisoryLocks.row_locking`), let
go by the statement storing the outcome (`db.calls.finish_call_releasing`). Seen from another
session, the lock is held exactly while it should be."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from callgate.db import claims
from callgate.db.advisory import AdvisoryLocks
from callgate.db.calls import finish_call_releasing, finish_values, get_call
from callgate.db.engine import async_url
from callgate.db.executor import connect
from callgate.db.migrate import upgrade
from callgate.db.models import utcnow
from tests.support.tracking import new_call

pytestmark = pytest.mark.postgres
LOCK = "originate:127.0.0.1:22:150"
WINDOW = timedelta(seconds=5)
_TRY = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended($1, 0))"
_LOCK = "SELECT pg_advisory_lock(hashtextextended($1, 0))"


@pytest.fixture
async def locks(pg_url: str) -> AsyncIterator[AdvisoryLocks]:
    await asyncio.to_thread(upgrade, pg_url)
    held = AdvisoryLocks(pg_url)
    yield held
    await held.aclose()


async def _free(pg_url: str, key: str = LOCK) -> bool:
    """Whether another session can take the lock on ``key`` now (let go again at once)."""
    dsn = async_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    other = await asyncpg.connect(dsn)
    try:
        taken = bool(
            await other.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key)
        )
        if taken:
            await other.fetchval("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
        return taken
    finally:
        await other.close()


async def _claim(locks: AdvisoryLocks, key: str, call_id: str) -> str | None:
    now = utcnow()
    return await claims.claim_locking(locks, key, call_id, at=now, since=now - WINDOW, lock=LOCK)


async def test_a_claim_takes_the_lock_and_the_block_uses_it(
    locks: AdvisoryLocks, pg_url: str
) -> None:
    assert await _claim(locks, "key-1", "call-1") is None
    assert not await _free(pg_url)  # held from the claim on
    held = await locks.acquire(LOCK)
    assert not await _free(pg_url)
    assert locks.waits == 0  # no try: the claim's taking was used
    await locks.release(held)
    await locks.release_unused(LOCK)  # nothing left unused: nothing let go twice
    assert await _free(pg_url)


async def test_a_key_held_elsewhere_answers_its_holder_and_the_unused_lock_goes(
    locks: AdvisoryLocks, pg_url: str
) -> None:
    assert await _claim(locks, "key-1", "call-1") is None
    await locks.release_unused(LOCK)
    assert await _free(pg_url)
    # The same key again within the window: the first call holds it (one statement).
    assert await _claim(locks, "key-1", "call-2") == "call-1"
    assert not await _free(pg_url)
    await locks.release_unused(LOCK)
    assert await _free(pg_url)


async def test_each_taking_counts_and_each_use_or_release_gives_one_back(
    locks: AdvisoryLocks, pg_url: str
) -> None:
    """Two calls of one process on one extension: the session's lock is re-entrant."""
    assert await _claim(locks, "key-1", "call-1") is None
    assert await _claim(locks, "key-2", "call-2") is None
    await locks.release(await locks.acquire(LOCK))
    assert not await _free(pg_url)  # the second call's taking is still held
    await locks.release_unused(LOCK)
    assert await _free(pg_url)


async def test_a_lock_held_by_another_session_is_not_taken_by_the_claim(
    locks: AdvisoryLocks, pg_url: str
) -> None:
    dsn = async_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    other = await asyncpg.connect(dsn)
    entered, leave = asyncio.Event(), asyncio.Event()

    async def block() -> None:
        held = await locks.acquire(LOCK)
        entered.set()
        await leave.wait()
        await locks.release(held)

    try:
        await other.fetchval(_LOCK, LOCK)
        assert await _claim(locks, "key-1", "call-1") is None  # the claim is taken all the same
        holding = asyncio.create_task(block())
        await asyncio.sleep(0.05)
        assert not entered.is_set() and locks.waits > 0  # the block waits for the other session
        await other.fetchval(_UNLOCK, LOCK)
        await asyncio.wait_for(entered.wait(), 5)
    finally:
        await other.close()
    await locks.release_unused(LOCK)  # nothing unused: the claim did not take it
    assert not await _free(pg_url)  # the block holds it
    leave.set()
    await holding
    assert await _free(pg_url)


async def test_the_outcome_statement_lets_the_lock_go(locks: AdvisoryLocks, pg_url: str) -> None:
    database = connect(pg_url)
    await database.open()
    try:
        call_id = await new_call(database, extension="150", phone="+375296254070")
        assert await _claim(locks, "key-1", call_id) is None
        held = await locks.acquire(LOCK)
        channel = "Local/150@inoffice-00000061;1"
        values = finish_values(call_id, "success", channel=channel, response_time_ms=3.5)
        assert await finish_call_releasing(locks, values, held)
        assert await _free(pg_url)
        record = await get_call(database, call_id)
        assert record is not None
        assert (record.outcome, record.channel, record.response_time_ms) == (
            "success",
            channel,
            3.5,
        )
        # No such call: nothing stored, and the lock goes all the same.
        held = await locks.acquire(LOCK)
        assert not await finish_call_releasing(locks, finish_values("nope", "failed"), held)
        assert await _free(pg_url)
    finally:
        await database.close()


async def test_a_failed_outcome_statement_lets_the_lock_go_alone(
    locks: AdvisoryLocks, pg_url: str
) -> None:
    held = await locks.acquire(LOCK)
    values = finish_values("call-1", "success") | {"response_time_ms": "not a number"}
    with pytest.raises(DBAPIError):
        await finish_call_releasing(locks, values, held)
    assert await _free(pg_url)


async def test_a_lock_lost_with_its_connection_is_not_unlocked_on_the_next(
    locks: AdvisoryLocks, pg_url: str
) -> None:
    """The connection that held a call's lock ended; another call of the process holds the
    same key on the next connection: storing the first call's outcome must not let the
    second call's lock go (a session's lock is re-entrant)."""
    database = connect(pg_url)
    await database.open()
    try:
        call_id = await new_call(database, extension="150", phone="+375296254070")
        first = await locks.acquire(LOCK)
        assert first.connection is not None
        first.connection.terminate()  # the server lets the first lock go with its session
        second = await locks.acquire(LOCK)  # on a new connection
        values = finish_values(call_id, "success", channel="Local/150@inoffice-00000061;1")
        assert await finish_call_releasing(locks, values, first)
        assert not await _free(pg_url)  # the second call's lock stands
        record = await get_call(database, call_id)
        assert record is not None and record.outcome == "success"
        await locks.release(second)
        assert await _free(pg_url)
    finally:
        await database.close()
