"""Calls a stopped service left ``pending``: settle them at start, and never dial them again.

A call's row is written ``pending`` before its originate and finished right after it. A
service killed in between (SIGKILL, OOM, power loss, a graceful timeout exceeded) leaves the
row pending for good: the tracker resumes calls by their *state* (and ends such a one as
``lost``), but nothing else ever writes its ``outcome``. At start, before the first request,
every pending row comes from a previous run (callgate runs one instance per database, as the
tracker's resume also assumes), and it is settled from what the row holds:

* a first leg stored (written only once the originate was verified) -> ``success``;
* state ``failed`` (the PBX was known to have created nothing) -> ``failed``;
* anything else -> ``unknown`` with REASON, and its live state -> ``lost`` with REASON.

Nothing is re-dialled: an originate that may have run has an unknown outcome, and only a person
may decide to call again (a second originate could ring the agent twice).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callgate import errors
from callgate.db.call_tracking import CallTrackingRepo
from callgate.db.guard import db_step
from callgate.db.models import CallOutcome, CallRecord, utcnow
from callgate.domain.states import LIVE, CallState
from callgate.logs import get_logger

log = get_logger("callgate.reconcile")

REASON = "service stopped while the call was being placed"
FAILED_REASON = "the originate failed; the service stopped before storing its outcome"
# ConnectionLost's code: an idempotent replay of such a call then answers "outcome unknown"
# (502) as the interrupted request would have, instead of an internal error.
ERROR_CODE = errors.ConnectionLost.code
RETRY_EVERY = 5.0


async def reconcile_pending(
    sessions: async_sessionmaker[AsyncSession], *, before: datetime
) -> dict[str, int]:
    """Settle the calls created before ``before`` and still ``pending``; counts per outcome."""
    pending = (CallRecord.outcome == CallOutcome.PENDING.value) & (CallRecord.created_at <= before)
    now = utcnow()
    async with db_step("settling the calls left pending"), sessions() as session:
        verified = await session.execute(
            update(CallRecord)
            .where(pending, CallRecord.channel.is_not(None))
            .values(outcome=CallOutcome.SUCCESS.value, finished_at=now)
            .execution_options(synchronize_session=False)
        )
        failed = await session.execute(
            update(CallRecord)
            .where(pending, CallRecord.state == CallState.FAILED.value)
            .values(outcome=CallOutcome.FAILED.value, error=FAILED_REASON, finished_at=now)
            .execution_options(synchronize_session=False)
        )
        unknown_ids = list(await session.scalars(select(CallRecord.id).where(pending)))
        if unknown_ids:
            await session.execute(
                update(CallRecord)
                .where(pending, CallRecord.id.in_(unknown_ids))
                .values(
                    outcome=CallOutcome.UNKNOWN.value,
                    error_code=ERROR_CODE,
                    error=REASON,
                    finished_at=now,
                )
                .execution_options(synchronize_session=False)
            )
        await session.commit()
    for call_id in unknown_ids:
        await _end_as_lost(sessions, call_id)
    counts = {
        "success": getattr(verified, "rowcount", 0) or 0,
        "failed": getattr(failed, "rowcount", 0) or 0,
        "unknown": len(unknown_ids),
    }
    if any(counts.values()):
        log.warning("calls left pending by a previous run settled", **counts)
    return counts


async def _end_as_lost(sessions: async_sessionmaker[AsyncSession], call_id: str) -> None:
    """Move a settled-unknown call's live state to ``lost`` (compare-and-set: the tracker may
    move it too; whichever comes first stands, and both say it is lost)."""
    async with db_step("ending a call left pending"), sessions() as session:
        state = await session.scalar(select(CallRecord.state).where(CallRecord.id == call_id))
        if state is None or CallState(state) not in LIVE:
            return
        await CallTrackingRepo(session).end(
            call_id, CallState.LOST, expected=CallState(state), at=utcnow(), reason=REASON
        )


async def reconcile_until_done(
    sessions: async_sessionmaker[AsyncSession], *, before: datetime
) -> None:
    """``reconcile_pending``, retried while the database is unavailable (a background task)."""
    while True:
        try:
            await reconcile_pending(sessions, before=before)
            return
        except errors.DatabaseUnavailable as exc:
            log.error("pending calls not settled yet; retrying", detail=exc.message)
        await asyncio.sleep(RETRY_EVERY)
