"""`/admin`: the operator's live status page (README, "The status page").

Server-rendered with Jinja2; the page's live part (`fragment.html`) is fetched again every
second by htmx, vendored under ``static/`` (pinned by ``scripts/vendor-js.sh``) and served
from here, never from a CDN. No inline script or style, so the page runs under a strict
Content-Security-Policy. Access: CALLGATE_ADMIN_TOKEN as `Authorization: Bearer`, or the
cookie the login form sets (`session`); without a token configured the page does not exist
(404).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from callgate.api.admin import session
from callgate.api.deps import client_address, services
from callgate.calls.overview import Health
from callgate.calls.rate_limits import RateLimited
from callgate.metrics import rejection_counts

HERE = Path(__file__).parent
HTMX = "htmx-2.0.11.min.js"  # scripts/vendor-js.sh fetches and checks it
LOGIN_FORM_BYTES = 4096  # a token is 64 hex characters; nothing longer is read

router = APIRouter(include_in_schema=False)

HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _duration(seconds: float | None) -> str:
    """3 s, 4 min 05 s, 2 h 03 min, 3 d 04 h: as precise as a glance needs."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours:02d} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{seconds:.1f} s" if seconds < 10 else f"{secs} s"


def _clock(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


TEMPLATES = Environment(
    loader=PackageLoader("callgate.api.admin", "templates"),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters["duration"] = _duration
TEMPLATES.filters["clock"] = _clock
TEMPLATES.globals["Health"] = Health
TEMPLATES.globals["HTMX"] = HTMX


def _page(
    name: str, status: int = 200, headers: dict[str, str] | None = None, **values: Any
) -> HTMLResponse:
    body = TEMPLATES.get_template(name).render(**values)
    return HTMLResponse(body, status_code=status, headers=HEADERS | (headers or {}))


def _off() -> HTMLResponse:
    return _page("off.html", 404)


async def _refused(request: Request) -> HTMLResponse:
    """A wrong admin token: counted against the address, as an enterprise's wrong secret is
    (`CALLGATE_LIMIT_AUTH_FAILURES_PER_MINUTE`); over the limit, 429 until the minute ends."""
    calls = (await services(request)).calls
    try:
        await calls.check_client(client_address(request))
    except RateLimited as exc:
        return _too_many(exc)
    await calls.client_failed(client_address(request))
    return _page("login.html", 401, refused=True)


def _too_many(exc: RateLimited) -> HTMLResponse:
    headers = {"Retry-After": str(exc.retry_after)}
    values = {"refused": False, "too_many": True, "retry_after": exc.retry_after}
    return _page("login.html", 429, headers=headers, **values)


async def _overview_values(request: Request) -> dict[str, Any]:
    svc = await services(request)
    overview = await svc.status.page.read(rejection_counts)
    return {"o": overview, "interval": svc.settings.track_interval}


@router.get("/admin")
async def page(request: Request) -> Response:
    settings = (await services(request)).settings
    if not session.enabled(settings):
        return _off()
    if not session.signed_in(request, settings):
        if request.headers.get("authorization"):  # a token was given, and it is not the one
            return await _refused(request)
        return RedirectResponse("/admin/login", status_code=303, headers=HEADERS)
    return _page("page.html", **await _overview_values(request))


@router.get("/admin/fragment")
async def fragment(request: Request) -> Response:
    """The live part of the page, which htmx fetches again every second."""
    settings = (await services(request)).settings
    if not session.enabled(settings):
        return _off()
    if not session.signed_in(request, settings):
        # htmx follows HX-Redirect even on an error status: an expired login shows the form.
        return _page("expired.html", 401, headers={"HX-Redirect": "/admin/login"})
    return _page("fragment.html", **await _overview_values(request))


@router.get("/admin/login")
async def login_form(request: Request) -> Response:
    if not session.enabled((await services(request)).settings):
        return _off()
    return _page("login.html", refused=False)


@router.post("/admin/login")
async def login(request: Request) -> Response:
    settings = (await services(request)).settings
    if not session.enabled(settings):
        return _off()
    calls = (await services(request)).calls
    try:  # an address that failed too often is refused before the token is looked at
        await calls.check_client(client_address(request))
    except RateLimited as exc:
        return _too_many(exc)
    body = await request.body()
    form = parse_qs(body[:LOGIN_FORM_BYTES].decode("utf-8", "replace"))
    given = (form.get("token") or [""])[0]
    if not session.token_matches(settings, given):
        return await _refused(request)  # never echoes what was typed
    response = RedirectResponse("/admin", status_code=303, headers=HEADERS)
    session.sign_in(response, request, settings)
    return response


@router.post("/admin/logout")
async def logout() -> Response:
    response = RedirectResponse("/admin/login", status_code=303, headers=HEADERS)
    session.sign_out(response)
    return response


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/admin/static", StaticFiles(directory=HERE / "static"), name="admin-static")
