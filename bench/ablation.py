"""What a verified call would cost without parts of what callgate does: an ablation.

    python -m bench.ablation [--calls N] [--only VARIANT ...]

The single-host set-up of `make bench` (a real sshd whose `asterisk` is the simulator,
console transport) with several services side by side on the same host, each `callgate serve`
in its own process on a fresh PostgreSQL database of its own (on one database they would be
instances coordinating, see README "Several instances"), changed at start by this module
(nothing in the service itself is switchable):

- ``full``: the service as it is;
- ``remembered``: each secret's enterprise and host read once, then remembered (no
  authorisation read per call);
- ``bare``: remembered, and neither the call row's insert and outcome nor any log line below
  warnings written;

and, each alone, without one of the service's performance choices (each names the command
that measures it in a comment beside it; ``--only full VARIANT`` runs just the two):

- ``inline-lines``: a call's log lines written where they are logged, not a turn later
  (`logs.LinesSoon`);
- ``render-per-handler``: structlog's formatter rendering each record once per handler (and
  once more for the file's rollover check), not once (`logs._RenderOnce`);
- ``declared-params``: the legacy endpoint's five query parameters and two dependencies
  declared to FastAPI, which solves them on every request (`api/legacy.py` reads them);
- ``asyncio-h11``: uvicorn on asyncio's own loop and h11, not uvloop and httptools;
- ``track-inline``: a verified call taken in hand by the tracker before the answer is
  written, not at the loop's next turn (`CallTracker.track`).

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
from typing import Annotated, Any

import structlog
import uvicorn
import uvloop
from fastapi import Depends, Query, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

import callgate.calls.service as service_module
import callgate.calls.tracker as tracker_module
from bench import setup, ways
from bench.load import HttpLane
from callgate import logs
from callgate.api import legacy
from callgate.api.deps import request_id, services
from callgate.calls.service import CallService, Enterprise
from callgate.calls.services import Services
from callgate.calls.tracker import CallTracker
from callgate.cli import app
from callgate.pbx.parsing import Channel
from callgate.pbx.transport import HostTarget

DEFAULT = ("full", "remembered", "bare")
TRICKS = ("inline-lines", "render-per-handler", "declared-params", "asyncio-h11", "track-inline")
VARIANTS = DEFAULT + TRICKS
_Authorise = Callable[..., Coroutine[Any, Any, Enterprise]]


def remember_authorisation(service_class: type[CallService]) -> None:
    """``authorise`` reads the database once per secret, then answers from memory."""
    original: _Authorise = service_class.authorise
    remembered: dict[str | None, Enterprise] = {}  # one service per process

    async def authorise(
        self: CallService, secret: str | None, *, client: str | None = None
    ) -> Enterprise:
        if secret not in remembered:
            remembered[secret] = await original(self, secret, client=client)
        return remembered[secret]

    service_class.authorise = authorise  # type: ignore[method-assign]


def skip_call_rows(service_class: type[CallService]) -> None:
    """Neither the call row's insert nor its outcome is written."""

    async def nothing(*_args: object, **_kwargs: object) -> None:
        return None

    service_class._insert = nothing  # type: ignore[method-assign]
    service_class._finish = nothing  # type: ignore[method-assign]


class _AtOnce(logs.LinesSoon):
    """Each line written when it is added."""

    def add(self, write: Callable[..., object], event: str, **values: object) -> None:
        write(event, **values)


async def _declared(  # the parameters are what is measured
    request: Request,
    code: str | None = None,
    phone: str | None = None,
    client_id: Annotated[str | None, Query(alias="clientId")] = None,
    user_id: Annotated[str | None, Query(alias="userId")] = None,
    external_phone: Annotated[str | None, Query(alias="externalPhone")] = None,
    svc: Annotated[Services | None, Depends(services)] = None,
    rid: Annotated[str | None, Depends(request_id)] = None,
) -> JSONResponse:
    """FastAPI solves the parameters, then the endpoint answers as it does."""
    return await legacy.make_call_external(request)


def declare_parameters() -> None:
    """The legacy endpoint's route, with its parameters declared (before the app is built)."""
    for index, route in enumerate(legacy.router.routes):
        if isinstance(route, APIRoute) and route.path == "/api/makecallexternal":
            legacy.router.routes[index] = APIRoute(route.path, _declared, methods=["GET"])


def plain_asyncio() -> None:
    """uvicorn's configuration with asyncio's loop and h11, whatever the service asks for
    (`callgate.app.serve` builds a `uvicorn.Config`, looked up when it runs)."""

    class OnAsyncio(uvicorn.Config):
        def __init__(self, application: Any, **options: Any) -> None:
            super().__init__(application, **{**options, "loop": "asyncio", "http": "h11"})

    uvicorn.Config = OnAsyncio  # type: ignore[misc, assignment]


def track_inline(tracker_class: type[CallTracker]) -> None:
    """`track` takes the call in hand at once: `_begin` called, not scheduled."""

    def track(
        self: CallTracker,
        call_id: str,
        target: HostTarget,
        first_leg: Channel,
        phone: str,
        *,
        enterprise_number: str | None = None,
        since: float = 0.0,
    ) -> None:
        started = tracker_module._now() - max(since, 0.0)
        call = tracker_module._Call(
            call_id, target, first_leg.base_name, phone, started, first_leg.uniqueid
        )
        call.enterprise_number = enterprise_number
        self._claiming.add(call_id)
        self._begin(call, first_leg)

    tracker_class.track = track  # type: ignore[method-assign]


def prepare(variant: str) -> None:
    """Change the service for ``variant`` (in the process that will serve it)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: one of {', '.join(VARIANTS)}")
    if variant in ("remembered", "bare"):
        remember_authorisation(CallService)
    if variant == "bare":
        skip_call_rows(CallService)
    if variant == "inline-lines":
        service_module.LinesSoon = _AtOnce  # type: ignore[attr-defined]
    if variant == "render-per-handler":
        logs._RenderOnce.format = structlog.stdlib.ProcessorFormatter.format  # type: ignore[method-assign]
    if variant == "declared-params":
        declare_parameters()
    if variant == "asyncio-h11":
        plain_asyncio()
    if variant == "track-inline":
        track_inline(CallTracker)


def environment(variant: str) -> dict[str, str]:
    """What the variant's service gets in its environment besides the set-up's."""
    return {"CALLGATE_LOG_LEVEL": "WARNING"} if variant == "bare" else {}


def serve(variant: str) -> None:
    """`callgate serve`, with the service changed for ``variant`` first (methods and module
    names are looked up when called, so the service built by the CLI uses the changed ones)."""
    prepare(variant)
    app(["serve"], prog_name="callgate")


async def start(
    stack: contextlib.AsyncExitStack, stage: setup.Stage, variants: tuple[str, ...]
) -> dict[str, tuple[HttpLane, str]]:
    """Each variant's service on ``stage``'s host, until ``stack`` closes: its lane, and the
    secret of its enterprise."""
    started: dict[str, tuple[HttpLane, str]] = {}
    for variant in variants:
        # A database each: services sharing one are several instances, which share the
        # double-click guard and hear a host only where they hold its lease.
        url = await stack.enter_async_context(setup.database())
        secret = await setup.seed_rows(url, stage.sshd, "console")
        own = stage.workdir / variant
        own.mkdir()
        command = [sys.executable, "-m", "bench.ablation", "serve", variant]
        service = await stack.enter_async_context(
            setup.callgate_service(url, own, environment(variant), command)
        )
        lane = HttpLane(service.port)
        stack.callback(lane.close)
        started[variant] = (lane, secret)
    return started


async def measure(
    calls: int, variants: tuple[str, ...] = DEFAULT, warmup: int = 20
) -> dict[str, Any]:
    """The seed's median, and per variant its median and paired difference from ``full``."""
    with setup.stage("callgate-ablation-") as stage:
        sshd, control = stage.sshd, stage.control
        async with contextlib.AsyncExitStack() as stack:
            started = await start(stack, stage, variants)
            times: dict[str, list[float]] = {variant: [] for variant in variants}
            seed: list[float] = []
            for index in range(-warmup, calls):
                if index >= 0 and index % 5 == 0:
                    seed.append(
                        await asyncio.to_thread(
                            ways.seed_way, sshd.host, sshd.port, sshd.username, sshd.password
                        )
                    )
                order = variants if index % 2 == 0 else variants[::-1]
                for variant in order:
                    await ways.settle()
                    lane, secret = started[variant]
                    took = await ways.legacy_way(lane, secret, 100000 + index)
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
    parser.add_argument(
        "--only", nargs="+", choices=VARIANTS, default=DEFAULT, help="variants (full is added)"
    )
    commands = parser.add_subparsers(dest="command")
    one = commands.add_parser("serve", help="serve one variant (the measurement starts them)")
    one.add_argument("variant", choices=VARIANTS)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.variant)
        return
    variants = tuple(dict.fromkeys(("full", *args.only)))
    result = uvloop.run(measure(args.calls, variants))
    print(f"seed's way: {result['seed_ms']:.1f} ms (median of {result['seed_samples']})")
    for variant, row in result["variants"].items():
        print(
            f"{variant:>18}: {row['median_ms']:.3f} ms, {row['paired_ms']:+.3f} ms paired "
            f"against full, {row['ratio']:.1f}x below the seed's way"
        )


if __name__ == "__main__":
    main()
