"""/v1/webhooks: an enterprise's webhook endpoints (`callgate.calls.webhooks`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, Field

from callgate.api.deps import services
from callgate.api.v1.auth import authorised
from callgate.api.v1.problems import ApiProblem
from callgate.api.v1.schemas import Problem
from callgate.calls.service import Enterprise
from callgate.calls.services import Services
from callgate.calls.webhooks import Endpoint

router = APIRouter(
    prefix="/v1",
    tags=["v1"],
    responses={
        code: {"model": Problem, "content": {"application/problem+json": {}}}
        for code in (401, 404, 413, 422, 503)
    },
)
Svc = Annotated[Services, Depends(services)]
Authorised = Annotated[Enterprise, Depends(authorised)]


class WebhookCreate(BaseModel):
    url: str = Field(max_length=2048, description="http:// or https://, no credentials in it.")
    event_types: list[str] | None = Field(
        None,
        max_length=20,
        description="`call.<state>` event types to send; omitted or null: every event.",
    )


class WebhookOut(BaseModel):
    id: int
    url: str
    event_types: list[str] | None
    created_at: datetime
    disabled_at: datetime | None = Field(
        description="When deliveries stopped: a 410 answer, or a day of failures."
    )
    disabled_reason: str | None


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret (`whsec_...`): shown this once.")


def _out(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "event_types": endpoint.event_types,
        "created_at": endpoint.created_at,
        "disabled_at": endpoint.disabled_at,
        "disabled_reason": endpoint.disabled_reason,
    }


@router.post("/webhooks", status_code=201, response_model=WebhookCreated)
async def create_webhook(body: WebhookCreate, svc: Svc, enterprise: Authorised) -> Any:
    """Add an endpoint; its signing secret is in this answer only."""
    endpoint, secret = await svc.webhooks.add(enterprise.number, body.url, body.event_types)
    return {**_out(endpoint), "secret": secret}


@router.get("/webhooks", response_model=list[WebhookOut])
async def list_webhooks(svc: Svc, enterprise: Authorised) -> Any:
    """The enterprise's endpoints (never their secrets)."""
    return [_out(endpoint) for endpoint in await svc.webhooks.list(enterprise.number)]


@router.delete("/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(
    webhook_id: Annotated[int, Path(ge=1, le=2**31 - 1)], svc: Svc, enterprise: Authorised
) -> Response:
    """Remove an endpoint and its undelivered events."""
    if not await svc.webhooks.remove(enterprise.number, webhook_id):
        raise ApiProblem(404, "not_found", f"no webhook {webhook_id}")
    return Response(status_code=204)
