"""The files in deploy/: the systemd unit passes `systemd-analyze verify` and is hardened, the
example environment file names every setting, and Debian's nginx accepts the site and proxies
a legacy call, the event stream (unbuffered) and the WebSocket to a running service.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from callgate.db.enterprises import list_enterprises
from callgate.db.migrate import upgrade
from callgate.demo import DEMO_NUMBER
from callgate.settings import Settings
from tests.support.database import opened
from tests.support.event_streams import QUIET_WS_LOG
from tests.support.hygiene import REGISTRY, STACK_PHONE
from tests.support.nginx import ROOT, Nginx, require_nginx
from tests.support.service import RunningService, free_port, running_service
from tests.support.stack import LIMITS_OFF

DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "callgate.service"
CALLGATE = Path(sys.executable).with_name("callgate")


# -- systemd --------------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    """The unit's `[Service]` settings, each name with its values in order."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif line and not line.startswith("#") and section == "[Service]":
            name, _, value = line.partition("=")
            found.setdefault(name, []).append(value)
    return found


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit with nothing to say (an unknown or misspelt
    setting is only a warning, so the output must be empty, not just the exit status 0)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart's program exists: this checkout's, where the unit says
    # /opt/callgate.
    text = UNIT.read_text(encoding="utf-8")
    assert text.count("/opt/callgate/.venv/bin/callgate") == 2
    unit = tmp_path / "callgate.service"
    unit.write_text(text.replace("/opt/callgate/.venv/bin/callgate", str(CALLGATE)))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr
    assert done.stdout.strip() == "", done.stdout


def test_systemd_unit_is_hardened() -> None:
    """A dedicated user, no privileges to gain, a read-only system with one state and one log
    directory, the service started by `callgate serve` with the environment file, and a stop
    timeout above the longest graceful stop."""
    from callgate.app import graceful_timeout

    service = unit_settings()
    expected = {
        "User": ["callgate"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "PrivateDevices": ["yes"],
        "StateDirectory": ["callgate"],
        "LogsDirectory": ["callgate"],
        "CapabilityBoundingSet": [""],
        "EnvironmentFile": ["/etc/callgate/callgate.env"],
        "KillSignal": ["SIGTERM"],
    }
    for name, values in expected.items():
        assert service.get(name) == values, name
    assert service["ExecStart"] == ["/opt/callgate/.venv/bin/callgate serve"]
    assert "AF_INET" in service["RestrictAddressFamilies"][0]
    stop_timeout = int(service["TimeoutStopSec"][0])
    assert stop_timeout >= graceful_timeout(Settings(_env_file=None)) + 15


def test_env_example_names_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each `CALLGATE_*` setting appears in the example (set or commented), and nothing else."""
    text = (DEPLOY / "callgate.env.example").read_text(encoding="utf-8")
    named = set(re.findall(r"^#?(CALLGATE_[A-Z0-9_]+)=", text, re.MULTILINE))
    fields = {f"CALLGATE_{name.upper()}" for name in Settings.model_fields}
    assert fields - named == set(), "missing from deploy/callgate.env.example"
    assert named - fields == set(), "not settings"
    # The values it sets are valid settings, and so is each value shown in a comment, read
    # from the environment as systemd passes them.
    for name, value in re.findall(r"^#?(CALLGATE_[A-Z0-9_]+)=(.+)$", text, re.MULTILINE):
        monkeypatch.setenv(name, value)
    Settings(_env_file=None)


# -- nginx ----------------------------------------------------------------------------------


def test_nginx_accepts_the_site(tmp_path: Path) -> None:
    """`nginx -t` with Debian's nginx on the site as shipped (ports and log directory set)."""
    require_nginx()
    done = Nginx(tmp_path, free_port()).check()
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr
    assert "[warn]" not in done.stderr, done.stderr


@dataclass
class Proxied:
    service: RunningService
    nginx: Nginx
    secret: str


@pytest.fixture
async def proxied(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Proxied]:
    """The demo service (SQLite, the simulated PBX) behind the site's nginx."""
    require_nginx()
    url = f"sqlite+aiosqlite:///{tmp_path / 'callgate.db'}"
    await asyncio.to_thread(upgrade, url)
    values: dict[str, Any] = {
        "database_url": url,
        "port": free_port(),
        "demo": True,
        "log_file": tmp_path / "callgate.log",
        "track_interval": 0.2,
        **LIMITS_OFF,
    }
    settings = Settings(**values)
    async with running_service(settings) as service:
        async with opened(url) as database:
            secret = next(s for e, s in await list_enterprises(database) if e.number == DEMO_NUMBER)
        # The demo prints its curl line (secret and number in clear, on purpose): dropped,
        # then both are looked for in everything else the test prints and logs.
        capsys.readouterr()
        REGISTRY.record_stack(secret, settings.log_file)
        with Nginx(tmp_path, settings.port) as nginx:
            yield Proxied(service, nginx, secret)


async def test_nginx_proxies_a_legacy_call(proxied: Proxied) -> None:
    """The seed's /api/ route: a call placed through nginx is answered as the service answers
    it, and /health and /ready pass through."""
    async with httpx.AsyncClient(base_url=proxied.nginx.base_url, timeout=30) as client:
        params = {"code": "150", "phone": STACK_PHONE, "clientId": proxied.secret}
        response = await client.get("/api/makecallexternal", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True and body["call_id"]
        assert (await client.get("/health")).json()["status"] == "healthy"
        assert (await client.get("/ready")).status_code == 200
        refused = await client.get("/api/makecallexternal", params=params | {"clientId": "x" * 20})
        assert refused.status_code == 401
        assert (await client.get("/nowhere")).status_code == 404  # only the service's routes
    # nginx's access log has the path, never the query string with the secret.
    access = (proxied.nginx.prefix / "callgate.access.log").read_text()
    assert "/api/makecallexternal" in access
    assert proxied.secret not in access and "clientId" not in access


async def test_nginx_streams_events_as_they_happen(proxied: Proxied) -> None:
    """/v1/events through nginx: each transition arrives when it happens, not when a buffer
    fills or the stream ends."""
    headers = {"Authorization": f"Bearer {proxied.secret}"}
    arrived: list[tuple[float, str]] = []
    async with (
        httpx.AsyncClient(base_url=proxied.nginx.base_url, timeout=30) as client,
        client.stream("GET", "/v1/events", headers=headers) as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        params = {"code": "150", "phone": STACK_PHONE, "clientId": proxied.secret}
        placed = await client.get("/api/makecallexternal", params=params)
        answered_at = time.monotonic()
        call_id = placed.json()["call_id"]
        lines = stream.aiter_lines()
        async with asyncio.timeout(15):
            async for line in lines:
                if not line.startswith("data: "):
                    continue
                event = json.loads(line.removeprefix("data: "))
                if event.get("call_id") != call_id:
                    continue
                arrived.append((time.monotonic(), event["state"]))
                if event["state"] == "connected":
                    break
    states = [state for _, state in arrived]
    assert "initiated" in states and states[-1] == "connected", states
    # The first event was sent within milliseconds of the answer; buffered by nginx (the site
    # turns buffering off, the service's X-Accel-Buffering too) it would wait for the stream
    # to end or for kilobytes more.
    assert arrived[0][0] - answered_at < 1.0, arrived
    # The simulated agent answers 1 s later and the customer 2 s after that: the events came
    # one by one over those seconds, not together.
    assert arrived[-1][0] - arrived[0][0] > 2.0, arrived


async def test_nginx_upgrades_the_websocket(proxied: Proxied) -> None:
    """/v1/ws through nginx: the upgrade passes and the protocol's first message arrives."""
    url = f"ws://127.0.0.1:{proxied.nginx.port}/v1/ws"
    headers = {"Authorization": f"Bearer {proxied.secret}"}
    async with (
        asyncio.timeout(10),
        websockets.connect(url, additional_headers=headers, logger=QUIET_WS_LOG) as socket,
    ):
        first = json.loads(await socket.recv())
        assert first["op"] == "init"
        await socket.send(json.dumps({"op": "ping", "data": {"payload": "p1"}}))
        while True:
            message = json.loads(await socket.recv())
            if message["op"] == "pong":
                assert message["data"]["payload"] == "p1"
                break
