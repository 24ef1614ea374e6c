"""One webhook request's CPU: httpx's client, httpcore's pool, and the service's delivery client,
each posting a signed 300-byte body to a receiver in this process on 127.0.0.1 that answers 204.

    python -m bench.http_client [--requests N]   # about 20 seconds

Also what a missing `sniffio` would cost: httpcore asks which async library runs (by importing
sniffio) several times per request; the run counts those asks and times one failed import (a
module that is not installed, searched for on every path), so that asks x failed import is the
CPU a request would add without the package (pyproject.toml says why it is declared).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import resource
import time
from collections.abc import Awaitable, Callable
from unittest import mock

import httpcore
import httpx
import uvloop
from httpcore import _synchronization

from callgate.calls.webhook_http import DeliveryClient

BODY = b"x" * 300
HEADERS = [
    ("content-type", "application/json"),
    ("webhook-id", "evt_1"),
    ("webhook-timestamp", "1700000000"),
    ("webhook-signature", "v1," + "a" * 44),
]
WARM_UP = 100


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def per_request(post: Callable[[], Awaitable[object]], requests: int) -> float:
    """CPU ms per request (this process: the client and the receiver's few lines)."""
    for _ in range(WARM_UP):
        await post()
    began = cpu()
    for _ in range(requests):
        await post()
    return (cpu() - began) * 1000 / requests


def failed_import_ms(tries: int = 200) -> float:
    began = time.perf_counter()
    for _ in range(tries):
        with contextlib.suppress(ImportError):
            importlib.import_module("callgate_bench_no_such_module")
    return (time.perf_counter() - began) * 1000 / tries


async def main(requests: int) -> None:
    server = await asyncio.start_server(receive, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    results: dict[str, float] = {}
    async with httpx.AsyncClient() as client:
        results["httpx AsyncClient.post"] = await per_request(
            lambda: client.post(url, content=BODY, headers=HEADERS), requests
        )
    async with httpcore.AsyncConnectionPool() as pool:
        results["httpcore pool.request"] = await per_request(
            lambda: pool.request("POST", url, headers=HEADERS, content=BODY), requests
        )
    delivery = DeliveryClient(timeout=5, connections=10, allow_private=True)
    results["callgate DeliveryClient.post"] = await per_request(
        lambda: delivery.post(url, BODY, HEADERS), requests
    )
    original = _synchronization.current_async_library
    with mock.patch.object(_synchronization, "current_async_library", side_effect=original) as asks:
        await per_request(lambda: delivery.post(url, BODY, HEADERS), requests)
    await delivery.aclose()
    server.close()
    for name, ms in results.items():
        print(f"{name}: {ms:.3f} ms of CPU per request")
    asked = asks.call_count / (WARM_UP + requests)
    failed = failed_import_ms()
    print(
        f"httpcore asks for the async library {asked:.1f} times per request; a failed import "
        f"takes {failed:.3f} ms here: without sniffio about {asked * failed:.2f} ms more per "
        "request"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.http_client", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    uvloop.run(main(parser.parse_args().requests))
