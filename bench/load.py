"""Closed-loop load: N clients, each placing one call after another, bounded in count and time.

The HTTP client is a few lines of HTTP/1.1 over one keep-alive connection per client, not
httpx: the load generator shares the machine's two cores with the service, the simulated hosts
and PostgreSQL, so it must spend as little CPU per call as it can. The seed's way runs in
threads, each starting ``sshpass`` + ``ssh`` per call, with the same concurrency.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlencode

REQUEST_TIMEOUT = 30.0  # longer than any failure the service has (connect 10 s + pool wait 5 s)
_phones = itertools.count(1)  # every call of the run dials another number: no double clicks


def next_phone() -> str:
    """A phone number never used before in this run (``+3751`` and eight digits)."""
    return f"+3751{next(_phones) % 10**8:08d}"


@dataclass
class Run:
    """What one load segment did: per call, its latency, whether it succeeded, its target."""

    latencies: list[float] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)  # failures, by what they said

    def add(self, latency: float, ok: bool, target: int, error: str = "") -> None:
        self.latencies.append(latency)
        self.ok.append(ok)
        self.targets.append(target)
        if error:
            self.reasons[error[:200]] += 1


class HttpLane:
    """One keep-alive HTTP/1.1 connection to the service, one request at a time."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        """The status and body of ``GET path``; the connection is opened on first use."""
        if self._conn is None:
            self._conn = await asyncio.open_connection("127.0.0.1", self._port)
        reader, writer = self._conn
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode("ascii"))
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            self.close()  # a half-read answer leaves the connection unusable
            raise
        if headers.get("connection") == "close":
            self.close()
        return status, body

    def close(self) -> None:
        """Drop the connection; the next ``get`` opens another."""
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None


async def closed_loop(
    port: int,
    secrets_: Sequence[str],
    *,
    clients: int,
    duration: float,
    max_calls: int,
    first_extension: int = 200,
    pause: float = 0.0,
) -> Run:
    """``clients`` clients call the enterprises of ``secrets_`` in turn until time or count run
    out, each waiting ``pause`` seconds after each answer. Each client has its own extension
    (an agent), so no two clients wait on one another's originate lock; the numbers called
    are all different."""
    run, turns = Run(), itertools.count()
    run.started = time.perf_counter()
    deadline = run.started + duration

    async def client(extension: str) -> None:
        lane = HttpLane(port)
        try:
            while time.perf_counter() < deadline and (turn := next(turns)) < max_calls:
                target = turn % len(secrets_)
                query = urlencode(
                    {"code": extension, "phone": next_phone(), "clientId": secrets_[target]}
                )
                began = time.perf_counter()
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT):
                        status, body = await lane.get(f"/api/makecallexternal?{query}")
                    error = (
                        "" if status == 200 else f"{status} {body[:160].decode(errors='replace')}"
                    )
                except (
                    OSError,
                    TimeoutError,
                    asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError,
                    ValueError,
                ) as exc:
                    status, error = 0, f"{type(exc).__name__}: {exc}"
                run.add(time.perf_counter() - began, status == 200, target, error)
                if pause:
                    await asyncio.sleep(min(pause, max(0.0, deadline - time.perf_counter())))
        finally:
            lane.close()

    await asyncio.gather(*(client(str(first_extension + i)) for i in range(clients)))
    run.finished = time.perf_counter()
    return run


def threaded_loop(
    call: Callable[[], float], *, clients: int, duration: float, max_calls: int
) -> Run:
    """The same closed loop for a blocking way of calling (the seed's), one thread per client."""
    run, lock, turns = Run(), threading.Lock(), itertools.count()
    run.started = time.perf_counter()
    deadline = run.started + duration

    def client() -> None:
        while time.perf_counter() < deadline:
            with lock:
                if next(turns) >= max_calls:
                    return
            began = time.perf_counter()
            try:
                call()
                ok, error = True, ""
            except Exception as exc:  # counted and shown, as the service's failures are
                ok, error = False, f"{type(exc).__name__}: {exc}"[:200]
            with lock:
                run.add(time.perf_counter() - began, ok, 0, error)

    with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="seed") as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    run.finished = time.perf_counter()
    return run
