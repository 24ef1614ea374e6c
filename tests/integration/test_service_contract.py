"""/health, /api/status, the legacy table and the logs' hygiene, on the running service."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import asyncpg
import pytest

from callgate.db.migrate import upgrade
from callgate.logs import configure_logging
from tests.support.sshd import SshdServer
from tests.support.stack import ENTERPRISE, Stack, call_stack

pytestmark = [pytest.mark.sshd, pytest.mark.postgres]


async def test_health_is_the_seeds(stack: Stack) -> None:
    """`/health` answers exactly the seed's body, with the configured port."""
    response = await stack.service.client.get("/health", headers={"X-Request-ID": "crm-42"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "crm-42"  # echoed, and in the log lines
    hostile = await stack.service.client.get("/health", headers={"X-Request-ID": "a b\tc"})
    assert hostile.headers["x-request-id"] != "a b\tc"  # replaced, never logged as given
    assert response.json() == {
        "status": "healthy",
        "service": "asterisk-call-management",
        "port": stack.service.settings.port,
    }


async def test_status_reports_real_settings_and_no_secret(stack: Stack) -> None:
    """`/api/status` keeps the seed's keys, shows the SSH defaults in force, hides the DSN."""
    response = await stack.service.client.get("/api/status")
    body = response.json()
    assert body["service"] == "asterisk-call-management"
    assert body["version"] == "1.0.0"
    assert body["database"] == "connected"
    config = body["asterisk_config"]
    assert (config["method"], config["ssh_port"], config["ssh_user"]) == ("SSH CLI", 5059, "root")
    assert "postgres" not in response.text
    assert stack.sshd.password not in response.text


async def test_status_names_the_database_error_class(
    sshd: SshdServer, tmp_path: Path, pg_url: str
) -> None:
    """A database that cannot be reached is reported by error class, never by DSN."""
    dead = "postgresql://callgate:hunter2@127.0.0.1:1/nowhere"
    async with call_stack(pg_url, sshd, tmp_path) as stack:
        pass
    async with call_stack(dead, sshd, tmp_path, migrate=False) as stack:
        response = await stack.service.client.get("/api/status")
        legacy = await stack.call()
    state = response.json()["database"]
    assert state != "connected"
    assert "hunter2" not in response.text
    assert "nowhere" not in response.text
    assert legacy.status_code == 500
    assert legacy.json()["detail"].startswith("Call initiation failed: database unavailable")
    assert "hunter2" not in legacy.text


@pytest.mark.parametrize("transport", ["rx", "console"])
async def test_hand_made_five_column_table(
    pg_url: str, sshd: SshdServer, tmp_path: Path, transport: str
) -> None:
    """A production `enterprises` table with only the seed's five columns keeps working."""
    connection = await asyncpg.connect(pg_url)
    await connection.execute(
        "CREATE TABLE enterprises (number varchar(16), name varchar(64), ip varchar(64),"
        " secret varchar(64), active boolean)"
    )
    await connection.execute(
        "INSERT INTO enterprises VALUES ($1, $2, $3, $4, true)",
        ENTERPRISE["number"], ENTERPRISE["name"], ENTERPRISE["ip"], "legacy-secret-0123456789",
    )  # fmt: skip
    await asyncio.to_thread(upgrade, pg_url)
    columns = await connection.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'enterprises'"
    )
    await connection.close()
    assert sorted(r["column_name"] for r in columns) == ["active", "ip", "name", "number", "secret"]
    host = {
        "ssh_port": sshd.port,
        "ssh_user": sshd.username,
        "ssh_password": sshd.password,
        "transport": transport,
    }
    async with call_stack(pg_url, sshd, tmp_path, migrate=False) as stack:
        await stack.set_host(**host)
        response = await stack.call(clientId="legacy-secret-0123456789")
    assert response.status_code == 200, response.text
    assert response.json()["enterprise"] == "june"


@pytest.mark.parametrize("transport", ["rx", "console"])
async def test_no_secret_password_or_phone_in_any_log_line(
    pg_url: str, sshd: SshdServer, tmp_path: Path, transport: str
) -> None:
    """Request, authorised, SSH, CLI done, access and error lines: nothing secret in them."""
    log_file = tmp_path / "service.log"
    configure_logging(log_file, "json", "DEBUG")
    try:
        async with call_stack(
            pg_url, sshd, tmp_path, host={"transport": transport}, log_file=log_file
        ) as stack:
            assert (await stack.call()).status_code == 200
            assert (await stack.call(code="151", clientId="wrong-secret-000000")).status_code == 401
            headers = {"Authorization": f"Bearer {stack.secret}"}
            await stack.service.client.get(
                "/api/makecallexternal", params={"code": "152", "phone": "+375296254070"},
                headers=headers,
            )  # fmt: skip
            await stack.set_host(ssh_password="another-wrong-pw")
            assert (await stack.call(code="153")).status_code == 500
            secret = stack.secret
    finally:
        logging.getLogger().handlers.clear()
    text = log_file.read_text()
    for step in ("call requested", "client authorised", "ssh originate", "cli done", '"http"'):
        assert step in text, step
    # Each request's lines in the order of its steps (some are written at the next turn of
    # the event loop, while the database or the PBX answers), the failed ones included.
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    steps = {
        "ok": ["call requested", "client authorised", "ssh originate", "cli done", "http"],
        "401": ["call requested", "http"],
        "500": ["call requested", "client authorised", "ssh originate", "call failed", "http"],
    }
    seen: dict[str, list[str]] = {}
    for line in lines:
        if line.get("request_id") and line["event"] in steps["ok"] + ["call failed"]:
            seen.setdefault(line["request_id"], []).append(line["event"])
    assert list(seen.values()) == [steps["ok"], steps["401"], steps["ok"], steps["500"]]
    for forbidden in (
        secret,
        sshd.password,
        "another-wrong-pw",
        "+375296254070",
        "wrong-secret-000000",
    ):
        assert forbidden not in text, forbidden
    assert "+375*******70" in text
