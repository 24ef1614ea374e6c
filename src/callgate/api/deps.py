"""FastAPI dependencies: they only fetch what the app's lifespan wired once (`Services`)."""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.requests import HTTPConnection

from callgate.calls.services import Services
from callgate.settings import Settings

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


def is_admin(request: Request, settings: Settings) -> bool:
    """Whether the request carries `CALLGATE_ADMIN_TOKEN` as `Authorization: Bearer`
    (compared in constant time); never, when no token is set."""
    expected = settings.admin_token.get_secret_value().encode() if settings.admin_token else b""
    if not expected:  # an empty token would match an empty `Bearer`
        return False
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)


def client_address(request: HTTPConnection) -> str | None:
    """The address the request (or WebSocket) came from (failed authentications are limited
    per address)."""
    return request.client.host if request.client else None
