"""Every way a PBX host can fail, each with one clear 500 and nothing dialled (or verified)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from callgate.db.models import CALLS
from tests.support.database import opened
from tests.support.netfaults import Blackhole, refused_port
from tests.support.sshd import SshdServer
from tests.support.stack import Stack, call_stack

pytestmark = [pytest.mark.sshd, pytest.mark.postgres]


async def states(stack: Stack) -> list[str]:
    """Every call row's state, once the rows are written (they are written after answers)."""
    async with opened(stack.db_url) as database:
        for _ in range(100):
            rows = await database.rows(select(CALLS))
            found = sorted(row["state"] for row in rows)
            if "initiated" not in found and all(row["outcome"] != "pending" for row in rows):
                break
            await asyncio.sleep(0.05)
        return found


def _detail(response: object) -> str:
    detail: str = response.json()["detail"]  # type: ignore[attr-defined]
    return detail


@pytest.mark.parametrize("transport", ["rx", "console"])
async def test_key_authentication(
    pg_url: str, sshd: SshdServer, tmp_path: Path, transport: str
) -> None:
    """A host configured with a key file logs in with the key, never the password."""
    host = {"ssh_password": None, "ssh_key_file": str(sshd.client_key_path), "transport": transport}
    async with call_stack(pg_url, sshd, tmp_path, host=host) as stack:
        response = await stack.call()
    assert response.status_code == 200, response.text
    assert sshd.count_log("Accepted publickey") == 1
    assert sshd.count_log("Accepted password") == 0


async def test_wrong_password_is_an_authentication_error(stack: Stack) -> None:
    """A refused login: 500 naming the cause, zero commands."""
    await stack.set_host(ssh_password="wrong-password")
    response = await stack.call()
    assert response.status_code == 500
    assert _detail(response).startswith("Call initiation failed: SSH authentication to ")
    assert "wrong-password" not in response.text
    assert await stack.host_commands() == 0


async def test_changed_host_key_is_refused_before_credentials(stack: Stack) -> None:
    """accept-new pins the first key; a changed key is refused and no password is sent."""
    assert (await stack.call()).status_code == 200
    logins = stack.sshd.count_log("Accepted password")
    stack.sshd.replace_host_key()  # also ends the pooled connection
    response = await stack.call(code="151")
    assert response.status_code == 500
    assert "host key" in _detail(response)
    assert "credentials were not sent" in _detail(response)
    assert stack.sshd.count_log("Accepted password") == logins
    assert stack.sshd.count_log("Failed password") == 0
    assert await stack.originates() == 1


async def test_connection_refused_fails_fast(stack: Stack) -> None:
    """Nothing listening on the SSH port: a quick, clear failure."""
    await stack.set_host(ssh_port=refused_port())
    started = time.monotonic()
    response = await stack.call()
    assert time.monotonic() - started < 2
    assert response.status_code == 500
    assert _detail(response).endswith("refused")


async def test_blackholed_host_times_out_within_the_connect_timeout(stack: Stack) -> None:
    """A host that never answers: timeout after 10 s (+ a small margin), never a hang."""
    hole = await Blackhole.start()
    try:
        await stack.set_host(ssh_port=hole.port)
        started = time.monotonic()
        response = await stack.call()
        elapsed = time.monotonic() - started
    finally:
        await hole.close()
    assert response.status_code == 500
    assert "timed out after 10 s" in _detail(response)
    assert 9.5 <= elapsed < 12.5
    assert hole.accepted >= 1


async def test_asterisk_not_running(stack: Stack) -> None:
    """`Unable to connect to remote asterisk` becomes its own clear message."""
    await stack.control.set_running(False)
    response = await stack.call()
    assert response.status_code == 500
    assert _detail(response).startswith("Call initiation failed: Asterisk is not running")


async def test_wrong_context_is_a_verified_failure(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    """Asterisk makes the pair for a context it does not have, then drops it (recordings/
    asterisk/README.md, fact 1): through HTTP, five legacy calls and a v1 call in a row, zero
    successes, each row `failed` with Asterisk's reason, and nothing left ringing."""
    await stack.set_host(dial_context="nosuchcontext")
    started = time.monotonic()
    details = []
    for code in ("150", "151", "152", "153", "154"):
        response = await stack.call(code=code)
        assert response.status_code == 500, response.text
        details.append(_detail(response).replace(code, "N"))
    v1 = await stack.service.client.post(
        "/v1/calls",
        headers={"Authorization": f"Bearer {stack.secret}"},
        json={"from": "155", "to": "+375296254070"},
    )
    assert time.monotonic() - started < 6 * 3
    if request.node.callspec.params["stack"] == "console":
        # A console shows core_local.c's notice, before the listing that no longer has the pair.
        reason = "No such extension/context N@nosuchcontext while calling Local channel"
    else:  # `asterisk -rx` shows no log line: the pair seen and gone, or not even seen
        reason = (
            r"Local/N@nosuchcontext-[0-9a-f]{8};1 ended before the dialplan ran it"
            r"|no channel Local/N@nosuchcontext-…;1 on \S+ within 1\.5 s"
        )
    for detail in details:
        pattern = rf"Call initiation failed: PBX did not create the call \(({reason})\)"
        assert re.fullmatch(pattern, detail), detail
    assert (v1.status_code, v1.json()["code"], v1.json()["outcome"]) == (
        502,
        "pbx_call_not_created",
        "failed",
    )
    assert await stack.originates() == 6
    assert await stack.control.calls() == []
    assert await states(stack) == ["failed"] * 6


async def test_unknown_extension_is_a_verified_failure(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    """An extension the context lacks: the same refusal (core_local.c checks the extension and
    its context together), with Asterisk's words on a console; the next good call still works."""
    await stack.control.set_missing_extensions("inoffice", ["156"])
    response = await stack.call(code="156")
    assert response.status_code == 500, response.text
    if request.node.callspec.params["stack"] == "console":
        assert _detail(response) == (
            "Call initiation failed: PBX did not create the call (No such extension/context "
            "156@inoffice while calling Local channel)"
        )
    else:
        assert _detail(response).startswith("Call initiation failed: PBX did not create the call")
    assert (await stack.call(code="157")).status_code == 200
    assert await stack.originates() == 2
    assert (await states(stack)).count("failed") == 1


async def test_sshd_restart_mid_run(stack: Stack) -> None:
    """The host's sshd restarts between calls: the next call reconnects and succeeds."""
    assert (await stack.call()).status_code == 200
    stack.sshd.restart()
    response = await stack.call(code="151")
    assert response.status_code == 200, response.text
    assert await stack.originates() == 2
    assert stack.sshd.count_log("Accepted password") >= 1


@pytest.mark.parametrize("transport", ["rx", "console"])
async def test_bad_enterprise_ip_is_a_configuration_error(
    pg_url: str, sshd: SshdServer, tmp_path: Path, transport: str
) -> None:
    """An enterprise ip that is no address: 500 naming the problem, nothing executed."""
    async with call_stack(pg_url, sshd, tmp_path, host={"transport": transport}) as stack:
        import asyncpg

        connection = await asyncpg.connect(pg_url)
        await connection.execute("UPDATE enterprises SET ip = 'pbx;reboot' WHERE number = '0367'")
        await connection.close()
        response = await stack.call()
        assert response.status_code == 500
        assert "not an IP address or host name" in _detail(response)
        assert await stack.host_commands() == 0
