"""/v1/events: an enterprise's call transitions as they happen (Server-Sent Events).

SSE rather than a WebSocket: one direction is all that is needed, it passes any HTTP proxy,
and every HTTP client (curl, httpx, browsers' EventSource) can read it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from callgate.api.deps import services
from callgate.api.v1.auth import authorised
from callgate.api.v1.problems import ApiProblem
from callgate.api.v1.render import sides_out
from callgate.api.v1.schemas import Problem
from callgate.calls.history import Transition
from callgate.calls.service import Enterprise
from callgate.calls.services import Services
from callgate.calls.watching import EnterpriseFeed, TooManyStreams

router = APIRouter(
    prefix="/v1",
    tags=["v1"],
    responses={
        code: {"model": Problem, "content": {"application/problem+json": {}}}
        for code in (401, 429, 503)
    },
)
KEEPALIVE = 15.0  # a comment line this often lets both ends notice a dead connection


@router.get("/events", response_class=StreamingResponse)
async def events(
    svc: Annotated[Services, Depends(services)],
    enterprise: Annotated[Enterprise, Depends(authorised)],
) -> StreamingResponse:
    """`event: call.<state>` for this enterprise's calls only; `data` is JSON: `call_id`,
    `state`, `at`, `reason`, and `sides` (why each side ended, as in a call's body: null before
    the call ends). At most `CALLGATE_STREAMS_PER_ENTERPRISE` streams per enterprise (429);
    a disabled enterprise's streams end within seconds."""
    try:
        svc.watching.check_room(enterprise.number)
    except TooManyStreams as exc:
        raise ApiProblem(429, exc.code, exc.message) from None
    return StreamingResponse(
        _stream(svc, enterprise.number),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(svc: Services, enterprise_number: str) -> AsyncIterator[str]:
    # Opened here, not in the handler: the generator's `finally` is what closes it, and runs
    # only once the generator has started.
    try:
        feed: EnterpriseFeed = svc.watching.feed(enterprise_number, quiet=KEEPALIVE)
    except TooManyStreams:  # another stream took the last place since the check
        return
    try:
        yield ": connected\n\n"
        async for transition in feed:
            yield ": keepalive\n\n" if transition is None else _format(transition)
    finally:
        feed.close()


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
