"""Where the service's footprint goes, each part measured alone (VmRSS, in fresh processes):

    python -m bench.footprint_split [--count N]   # about 20 seconds

- the libraries `callgate serve` imports, one after the other, then callgate's own modules;
- the metrics' label children made at start for ``count`` hosts and ``count`` enterprises
  (`callgate.metrics.configure`);
- asyncssh alone: ``count`` connections to a server in another process on 127.0.0.1, then a
  session with a PTY on each (a host here has two: its console and its listening console).

`python -m bench.footprint` measures the whole service with a thousand hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import asyncssh
import uvloop

from bench import procs

LIBRARIES = [
    "uvloop",
    "sqlalchemy.ext.asyncio",
    "asyncpg",
    "asyncssh",
    "fastapi",
    "structlog",
    "prometheus_client",
    "phonenumbers",
    "limits",
    "httpx",
    "jinja2",
    "typer",
]
OWN = ["callgate.cli", "callgate.wiring", "callgate.app"]
USER, PASSWORD = "bench", "bench"


def rss_mib() -> float:
    return procs.rss_kib(os.getpid()) / 1024


# Run by `python -c`: this module imports asyncssh and uvloop itself, so it cannot measure them
# (`bench.procs` imports the standard library only).
_IMPORTS = """
import importlib, os, sys
from bench.procs import rss_kib
def rss():
    return rss_kib(os.getpid()) / 1024
print(f"| a bare interpreter | {rss():.1f} |")
for name in sys.argv[1:]:
    before = rss()
    importlib.import_module(name)
    print(f"| import {name} | +{rss() - before:.1f} (total {rss():.1f}) |")
"""


def _in_fresh_process(part: str, count: int) -> None:
    if part == "imports":
        argv = [sys.executable, "-c", _IMPORTS, *LIBRARIES, *OWN]
    else:
        argv = [sys.executable, "-m", "bench.footprint_split", "--part", part]
        argv += ["--count", str(count)]
    subprocess.run(argv, check=True)


def metrics(count: int) -> None:
    from callgate import metrics as service_metrics

    before = rss_mib()
    service_metrics.configure([f"10.0.{i // 250}.{i % 250}" for i in range(count)], [])
    hosts = rss_mib()
    service_metrics.configure([], [f"{i:04d}" for i in range(count)])
    print(f"| metrics: {count} hosts' children | +{hosts - before:.1f} |")
    print(f"| metrics: {count} enterprises' children | +{rss_mib() - hosts:.1f} |")


class _Server(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return (username, password) == (USER, PASSWORD)


async def _echo(process: asyncssh.SSHServerProcess[str]) -> None:
    process.stdout.write("ready\n")
    async for line in process.stdin:
        process.stdout.write(line)


async def _serve() -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(
        _Server, "127.0.0.1", 0, server_host_keys=[key], process_factory=_echo
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Future()


async def _connect(port: int, count: int) -> None:
    async def one() -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(
            "127.0.0.1", port, username=USER, password=PASSWORD, known_hosts=None
        )

    held = [await one() for _ in range(10)]  # the first ones load what every one shares
    before = rss_mib()
    connections = [await one() for _ in range(count)]
    opened = rss_mib()
    sessions = []
    for connection in connections:
        process = await connection.create_process(term_type="xterm")
        await process.stdout.readline()
        sessions.append(process)
    per_connection = (opened - before) * 1024 / count
    per_session = (rss_mib() - opened) * 1024 / count
    print(f"| asyncssh: a connection (KiB each, of {count}) | {per_connection:.1f} |")
    print(f"| asyncssh: a session with a PTY (KiB each) | {per_session:.1f} |")
    for connection in [*held, *connections]:
        connection.close()


def ssh(count: int) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.footprint_split", "--part", "ssh-server"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        uvloop.run(_connect(port, count))
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.footprint_split", description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--part", choices=["metrics", "ssh", "ssh-server"])
    args = parser.parse_args()
    if args.part == "metrics":
        metrics(args.count)
    elif args.part == "ssh":
        ssh(args.count)
    elif args.part == "ssh-server":
        uvloop.run(_serve())
    else:
        began = time.monotonic()
        print("| part | VmRSS MiB |\n|---|---:|", flush=True)
        for part in ("imports", "metrics", "ssh"):
            _in_fresh_process(part, args.count)
        print(f"\n({time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
