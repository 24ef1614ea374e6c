"""What the rate and live-call limits cost per call, on memory storage.

    python -m bench.rate_limits [--calls N]

The default limits (`callgate.settings`), each call from its own enterprise (no call is
refused, so every one runs every check and is counted): the enterprise, extension and number
rates checked and hit (`Limits.check_call`), a live-call place taken and given back. Reported:
the p50 and p99 wall time per call.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from callgate.calls.rate_limits import Limits, LiveCalls, storage_for
from callgate.settings import Settings


def default_limits() -> tuple[LiveCalls, Limits]:
    """The default limits on memory storage, with no call followed (`bench.protection` too)."""
    settings = Settings(_env_file=None, log_file=None)
    live = LiveCalls(
        settings.limit_live_calls_per_enterprise,
        settings.limit_live_calls_per_host,
        followed=lambda: (),
    )
    return live, Limits(settings, live, storage_for(settings))


async def measure(calls: int) -> list[float]:
    live, limits = default_limits()
    took = []
    for number in range(calls):
        enterprise, call_id = f"e{number}", str(number)
        began = time.perf_counter()
        live.reserve(call_id, enterprise, "10.0.0.5")
        await limits.check_call(enterprise, "150", "+375296254070")
        live.placed(call_id)
        took.append(time.perf_counter() - began)
        live.release(call_id)
    await limits.aclose()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    took = sorted(asyncio.run(measure(parser.parse_args().calls)))
    p50, p99 = statistics.median(took), took[int(len(took) * 0.99)]
    print(f"limits per call: p50 {p50 * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms ({len(took)} calls)")


if __name__ == "__main__":
    main()
