"""create_app(settings): the lifespan wires database, PBX transport and services once."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from callgate import __version__
from callgate.api import legacy, middleware
from callgate.api.deps import Services
from callgate.api.v1 import calls as v1_calls
from callgate.api.v1 import events as v1_events
from callgate.api.v1 import problems
from callgate.calls.placing import Placing
from callgate.calls.reading import CallReads
from callgate.calls.reconcile import reconcile_pending, reconcile_until_done
from callgate.calls.service import CallService
from callgate.calls.status import ServiceStatus
from callgate.calls.tracker import CallTracker
from callgate.calls.watching import Watching
from callgate.db.executor import connect
from callgate.db.models import utcnow
from callgate.errors import DatabaseUnavailable
from callgate.logs import configure_logging, get_logger
from callgate.pbx.transport import PbxTransport
from callgate.settings import HostKeyPolicy, Settings
from callgate.wiring import build_client, build_transport, check_settings

log = get_logger("callgate.app")


def create_app(
    settings: Settings, *, transport: PbxTransport | None = None, resume_calls: bool = True
) -> FastAPI:
    """The ASGI app; `transport` replaces the SSH transport (tests of a unit only).

    ``resume_calls=False`` is an operator's run beside the service (``callgate call --direct``):
    it neither settles the rows another process may be writing nor follows that process's
    calls, only the ones it places itself.
    """
    if transport is None:
        check_settings(settings)  # a bad CALLGATE_TRANSPORT fails here, not in the lifespan

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = utcnow()  # no call of this run exists yet: older pending rows are orphans
        database = connect(settings.database_url)  # one pool, for every statement
        await database.open()
        demo = None
        if settings.demo:
            from callgate.demo import start_demo

            demo = await start_demo(settings, database)
        pbx_transport = transport or build_transport(settings, database)
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
        calls = CallService(settings, database, pbx, tracker, reads=reads)
        app.state.services = Services(
            settings=settings,
            calls=calls,
            placing=Placing(calls, reads),
            reads=reads,
            watching=Watching(tracker, reads),
            status=ServiceStatus(database, pbx, tracker),
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
        if settings.ssh_host_key_policy is HostKeyPolicy.OFF:
            log.warning("SSH host key checking is off: any server answering is trusted")
        log.info("service ready", port=settings.port, version=__version__)
        try:
            yield
        finally:
            if settling is not None:
                settling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await settling
            await calls.drain()  # call-log writes still running: nothing is lost
            await tracker.stop()  # before the transport closes: its last listings finish
            await pbx_transport.aclose()
            if demo is not None:
                await demo.close()
            await database.close()

    # uvicorn logs whole request lines (with `clientId=<secret>`) to "uvicorn.access" whenever
    # that logger has a handler, whatever `access_log` says; ours redacts (api/middleware).
    logging.getLogger("uvicorn.access").disabled = True
    app = FastAPI(
        title="callgate",
        version=__version__,
        description="Start and follow phone calls on remote Asterisk PBXs over SSH.",
        lifespan=lifespan,
    )
    middleware.install(app)
    problems.install(app)
    legacy.install(app)
    app.include_router(v1_calls.router)
    app.include_router(v1_events.router)
    return app


def graceful_timeout(settings: Settings) -> int:
    """How long a stop waits for requests in flight: the longest a call can take, and more.

    A request cut short leaves its call without an outcome (settled as `unknown` at the next
    start), so the wait covers the worst case: a session wait and a connect, the originate,
    and a verification listing that may itself take a command timeout. A fixed 20 s was less
    than that with the default timeouts (10 + 5 + 15 + 15 s).
    """
    call = (
        settings.ssh_pool_wait
        + settings.ssh_connect_timeout
        + 2 * settings.ssh_command_timeout
        + settings.verify_window
    )
    return max(20, math.ceil(call + 5))  # + the database steps around it


GC_YOUNG_THRESHOLD = 5000  # allocations between young collections (Python's default: 700)


def calm_garbage_collector() -> None:
    """Keep the cyclic garbage collector's pauses out of the latency's tail.

    A full collection walks every tracked object, and the libraries loaded here (FastAPI,
    pydantic, SQLAlchemy, asyncssh) hold hundreds of thousands: under load such a pass stalled
    the event loop for tens of milliseconds, the whole p99. What exists now lives as long as
    the process, so it is frozen out of collection; young collections run less often, and the
    older generations are promoted to less often. Memory still returns by reference counting;
    only cycles wait a little longer. What it does to the tail: the p99 of the concurrent
    clients in `make bench`, with and without this call.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


def serve(settings: Settings) -> None:
    """Run the service until SIGINT/SIGTERM.

    On a stop uvicorn closes the listening socket at once (new connections are refused),
    lets the requests in flight finish within ``graceful_timeout``, then the lifespan drains
    the call-log writes before closing the PBX transport and the database.
    """
    configure_logging(settings.log_file, settings.log_format.value, settings.log_level)
    app = create_app(settings)
    calm_garbage_collector()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        # libuv's event loop and a C HTTP parser ("auto" picks them too, when installed; named
        # here because they pay: `python -m bench.ablation --only full asyncio-h11`).
        loop="uvloop",
        http="httptools",
        access_log=False,  # ours redacts secrets: see callgate.api.middleware
        log_config=None,
        timeout_graceful_shutdown=graceful_timeout(settings),
    )
