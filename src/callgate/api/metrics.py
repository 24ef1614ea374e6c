"""``GET /metrics``: the service's metrics (`callgate.metrics`) in Prometheus's text format.

Open to anyone who can reach it, unless ``CALLGATE_METRICS_TOKEN`` is set: then only with that
token as ``Authorization: Bearer`` (compared in constant time, as the admin token is).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from callgate import metrics
from callgate.api.deps import services

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def scrape(request: Request) -> Response:
    token = (await services(request)).settings.metrics_token
    expected = token.get_secret_value().encode() if token else b""
    if expected and not _bearer_is(request, expected):
        return Response(
            "metrics token required\n",
            status_code=401,
            media_type="text/plain",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


def _bearer_is(request: Request, expected: bytes) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)
