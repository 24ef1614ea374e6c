"""A real HTTP receiver on 127.0.0.1 for webhook and CRM tests (stdlib `http.server`, in a
thread): it records every request and answers as the test scripts it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.monotonic()


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


Answering = Callable[[Received], Answer]


@dataclass(eq=False)
class Receiver:
    """What came in (``requests``), and how to answer: ``script`` first (one answer per
    request, in order), then ``answer`` (by default 200 with an empty body)."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    script: list[Answer] = field(default_factory=list)
    answer: Answering = lambda _request: Answer()
    delay: float = 0.0  # seconds each answer waits (a slow receiver)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def respond(self, received: Received) -> Answer:
        self.requests.append(received)
        if self.delay:
            time.sleep(self.delay)
        return self.script.pop(0) if self.script else self.answer(received)

    async def until(self, done: Callable[[list[Received]], bool], within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while not done(list(self.requests)):
            if time.monotonic() > deadline:
                raise AssertionError(f"not received in {within} s; got {len(self.requests)}")
            await asyncio.sleep(0.05)


@contextmanager
def receiver(port: int = 0) -> Iterator[Receiver]:
    """A `Receiver` listening on 127.0.0.1 (``port``, or a free one) for the block."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            got = Received("POST", self.path, headers, body, time.monotonic())
            answer = state.respond(got)
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: pytest shows what the test asserts

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
