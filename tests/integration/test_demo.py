"""`make run`'s demo: SQLite, the in-process simulated PBX, a call that succeeds and is followed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from callgate.db.enterprises import list_enterprises
from callgate.db.migrate import upgrade
from callgate.demo import DEMO_NUMBER
from callgate.settings import Settings
from tests.support.database import opened
from tests.support.processes import ServiceProcess
from tests.support.service import free_port, running_service


async def test_demo_call_succeeds_and_moves_through_states(tmp_path: Path) -> None:
    """The demo's call succeeds, and GET /v1/calls/{id} shows it progress."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    await asyncio.to_thread(upgrade, url)
    settings = Settings(
        database_url=url, port=free_port(), demo=True, log_file=None, track_interval=0.2
    )
    async with running_service(settings) as service:
        async with opened(url) as database:
            secrets = [s for e, s in await list_enterprises(database) if e.number == DEMO_NUMBER]
        assert len(secrets) == 1
        secret = secrets[0]
        response = await service.client.get(
            "/api/makecallexternal",
            params={"code": "150", "phone": "+375296254070", "clientId": secret},
        )
        assert response.status_code == 200, response.text
        call_id = response.json()["call_id"]
        headers = {"Authorization": f"Bearer {secret}"}
        seen: list[str] = []
        for _ in range(40):
            state = (await service.client.get(f"/v1/calls/{call_id}", headers=headers)).json()
            if not seen or seen[-1] != state["state"]:
                seen.append(state["state"])
            if state["state"] == "connected":
                break
            await asyncio.sleep(0.1)
    assert seen[-1] == "connected"
    assert len(seen) >= 2  # it moved: initiated/ringing first, then connected


async def test_serve_prints_the_demo_commands_once_its_port_listens(tmp_path: Path) -> None:
    """`make run`'s terminal: the commands to paste appear only once the port accepts
    connections (they used to be printed while the service was still starting, and a curl
    pasted at once was refused); the curl's secret is the demo enterprise's."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    await asyncio.to_thread(upgrade, url)
    service = ServiceProcess(url, tmp_path)
    service.env["CALLGATE_DEMO"] = "1"
    service.spawn()
    try:
        deadline = time.monotonic() + 60
        while "Place a call" not in (printed := service.output.read_text()):
            assert time.monotonic() < deadline, printed[-2000:]
            await asyncio.sleep(0.002)
        # One try, no retry: the port accepts the connection the moment the line is there.
        async with httpx.AsyncClient(base_url=service.base_url, timeout=5) as client:
            assert (await client.get("/health")).status_code == 200
        async with opened(url) as database:
            secrets = [s for e, s in await list_enterprises(database) if e.number == DEMO_NUMBER]
        assert f"&clientId={secrets[0]}'" in printed
        assert printed.count("Place a call") == 1
    finally:
        await service.stop()
