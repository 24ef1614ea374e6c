"""v1 authentication: the enterprise secret as a Bearer token (or X-Client-Id), never in a URL.

URLs end up in proxy logs, browser histories and Referer headers; so /v1 refuses a secret in
the query string outright instead of quietly accepting it.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.requests import HTTPConnection
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from callgate.api.deps import client_address, services
from callgate.api.v1.problems import ApiProblem
from callgate.calls.service import Enterprise
from callgate.calls.services import Services

_bearer = HTTPBearer(auto_error=False, description="The enterprise's secret.")


async def authorised(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    svc: Services = Depends(services),  # noqa: B008
) -> Enterprise:
    """The enterprise whose secret the request carries (401 otherwise)."""
    if secret_in_query(request):
        raise ApiProblem(
            401,
            "secret_in_query",
            "the secret is not accepted in the query string on /v1: "
            "send it as `Authorization: Bearer <secret>`",
        )
    secret = credentials.credentials if credentials else request.headers.get("x-client-id")
    if not secret:
        raise ApiProblem(401, "unauthorized", "missing `Authorization: Bearer <secret>`")
    return await svc.calls.authorise(secret, client=client_address(request))


def secret_in_query(connection: HTTPConnection) -> bool:
    """Whether the URL carries something named like a secret (refused, never looked at)."""
    return any(
        name.lower() in ("clientid", "client_id", "secret", "token")
        for name in connection.query_params
    )
