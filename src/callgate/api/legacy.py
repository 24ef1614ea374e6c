"""The legacy contract (README, "The seed's contract"), unchanged: same paths, parameters,
keys, status codes and texts.

Additions only: `call_id` in the success body, RetailCRM's `userId` and `externalPhone`
accepted, and the secret may come in `Authorization: Bearer` or `X-Client-Id` too.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from callgate import __version__, errors
from callgate.api.deps import client_address, is_admin, request_id, secret_from, services
from callgate.calls.rate_limits import RateLimited
from callgate.calls.services import Services

router = APIRouter()

SERVICE_NAME = "asterisk-call-management"


class FieldError(BaseModel):
    loc: list[str]
    msg: str
    type: str


class FieldErrors(BaseModel):
    """The 422 body: FastAPI's validation error shape, as the legacy contract has it."""

    detail: list[FieldError]


# The query parameters are read from the request and described to FastAPI with
# `openapi_extra` (FastAPI's way for a handler that reads its request itself), rather than
# declared: each is optional text that the handler's own allow-lists judge, and FastAPI's
# solving of declared ones on every request pays: `python -m bench.ablation --only full
# declared-params`.
_QUERY = {
    "code": "the agent's extension",
    "phone": "the number to call",
    "clientId": "the enterprise's secret (or `Authorization: Bearer`, or `X-Client-Id`)",
    "userId": "RetailCRM's: accepted, not used",
    "externalPhone": "RetailCRM's: accepted, not used",
}
_PARAMETERS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    }
    for name, description in _QUERY.items()
]


@router.get(
    "/api/makecallexternal",
    openapi_extra={"parameters": _PARAMETERS},
    responses={422: {"model": FieldErrors, "description": "a missing or invalid parameter"}},
)
async def make_call_external(request: Request) -> JSONResponse:
    query = request.query_params  # userId and externalPhone: accepted, not used
    code, phone = query.get("code"), query.get("phone")
    svc, rid = await services(request), await request_id(request)
    secret = secret_from(request, query.get("clientId"))
    try:
        extension, number = svc.calls.validate(code, phone)
        if secret is None:
            raise errors.InvalidInput("clientId", "field required")
        placed = await svc.calls.place_call(
            secret, extension, number, request_id=rid, client=client_address(request)
        )
    except errors.InvalidInput as exc:
        return JSONResponse(status_code=422, content=_field_error(exc))
    except errors.AuthenticationFailed:
        return JSONResponse(status_code=401, content={"detail": "Invalid clientId"})
    except errors.DestinationNotAllowed as exc:
        return JSONResponse(
            status_code=403, content={"detail": f"Destination not allowed: {exc.message}"}
        )
    except RateLimited as exc:
        return JSONResponse(
            status_code=429,
            content={"detail": f"Rate limit exceeded: {exc.message}"},
            headers={"Retry-After": str(exc.retry_after)},
        )
    except errors.CallgateError as exc:
        return JSONResponse(
            status_code=500, content={"detail": f"Call initiation failed: {exc.message}"}
        )
    return JSONResponse(
        {
            "success": True,
            "message": f"Call initiated successfully: {placed.extension} -> {placed.phone}",
            "enterprise": placed.enterprise.name,
            "enterprise_number": placed.enterprise.number,
            "from_ext": placed.extension,
            "to_phone": placed.phone,
            "host_ip": placed.enterprise.ip,
            "response_time_ms": placed.response_time_ms,
            "call_id": placed.call_id,
        }
    )


def install(app: FastAPI) -> None:
    app.include_router(router)


def _field_error(exc: errors.InvalidInput) -> dict[str, Any]:
    message = exc.message.removeprefix(f"{exc.field}: ")
    error = FieldError(loc=["query", exc.field], msg=message, type="value_error")
    return FieldErrors(detail=[error]).model_dump()


@router.get("/health")
async def health(svc: Services = Depends(services)) -> dict[str, Any]:  # noqa: B008
    return {"status": "healthy", "service": SERVICE_NAME, "port": svc.settings.port}


@router.get("/api/status")
async def status(request: Request, svc: Services = Depends(services)) -> dict[str, Any]:  # noqa: B008
    """The legacy contract's keys for anyone; host addresses, error names and the transports'
    and tracker's details only with the admin token (README, "Isolation and status")."""
    settings = svc.settings
    admin = is_admin(request, settings)
    database = await svc.status.database()
    unchecked = await svc.status.unchecked_hosts()
    warnings = []
    if settings.ssh_host_key_policy.value == "off":
        warnings.append("SSH host key checking is off (CALLGATE_SSH_HOST_KEY_POLICY=off)")
    if unchecked:
        where = ", ".join(unchecked) if admin else f"{len(unchecked)} host(s)"
        warnings.append(f"SSH host key checking is off for {where} (callgate host set)")
    webhooks = await svc.webhooks.status()
    if webhooks and webhooks["disabled"]:
        warnings.append("webhook endpoints disabled: see `callgate webhook list`")
    body: dict[str, Any] = {
        "service": SERVICE_NAME,
        "version": __version__,
        "database": database if admin or database == "connected" else "unavailable",
        "asterisk_config": {
            "method": "SSH CLI",
            "ssh_port": settings.ssh_port,
            "ssh_user": settings.ssh_user,
            "auth": "key" if settings.ssh_key_file else "password",
            "host_key_policy": settings.ssh_host_key_policy.value,
            "connect_timeout": settings.ssh_connect_timeout,
            "command_timeout": settings.ssh_command_timeout,
            "dial_context": settings.dial_context,
            "asterisk_bin": settings.asterisk_bin,
            "transport": settings.transport,
        },
        "host_key_checking_off": settings.ssh_host_key_policy.value == "off" or bool(unchecked),
        "warnings": warnings,
    }
    if admin:
        body |= {"pbx": svc.status.pbx(), "tracking": svc.status.tracking()}
        body["webhooks"] = webhooks
    return body
