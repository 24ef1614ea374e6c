"""create_app(settings): the lifespan wires database, PBX transport and services once."""

from __future__ import annotations

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
from callgate.calls.service import CallService
from callgate.calls.tracker import CallTracker
from callgate.db.engine import make_engine, make_read_engine, make_sessionmaker
from callgate.logs import configure_logging, get_logger
from callgate.pbx.factory import build_client, build_transport
from callgate.pbx.transport import PbxTransport
from callgate.settings import HostKeyPolicy, Settings

log = get_logger("callgate.app")


def create_app(settings: Settings, *, transport: PbxTransport | None = None) -> FastAPI:
    """The ASGI app; `transport` replaces the SSH transport (tests of a unit only)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        sessions = make_sessionmaker(engine)
        read_engine = make_read_engine(settings.database_url)
        demo = None
        if settings.demo:
            from callgate.demo import start_demo

            demo = await start_demo(settings, sessions)
        pbx_transport = transport or build_transport(settings, sessions)
        pbx = build_client(settings, pbx_transport)
        tracker = CallTracker(
            pbx,
            sessions,
            settings,
            interval=settings.track_interval,
            lost_after=settings.track_lost_after,
        )
        calls = CallService(
            settings, sessions, pbx, tracker, reader=make_sessionmaker(read_engine)
        )
        app.state.services = Services(
            settings=settings,
            engine=engine,
            sessions=sessions,
            pbx=pbx,
            calls=calls,
            tracker=tracker,
        )
        await tracker.start()  # resumes the calls a previous run left live
        if settings.ssh_host_key_policy is HostKeyPolicy.OFF:
            log.warning("SSH host key checking is off: any server answering is trusted")
        log.info("service ready", port=settings.port, version=__version__)
        try:
            yield
        finally:
            await calls.drain()  # call-log writes still running: nothing is lost
            await tracker.stop()  # before the transport closes: its last listings finish
            await pbx_transport.aclose()
            if demo is not None:
                await demo.close()
            await engine.dispose()
            await read_engine.dispose()

    app = FastAPI(
        title="callgate",
        version=__version__,
        description="Start and follow phone calls on remote Asterisk PBXs over SSH.",
        lifespan=lifespan,
    )
    middleware.install(app)
    problems.install(app)
    app.include_router(legacy.router)
    app.include_router(v1_calls.router)
    app.include_router(v1_events.router)
    return app


def serve(settings: Settings) -> None:
    """Run the service until SIGINT/SIGTERM (uvicorn drains requests in flight)."""
    configure_logging(settings.log_file, settings.log_format.value, settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=False,  # ours redacts secrets: see callgate.api.middleware
        log_config=None,
        timeout_graceful_shutdown=20,
    )
