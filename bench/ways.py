"""The ways to start a call that the benchmark compares, each timed per call."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import time
from urllib.parse import urlencode

import asyncssh

from bench.load import HttpLane

ORIGINATE = "channel originate Local/150@inoffice application Dial Local/+375296254070@inoffice"


def seed_way(host: str, port: int, user: str, password: str) -> float:
    """The seed's way: sshpass + ssh, a fresh login per call, `StrictHostKeyChecking=no`."""
    remote = f'asterisk -rx "{ORIGINATE}"'
    argv = [
        "sshpass", "-e",  # the seed used -p; -e keeps the password out of the process list
        "ssh", "-p", str(port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
        "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
        f"{user}@{host}", remote,
    ]  # fmt: skip
    env = {**os.environ, "SSHPASS": password}
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"seed way failed: {done.returncode} {done.stderr[-200:]!r}")
    return elapsed


async def floor_way(conn: asyncssh.SSHClientConnection) -> float:
    """The floor: one raw `asterisk -rx` (originate only) over an already open connection."""
    command = f"asterisk -rx {shlex.quote(ORIGINATE)}"
    started = time.perf_counter()
    result = await conn.run(command, check=True)
    elapsed = time.perf_counter() - started
    if result.exit_status != 0:
        raise RuntimeError("floor way failed")
    return elapsed


async def legacy_way(lane: HttpLane, secret: str, index: int = 0) -> float:
    """callgate's legacy endpoint: validated, authenticated, originated and verified.

    Timed through the load generator's few lines of HTTP/1.1 over a kept connection (what any
    CRM's client does), so that a client library's own parsing is not counted as the
    service's. Each sample calls another number: the same one again within seconds would be
    answered by the double-click guard without dialling, which is not what is measured here.
    """
    query = urlencode({"code": "150", "phone": f"+3752962{index:05d}", "clientId": secret})
    started = time.perf_counter()
    status, body = await lane.get(f"/api/makecallexternal?{query}")
    elapsed = time.perf_counter() - started
    if status != 200:
        raise RuntimeError(f"callgate failed: {status} {body[:200]!r}")
    return elapsed


SETTLE = 0.005  # seconds: longer than a call's after-answer writes take
IDLE = 0.1  # seconds of nothing before an "after idle" sample


async def settle(seconds: float = SETTLE) -> None:
    """Let the previous call's after-answer work (its outcome and first state, written in the
    background) finish before the next sample: one call at a time means no overlap; that
    work's CPU is counted where calls do overlap, in the throughput part."""
    await asyncio.sleep(seconds)
