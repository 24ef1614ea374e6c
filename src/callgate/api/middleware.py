"""Request ids and the access log (uvicorn's own would print `clientId` in clear), and the
request body limit.

A plain ASGI middleware, as Starlette recommends, rather than `@app.middleware("http")`, whose
BaseHTTPMiddleware runs every request in extra tasks and streams.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callgate.api.v1.problems import problem
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


class BodyLimit:
    """Refuses a request body above ``limit`` bytes with 413, before the app sees the request.

    A declared `Content-Length` above it is refused unread; a body without one (chunked) is
    read up to the limit and refused at the first byte beyond. Nothing is parsed and no secret
    is checked first, so an unauthenticated client cannot make the service hold a large body
    in memory (`python -m bench.bodies` measures it while such bodies arrive). A body within the
    limit is handed to the app as it came (one message).
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is None and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body at all: nothing to hold
            return
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # a disconnect, for streaming answers
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body too large: at most {self.limit} bytes"
        if scope["path"].startswith("/v1/"):
            response = problem(413, "body_too_large", detail)
        else:  # the legacy paths' shape
            response = JSONResponse({"detail": detail[0].upper() + detail[1:]}, status_code=413)
        # The connection stays open: uvicorn drops the rest of the body as it arrives, holding
        # none of it. Closing at once would reset a client still sending, whose kernel may then
        # discard this answer unread.
        await response(scope, receive, send)


def install(app: FastAPI, *, max_body_bytes: int) -> None:
    app.add_middleware(BodyLimit, limit=max_body_bytes)  # added last: runs inside the ids
    app.add_middleware(RequestContext)
