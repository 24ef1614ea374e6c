"""Calls a stopped service left ``pending``: settle them at start, and never dial them again.

A call's row is written ``pending`` before its originate and finished right after it. A
service killed in between (SIGKILL, OOM, power loss, a graceful timeout exceeded) leaves the
row pending for good: the tracker resumes calls by their *state* (and ends such a one as
``lost``), but nothing else ever writes its ``outcome``. At start, before the first request,
such rows are settled from what the row holds:

* a first leg stored (written only once the originate was verified) -> ``success``;
* state ``failed`` (the PBX was known to have created nothing) -> ``failed``;
* anything else -> ``unknown`` with REASON, and its live state -> ``lost`` with REASON.

Nothing is re-dialled: an originate that may have run has an unknown outcome, and only a person
may decide to call again (a second originate could ring the agent twice).

Which rows are orphans: alone on its database, a starting instance settles every row pending
from before its start. With several instances (`calls.leases`) a row pending now may be one
another instance is placing: while another instance is alive, a starting one settles only the
rows pending for longer than any placing takes (`placing_bound`), and, as the rows an
instance killed mid-placement leaves are nobody's to settle at a start, the holder of the
lease `SWEEP_LEASE` settles those every `SWEEP_EVERY` seconds (`sweep_orphans`).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from callgate import errors
from callgate.calls.history import end_call
from callgate.calls.leases import Leases
from callgate.db.calls import get_call, settle_pending
from callgate.db.executor import Database
from callgate.db.guard import db_step
from callgate.db.models import utcnow
from callgate.domain.states import LIVE, CallState
from callgate.logs import get_logger
from callgate.settings import Settings

log = get_logger("callgate.reconcile")

REASON = "service stopped while the call was being placed"
FAILED_REASON = "the originate failed; the service stopped before storing its outcome"
# ConnectionLost's code: an idempotent replay of such a call then answers "outcome unknown"
# (502) as the interrupted request would have, instead of an internal error.
ERROR_CODE = errors.ConnectionLost.code
RETRY_EVERY = 5.0
SWEEP_LEASE = "reconcile"  # who settles the rows dead placers left (several instances)
SWEEP_EVERY = 30.0
# A placing's row is pending from its insert until the outcome's write: the SSH pool's wait,
# the login and the originate's command are bounded by the settings; the outcome's write may
# be retried for a while after a database fault. Past this, nobody is placing the call.
SLACK = timedelta(seconds=60)


def placing_bound(settings: Settings) -> timedelta:
    """The longest a call's row stays pending while its placing runs."""
    seconds = (
        settings.ssh_pool_wait
        + settings.ssh_connect_timeout
        + settings.ssh_command_timeout
        + settings.verify_window
    )
    return timedelta(seconds=seconds) + SLACK


async def settle_before(started: datetime, leases: Leases | None, bound: timedelta) -> datetime:
    """The pending rows a starting instance settles: those from before its start, unless
    another instance runs (or the database cannot say): then those older than ``bound``."""
    if leases is None:
        return started
    try:
        alone = not await leases.others_alive()
    except errors.DatabaseUnavailable:
        alone = False
    return started if alone else started - bound


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
        log.warning("calls left pending by a stopped placer settled", **counts)
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


async def sweep_orphans(
    database: Database, leases: Leases, bound: timedelta, every: float = SWEEP_EVERY
) -> None:
    """Several instances: every ``every`` seconds, the holder of `SWEEP_LEASE` settles the
    rows pending for longer than ``bound`` (their placer died mid-placement). A task."""
    while True:
        await asyncio.sleep(every)
        if await leases.acquire(SWEEP_LEASE) is None:
            continue  # another instance sweeps
        try:
            await reconcile_pending(database, before=utcnow() - bound)
        except errors.DatabaseUnavailable as exc:
            log.warning("pending calls not swept", detail=exc.message)


async def reconcile_until_done(database: Database, *, before: datetime) -> None:
    """``reconcile_pending``, retried while the database is unavailable (a background task)."""
    while True:
        try:
            await reconcile_pending(database, before=before)
            return
        except errors.DatabaseUnavailable as exc:
            log.error("pending calls not settled yet; retrying", detail=exc.message)
        await asyncio.sleep(RETRY_EVERY)
