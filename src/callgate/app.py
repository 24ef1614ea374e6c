"""create_app(settings): the HTTP app, whose lifespan runs the use cases `wiring.running` builds."""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import TypedDict

import uvicorn
from fastapi import FastAPI

from callgate import __version__
from callgate.api import admin, legacy, middleware, readiness
from callgate.api import metrics as metrics_api
from callgate.api.v1 import calls as v1_calls
from callgate.api.v1 import events as v1_events
from callgate.api.v1 import problems
from callgate.api.v1 import webhooks as v1_webhooks
from callgate.api.v1 import ws as v1_ws
from callgate.logs import configure_logging, get_logger
from callgate.settings import Settings
from callgate.wiring import check_settings, running

log = get_logger("callgate.app")
STARTUP_FAILURE = 3  # uvicorn's exit status for a server that never started


class ServerLimits(TypedDict):
    """uvicorn's options that bound what clients can hold (`server_limits`)."""

    limit_concurrency: int
    timeout_keep_alive: int


def create_app(settings: Settings) -> FastAPI:
    """The ASGI app, serving the use cases `wiring.running` builds while it runs."""
    check_settings(settings)  # a bad CALLGATE_TRANSPORT fails here, not in the lifespan

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(settings) as services:
            app.state.services = services
            yield
            # Servers not run by `serve` (tests, other ASGI servers) drain from here on.
            readiness.draining_of(app).start()

    # uvicorn logs whole request lines (with `clientId=<secret>`) to "uvicorn.access" whenever
    # that logger has a handler, whatever `access_log` says; ours redacts (api/middleware).
    logging.getLogger("uvicorn.access").disabled = True
    # It logs WebSocket handshakes with their query strings to "uvicorn.error": redacted.
    handshakes = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, v1_ws.RedactedHandshakes) for f in handshakes.filters):
        handshakes.addFilter(v1_ws.RedactedHandshakes())
    app = FastAPI(
        title="callgate",
        version=__version__,
        description="Start and follow phone calls on remote Asterisk PBXs over SSH.",
        lifespan=lifespan,
    )
    middleware.install(app, max_body_bytes=settings.max_body_bytes)
    problems.install(app)
    legacy.install(app)
    admin.install(app)  # /admin: the operator's status page
    readiness.install(app)
    app.include_router(v1_calls.router)
    app.include_router(v1_events.router)
    app.include_router(v1_ws.router)
    app.include_router(v1_webhooks.router)
    app.include_router(metrics_api.router)
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

    On a stop `/ready` answers 503 at once (draining); CALLGATE_DRAIN_NOTICE seconds later
    (default 0) uvicorn closes the listening socket (new connections are refused), lets the
    requests in flight finish within ``graceful_timeout``, then the lifespan drains
    the call-log writes before closing the PBX transport and the database.
    """
    configure_logging(settings.log_file, settings.log_format.value, settings.log_level)
    app = create_app(settings)
    calm_garbage_collector()
    config = uvicorn.Config(
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
        **server_limits(settings),
    )
    server = DrainingServer(
        config,
        readiness.draining_of(app),
        settings.drain_notice,
        listening=lambda: _print_ready_message(app),
    )
    with contextlib.suppress(KeyboardInterrupt):  # as `uvicorn.run`
        server.run()
    if not server.started:  # the port is taken, the lifespan failed: as `uvicorn.run` does
        sys.exit(STARTUP_FAILURE)


def _print_ready_message(app: FastAPI) -> None:
    message = app.state.services.ready_message
    if message:
        print(message, flush=True)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, whose stop signal first marks the service as draining (`/ready`
    answers 503), then, ``notice`` seconds later, stops it as uvicorn does: the listening
    socket closes and the requests in flight finish. A second signal stops it at once.
    ``listening`` is called once the port accepts connections."""

    def __init__(
        self,
        config: uvicorn.Config,
        draining: readiness.Draining,
        notice: float,
        listening: Callable[[], None] = lambda: None,
    ):
        super().__init__(config)
        self._draining, self._notice, self._listening = draining, notice, listening
        self._stop_at: float | None = None
        self._signal = signal.SIGTERM
        self._announced = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:  # the lifespan ran and the socket is bound
            self._listening()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: it only sets flags (no logging, which takes locks).
        first = not self._draining.active
        self._draining.start()
        if first and self._notice > 0:
            self._signal, self._stop_at = signal.Signals(sig), time.monotonic() + self._notice
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._draining.active and not self._announced:
            self._announced = True
            log.info("stopping: draining", notice_s=self._notice)
        if self._stop_at is not None and time.monotonic() >= self._stop_at:
            self._stop_at = None
            super().handle_exit(self._signal, None)
        return await super().on_tick(counter)


def server_limits(settings: Settings) -> ServerLimits:
    """The HTTP server's own bounds (README, "Resource bounds"): beyond
    `limit_concurrency` connections and tasks at once a request gets 503 at once instead of
    queueing; an idle keep-alive connection is closed after `timeout_keep_alive` seconds.
    uvicorn has no timeout for slowly sent headers: the proxy in front sets that one."""
    return ServerLimits(
        limit_concurrency=settings.http_limit_concurrency,
        timeout_keep_alive=settings.http_keepalive_timeout,
    )
