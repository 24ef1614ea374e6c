"""/v1/events: a tenant's call transitions as they happen (Server-Sent Events).

SSE rather than a WebSocket: one direction is all that is needed, it passes any HTTP proxy,
and every HTTP client (curl, httpx, browsers' EventSource) can read it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from callgate.api.deps import Services, services
from callgate.api.v1.auth import Caller, caller
from callgate.api.v1.render import sides_out
from callgate.api.v1.schemas import Problem
from callgate.db import call_queries
from callgate.db.call_tracking import Transition

router = APIRouter(
    prefix="/v1",
    tags=["v1"],
    responses={
        code: {"model": Problem, "content": {"application/problem+json": {}}} for code in (401, 503)
    },
)
KEEPALIVE = 15.0  # a comment line this often lets both ends notice a dead connection


@router.get("/events", response_class=StreamingResponse)
async def events(
    svc: Annotated[Services, Depends(services)], who: Annotated[Caller, Depends(caller)]
) -> StreamingResponse:
    """`event: call.<state>` for this tenant's calls only; `data` is JSON: `call_id`, `state`,
    `at`, `reason`, and `sides` (why each side ended, as in a call's body: null before the
    call ends)."""
    return StreamingResponse(
        _stream(svc, who.tenant.number),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(svc: Services, tenant: str) -> AsyncIterator[str]:
    subscription = svc.tracker.subscribe()
    owners: dict[str, bool] = {}  # call id -> belongs to this tenant (a call never changes owner)
    try:
        yield ": connected\n\n"
        while True:
            try:
                transition = await asyncio.wait_for(anext(subscription), KEEPALIVE)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            except StopAsyncIteration:
                return
            if await _owned(svc, tenant, transition.call_id, owners):
                yield _format(transition)
    finally:
        subscription.close()


async def _owned(svc: Services, tenant: str, call_id: str, owners: dict[str, bool]) -> bool:
    if call_id not in owners:
        async with svc.sessions() as session:
            owners[call_id] = await call_queries.tenant_call(session, tenant, call_id) is not None
    return owners[call_id]


def _format(transition: Transition) -> str:
    sides = sides_out(transition.sides)
    data = {
        "call_id": transition.call_id,
        "state": str(transition.state),
        "at": transition.at.isoformat(),
        "reason": transition.reason,
        "sides": None if sides is None else sides.model_dump(mode="json"),
    }
    return f"id: {transition.call_id}\nevent: call.{transition.state}\ndata: {json.dumps(data)}\n\n"
