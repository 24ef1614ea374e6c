"""The double-click guard's statements (`call_claims`): claim a key for a call, let it go.

A claim is one row per key (the SHA-256 of an enterprise, an extension and a phone: the table
never holds the number) with the call placed for it and when. `claim` is one statement, atomic
on both databases: the key is taken when free or older than the window, and then the call
placing it is the claimer's; otherwise the call that holds it comes back. Two instances
claiming one key at once are ordered by the key's row lock: the second sees the first's row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, bindparam, delete, select
from sqlalchemy.dialects import postgresql

from callgate.db.executor import Executor
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
_HOLDER = select(_CLAIMS.call_id).where(_CLAIMS.key == bindparam("p_key"))
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
    if await database.value(_CLAIM, values) is not None:
        return None
    holder = await database.value(_HOLDER, {"p_key": key})
    if holder is None:  # let go between the two statements: the key is free again
        return await claim(database, key, call_id, at=at, since=since)
    return str(holder)


async def let_go(database: Executor, key: str, call_id: str) -> None:
    """Free ``key`` if ``call_id`` still holds it (its call failed: a retry dials again)."""
    await database.rowcount(_LET_GO, {"p_key": key, "p_call": call_id})


async def prune(database: Executor, before: datetime) -> int:
    """Delete the claims made before ``before`` (older than any window); how many."""
    return await database.rowcount(_PRUNE, {"p_before": before})
