"""What one PostgreSQL notification costs the process that hears it.

    python -m bench.notify_cost [--rate N] [--seconds S]   # about 25 seconds

Why several instances LISTEN only on the channels of the enterprises their streams take
(`db.notifications`, migration 0012): each notification heard wakes the process and is read.
A listener in a process of its own, on the service's event loop (uvloop) and driver (asyncpg),
LISTENs on one channel while this process sends ``rate`` notifications a second on it for
``seconds``. Twice: once as `EventNotifications` hands them on (the payload parsed, a reader's
task woken, at most once per 20 ms, as `SharedEvents` is), once only counted. The listener's
CPU over the run (idle included, which is small beside it) divided by the notifications it
heard.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import asyncpg
import uvloop

from bench import procs
from bench.setup import POSTGRES_ADMIN
from callgate.db.notifications import parse

CHANNEL = "callgate_bench_notify_cost"
GATHER = 0.02  # as `calls.shared_events.GATHER`


async def listen(seconds: float, wake: bool) -> None:
    """The listener's side (run in a process of its own): prints its count and CPU."""
    connection = await asyncpg.connect(POSTGRES_ADMIN)
    heard, woken = 0, asyncio.Event()

    def notified(_conn: object, _pid: int, _channel: str, payload: object) -> None:
        nonlocal heard
        heard += 1
        if wake and parse(payload) is not None:
            woken.set()

    async def reader() -> None:  # a reader's turns, at most one per GATHER
        while True:
            await woken.wait()
            await asyncio.sleep(GATHER)
            woken.clear()

    task = asyncio.create_task(reader())
    await connection.add_listener(CHANNEL, notified)
    print("listening", flush=True)
    started = time.process_time()
    await asyncio.sleep(seconds + 1.0)  # the last ones arrive
    spent = time.process_time() - started
    task.cancel()
    await connection.close()
    print(f"{heard} {spent}", flush=True)


async def measure(rate: float, seconds: float, wake: bool) -> tuple[int, float]:
    """Notifications heard, and the listener's CPU ms per notification."""
    argv = [sys.executable, "-m", "bench.notify_cost", "listen", str(seconds)]
    proc = await asyncio.create_subprocess_exec(
        *argv, *(["--wake"] if wake else []), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        await proc.stdout.readline()  # "listening"
        sender = await asyncpg.connect(POSTGRES_ADMIN)
        try:
            begun, sent = time.monotonic(), 0
            while time.monotonic() - begun < seconds:
                await sender.execute(f"NOTIFY {CHANNEL}, '{sent} 0367'")
                sent += 1
                await asyncio.sleep(max(0.0, begun + sent / rate - time.monotonic()))
        finally:
            await sender.close()
        heard, spent = (await proc.stdout.readline()).split()
    finally:
        await procs.ended(proc, 10)
    count = int(heard)
    return count, 1000 * float(spent) / max(1, count)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.notify_cost", description=__doc__)
    parser.add_argument("--rate", type=float, default=180.0, help="notifications a second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("listen", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("listen_seconds", nargs="?", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--wake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.listen == "listen":
        uvloop.run(listen(args.listen_seconds, args.wake))
        return
    for wake in (True, False):
        heard, per = uvloop.run(measure(args.rate, args.seconds, wake))
        how = "handed on (parsed, a reader woken)" if wake else "only counted"
        print(f"{heard} notifications at {args.rate:g}/s, {how}: {per:.3f} ms of CPU each")


if __name__ == "__main__":
    main()
