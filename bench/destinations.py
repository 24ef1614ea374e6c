"""What the destination policy costs per call.

    python -m bench.destinations [--calls N]

The shipped policy (`callgate.domain.destinations`), built from stored overrides as each call
builds it, then checked: once with a new number every call (libphonenumber parses and
classifies each), once with the same number again (the classification's cache answers).
Reported: the p50 and p99 wall time per call of each.
"""

from __future__ import annotations

import argparse
import statistics
import time

from callgate.domain.destinations import PolicyOverrides, classify, effective_policy


def measure(calls: int, *, repeated: bool) -> list[float]:
    own, default = PolicyOverrides(), PolicyOverrides()
    classify.cache_clear()
    took = []
    for n in range(calls):
        number = "+375296254070" if repeated else f"+3752962{n % 100000:05d}"
        began = time.perf_counter()
        effective_policy(own, default, "BY").check("150", number)
        took.append(time.perf_counter() - began)
        if not repeated:
            classify.cache_clear()  # every call a number never seen
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    calls = parser.parse_args().calls
    for label, repeated in (("new number", False), ("repeated number", True)):
        took = sorted(measure(calls, repeated=repeated))
        p50, p99 = statistics.median(took), took[int(len(took) * 0.99)]
        print(
            f"destination policy per call, {label}: p50 {p50 * 1e3:.3f} ms, "
            f"p99 {p99 * 1e3:.3f} ms ({len(took)} calls)"
        )


if __name__ == "__main__":
    main()
