"""Where a verified call's time goes: the single-host console call, split by the service's own
log lines.

    python -m bench.breakdown [--calls N]

The same set-up as the single-host part of `make bench` (a real sshd whose `asterisk` is the
simulator, a fresh PostgreSQL database, `callgate serve` as its own process, console
transport), N calls one after another, 5 ms apart. Every call's lines carry its request id and
the milliseconds since the call's handling began (`ssh originate`: before the PBX command goes
out; `cli done`: its answer parsed) or since the request reached the middleware (`http`: the
answer written), so the medians split the time the client measured into:

- before the PBX: validation, the authorisation read, the call row's insert started;
- the PBX: the originate and its listing over the console, SSH included;
- the rest inside the middleware: the framework's routing to the handler, and after the PBX
  until the answer is written;
- outside the middleware: HTTP parsing and both network hops.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from typing import Any

import uvloop

from bench import setup, ways
from bench.load import HttpLane


def split(log_lines: list[str], client_ms: list[float]) -> dict[str, float]:
    """The medians of each part, from the service's JSON log lines and the client's times."""
    steps: dict[str, dict[str, float]] = defaultdict(dict)
    for line in log_lines:
        entry: dict[str, Any] = json.loads(line)
        if entry.get("event") in ("ssh originate", "cli done", "http") and "request_id" in entry:
            steps[entry["request_id"]][entry["event"]] = float(entry["elapsed_ms"])
    calls = [s for s in steps.values() if len(s) == 3]
    if not calls:
        raise RuntimeError("no call with all three log lines")

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    client = median(client_ms)
    middleware = median([s["http"] for s in calls])
    return {
        "calls": len(calls),
        "client, whole call": client,
        "before the PBX (validation, authorisation read)": median(
            [s["ssh originate"] for s in calls]
        ),
        "the PBX (originate + listing over the console)": median(
            [s["cli done"] - s["ssh originate"] for s in calls]
        ),
        "routing to the handler, and after the PBX until the answer is written": median(
            [s["http"] - s["cli done"] for s in calls]
        ),
        "outside the middleware (HTTP parsing, network)": round(client - middleware, 3),
    }


async def measure(calls: int, warmup: int = 20) -> dict[str, float]:
    with setup.stage("callgate-breakdown-") as stage:
        sshd, control, workdir = stage.sshd, stage.control, stage.workdir
        log_file = workdir / "service.log"
        extra = {"CALLGATE_LOG_FILE": str(log_file), "CALLGATE_LOG_FORMAT": "json"}
        async with setup.database() as url:
            secret = await setup.seed_rows(url, sshd, "console")
            async with setup.callgate_service(url, workdir, extra) as service:
                client = HttpLane(service.port)
                for index in range(warmup):
                    await ways.legacy_way(client, secret, 90000 + index)
                    await control.rx("channel request hangup all")
                skip = len(log_file.read_text().splitlines())
                times = []
                for index in range(calls):
                    await ways.settle()
                    times.append(1000 * await ways.legacy_way(client, secret, index))
                    await control.rx("channel request hangup all")
                await ways.settle()
                client.close()
        return split(log_file.read_text().splitlines()[skip:], times)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.breakdown", description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    for part, value in uvloop.run(measure(args.calls)).items():
        print(f"{value:>9}  {part}")


if __name__ == "__main__":
    main()
