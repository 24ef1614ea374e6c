"""`make run`'s demo: SQLite, the in-process simulated PBX, a call that succeeds and is followed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callgate.db.enterprises import list_enterprises
from callgate.db.migrate import upgrade
from callgate.demo import DEMO_NUMBER
from callgate.settings import Settings
from tests.support.database import opened
from tests.support.service import free_port, running_service


async def test_demo_call_succeeds_and_moves_through_states(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The printed curl's call succeeds, and GET /v1/calls/{id} shows it progress."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    await asyncio.to_thread(upgrade, url)
    settings = Settings(
        database_url=url, port=free_port(), demo=True, log_file=None, track_interval=0.2
    )
    async with running_service(settings) as service:
        printed = capsys.readouterr().out
        async with opened(url) as database:
            secrets = [s for e, s in await list_enterprises(database) if e.number == DEMO_NUMBER]
        assert len(secrets) == 1
        secret = secrets[0]
        assert f"clientId={secret}" in printed
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
