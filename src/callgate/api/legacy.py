"""The seed's contract, unchanged: same paths, parameters, keys, status codes and texts.

Additions only: `call_id` in the success body, RetailCRM's `userId` and `externalPhone`
accepted, and the secret may come in `Authorization: Bearer` or `X-Client-Id` too.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.utils import validation_error_definition, validation_error_response_definition
from fastapi.responses import JSONResponse

from callgate import __version__, errors
from callgate.api.deps import Services, request_id, secret_from, services
from callgate.db.engine import database_state

router = APIRouter()

SERVICE_NAME = "asterisk-call-management"


# The query parameters are read from the request rather than declared to FastAPI: every one
# is optional text that the handler's own allow-lists judge (the seed's contract, its 422
# shape included), and FastAPI's per-request solving of them and of two dependencies was a
# tenth of a call's CPU. The schema documents them exactly as declared parameters would be.
_QUERY = ("code", "phone", "clientId", "userId", "externalPhone")
_OPTIONAL_TEXT = {"anyOf": [{"type": "string"}, {"type": "null"}]}
_DOCUMENTED: dict[str, Any] = {
    "parameters": [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": {**_OPTIONAL_TEXT, "title": name.capitalize()},
        }
        for name in _QUERY
    ],
    "responses": {
        "422": {
            "description": "Validation Error",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
            },
        }
    },
}


@router.get("/api/makecallexternal", openapi_extra=_DOCUMENTED)
async def make_call_external(request: Request) -> JSONResponse:
    query = request.query_params  # userId and externalPhone: accepted, not used
    code, phone = query.get("code"), query.get("phone")
    svc, rid = await services(request), await request_id(request)
    secret = secret_from(request, query.get("clientId"))
    try:
        extension, number = svc.calls.validate(code, phone)
        if secret is None:
            raise errors.InvalidInput("clientId", "field required")
        placed = await svc.calls.place_call(secret, extension, number, request_id=rid)
    except errors.InvalidInput as exc:
        return JSONResponse(status_code=422, content=_field_error(exc))
    except errors.AuthenticationFailed:
        return JSONResponse(status_code=401, content={"detail": "Invalid clientId"})
    except errors.CallgateError as exc:
        return JSONResponse(
            status_code=500, content={"detail": f"Call initiation failed: {exc.message}"}
        )
    return JSONResponse(
        {
            "success": True,
            "message": f"Call initiated successfully: {placed.extension} -> {placed.phone}",
            "enterprise": placed.tenant.name,
            "enterprise_number": placed.tenant.number,
            "from_ext": placed.extension,
            "to_phone": placed.phone,
            "host_ip": placed.tenant.ip,
            "response_time_ms": placed.response_time_ms,
            "call_id": placed.call_id,
        }
    )


def install(app: FastAPI) -> None:
    """Serve the router, and list the schemas its documented 422 refers to: FastAPI adds
    them only for routes that declare their parameters."""
    app.include_router(router)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schemas = generate().setdefault("components", {}).setdefault("schemas", {})
            schemas.setdefault("ValidationError", validation_error_definition)
            schemas.setdefault("HTTPValidationError", validation_error_response_definition)
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def _field_error(exc: errors.InvalidInput) -> dict[str, Any]:
    """FastAPI's own 422 shape, which the seed returned for a missing parameter."""
    message = exc.message.removeprefix(f"{exc.field}: ")
    return {"detail": [{"loc": ["query", exc.field], "msg": message, "type": "value_error"}]}


@router.get("/health")
async def health(svc: Services = Depends(services)) -> dict[str, Any]:  # noqa: B008
    return {"status": "healthy", "service": SERVICE_NAME, "port": svc.settings.port}


@router.get("/api/status")
async def status(svc: Services = Depends(services)) -> dict[str, Any]:  # noqa: B008
    settings = svc.settings
    warnings = []
    if settings.ssh_host_key_policy.value == "off":
        warnings.append("SSH host key checking is off (CALLGATE_SSH_HOST_KEY_POLICY=off)")
    return {
        "service": SERVICE_NAME,
        "version": __version__,
        "database": await database_state(svc.engine),
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
            "transport": settings.transport.value,
        },
        "pbx": svc.pbx.transport.status(),
        "tracking": svc.tracker.status(),
        "warnings": warnings,
    }
