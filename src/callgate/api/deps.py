"""FastAPI dependencies: they only fetch what the app's lifespan wired once."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from callgate.calls.service import CallService
from callgate.calls.tracker import CallTracker
from callgate.pbx.client import PbxClient
from callgate.settings import Settings


@dataclass
class Services:
    """Everything a request handler may use, built in the app's lifespan."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    pbx: PbxClient
    calls: CallService
    tracker: CallTracker  # follows every placed call; subscribe() for live transitions


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
