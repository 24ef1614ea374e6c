"""/v1/events: an enterprise's call transitions as they happen (Server-Sent Events).

Two channels carry the same events: this one, which passes any HTTP proxy and which every
HTTP client (curl, httpx, browsers' EventSource) can read, and the WebSocket (`api.v1.ws`)
for clients that want filters and pings both ways. Both number each event by its id in the
event log (`calls.event_log`), and both resume after the last id a client got:
`Last-Event-ID` here, ``resume_after`` there.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import StreamingResponse

from callgate import errors
from callgate.api.deps import services
from callgate.api.v1.auth import authorised
from callgate.api.v1.problems import ApiProblem
from callgate.api.v1.render import sides_out
from callgate.api.v1.schemas import Problem
from callgate.calls.event_log import Handover, Reset, parse_event_id
from callgate.calls.history import Transition
from callgate.calls.service import Enterprise
from callgate.calls.services import Services
from callgate.calls.watching import EnterpriseFeed, TooManyStreams
from callgate.logs import get_logger

log = get_logger("callgate.events")
router = APIRouter(
    prefix="/v1",
    tags=["v1"],
    responses={
        code: {"model": Problem, "content": {"application/problem+json": {}}}
        for code in (401, 429, 503)
    },
)
KEEPALIVE = 15.0  # a comment line this often lets both ends notice a dead connection
QUEUE = 10_000  # events a stream may have waiting; beyond, it ends (the client resumes)


@router.get("/events", response_class=StreamingResponse)
async def events(
    svc: Annotated[Services, Depends(services)],
    enterprise: Annotated[Enterprise, Depends(authorised)],
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """`event: call.<state>` for this enterprise's calls only; `id` is the event's id in the
    event log; `data` is JSON: `call_id`, `state`, `at`, `reason`, and `sides` (why each side
    ended, as in a call's body: null before the call ends).

    With `Last-Event-ID` the stream first replays the stored events after that id, then goes
    on live, without a gap or a repeat; an id older than `CALLGATE_EVENTS_RETENTION`,
    unknown or too far behind gets `event: reset` instead (the log's last id and a snapshot of
    the live calls). At most `CALLGATE_STREAMS_PER_ENTERPRISE` streams per enterprise (429);
    a disabled enterprise's streams end within seconds; a client too slow to keep up has its
    stream ended and resumes with `Last-Event-ID`."""
    try:
        svc.watching.check_room(enterprise.number)
    except TooManyStreams as exc:
        raise ApiProblem(429, exc.code, exc.message) from None
    return StreamingResponse(
        _stream(svc, enterprise.number, last_event_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    svc: Services, enterprise_number: str, last_event_id: str | None
) -> AsyncIterator[str]:
    # Opened here, not in the handler: the generator's `finally` is what closes it, and runs
    # only once the generator has started. Opened before the replay is read: nothing stored
    # meanwhile is missed (`calls.event_log`).
    try:
        feed: EnterpriseFeed = await svc.watching.feed(
            enterprise_number, quiet=KEEPALIVE, maxsize=QUEUE
        )
    except TooManyStreams:  # another stream took the last place since the check
        return
    try:
        yield ": connected\n\n"
        handover = Handover()
        if last_event_id:  # absent or empty: live events only
            try:
                replay, handover = await svc.watching.resume(
                    enterprise_number, parse_event_id(last_event_id)
                )
            except errors.DatabaseUnavailable as exc:
                log.warning("event stream not resumed", detail=exc.message)
                return  # the client reconnects with the same Last-Event-ID
            if isinstance(replay, Reset):
                yield _reset(replay)
            else:
                for stored in replay:
                    yield _format(stored)
        async for transition in feed:
            if feed.overflowed.is_set():
                return  # events were lost here: the client resumes from the log
            if transition is None:
                yield ": keepalive\n\n"
            elif handover.fresh(transition):
                yield _format(transition)
    finally:
        feed.close()


def event_data(transition: Transition) -> dict[str, Any]:
    """An event's `data`, the same on every channel."""
    sides = sides_out(transition.sides)
    return {
        "call_id": transition.call_id,
        "state": str(transition.state),
        "at": transition.at.isoformat(),
        "reason": transition.reason,
        "sides": None if sides is None else sides.model_dump(mode="json"),
    }


def reset_data(reset: Reset) -> dict[str, Any]:
    """A reset's `data`: why, the log's last id, and each live call as an event's data
    (its current state, since when; `reason` and `sides` null)."""
    calls = [
        {
            "call_id": call.call_id,
            "state": str(call.state),
            "at": call.at.isoformat(),
            "reason": None,
            "sides": None,
        }
        for call in reset.calls
    ]
    return {"reason": reset.reason, "last_event_id": reset.head, "calls": calls}


# Each stream of an enterprise sends each of its events: an event's text is made once, not once
# per stream (`python -m bench.events --endpoints 0`); the last FORMATTED events are kept.
FORMATTED = 1024


@functools.lru_cache(maxsize=FORMATTED)
def _format(transition: Transition) -> str:
    data = json.dumps(event_data(transition))
    return f"id: {transition.event_id}\nevent: call.{transition.state}\ndata: {data}\n\n"


def _reset(reset: Reset) -> str:
    # One event, so that its id (the log's head) stands for the whole snapshot: a client cut
    # off in the middle of it cannot resume past calls it has not seen.
    return f"id: {reset.head}\nevent: reset\ndata: {json.dumps(reset_data(reset))}\n\n"
