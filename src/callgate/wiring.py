"""The composition root: the database, the PBX transports (their SSH pool, the database's host
keys, the circuit breaker), the client and the use cases, built from settings (`running`).
Only here do pbx and db meet; the HTTP app (`callgate.app`) and the CLI's ``--direct`` runs
take the use cases it builds.

A transport is one module plus its registration below (see ``pbx/registry.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from callgate import __version__
from callgate.calls.dedupe import SharedClaims
from callgate.calls.dispatcher import Dispatcher
from callgate.calls.leases import Leases, instance_id
from callgate.calls.observed import start_metrics
from callgate.calls.placing import Placing
from callgate.calls.rate_limits import (
    Limits,
    LiveCalls,
    adopt_live_calls,
    count_elsewhere,
    keep_refreshed,
    storage_for,
)
from callgate.calls.reading import CallReads
from callgate.calls.reconcile import (
    placing_bound,
    reconcile_pending,
    reconcile_until_done,
    settle_before,
    sweep_orphans,
)
from callgate.calls.service import CallService
from callgate.calls.services import Services
from callgate.calls.shared_events import fed_from_log, listen_for_events
from callgate.calls.status import ServiceStatus
from callgate.calls.targets import build_target
from callgate.calls.tracker import CallTracker
from callgate.calls.watching import Watching
from callgate.calls.webhooks import Webhooks
from callgate.db.advisory import AdvisoryLocks
from callgate.db.engine import sqlite_file
from callgate.db.executor import Executor, connect
from callgate.db.guard import db_step
from callgate.db.host_keys import DbHostKeyStore
from callgate.db.hosts import get_host
from callgate.db.models import utcnow
from callgate.db.notifications import is_postgres
from callgate.errors import ConfigurationError, DatabaseUnavailable
from callgate.logs import get_logger
from callgate.pbx import console, rx
from callgate.pbx.breaker import CircuitBreaker
from callgate.pbx.client import PbxClient
from callgate.pbx.registry import TRANSPORTS, Shared
from callgate.pbx.routing import RoutingTransport
from callgate.pbx.ssh import PoolLimits, SshPool
from callgate.pbx.transport import PbxTransport
from callgate.private_files import wider_than_owner
from callgate.settings import HostKeyPolicy, Settings, Transport
from callgate.tasks import cancel_and_wait

log = get_logger("callgate.app")
JOIN_MARGIN = 0.5  # seconds, beyond the others' look period, before a joining instance serves

TRANSPORTS.register(Transport.RX.value, rx.build)
TRANSPORTS.register(Transport.CONSOLE.value, console.build)


def registered_transport(name: str) -> str:
    """``name`` when a transport is registered under it, else a ValueError naming those that
    are (``callgate host set --transport``)."""
    if name not in TRANSPORTS:
        raise ValueError(f"no transport named {name!r} (registered: {TRANSPORTS.names()})")
    return name


def check_settings(settings: Settings) -> None:
    """What only the composition root can check, at start: CALLGATE_TRANSPORT names a
    registered transport (else ConfigurationError naming it)."""
    try:
        registered_transport(settings.transport)
    except ValueError as exc:
        raise ConfigurationError(f"invalid configuration: CALLGATE_TRANSPORT: {exc}") from None


def build_transport(settings: Settings, database: Executor) -> RoutingTransport:
    """Every registered transport over one SSH pool, routed per host, behind the per-host
    circuit breaker; ConfigurationError if CALLGATE_TRANSPORT names no registered transport."""
    check_settings(settings)
    pool = SshPool(PoolLimits.from_settings(settings), DbHostKeyStore(database))
    breaker = CircuitBreaker(failures=settings.breaker_failures, cooldown=settings.breaker_cooldown)
    return RoutingTransport(Shared(settings, pool), breaker)


def build_client(settings: Settings, transport: PbxTransport) -> PbxClient:
    return PbxClient(
        transport,
        verify_window=settings.verify_window,
        poll_interval=settings.verify_poll_interval,
    )


async def check_host(settings: Settings, database: Executor, address: str) -> str:
    """Log in to a host with its configured settings and return its Asterisk version."""
    async with db_step("reading the host settings"):
        row = await get_host(database, address)
    target = build_target(settings, address, row)
    transport = build_transport(settings, database)
    try:
        return await build_client(settings, transport).version(target)
    finally:
        await transport.aclose()


def warn_about_open_files(settings: Settings) -> None:
    """A warning per secret-holding file (the SQLite database, the log file) that users other
    than its owner may read: callgate creates them ``0600`` (`private_files`), an older or
    hand-made one may be wider; changing its mode is left to the operator."""
    database_file = sqlite_file(settings.database_url)
    for path in (database_file, settings.log_file):
        mode = None if path is None else wider_than_owner(path)
        if mode is not None:
            log.warning("file readable by other users: chmod 600 it", file=str(path), mode=mode)


@asynccontextmanager
async def running(settings: Settings, *, resume_calls: bool = True) -> AsyncIterator[Services]:
    """The service's use cases, wired once over one database pool and the PBX transports, for
    as long as the block runs; stopped in order at its end (nothing in flight is lost).

    ``resume_calls=False`` is an operator's run beside the service (``callgate call
    --direct``): it neither settles the rows another process may be writing nor follows that
    process's calls, only the ones it places itself.
    """
    started = utcnow()  # no call of this run exists yet: older pending rows are orphans
    # One pool, for every statement.
    database = connect(settings.database_url, settings.database_pool_size)
    await database.open()
    demo = None
    # Only the service runs the demo's simulated PBX: a run beside it (`--direct`, `callgate
    # service test`) would point the demo host's row at a simulator of its own, which ends
    # with the command, and take the host from the service.
    if settings.demo and resume_calls:
        from callgate.demo import start_demo

        demo = await start_demo(settings, database)
    pbx_transport = build_transport(settings, database)
    pbx = build_client(settings, pbx_transport)
    # Several instances may share a PostgreSQL database: each host's calls are followed by the
    # holder of its lease (`calls.leases`). SQLite is one process's; a `--direct` run beside
    # the service follows only the calls it places, as before.
    leases = None
    if resume_calls and is_postgres(settings.database_url):
        owner = instance_id(settings.instance_id, settings.port)
        leases = Leases(database, owner, settings.lease_ttl)
        leases.start()
    tracker = CallTracker(
        pbx,
        database,
        settings,
        leases=leases,
        interval=settings.track_interval,
        lost_after=settings.track_lost_after,
        listen=settings.track_listen,
        publish_stored=not fed_from_log(settings.database_url),
    )
    reads = CallReads(database)
    live = LiveCalls(
        settings.limit_live_calls_per_enterprise,
        settings.limit_live_calls_per_host,
        followed=tracker.live_calls,
    )
    limits = Limits(settings, live, storage_for(settings))
    # On PostgreSQL several instances may share the database: the double-click guard and the
    # order of originates per (host, extension) are held there (README, "Several instances").
    shared = fed_from_log(settings.database_url)
    locks = AdvisoryLocks(settings.database_url) if shared else None
    # On PostgreSQL every instance's subscribers hear of every stored transition of their
    # enterprises (started once the tracker runs, below).
    shared_events = listen_for_events(settings.database_url, database, tracker)
    calls = CallService(
        settings,
        database,
        pbx,
        tracker,
        reads=reads,
        limits=limits,
        claims=SharedClaims(database, settings.duplicate_window, locks=locks) if shared else None,
        originates=locks,
        coordinated=(lambda: not leases.alone) if leases is not None else lambda: True,
    )
    services = Services(
        settings=settings,
        calls=calls,
        placing=Placing(calls, reads),
        reads=reads,
        watching=Watching(
            tracker,
            database,
            streams_per_enterprise=settings.streams_per_enterprise,
            retention=timedelta(seconds=settings.events_retention),
            hear_of=shared_events.want if shared_events is not None else None,
        ),
        status=ServiceStatus(database, pbx, tracker, settings),
        webhooks=Webhooks(database, settings),
        ready_message=demo.instructions if demo is not None else None,
    )
    # Before the tracker resumes: a call a killed run left pending gets its outcome (and
    # its state `lost`), so the tracker does not adopt it. Never re-dialled.
    # With other instances running, only rows older than any placing (`calls.reconcile`).
    settling: asyncio.Task[None] | None = None
    if resume_calls:
        before = await settle_before(started, leases, placing_bound(settings))
        try:
            await reconcile_pending(database, before=before)
        except DatabaseUnavailable:  # the service still starts; the rows are settled later
            settling = asyncio.create_task(reconcile_until_done(database, before=before))
    sweeping = None  # the rows that instances killed mid-placement leave
    if leases is not None:
        sweeping = asyncio.create_task(sweep_orphans(database, leases, placing_bound(settings)))
    await tracker.start(resume=resume_calls)  # resumes the calls a previous run left live
    if shared_events is not None:
        shared_events.start()
    if resume_calls:
        try:  # they count against the live-call caps again
            await adopt_live_calls(live, database)
        except DatabaseUnavailable:
            log.warning("live calls not counted: the database is unavailable")
    with contextlib.suppress(DatabaseUnavailable):  # read again every few seconds
        await limits.refresh(database)
    refreshing = asyncio.create_task(
        keep_refreshed(limits, database, settings.limit_refresh_interval)
    )
    # Several instances on PostgreSQL: the others' live calls count against the caps too.
    counting = await count_elsewhere(live, database) if shared else None
    if settings.ssh_host_key_policy is HostKeyPolicy.OFF:
        log.warning("SSH host key checking is off: any server answering is trusted")
    for address in await services.status.unchecked_hosts() or ():
        log.warning(
            "SSH host key checking is off for a host: any server answering is trusted", host=address
        )
    warn_about_open_files(settings)
    stop_metrics = await start_metrics(settings, database, tracker, pbx_transport)
    # Webhooks and CRMs are told from the event log, on a task of their own: a slow receiver
    # never slows a call. Only the service sends (a `--direct` run beside it does not).
    dispatcher = Dispatcher(database, settings, leases=leases) if resume_calls else None
    if dispatcher is not None:
        dispatcher.start()
    if leases is not None:
        await leases.acquire(leases.instance)  # seen by the others from now on
        if await leases.look_for_others():
            # The others share their guard and originate order with an instance once they
            # have seen it, at their next look (within `renew_every`): not before then.
            await asyncio.sleep(leases.renew_every + JOIN_MARGIN)
    log.info("service ready", port=settings.port, version=__version__)
    try:
        yield services
    finally:
        stop_metrics()
        if dispatcher is not None:
            await dispatcher.aclose()
        await cancel_and_wait(refreshing, counting, settling, sweeping)
        await calls.drain()  # call-log writes still running: nothing is lost
        await services.watching.aclose()
        if shared_events is not None:
            await shared_events.aclose()
        await tracker.stop()  # before the transport closes: its last listings finish
        if leases is not None:  # after the tracker's last writes: the others take over now
            await leases.aclose()
        await pbx_transport.aclose()
        await limits.aclose()
        if locks is not None:
            await locks.aclose()
        if demo is not None:
            await demo.close()
        await database.close()
