"""A Redis key prefix of its own for each test, on the real Redis (skipped or failed when absent,
see ``tests/support/services.py``), its keys deleted afterwards."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import redis

from tests.support.services import REDIS_URL, missing, port_open


@contextmanager
def fresh_prefix() -> Iterator[str]:
    """A prefix no other test uses; every key under it is deleted at the end."""
    parts = urlsplit(REDIS_URL)
    if not port_open(parts.hostname or "127.0.0.1", parts.port or 6379):
        missing("Redis", f"nothing listens at {parts.hostname}:{parts.port}")
    prefix = f"callgate-test-{secrets.token_hex(8)}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=f"{prefix}*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
