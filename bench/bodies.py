"""Unauthenticated large bodies: the service's memory while 100 bodies of 30 MB arrive.

`python -m bench.bodies`: a fresh `callgate serve` on a migrated SQLite database; 100 clients,
10 at a time, each declares a 30 MB body to `POST /v1/calls` without credentials and sends it
until the service answers. The service's VmRSS is read before and after; the growth must stay
below 20 MiB (`api/middleware.py`, `BodyLimit`: refused before anything is parsed or
authenticated).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench import procs, setup

BODIES, AT_ONCE = 100, 10
HUGE = 30 * 1024 * 1024
CHUNK = 64 * 1024
GROWTH_GOAL_MIB = 20.0


async def one_body(port: int) -> tuple[int, int]:
    """Send one unauthenticated 30 MB body; (status answered, bytes sent before it came)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/calls HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % HUGE
    )
    answer = asyncio.create_task(reader.readline())
    sent, chunk = 0, b"x" * CHUNK
    try:
        while sent < HUGE and not answer.done():
            writer.write(chunk)
            try:
                await asyncio.wait_for(writer.drain(), 1.0)
            except TimeoutError:
                break  # the service reads no more of it
            sent += CHUNK
        status_line = await asyncio.wait_for(answer, 10)
    finally:
        writer.close()
    return int(status_line.split()[1]), sent


async def measure() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        await setup.migrate(url)
        async with setup.callgate_service(url, workdir) as service:
            before = procs.rss_kib(service.pid)
            slots = asyncio.Semaphore(AT_ONCE)

            async def limited() -> tuple[int, int]:
                async with slots:
                    return await one_body(service.port)

            results = await asyncio.gather(*(limited() for _ in range(BODIES)))
            after = procs.rss_kib(service.pid)
    statuses = {status for status, _ in results}
    if statuses != {413}:
        raise RuntimeError(f"expected 413 for every body, got {sorted(statuses)}")
    return {
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
        "growth_mib": (after - before) / 1024,
        "mean_sent_before_answer_mib": sum(sent for _, sent in results) / BODIES / 2**20,
    }


def main() -> None:
    found = asyncio.run(measure())
    for name, value in found.items():
        print(f"{name:28} {value:8.2f}")
    verdict = "ok" if found["growth_mib"] < GROWTH_GOAL_MIB else "OVER"
    print(f"growth goal < {GROWTH_GOAL_MIB} MiB: {verdict}")


if __name__ == "__main__":
    main()
