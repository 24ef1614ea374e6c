"""Run the real service (uvicorn, real HTTP) inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import uvicorn

from callgate.app import create_app, server_limits
from callgate.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningService:
    settings: Settings
    base_url: str
    client: httpx.AsyncClient
    server: uvicorn.Server

    async def status(self) -> httpx.Response:
        """`/api/status` as an operator sees it: with the admin token when one is set."""
        token = self.settings.admin_token
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        return await self.client.get("/api/status", headers=headers)


@contextlib.asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[RunningService]:
    """Start uvicorn on settings.port (127.0.0.1) and yield an HTTP client pointed at it."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=settings.port,
        access_log=False,
        log_config=None,
        lifespan="on",
        **server_limits(settings),  # as `callgate serve` runs it
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        task.cancel()
        raise RuntimeError("the service did not start")
    base = f"http://127.0.0.1:{settings.port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        try:
            yield RunningService(settings, base, client, server)
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 30)
