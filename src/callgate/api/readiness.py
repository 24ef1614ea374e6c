"""`GET /ready`: whether this process should be sent new requests (a load balancer's probe).

`/health` stays the seed's (the process answers); `/ready` says 200 only while the database
answers within `READY_DATABASE_WITHIN` seconds and the service is not draining, 503 otherwise,
with the reason in the body. Draining starts with the stop's SIGTERM (`callgate.app.serve`) or,
in a server run some other way, with the lifespan's shutdown.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from callgate.api.deps import services
from callgate.calls.services import Services

router = APIRouter()

# A probe that waits longer than this for the database is as good as a failed one; a load
# balancer's own probe timeout is typically a few seconds.
READY_DATABASE_WITHIN = 2.0


class Draining:
    """Set once, when the service begins to stop; never cleared (the process is ending)."""

    def __init__(self) -> None:
        self.since: float | None = None

    @property
    def active(self) -> bool:
        return self.since is not None

    def start(self) -> None:
        if self.since is None:
            self.since = time.monotonic()


def draining_of(app: FastAPI) -> Draining:
    """The app's draining flag (`install` created it)."""
    found: Draining = app.state.draining
    return found


@router.get(
    "/ready",
    responses={503: {"description": "draining, or the database does not answer"}},
)
async def ready(request: Request) -> JSONResponse:
    if draining_of(request.app).active:
        return _not_ready("draining", "the service is stopping; new requests go elsewhere")
    svc = await services(request)
    database = await _database_state(svc)
    if database != "connected":
        # The failure's class name only (`database_state`): never a DSN or an address.
        return _not_ready("database", f"the database does not answer: {database}")
    return JSONResponse({"status": "ready", "database": "connected"})


async def _database_state(svc: Services) -> str:
    """The database's state (`ServiceStatus.database`) within `READY_DATABASE_WITHIN`, whatever
    the driver does: a query cut short by the timeout may take seconds more to give its
    connection back (asyncpg's cancel goes to the server that does not answer), so that
    cleanup is left to finish on its own, and the probe answers in time."""
    check = asyncio.ensure_future(svc.status.database(within=READY_DATABASE_WITHIN))
    done, _ = await asyncio.wait({check}, timeout=READY_DATABASE_WITHIN + 0.1)
    if check in done:
        return check.result()
    _finishing.add(check)  # referenced until it ends (the loop keeps weak references only)
    check.add_done_callback(_finishing.discard)
    return "TimeoutError"


_finishing: set[asyncio.Future[str]] = set()


def _not_ready(reason: str, detail: str) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"status": "not_ready", "reason": reason, "detail": detail},
        headers={"Retry-After": "1", "Cache-Control": "no-store"},
    )


def install(app: FastAPI) -> None:
    app.state.draining = Draining()
    app.include_router(router)
