"""api.deps.is_admin: the admin token as `Authorization: Bearer`, never when unset or empty."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from callgate.api.deps import is_admin
from callgate.settings import Settings


def _request(authorization: str | None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return Request({"type": "http", "method": "GET", "path": "/api/status", "headers": headers})


@pytest.mark.parametrize(
    ("token", "authorization", "admin"),
    [
        ("s3cret-admin", "Bearer s3cret-admin", True),
        ("s3cret-admin", "bearer  s3cret-admin ", True),
        ("s3cret-admin", "Bearer s3cret-admiN", False),
        ("s3cret-admin", "Basic s3cret-admin", False),
        ("s3cret-admin", None, False),
        (None, "Bearer ", False),
        ("", "Bearer ", False),  # an empty token set by mistake opens nothing
        ("", "Bearer", False),
    ],
)
def test_admin_token(token: str | None, authorization: str | None, admin: bool) -> None:
    assert is_admin(_request(authorization), Settings(admin_token=token)) is admin
