"""The double-click guard's statements (`call_claims`): claim a key for a call, let it go.

A claim is one row per key (the SHA-256 of an enterprise, an extension and a phone: the table
never holds the number) with the call placed for it and when. `claim` is one statement
(PostgreSQL's: several instances share a database there), atomic: the key is taken when free
or older than the window, and then the call placing it is the claimer's; otherwise the call
that holds it comes back, read by the same statement. Two instances claiming one key at once
are ordered by the key's row lock: the second sees the first's row. `claim_locking` also tries
the originate lock of the call in that statement (`db.advisory`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, bindparam, delete, select
from sqlalchemy.dialects import postgresql

from callgate.db.advisory import AdvisoryLocks, try_lock
from callgate.db.executor import Executor, Row
from callgate.db.models import CALL_CLAIMS, UtcDateTime

_CLAIMS = CALL_CLAIMS.c
_insert = postgresql.insert(CALL_CLAIMS).values(
    key=bindparam("p_key", type_=String()),
    call_id=bindparam("p_call", type_=String()),
    at=bindparam("p_at", type_=UtcDateTime()),
)
_CLAIM = _insert.on_conflict_do_update(
    index_elements=[_CLAIMS.key],
    set_={"call_id": _insert.excluded.call_id, "at": _insert.excluded.at},
    where=_CLAIMS.at < bindparam("p_since", type_=UtcDateTime()),
).returning(_CLAIMS.call_id)
_CLAIMED = _CLAIM.cte("claimed")
# The claim, and the key's holder as the statement found it (when the claim did not take it).
_CLAIM_OR_HOLDER = select(
    select(_CLAIMED.c.call_id).scalar_subquery().label("mine"),
    select(_CLAIMS.call_id)
    .where(_CLAIMS.key == bindparam("p_key"))
    .scalar_subquery()
    .label("holder"),
)
_CLAIM_OR_HOLDER_LOCKING = _CLAIM_OR_HOLDER.add_columns(try_lock("p_lock"))
_LET_GO = delete(CALL_CLAIMS).where(
    _CLAIMS.key == bindparam("p_key"), _CLAIMS.call_id == bindparam("p_call")
)
_PRUNE = delete(CALL_CLAIMS).where(_CLAIMS.at < bindparam("p_before", type_=UtcDateTime()))


async def claim(
    database: Executor, key: str, call_id: str, *, at: datetime, since: datetime
) -> str | None:
    """Take ``key`` for ``call_id`` unless a claim made after ``since`` holds it: None when
    taken, else the id of the call that holds it."""
    values = {"p_key": key, "p_call": call_id, "p_at": at, "p_since": since}
    found = await database.row(_CLAIM_OR_HOLDER, values)
    return await _verdict(database, found, key, call_id, at=at, since=since)


async def claim_locking(
    locks: AdvisoryLocks, key: str, call_id: str, *, at: datetime, since: datetime, lock: str
) -> str | None:
    """`claim` on ``locks``' connection, the advisory lock on ``lock`` tried in the same
    statement: held after it when taken (`AdvisoryLocks.row_locking`), whatever the claim's
    verdict."""
    values = {"p_key": key, "p_call": call_id, "p_at": at, "p_since": since, "p_lock": lock}
    found = await locks.row_locking(_CLAIM_OR_HOLDER_LOCKING, values, lock)
    return await _verdict(locks, found, key, call_id, at=at, since=since)


async def _verdict(
    database: Executor, found: Row | None, key: str, call_id: str, *, at: datetime, since: datetime
) -> str | None:
    assert found is not None  # a SELECT without FROM: one row
    if found["mine"] is not None:
        return None
    if found["holder"] is None:
        # Taken by a claim the statement's snapshot did not show yet, or let go since: ask
        # again (without the lock: tried once, it is held or not already).
        return await claim(database, key, call_id, at=at, since=since)
    return str(found["holder"])


async def let_go(database: Executor, key: str, call_id: str) -> None:
    """Free ``key`` if ``call_id`` still holds it (its call failed: a retry dials again)."""
    await database.rowcount(_LET_GO, {"p_key": key, "p_call": call_id})


async def prune(database: Executor, before: datetime) -> int:
    """Delete the claims made before ``before`` (older than any window); how many."""
    return await database.rowcount(_PRUNE, {"p_before": before})
