"""What a verified call would cost without parts of what callgate does: an ablation.

    python -m bench.ablation [--calls N]

The single-host set-up of `make bench` (a real sshd whose `asterisk` is the simulator, a
fresh PostgreSQL database, console transport) with several services side by side on the same
database and host, each `callgate serve` in its own process, changed at start by this module
(nothing in the service itself is switchable):

- ``full``: the service as it is;
- ``remembered``: each secret's enterprise and host read once, then remembered (no
  authorisation read per call);
- ``bare``: remembered, and neither the call row's insert and outcome nor any log line below
  warnings written.

The calls go to each service in turn (N rounds, the order reversed every other round, so a
noisy moment hits every variant alike), 5 ms apart, with the seed's way every fifth round.
For each variant: the median, the median of its paired differences from ``full``, and the
seed's median over it. A question answered once, not a way to run the service: ``bare``
keeps no history of its calls.

    python -m bench.ablation serve VARIANT   # how each changed service is started
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from bench import setup, ways
from bench.load import HttpLane
from callgate.calls.service import CallService
from callgate.cli import app
from callgate.pbx.transport import HostTarget

VARIANTS = ("full", "remembered", "bare")
_Authorise = Callable[[CallService, str | None], Coroutine[Any, Any, tuple[Any, HostTarget]]]


def remember_authorisation(service_class: type[CallService]) -> None:
    """``authorise`` reads the database once per secret, then answers from memory."""
    original: _Authorise = service_class.authorise
    remembered: dict[str | None, tuple[Any, HostTarget]] = {}  # one service per process

    async def authorise(self: CallService, secret: str | None) -> tuple[Any, HostTarget]:
        if secret not in remembered:
            remembered[secret] = await original(self, secret)
        return remembered[secret]

    service_class.authorise = authorise  # type: ignore[method-assign]


def skip_call_rows(service_class: type[CallService]) -> None:
    """Neither the call row's insert nor its outcome is written."""

    async def nothing(*_args: object, **_kwargs: object) -> None:
        return None

    service_class._insert = nothing  # type: ignore[method-assign]
    service_class._finish = nothing  # type: ignore[method-assign]


def prepare(variant: str) -> None:
    """Change CallService for ``variant`` (in the process that will serve it)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: one of {', '.join(VARIANTS)}")
    if variant in ("remembered", "bare"):
        remember_authorisation(CallService)
    if variant == "bare":
        skip_call_rows(CallService)


def environment(variant: str) -> dict[str, str]:
    """What the variant's service gets in its environment besides the set-up's."""
    return {"CALLGATE_LOG_LEVEL": "WARNING"} if variant == "bare" else {}


def serve(variant: str) -> None:
    """`callgate serve`, with CallService changed for ``variant`` first (methods are looked
    up when called, so the service built by the CLI uses the changed ones)."""
    prepare(variant)
    app(["serve"], prog_name="callgate")


async def measure(calls: int, warmup: int = 20) -> dict[str, Any]:
    """The seed's median, and per variant its median and paired difference from ``full``."""
    with setup.stage("callgate-ablation-") as stage:
        sshd, control, workdir = stage.sshd, stage.control, stage.workdir
        async with setup.database() as url, contextlib.AsyncExitStack() as stack:
            secret = await setup.seed_rows(url, sshd, "console")
            lanes: dict[str, HttpLane] = {}
            for variant in VARIANTS:
                own = workdir / variant
                own.mkdir()
                command = [sys.executable, "-m", "bench.ablation", "serve", variant]
                service = await stack.enter_async_context(
                    setup.callgate_service(url, own, environment(variant), command)
                )
                lanes[variant] = HttpLane(service.port)
                stack.callback(lanes[variant].close)
            times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
            seed: list[float] = []
            for index in range(-warmup, calls):
                if index >= 0 and index % 5 == 0:
                    seed.append(
                        await asyncio.to_thread(
                            ways.seed_way, sshd.host, sshd.port, sshd.username, sshd.password
                        )
                    )
                order = VARIANTS if index % 2 == 0 else VARIANTS[::-1]
                for variant in order:
                    await ways.settle()
                    took = await ways.legacy_way(lanes[variant], secret, 100000 + index)
                    await control.rx("channel request hangup all")
                    if index >= 0:
                        times[variant].append(took * 1000)
            await ways.settle()
    return summarise([s * 1000 for s in seed], times)


def summarise(seed_ms: list[float], times: dict[str, list[float]]) -> dict[str, Any]:
    """Medians, paired differences from ``full`` and ratios to the seed's median."""
    seed = statistics.median(seed_ms)
    full = times["full"]
    return {
        "seed_ms": seed,
        "seed_samples": len(seed_ms),
        "variants": {
            variant: {
                "median_ms": statistics.median(samples),
                "paired_ms": statistics.median(a - b for a, b in zip(samples, full, strict=True)),
                "ratio": seed / statistics.median(samples),
            }
            for variant, samples in times.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ablation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--calls", type=int, default=300, help="rounds (default 300)")
    commands = parser.add_subparsers(dest="command")
    one = commands.add_parser("serve", help="serve one variant (the measurement starts them)")
    one.add_argument("variant", choices=VARIANTS)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.variant)
        return
    result = uvloop.run(measure(args.calls))
    print(f"seed's way: {result['seed_ms']:.1f} ms (median of {result['seed_samples']})")
    for variant, row in result["variants"].items():
        print(
            f"{variant:>10}: {row['median_ms']:.3f} ms, {row['paired_ms']:+.3f} ms paired "
            f"against full, {row['ratio']:.1f}x below the seed's way"
        )


if __name__ == "__main__":
    main()
