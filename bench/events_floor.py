"""The events goal's floor: what the libraries the service is built on spend, alone, on one
event's deliveries, with no callgate code in the way.

    python -m bench.events_floor [--messages N] [--requests N]   # about 5 seconds

`bench.events` judges its goal against it as `bench.single` judges its bars against their
floor parts: a goal the floor alone misses is "out of reach here".

- A stream message: a bare Starlette app (what FastAPI is built on) served by uvicorn as
  `callgate serve` runs it (uvloop, httptools, uvicorn's WebSocket protocol), in a process of
  its own, fans an event out to ``STREAMS`` streams, half SSE (`StreamingResponse` over a
  generator) and half WebSocket (`WebSocket.send_text`), each fed by a queue of its own as the
  service's streams are, the text made once per event and stream kind; the clients are in this
  process. The server's CPU per message sent, less what it spends over as long idle.
- A webhook request: httpcore's connection (the HTTP library under the service's delivery
  client, without a pool around it) posts a signed 300-byte body to a receiver in that other
  process answering 204, one request at a time over one kept-alive connection. This
  process's CPU per request: the client's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpcore
import httpx
import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from tests.support.service import free_port
from websockets.asyncio.client import connect

from bench import procs
from bench.http_client import BODY, HEADERS, receive

STREAMS = 20  # an enterprise's streams in `bench.events` (100 over 5 enterprises)
GAP = 0.005  # seconds between two events of a fan-out run
DATA = {  # the size and shape of a call's event (`callgate.api.v1.events.event_data`)
    "call_id": "3f1c2a9e-8d4b-4c1e-9a57-2b6d0e4f8a13",
    "state": "ringing_customer",
    "at": "2026-12-07T08:00:00.123456+00:00",
    "reason": None,
    "sides": None,
}


@dataclass(frozen=True)
class Floor:
    """CPU milliseconds of one stream message and of one webhook request, each alone."""

    message_ms: float
    request_ms: float

    def per_event_ms(self, streams: float, endpoints: float) -> float:
        """One event sent to ``streams`` streams and ``endpoints`` endpoints, at the floor."""
        return streams * self.message_ms + endpoints * self.request_ms


# -- the bare server (its own process) ------------------------------------------------------


def app() -> Starlette:
    """SSE and WebSocket streams fed by queues, and `POST /fanout?count=N` that puts N events
    (``GAP`` s apart) on every stream's queue."""
    sse: list[asyncio.Queue[str]] = []
    ws: list[asyncio.Queue[str | None]] = []
    running: set[asyncio.Task[None]] = set()

    async def events(request: Request) -> StreamingResponse:
        queue: asyncio.Queue[str] = asyncio.Queue()
        sse.append(queue)

        async def stream() -> AsyncIterator[str]:
            try:
                yield ": connected\n\n"
                while True:
                    yield await queue.get()
            finally:  # the client went (Starlette cancels the stream)
                sse.remove(queue)

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        ws.append(queue)

        async def until_closed() -> None:  # the client's close ends the stream
            await websocket.receive()
            queue.put_nowait(None)

        closed = asyncio.create_task(until_closed())
        await websocket.send_text("connected")
        while (text := await queue.get()) is not None:
            await websocket.send_text(text)
        ws.remove(queue)
        await closed

    async def fan_out(count: int) -> None:
        for index in range(count):
            data = json.dumps({**DATA, "sequence": index})
            sse_text = f"id: {index}\nevent: call.ringing_customer\ndata: {data}\n\n"
            for sse_queue in sse:
                sse_queue.put_nowait(sse_text)
            for ws_queue in ws:
                ws_queue.put_nowait(data)
            await asyncio.sleep(GAP)

    async def fanout(request: Request) -> Response:
        task = asyncio.create_task(fan_out(int(request.query_params["count"])))
        running.add(task)
        task.add_done_callback(running.discard)
        return Response(status_code=204)

    routes = [
        Route("/events", events),
        Route("/fanout", fanout, methods=["POST"]),
        WebSocketRoute("/ws", socket),
    ]
    return Starlette(routes=routes)


async def serve(port: int, receiver_port: int) -> None:
    """The bare server on ``port`` and the webhook receiver on ``receiver_port``."""
    receiver = await asyncio.start_server(receive, "127.0.0.1", receiver_port)
    config = uvicorn.Config(
        app(),
        port=port,
        loop="none",
        http="httptools",
        log_config=None,
        access_log=False,
    )
    async with receiver:
        await uvicorn.Server(config).serve()


# -- the measurements (this process) ------------------------------------------------------


class SseCounter:
    """An SSE client that counts the events it reads."""

    def __init__(self) -> None:
        self.count = -1  # the ": connected" comment is not an event

    async def run(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /events HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")  # the head
        pending = b""
        try:
            while chunk := await reader.read(65536):
                pending += chunk
                found = pending.count(b"\n\n")
                if found:
                    self.count += found
                    pending = pending[pending.rfind(b"\n\n") + 2 :]
        finally:
            writer.close()


class WsCounter:
    """A WebSocket client that counts the messages it reads."""

    def __init__(self) -> None:
        self.count = -1  # "connected" is not an event

    async def run(self, port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/ws") as socket:
            async for _ in socket:
                self.count += 1


async def message_ms(pid: int, port: int, streams: int, messages: int) -> float:
    """The bare server's CPU ms per stream message: ``messages`` events to ``streams``
    streams (half SSE, half WebSocket), less its CPU over as long idle."""
    counters: list[SseCounter | WsCounter] = [
        SseCounter() if index % 2 == 0 else WsCounter() for index in range(streams)
    ]
    readers = [asyncio.create_task(counter.run(port)) for counter in counters]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await _until(lambda: all(c.count == 0 for c in counters), "every stream connected")
            await _fan_out(client, counters, 20)  # warm-up
            began, start = procs.exact_cpu_seconds(pid), time.perf_counter()
            await _fan_out(client, counters, messages)
            busy, seconds = procs.exact_cpu_seconds(pid) - began, time.perf_counter() - start
            began = procs.exact_cpu_seconds(pid)
            await asyncio.sleep(seconds)
            idle = procs.exact_cpu_seconds(pid) - began
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return max(0.0, busy - idle) * 1000 / (messages * streams)


async def _fan_out(
    client: httpx.AsyncClient, counters: list[SseCounter | WsCounter], count: int
) -> None:
    wanted = [counter.count + count for counter in counters]
    (await client.post("/fanout", params={"count": count})).raise_for_status()
    await _until(
        lambda: all(c.count >= n for c, n in zip(counters, wanted, strict=True)), "every event"
    )


async def _until(done: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the bare server's streams: no {what} within {seconds:g} s")
        await asyncio.sleep(0.005)


async def request_ms(receiver_port: int, requests: int) -> float:
    """httpcore's connection: this process's CPU ms per webhook request to the receiver."""
    url = f"http://127.0.0.1:{receiver_port}/hook"
    origin = httpcore.Origin(b"http", b"127.0.0.1", receiver_port)
    async with httpcore.AsyncHTTPConnection(origin) as connection:
        for _ in range(100):  # warm-up
            await connection.request("POST", url, headers=HEADERS, content=BODY)
        began = procs.own_cpu_seconds(children=False)
        for _ in range(requests):
            answer = await connection.request("POST", url, headers=HEADERS, content=BODY)
            if answer.status != 204:
                raise RuntimeError(f"the receiver answered {answer.status}")
        return (procs.own_cpu_seconds(children=False) - began) * 1000 / requests


async def measure(messages: int = 200, requests: int = 1000, streams: int = STREAMS) -> Floor:
    """Both floors, the bare server in a process of its own."""
    port, receiver_port = free_port(), free_port()
    argv = [sys.executable, "-m", "bench.events_floor", "--serve", str(port), str(receiver_port)]
    server = await asyncio.create_subprocess_exec(*argv)
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):  # a fan-out of nothing, answered once the server listens
                with contextlib.suppress(httpx.HTTPError):
                    await client.post(f"http://127.0.0.1:{port}/fanout", params={"count": 0})
                    break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("the bare server did not start")
        message = await message_ms(server.pid, port, streams, messages)
        request = await request_ms(receiver_port, requests)
    finally:
        server.terminate()
        await procs.ended(server, 10)
    return Floor(message_ms=message, request_ms=request)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.events_floor", description=__doc__)
    parser.add_argument("--messages", type=int, default=200, help="events per stream")
    parser.add_argument("--requests", type=int, default=1000, help="webhook requests")
    parser.add_argument("--serve", nargs=2, type=int, metavar=("PORT", "RECEIVER_PORT"))
    args = parser.parse_args()
    if args.serve:
        uvloop.run(serve(*args.serve))
        return
    floor = uvloop.run(measure(args.messages, args.requests))
    print(f"a stream message: {floor.message_ms:.3f} ms of the bare server's CPU")
    print(f"a webhook request: {floor.request_ms:.3f} ms of httpcore's (the client's) CPU")


if __name__ == "__main__":
    main()
