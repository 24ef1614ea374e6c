"""Request ids and the access log (uvicorn's own would print `clientId` in clear).

A plain ASGI middleware, as Starlette recommends, rather than `@app.middleware("http")`, whose
BaseHTTPMiddleware runs every request in extra tasks and streams.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callgate.logs import get_logger
from callgate.redaction import redact_query

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)
access_log = get_logger("callgate.access")


class RequestContext:
    """Gives each request an id (`X-Request-ID`, echoed) and writes one redacted access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid  # read back as request.state
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # At the loop's next turn: after the handler's last lines (`logs.LinesSoon`), in
            # their order, and after the answer has been written.
            elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
            asyncio.get_running_loop().call_soon(_access_line, scope, rid, status, elapsed_ms)


def _access_line(scope: Scope, rid: str, status: int, elapsed_ms: float) -> None:
    client = scope.get("client")
    access_log.info(
        "http",
        request_id=rid,
        method=scope["method"],
        path=scope["path"],
        query=redact_query(scope.get("query_string", b"").decode("latin-1")),
        status=status,
        elapsed_ms=elapsed_ms,
        client=client[0] if client else "-",
    )


def install(app: FastAPI) -> None:
    app.add_middleware(RequestContext)
