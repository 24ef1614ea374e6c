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

from callgate import errors
from callgate.calls.history import end_call
from callgate.db.calls import get_call, settle_pending
from callgate.db.executor import Database
from callgate.db.guard import db_step
from callgate.db.models import utcnow
from callgate.domain.states import LIVE, CallState
from callgate.logs import get_logger

log = get_logger("callgate.reconcile")

REASON = "service stopped while the call was being placed"
FAILED_REASON = "the originate failed; the service stopped before storing its outcome"
# ConnectionLost's code: an idempotent replay of such a call then answers "outcome unknown"
# (502) as the interrupted request would have, instead of an internal error.
ERROR_CODE = errors.ConnectionLost.code
RETRY_EVERY = 5.0


async def reconcile_pending(database: Database, *, before: datetime) -> dict[str, int]:
    """Settle the calls created before ``before`` and still ``pending``; counts per outcome."""
    async with db_step("settling the calls left pending"):
        settled = await settle_pending(
            database,
            before=before,
            failed_reason=FAILED_REASON,
            unknown_code=ERROR_CODE,
            unknown_reason=REASON,
        )
    for call_id in settled.unknown:
        await _end_as_lost(database, call_id)
    counts = {
        "success": settled.success,
        "failed": settled.failed,
        "unknown": len(settled.unknown),
    }
    if any(counts.values()):
        log.warning("calls left pending by a previous run settled", **counts)
    return counts


async def _end_as_lost(database: Database, call_id: str) -> None:
    """Move a settled-unknown call's live state to ``lost`` (compare-and-set: the tracker may
    move it too; whichever comes first stands, and both say it is lost)."""
    async with db_step("ending a call left pending"):
        record = await get_call(database, call_id)
        if record is None or CallState(record.state) not in LIVE:
            return
        await end_call(
            database,
            call_id,
            CallState.LOST,
            expected=CallState(record.state),
            at=utcnow(),
            reason=REASON,
        )


async def reconcile_until_done(database: Database, *, before: datetime) -> None:
    """``reconcile_pending``, retried while the database is unavailable (a background task)."""
    while True:
        try:
            await reconcile_pending(database, before=before)
            return
        except errors.DatabaseUnavailable as exc:
            log.error("pending calls not settled yet; retrying", detail=exc.message)
        await asyncio.sleep(RETRY_EVERY)
