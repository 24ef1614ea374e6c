"""Errors as `application/problem+json` (RFC 9457) with a stable `code`, in one place.

The legacy endpoint never uses this: it keeps the legacy contract's `{"detail": …}`
bodies (README, "The seed's contract").
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from callgate import errors
from callgate.calls.idempotency import IdempotencyKeyReused
from callgate.calls.rate_limits import RateLimited
from callgate.calls.reading import CallNotFound
from callgate.calls.service import CallNotLive

PROBLEM = "application/problem+json"


class ApiProblem(Exception):
    """An HTTP-level problem that is not a callgate error (the secret's form on /v1)."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra


_PBX_TIMEOUTS = (errors.SshConnectTimeout, errors.CommandTimeout, errors.CallUnconfirmed)
_UNAVAILABLE = (errors.DatabaseUnavailable, errors.PbxBusy)


def status_for(exc: errors.CallgateError) -> int:
    """The HTTP status of each branch of the error tree."""
    if isinstance(exc, errors.InvalidInput | IdempotencyKeyReused):
        return 422
    if isinstance(exc, CallNotFound):
        return 404  # another enterprise's call too: exactly as absent as one never placed
    if isinstance(exc, CallNotLive):
        return 409
    if isinstance(exc, errors.AuthenticationFailed):
        return 401
    if isinstance(exc, RateLimited):
        return 429
    if isinstance(exc, errors.DestinationNotAllowed):
        return 403
    if isinstance(exc, _UNAVAILABLE):
        return 503
    if isinstance(exc, _PBX_TIMEOUTS):
        return 504
    if isinstance(exc, errors.PbxError):
        return 502
    return 500  # ConfigurationError and anything unforeseen


def problem(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": f"/problems/{code}", "title": code.replace("_", " "), "status": status}
    body |= {"detail": detail, "code": code, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def from_error(exc: errors.CallgateError) -> JSONResponse:
    extra: dict[str, Any] = {}
    if isinstance(exc, errors.InvalidInput):
        extra["field"] = exc.field
    if isinstance(exc, errors.PbxError):
        extra["outcome"] = exc.outcome
    response = problem(status_for(exc), exc.code, exc.message, **extra)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def install(app: FastAPI) -> None:
    """Route /v1 errors to problem+json; leave every other path to its own handlers."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(_request: Request, exc: ApiProblem) -> JSONResponse:
        return problem(exc.status, exc.code, exc.detail, **exc.extra)

    @app.exception_handler(errors.CallgateError)
    async def _callgate_error(_request: Request, exc: errors.CallgateError) -> JSONResponse:
        return from_error(exc)

    default_validation = app.exception_handlers.get(RequestValidationError)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if not request.url.path.startswith("/v1/"):
            from fastapi.exception_handlers import request_validation_exception_handler

            handler = default_validation or request_validation_exception_handler
            response: JSONResponse = await handler(request, exc)  # type: ignore[misc]
            return response
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        parts = [str(p) for p in first["loc"] if p not in ("body", "query", "path", "header")]
        # A body that is no JSON object at all has only positions, no field names.
        field = ".".join(parts) if parts and not parts[0].isdigit() else "body"
        return problem(422, "invalid_input", f"{field}: {first['msg']}", field=field)
