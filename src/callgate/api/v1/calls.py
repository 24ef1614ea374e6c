"""/v1/calls and /v1/channels: HTTP in, use cases (`callgate.calls`), bodies out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response

from callgate.api.deps import request_id, services
from callgate.api.v1 import render
from callgate.api.v1.auth import authorised
from callgate.api.v1.schemas import CallCreate, CallOut, CallPage, ChannelOut, Problem
from callgate.calls.export import csv_text
from callgate.calls.service import Enterprise
from callgate.calls.services import Services
from callgate.validation import normalize_phone, validate_extension

router = APIRouter(
    prefix="/v1",
    tags=["v1"],
    responses={
        code: {"model": Problem, "content": {"application/problem+json": {}}}
        for code in (401, 403, 404, 409, 413, 422, 429, 502, 503, 504)
    },
)
Svc = Annotated[Services, Depends(services)]
Authorised = Annotated[Enterprise, Depends(authorised)]
Rid = Annotated[str, Depends(request_id)]
_IDEMPOTENCY_KEY = Header(None, max_length=255, pattern=r"^[\x21-\x7e]+$")


@router.post("/calls", status_code=201, response_model=CallOut)
async def create_call(
    body: CallCreate,
    response: Response,
    svc: Svc,
    enterprise: Authorised,
    rid: Rid,
    idempotency_key: str | None = _IDEMPOTENCY_KEY,
) -> Any:
    """Place a call: ring `from`, then dial `to`. `Idempotency-Key` makes retries safe."""
    placement = await svc.placing.place(
        enterprise,
        validate_extension(body.extension, svc.settings.code_max_length, field="from"),
        normalize_phone(body.to, field="to"),
        request_id=rid,
        ring_timeout=body.ring_timeout,
        metadata=body.metadata,
        idempotency_key=idempotency_key,
    )
    if placement.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    elif placement.reused:
        response.status_code = 200
        response.headers["X-Callgate-Duplicate-Of"] = placement.call.id
    return render.call_out(placement.call)


@router.get("/calls/{call_id}", response_model=CallOut)
async def get_call(call_id: str, svc: Svc, enterprise: Authorised) -> Any:
    """A call with its state, timeline, durations and channel names."""
    return render.call_out(await svc.reads.call(enterprise.number, call_id))


@router.get(
    "/calls",
    response_model=CallPage,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def list_calls(
    svc: Svc,
    enterprise: Authorised,
    state: str | None = None,
    extension: Annotated[str | None, Query(max_length=32)] = None,
    phone: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> Any:
    """Call history, newest first, with filters and cursor pagination; `format=csv` exports."""
    page = await svc.reads.page(
        enterprise.number,
        state=state,
        extension=extension,
        phone=phone,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    if format == "csv":
        headers = {"X-Next-Cursor": page.next_cursor} if page.next_cursor else {}
        return Response(csv_text(page.calls), media_type="text/csv", headers=headers)
    return CallPage(
        items=[render.call_out(call) for call in page.calls], next_cursor=page.next_cursor
    )


@router.post("/calls/{call_id}/hangup", response_model=CallOut)
async def hangup_call(call_id: str, svc: Svc, enterprise: Authorised) -> Any:
    """Hang the call up on the PBX (`channel request hangup` for its channels)."""
    await svc.calls.hangup(enterprise, call_id)
    return render.call_out(await svc.reads.call(enterprise.number, call_id))


@router.get("/channels", response_model=list[ChannelOut])
async def channels(svc: Svc, enterprise: Authorised) -> Any:
    """The live channels on the enterprise's PBX host, parsed from the CLI."""
    found = await svc.calls.channels(enterprise)
    return [ChannelOut.model_validate(channel, from_attributes=True) for channel in found]
