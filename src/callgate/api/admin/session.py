"""Who may see the status page: the holder of CALLGATE_ADMIN_TOKEN, as `Authorization: Bearer`
(`deps.is_admin`) or through the cookie the login form sets.

The cookie never holds the token: it holds an expiry and an HMAC-SHA256 of it keyed with the
token, so a copied cookie stops working when it expires or when the token changes, and the
token cannot be read back from it. It is HttpOnly (no script reads it), SameSite=Strict (no
other site's page sends it) and scoped to /admin.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from fastapi import Request, Response

from callgate.api.deps import is_admin
from callgate.settings import Settings

COOKIE = "callgate_admin"
PATH = "/admin"
LIFETIME = 12 * 3600  # seconds a login lasts
_PURPOSE = b"callgate admin session v1:"


def _key(settings: Settings) -> bytes:
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    return token.encode()


def enabled(settings: Settings) -> bool:
    """Whether the page exists at all: only with an admin token (an empty one counts as none)."""
    return bool(_key(settings))


def _mac(key: bytes, expires: int) -> str:
    return hmac.new(key, _PURPOSE + str(expires).encode(), hashlib.sha256).hexdigest()


def token_matches(settings: Settings, given: str) -> bool:
    """The login form's token against CALLGATE_ADMIN_TOKEN, in constant time."""
    key = _key(settings)
    return bool(key) and hmac.compare_digest(given.strip().encode(), key)


def signed_in(request: Request, settings: Settings) -> bool:
    """The request carries the admin token (Bearer) or an unexpired cookie made from it."""
    if is_admin(request, settings):
        return True
    key = _key(settings)
    value = request.cookies.get(COOKIE, "")
    expires, _, mac = value.partition(".")
    if not key or not expires.isdecimal() or int(expires) < time.time():
        return False
    return hmac.compare_digest(mac.encode(), _mac(key, int(expires)).encode())


def sign_in(response: Response, request: Request, settings: Settings) -> None:
    expires = int(time.time()) + LIFETIME
    response.set_cookie(
        COOKIE,
        f"{expires}.{_mac(_key(settings), expires)}",
        max_age=LIFETIME,
        path=PATH,
        httponly=True,
        samesite="strict",
        # Only over HTTPS when the page is served so (behind a TLS proxy that says so); plain
        # HTTP on a trusted network would otherwise never get it back.
        secure=request.url.scheme == "https",
    )


def sign_out(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")
