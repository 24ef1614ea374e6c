"""The deliveries' HTTP client against receivers on 127.0.0.1 that misbehave: one that drips
its answer a byte at a time is cut off at the request's timeout, whatever each byte's pace;
one that answers without end is read no further than `MAX_ANSWER`; a redirect is an answer,
never followed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from callgate.calls.webhook_http import MAX_ANSWER, DeliveryClient, DeliveryFailed

Answering = Callable[[asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def receiver(answer: Answering) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A receiver that reads each request's head and body, then answers with ``answer``."""
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            heads.append(head)
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            await answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook", heads
    finally:
        server.close()


def client(timeout: float = 5.0) -> DeliveryClient:
    return DeliveryClient(timeout=timeout, connections=2, allow_private=True)


async def test_a_dripping_answer_is_cut_off_at_the_timeout() -> None:
    async def drip(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
        for _ in range(100):  # each byte well within any per-read timeout
            writer.write(b".")
            await writer.drain()
            await asyncio.sleep(0.05)

    sending = client(timeout=0.5)
    async with receiver(drip) as (url, _):
        started = time.monotonic()
        with pytest.raises(DeliveryFailed, match="timed out"):
            await sending.post(url, b"{}", [("content-type", "application/json")])
        took = time.monotonic() - started
    await sending.aclose()
    assert 0.4 < took < 2.0  # the whole request's bound, not 100 bytes x 0.05 s


async def test_an_endless_answer_is_read_no_further_than_the_bound() -> None:
    async def flood(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 50000000\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(50000000 // len(chunk)):
            writer.write(chunk)
            await writer.drain()

    sending = client()
    async with receiver(flood) as (url, _):
        answer = await sending.post(url, b"{}", [])
    await sending.aclose()
    assert answer.status == 200 and len(answer.body) == MAX_ANSWER


async def test_a_redirect_is_not_followed() -> None:
    async def redirect(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:9/inside\r\n"
            b"retry-after: 7\r\ncontent-length: 0\r\n\r\n"
        )
        await writer.drain()

    sending = client()
    async with receiver(redirect) as (url, heads):
        answer = await sending.post(url, b"{}", [("webhook-id", "evt_1")])
    await sending.aclose()
    assert answer.status == 307 and answer.headers["retry-after"] == "7"
    assert len(heads) == 1  # one request: the redirect's target was never asked
    assert b"webhook-id: evt_1" in heads[0] and b"user-agent: callgate/" in heads[0].lower()


async def test_a_receiver_whose_connections_closed_is_forgotten() -> None:
    async def closing(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
        await writer.drain()

    sending = client()
    async with receiver(closing) as (first, _), receiver(closing) as (second, _):
        assert (await sending.post(first, b"{}", [])).status == 204
        assert list(sending._pools) == [first.removesuffix("/hook")]
        assert (await sending.post(second, b"{}", [])).status == 204
        # The first receiver's pool held nothing any more: the new one took its place.
        assert list(sending._pools) == [second.removesuffix("/hook")]
    await sending.aclose()
