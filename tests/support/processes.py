"""`callgate serve` as its own process (the console script), as in production: for the tests
that stop it with signals or run several instances."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.service import free_port

CALLGATE = Path(sys.executable).with_name("callgate")


class ServiceProcess:
    """`callgate serve` in a subprocess, on a free port, with its output in a file."""

    def __init__(self, db_url: str, tmp_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.output, self.log_file = tmp_path / "serve.out", tmp_path / "callgate.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGATE_")}
        self.env |= {
            "CALLGATE_DATABASE_URL": db_url,
            "CALLGATE_PORT": str(self.port),
            "CALLGATE_LOG_FILE": str(self.log_file),
            "CALLGATE_SSH_COMMAND_TIMEOUT": "6",
            "CALLGATE_TRACK_INTERVAL": "0.5",
        }
        self.cwd = tmp_path  # no project .env, no default SQLite file beside the sources
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.output.open("ab") as out:
            return subprocess.Popen(
                [str(CALLGATE), "serve"], env=self.env, cwd=self.cwd, stdout=out, stderr=out
            )

    def spawn(self) -> None:
        """Start it; nothing waited for."""
        self.proc = self._spawn()

    async def start(self) -> None:
        """Start it and wait until /health answers."""
        self.spawn()
        assert self.proc is not None
        async with httpx.AsyncClient(base_url=self.base_url, timeout=1) as client:
            for _ in range(300):
                assert self.proc.poll() is None, self.output.read_text()[-2000:]
                try:
                    if (await client.get("/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("callgate serve did not start: " + self.output.read_text()[-2000:])

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, within: float) -> int:
        assert self.proc is not None
        return await asyncio.to_thread(self.proc.wait, within)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await self.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await self.wait(5)
