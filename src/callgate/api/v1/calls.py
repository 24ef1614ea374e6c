"""/v1/calls and /v1/channels: thin resources over CallService, the tracker and the PBX."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response

from callgate import errors
from callgate.api.deps import Services, request_id, services
from callgate.api.v1 import render
from callgate.api.v1.auth import Caller, caller
from callgate.api.v1.problems import ApiProblem
from callgate.api.v1.schemas import CallCreate, CallOut, CallPage, ChannelOut, Problem
from callgate.calls.service import CallRequest
from callgate.db import call_queries
from callgate.db.guard import db_step
from callgate.domain.states import TERMINAL, CallState
from callgate.validation import normalize_phone, validate_code

router = APIRouter(
    prefix="/v1",
    tags=["v1"],
    responses={
        code: {"model": Problem, "content": {"application/problem+json": {}}}
        for code in (401, 404, 409, 422, 502, 503, 504)
    },
)
Svc = Annotated[Services, Depends(services)]
Who = Annotated[Caller, Depends(caller)]
Rid = Annotated[str, Depends(request_id)]
_IDEMPOTENCY_KEY = Header(None, max_length=255, pattern=r"^[\x21-\x7e]+$")
MAX_METADATA = 4096
ALL_STATES = frozenset(state.value for state in CallState)
# The CSV's last columns: agent_result, agent_ring_s, agent_reason, customer_result, …
CSV_SIDES = [
    (side, field) for side in ("agent", "customer") for field in ("result", "ring_s", "reason")
]


@router.post("/calls", status_code=201, response_model=CallOut)
async def create_call(
    body: CallCreate,
    response: Response,
    svc: Svc,
    who: Who,
    rid: Rid,
    idempotency_key: str | None = _IDEMPOTENCY_KEY,
) -> Any:
    """Place a call: ring `from`, then dial `to`. `Idempotency-Key` makes retries safe."""
    extension = validate_code(body.from_, svc.settings.code_max_length, field="from")
    number = normalize_phone(body.to, field="to")
    encoded = json.dumps(body.metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        size = len(encoded.encode("utf-8"))  # a lone surrogate cannot be stored or answered
    except UnicodeEncodeError:
        raise errors.InvalidInput("metadata", "is not valid Unicode text") from None
    if size > MAX_METADATA:
        raise errors.InvalidInput("metadata", f"is larger than {MAX_METADATA} bytes")
    fingerprint = hashlib.sha256(
        json.dumps([extension, number, body.ring_timeout, encoded]).encode()
    ).hexdigest()
    request = CallRequest(
        extension,
        number,
        ring_timeout=body.ring_timeout,
        metadata=body.metadata,
        idempotency_key=idempotency_key,
        request_hash=fingerprint if idempotency_key else None,
        call_id=str(uuid.uuid4()) if idempotency_key else None,
    )
    if idempotency_key:
        earlier = await render.find_by_key(svc, who.tenant.number, idempotency_key)
        if earlier is not None:
            return await render.replay(svc, earlier, fingerprint, response)
        try:
            placed, _ = await svc.calls.place(
                who.tenant, who.target, request, request_id=rid, record_first=True
            )
        except errors.Conflict:  # a parallel duplicate inserted the key first: follow it
            earlier = await render.find_by_key(svc, who.tenant.number, idempotency_key)
            if earlier is None:
                raise
            return await render.replay(svc, earlier, fingerprint, response)
    else:
        placed, reused = await svc.calls.place(
            who.tenant, who.target, request, request_id=rid, record_first=True
        )
        if reused:
            response.status_code = 200
            response.headers["X-Callgate-Duplicate-Of"] = placed.call_id
    try:
        return await render.call_out(svc, who.tenant.number, placed.call_id)
    except errors.DatabaseUnavailable:
        # The call was dialled: answering an error now would invite a retry that rings the
        # agent twice. Answer what is known; the outcome is logged for the call log.
        return render.placed_out(placed, request)


@router.get("/calls/{call_id}", response_model=CallOut)
async def get_call(call_id: str, svc: Svc, who: Who) -> Any:
    """A call with its state, timeline, durations and channel names."""
    return await render.call_out(svc, who.tenant.number, call_id)


@router.get(
    "/calls",
    response_model=CallPage,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def list_calls(
    svc: Svc,
    who: Who,
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
    if state is not None and state not in ALL_STATES:
        raise errors.InvalidInput("state", "must be one of " + ", ".join(sorted(ALL_STATES)))
    where = call_queries.CallFilter(
        enterprise_number=who.tenant.number,
        state=state,
        extension=validate_code(extension, 32, field="extension") if extension else None,
        phone=normalize_phone(phone) if phone else None,
        since=_utc(since, "since"),
        until=_utc(until, "until"),
    )
    try:
        async with db_step("listing calls"), svc.sessions() as session:
            rows, next_cursor = await call_queries.list_calls(
                session, where, limit=limit, cursor=cursor
            )
    except ValueError as exc:
        raise errors.InvalidInput("cursor", str(exc)) from None
    items = [render.record_out(row, []) for row in rows]
    if format == "csv":
        return _csv(items, next_cursor)
    return CallPage(items=items, next_cursor=next_cursor)


@router.post("/calls/{call_id}/hangup", response_model=CallOut)
async def hangup_call(call_id: str, svc: Svc, who: Who) -> Any:
    """Hang the call up on the PBX (`channel request hangup` for its channels)."""
    record = await render.tenant_record(svc, who.tenant.number, call_id)
    if record.state in TERMINAL or not record.channel:
        raise ApiProblem(409, "call_not_live", f"the call is {record.state}: nothing to hang up")
    await svc.calls.hangup(who.target, record.id, record.channel, record.state)
    return await render.call_out(svc, who.tenant.number, call_id)


@router.get("/channels", response_model=list[ChannelOut])
async def channels(svc: Svc, who: Who) -> Any:
    """The live channels on the enterprise's PBX host, parsed from the CLI."""
    found = await svc.pbx.channels(who.target)
    return [ChannelOut.model_validate(channel, from_attributes=True) for channel in found]


def _utc(moment: datetime | None, field: str) -> datetime | None:
    """A filter time in UTC; one without a zone is taken as UTC (the API's times are UTC)."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        raise errors.InvalidInput(field, "is out of range") from None


def _csv(items: list[CallOut], next_cursor: str | None) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    columns = ["id", "state", "outcome", "from", "to", "host", "created_at", "ended_at"]
    sides = [f"{side}_{field}" for side, field in CSV_SIDES]
    writer.writerow([*columns, "ringing_s", "talk_s", "end_reason", *sides])
    for item in items:
        data = item.model_dump(by_alias=True, mode="json")
        durations = data["durations"]
        ends = data["sides"] or {}
        writer.writerow(
            [data[c] for c in columns]
            + [durations.get("ringing_s"), durations.get("talk_s"), data["end_reason"]]
            + [(ends.get(side) or {}).get(field) for side, field in CSV_SIDES]
        )
    headers = {"X-Next-Cursor": next_cursor} if next_cursor else {}
    return Response(buffer.getvalue(), media_type="text/csv", headers=headers)
