"""Skip or fail a test whose real service is missing.

Under ``CALLGATE_REQUIRE_SERVICES=1`` (set by CI) a missing PostgreSQL, Redis or sshd fails the
test instead of skipping it, so that a green run cannot hide an untested part.
"""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "CALLGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CALLGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def services_required() -> bool:
    return os.environ.get("CALLGATE_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


def missing(service: str, reason: str) -> None:
    """Fail (when services are required) or skip the current test."""
    message = f"{service} is not available: {reason}"
    if services_required():
        pytest.fail(message + " (CALLGATE_REQUIRE_SERVICES=1 forbids skipping)")
    pytest.skip(message)


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
