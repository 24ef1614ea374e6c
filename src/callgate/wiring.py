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

from callgate import __version__
from callgate.calls.placing import Placing
from callgate.calls.rate_limits import (
    Limits,
    LiveCalls,
    adopt_live_calls,
    keep_refreshed,
    storage_for,
)
from callgate.calls.reading import CallReads
from callgate.calls.reconcile import reconcile_pending, reconcile_until_done
from callgate.calls.service import CallService
from callgate.calls.services import Services
from callgate.calls.status import ServiceStatus
from callgate.calls.targets import build_target
from callgate.calls.tracker import CallTracker
from callgate.calls.watching import Watching
from callgate.db.engine import sqlite_file
from callgate.db.executor import Executor, connect
from callgate.db.guard import db_step
from callgate.db.host_keys import DbHostKeyStore
from callgate.db.hosts import get_host
from callgate.db.models import utcnow
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

log = get_logger("callgate.app")

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


def build_transport(settings: Settings, database: Executor) -> PbxTransport:
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
    database = connect(settings.database_url)  # one pool, for every statement
    await database.open()
    demo = None
    if settings.demo:
        from callgate.demo import start_demo

        demo = await start_demo(settings, database)
    pbx_transport = build_transport(settings, database)
    pbx = build_client(settings, pbx_transport)
    tracker = CallTracker(
        pbx,
        database,
        settings,
        interval=settings.track_interval,
        lost_after=settings.track_lost_after,
        listen=settings.track_listen,
    )
    reads = CallReads(database)
    live = LiveCalls(
        settings.limit_live_calls_per_enterprise,
        settings.limit_live_calls_per_host,
        followed=tracker.live_calls,
    )
    limits = Limits(settings, live, storage_for(settings))
    calls = CallService(settings, database, pbx, tracker, reads=reads, limits=limits)
    services = Services(
        settings=settings,
        calls=calls,
        placing=Placing(calls, reads),
        reads=reads,
        watching=Watching(
            tracker, database, streams_per_enterprise=settings.streams_per_enterprise
        ),
        status=ServiceStatus(database, pbx, tracker, settings),
    )
    # Before the tracker resumes: a call a killed run left pending gets its outcome (and
    # its state `lost`), so the tracker does not adopt it. Never re-dialled.
    settling: asyncio.Task[None] | None = None
    if resume_calls:
        try:
            await reconcile_pending(database, before=started)
        except DatabaseUnavailable:  # the service still starts; the rows are settled later
            settling = asyncio.create_task(reconcile_until_done(database, before=started))
    await tracker.start(resume=resume_calls)  # resumes the calls a previous run left live
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
    if settings.ssh_host_key_policy is HostKeyPolicy.OFF:
        log.warning("SSH host key checking is off: any server answering is trusted")
    for address in await services.status.unchecked_hosts() or ():
        log.warning(
            "SSH host key checking is off for a host: any server answering is trusted", host=address
        )
    warn_about_open_files(settings)
    log.info("service ready", port=settings.port, version=__version__)
    try:
        yield services
    finally:
        refreshing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refreshing
        if settling is not None:
            settling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await settling
        await calls.drain()  # call-log writes still running: nothing is lost
        await services.watching.aclose()
        await tracker.stop()  # before the transport closes: its last listings finish
        await pbx_transport.aclose()
        await limits.aclose()
        if demo is not None:
            await demo.close()
        await database.close()
