"""Resource bounds through real HTTP: body limit, NaN, server limits; nothing is dialled."""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.sshd import SshdServer
from tests.support.stack import Stack, call_stack

pytestmark = [pytest.mark.sshd, pytest.mark.postgres]
HUGE = 30 * 1024 * 1024
CHUNK = 64 * 1024


@pytest.fixture
async def api(pg_url: str, sshd: SshdServer, tmp_path: Path) -> AsyncIterator[Stack]:
    async with call_stack(
        pg_url, sshd, tmp_path, http_keepalive_timeout=1, http_limit_concurrency=8
    ) as stack:
        yield stack


async def _connect(stack: Stack) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", stack.service.settings.port)


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


async def _send_until_answered(
    writer: asyncio.StreamWriter, reader: asyncio.StreamReader, chunked: bool
) -> tuple[int, asyncio.Task[tuple[int, dict[str, str], bytes]]]:
    """Send up to 30 MB of body until the server answers; how many bytes went, and the answer."""
    answer = asyncio.create_task(_answer(reader))
    sent, chunk = 0, b"x" * CHUNK
    while sent < HUGE and not answer.done():
        try:
            writer.write(b"%x\r\n%s\r\n" % (CHUNK, chunk) if chunked else chunk)
            await asyncio.wait_for(writer.drain(), 0.5)
        except (ConnectionError, TimeoutError):
            break  # the server stopped reading: it answered, or is about to
        sent += CHUNK
    await asyncio.wait_for(asyncio.shield(answer), 10)
    return sent, answer


async def test_huge_unauthenticated_bodies_refused_unread(api: Stack) -> None:
    """30 MB without credentials, declared or chunked, v1 and legacy paths: 413 while the
    client is still sending, little memory, no authentication, nothing dialled."""
    tracemalloc.start()
    try:
        reader, writer = await _connect(api)
        writer.write(
            b"POST /v1/calls HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % HUGE
        )
        started = time.perf_counter()
        sent, answer = await _send_until_answered(writer, reader, chunked=False)
        status, headers, body = answer.result()
        writer.close()
        assert status == 413
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["code"] == "body_too_large"
        assert sent < HUGE // 4  # answered long before the client finished
        assert time.perf_counter() - started < 5

        reader, writer = await _connect(api)
        writer.write(
            b"GET /api/makecallexternal?code=150&phone=%2B375296254070 HTTP/1.1\r\n"
            b"Host: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sent, answer = await _send_until_answered(writer, reader, chunked=True)
        status, headers, body = answer.result()
        writer.close()
        assert status == 413
        assert json.loads(body) == {"detail": "Request body too large: at most 16384 bytes"}
        assert sent < HUGE // 4
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024  # nothing near 30 MB (let alone its parsed form) was held
    assert await api.originates() == 0


async def test_body_just_over_the_limit_by_content_length(api: Stack) -> None:
    """A declared 16 KiB + 1 is refused before authentication: 413, not 401."""
    response = await api.service.client.post(
        "/v1/calls",
        content=b"{" + b" " * 16384 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "body_too_large"
    small = await api.service.client.post("/v1/calls", json={"from": "150", "to": "+1"})
    assert small.status_code == 401  # within the limit: on to authentication
    assert await api.originates() == 0


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"from": "150", "to": "+375296254070", "metadata": {"deal": NaN}}', "metadata"),
        (b'{"from": "150", "to": "+375296254070", "metadata": {"a": [-Infinity]}}', "metadata"),
        (b'{"from": "150", "to": "+375296254070", "ring_timeout": Infinity}', "ring_timeout"),
        (b"NaN", "body"),
    ],
)
async def test_nan_and_infinity_refused(api: Stack, raw: bytes, field: str) -> None:
    response = await api.service.client.post(
        "/v1/calls", content=raw, headers=api.auth() | {"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert await api.originates() == 0


async def test_idle_keepalive_connection_is_closed(api: Stack) -> None:
    """`CALLGATE_HTTP_KEEPALIVE_TIMEOUT` (1 s here): an idle connection is closed by the server."""
    reader, writer = await _connect(api)
    writer.write(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    status, _, _ = await _answer(reader)
    assert status == 200
    assert await asyncio.wait_for(reader.read(), 3) == b""  # closed after ~1 s idle
    writer.close()


async def test_concurrency_limit_answers_503(api: Stack) -> None:
    """`CALLGATE_HTTP_LIMIT_CONCURRENCY` (8 here): beyond it, 503 at once, nothing dialled."""
    held = [await _connect(api) for _ in range(8)]
    try:
        response = await api.service.client.get(
            "/api/makecallexternal",
            params={"code": "150", "phone": "+375296254070", "clientId": api.secret},
        )
        assert response.status_code == 503
    finally:
        for _, writer in held:
            writer.close()
    assert await api.originates() == 0
