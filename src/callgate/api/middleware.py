"""Request ids and the access log (uvicorn's own would print `clientId` in clear)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from callgate.logs import get_logger
from callgate.redaction import redact_query

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)
access_log = get_logger("callgate.access")


def install(app: FastAPI) -> None:
    @app.middleware("http")
    async def request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        given = request.headers.get("x-request-id", "")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        request.state.request_id = rid
        response = await call_next(request)
        response.headers["X-Request-ID"] = rid
        access_log.info(
            "http",
            request_id=rid,
            method=request.method,
            path=request.url.path,
            query=redact_query(request.url.query),
            status=response.status_code,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 2),
            client=request.client.host if request.client else "-",
        )
        return response
