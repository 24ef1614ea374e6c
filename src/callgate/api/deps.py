"""FastAPI dependencies: they only fetch what the app's lifespan wired once."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from callgate.calls.placing import Placing
from callgate.calls.reading import CallReads
from callgate.calls.service import CallService
from callgate.calls.status import ServiceStatus
from callgate.calls.watching import Watching
from callgate.settings import Settings


@dataclass
class Services:
    """The use cases a request handler may call, built once by the app's lifespan."""

    settings: Settings
    calls: CallService  # authorise, place (the legacy flow), hang up, list a host's channels
    placing: Placing  # place for the v1 API: idempotency, the call read back
    reads: CallReads  # an enterprise's calls
    watching: Watching  # an enterprise's calls as they change
    status: ServiceStatus  # the running parts, for /api/status


# The dependencies are `async def` although they never await: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hand-off per request for reading one attribute.


async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def request_id(request: Request) -> str:
    rid: str = request.state.request_id
    return rid


def secret_from(request: Request, client_id: str | None) -> str | None:
    """The secret: `clientId` in the query, `Authorization: Bearer`, or `X-Client-Id`."""
    if client_id:
        return client_id
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-client-id") or None
