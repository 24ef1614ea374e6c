"""A host's row picks its transport by name, through real HTTP.

The enterprise's host row says ``transport=memory``: the in-memory test transport
(``tests/support/memory_transport.py``, one module plus its registration, as a real second
transport would be) places and follows the call, while CALLGATE_TRANSPORT stays ``console``
and no SSH connection is ever opened. A row naming no registered transport is a configuration
error naming the column, and nothing is dialled.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from callgate.db.enterprises import add_enterprise
from callgate.db.executor import connect
from callgate.db.hosts import set_host
from callgate.db.migrate import upgrade
from callgate.domain.states import TERMINAL
from callgate.settings import Settings
from callgate.simulator.timeline import Scenario
from tests.support import memory_transport as memory
from tests.support.hygiene import REGISTRY
from tests.support.service import RunningService, free_port, running_service

ENTERPRISE = {"number": "0367", "name": "june", "ip": "10.20.30.40"}
CALL = {"code": "150", "phone": "+375296254070"}


@contextlib.asynccontextmanager
async def service_on(
    db_url: str, tmp_path: Path, transport: str
) -> AsyncIterator[tuple[RunningService, str]]:
    """The service, its one enterprise's host row naming ``transport``; and the secret."""
    await asyncio.to_thread(upgrade, db_url)
    secret = secrets.token_hex(16)
    database = connect(db_url)
    await database.open()
    try:
        await add_enterprise(database, secret=secret, **ENTERPRISE)
        await set_host(database, ENTERPRISE["ip"], {"transport": transport})
    finally:
        await database.close()
    config = Settings(
        database_url=db_url,
        port=free_port(),
        log_file=tmp_path / "callgate.log",
        track_interval=0.1,
        admin_token="admin-token-for-the-status",
    )
    assert config.transport == "console"
    REGISTRY.record_stack(secret, config.log_file)  # leak hygiene: see tests/support/hygiene.py
    async with running_service(config) as service:
        yield service, secret


async def pbx_status(service: RunningService) -> dict[str, Any]:
    status: dict[str, Any] = (await service.status()).json()["pbx"]
    return status


async def test_a_legacy_call_on_a_memory_host_goes_through_the_memory_transport(
    db_url: str, tmp_path: Path
) -> None:
    async with service_on(db_url, tmp_path, memory.NAME) as (service, secret):
        transport = memory.BUILT[-1]
        response = await service.client.get(
            "/api/makecallexternal", params={**CALL, "clientId": secret}
        )
        assert response.status_code == 200, response.text
        assert response.json()["host_ip"] == ENTERPRISE["ip"]
        assert transport.originates() == 1
        assert transport.runs[0][0] == f"{ENTERPRISE['ip']}:5059"
        status = await pbx_status(service)
        assert status["connections_opened"] == 0  # not one SSH login
        assert memory.NAME in status["transports"]


async def test_a_v1_call_on_a_memory_host_is_placed_and_followed_to_its_end(
    db_url: str, tmp_path: Path
) -> None:
    """The tracker's listings take the same route: the call is followed to `completed`."""
    async with service_on(db_url, tmp_path, memory.NAME) as (service, secret):
        transport = memory.BUILT[-1]
        quick = Scenario(agent_answer_after=0.1, customer_answer_after=0.1, talk=0.3)
        transport.engine.set_scenario("150", quick)
        auth = {"Authorization": f"Bearer {secret}"}
        created = await service.client.post(
            "/v1/calls", json={"from": "150", "to": CALL["phone"]}, headers=auth
        )
        assert created.status_code == 201, created.text
        call_id = created.json()["id"]
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            call = (await service.client.get(f"/v1/calls/{call_id}", headers=auth)).json()
            if call["state"] in TERMINAL or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        assert call["state"] == "completed", call
        assert transport.originates() == 1
        listings = [c for _, run in transport.runs for c in run if c.startswith("core show")]
        assert len(listings) >= 2  # the originate's check, then the tracker's
        assert (await pbx_status(service))["connections_opened"] == 0


async def test_a_row_naming_no_registered_transport_dials_nothing(
    db_url: str, tmp_path: Path
) -> None:
    async with service_on(db_url, tmp_path, "carrier-pigeon") as (service, secret):
        response = await service.client.get(
            "/api/makecallexternal", params={**CALL, "clientId": secret}
        )
        assert response.status_code == 500, response.text
        detail = response.json()["detail"]
        assert "pbx_hosts.transport names no transport" in detail, detail
        assert all(transport.originates() == 0 for transport in memory.BUILT[-1:])
        assert (await pbx_status(service))["connections_opened"] == 0
