"""Isolation and status through real HTTP: own channels only, the status's admin-only
details, host-key checking flagged, a host key pinned before the first contact."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from callgate.cli import app as cli_app
from callgate.db.enterprises import add_enterprise, set_active
from callgate.simulator.timeline import Scenario
from tests.support.database import opened
from tests.support.sshd import SshdServer
from tests.support.stack import Stack, call_stack

pytestmark = [pytest.mark.sshd, pytest.mark.postgres]
PUBLIC_KEYS = {"service", "version", "database", "asterisk_config", "warnings"}


@pytest.fixture
async def api(pg_url: str, sshd: SshdServer, tmp_path: Path) -> AsyncIterator[Stack]:
    async with call_stack(pg_url, sshd, tmp_path, track_interval=0.1) as stack:
        yield stack


async def _other_enterprise(stack: Stack) -> dict[str, str]:
    """A second enterprise on the same PBX host; its v1 credentials."""
    secret = secrets.token_hex(16)
    async with opened(stack.db_url) as database:
        await add_enterprise(database, number="0999", name="other", ip="127.0.0.1", secret=secret)
    return {"Authorization": f"Bearer {secret}"}


async def test_channels_show_only_the_enterprises_own_calls(api: Stack) -> None:
    """Two enterprises share a host: each sees its own call's channels, never the other's."""
    other = await _other_enterprise(api)
    for code in ("171", "172"):
        await api.control.set_scenario(code, Scenario(agent_answer_after=None))
    mine = await api.service.client.post(
        "/v1/calls", json={"from": "171", "to": "+375296254070"}, headers=api.auth()
    )
    theirs = await api.service.client.post(
        "/v1/calls", json={"from": "172", "to": "+375296254071"}, headers=other
    )
    assert (mine.status_code, theirs.status_code) == (201, 201), (mine.text, theirs.text)
    seen = (await api.service.client.get("/v1/channels", headers=api.auth())).json()
    seen_by_other = (await api.service.client.get("/v1/channels", headers=other)).json()
    assert {c["name"].rsplit("-", 1)[0] for c in seen} == {"Local/171@inoffice"}
    assert {c["name"].rsplit("-", 1)[0] for c in seen_by_other} == {"Local/172@inoffice"}
    assert len(seen) == len(seen_by_other) == 2  # both halves of each Local pair
    assert await api.originates() == 2  # reading channels dialled nothing


async def test_an_enterprise_without_calls_sees_no_channels(api: Stack) -> None:
    other = await _other_enterprise(api)
    await api.control.set_scenario("171", Scenario(agent_answer_after=None))
    assert (await api.call(code="171")).status_code == 200
    await asyncio.sleep(0.3)  # the legacy call's channel is stored after its answer
    assert (await api.service.client.get("/v1/channels", headers=other)).json() == []
    assert len((await api.service.client.get("/v1/channels", headers=api.auth())).json()) == 2
    assert await api.originates() == 1


async def test_status_public_keys_and_admin_details(api: Stack) -> None:
    """Anyone: the legacy contract's keys. The admin token (constant-time compared) adds the
    transports' and tracker's details; a wrong token adds nothing."""
    public = await api.service.client.get("/api/status")
    wrong = await api.service.client.get(
        "/api/status", headers={"Authorization": "Bearer not-the-token"}
    )
    admin = await api.service.status()
    for response in (public, wrong):
        assert set(response.json()) == PUBLIC_KEYS | {"host_key_checking_off"}, response.text
        assert "127.0.0.1" not in response.text
    assert {"pbx", "tracking"} <= set(admin.json())
    assert admin.json()["database"] == public.json()["database"] == "connected"
    assert await api.originates() == 0


async def test_host_with_host_key_checking_off_is_flagged(
    pg_url: str, sshd: SshdServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A host whose own policy is `off`: warned about at start, flagged in the status (its
    address for the admin only)."""
    host = {"host_key_policy": "off"}
    async with call_stack(pg_url, sshd, tmp_path, host=host) as stack:
        public = (await stack.service.client.get("/api/status")).json()
        admin = (await stack.service.status()).json()
        started = capsys.readouterr().out
    assert public["host_key_checking_off"] is True
    assert any("1 host(s)" in warning for warning in public["warnings"])
    assert any("127.0.0.1" in warning for warning in admin["warnings"])
    assert "SSH host key checking is off for a host" in started
    assert "127.0.0.1" in started


async def test_host_key_pinned_with_the_cli_before_first_contact(
    pg_url: str, sshd: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`callgate host set --host-key`: a wrong key refuses the first contact (nothing dialled,
    no credentials sent), the host's real key lets the call through."""
    async with call_stack(pg_url, sshd, tmp_path, host={"host_key_policy": "strict"}) as stack:
        monkeypatch.setenv("CALLGATE_DATABASE_URL", stack.db_url)

        async def pin(key: str) -> None:
            args = ["host", "set", "127.0.0.1", "--host-key", key]
            result = await asyncio.to_thread(CliRunner().invoke, cli_app, args)
            assert result.exit_code == 0, result.output

        await pin(sshd_other_key(sshd) + " a comment")
        refused = await stack.call()
        assert refused.status_code == 500
        assert "host key" in refused.json()["detail"]
        assert stack.sshd.count_log("Accepted password") == 0
        await pin(sshd.host_public_key)
        accepted = await stack.call(code="151")
        assert accepted.status_code == 200, accepted.text
        assert await stack.originates() == 1
        bad = await asyncio.to_thread(
            CliRunner().invoke, cli_app, ["host", "set", "127.0.0.1", "--host-key", "nope"]
        )
        assert bad.exit_code == 2
        assert "--host-key" in bad.output


def sshd_other_key(sshd: SshdServer) -> str:
    """A well-formed ed25519 public key that is not the host's."""
    kind, blob = sshd.host_public_key.split()[:2]
    flipped = blob[:-6] + ("AAAAAA" if blob[-6:] != "AAAAAA" else "BBBBBB")
    return f"{kind} {flipped}"


async def test_event_streams_routed_capped_and_closed_on_disable(
    pg_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    """Two streams per enterprise at most (429 beyond, nothing dialled); each stream carries
    its own enterprise's calls only; a disabled enterprise's streams end within seconds."""
    async with call_stack(
        pg_url, sshd, tmp_path, track_interval=0.1, streams_per_enterprise=2
    ) as stack:
        other = await _other_enterprise(stack)
        client = stack.service.client
        lines: dict[str, list[str]] = {"ours": [], "theirs": []}
        connected = {name: asyncio.Event() for name in lines}

        async def listen(name: str, headers: dict[str, str]) -> None:
            async with client.stream("GET", "/v1/events", headers=headers, timeout=None) as sse:
                assert sse.status_code == 200
                async for line in sse.aiter_lines():
                    connected[name].set()
                    lines[name].append(line)

        ours = [asyncio.create_task(listen("ours", stack.auth())) for _ in range(2)]
        theirs = asyncio.create_task(listen("theirs", other))
        for event in connected.values():
            await asyncio.wait_for(event.wait(), 5)
        await asyncio.sleep(0.2)  # both of ours are open
        third = await client.get("/v1/events", headers=stack.auth())
        assert third.status_code == 429
        assert third.json()["code"] == "too_many_streams"

        await stack.control.set_scenario("171", Scenario(agent_answer_after=None))
        placed = await client.post(
            "/v1/calls", json={"from": "171", "to": "+375296254070"}, headers=stack.auth()
        )
        assert placed.status_code == 201, placed.text
        call_id = placed.json()["id"]
        for _ in range(100):
            if any(call_id in line for line in lines["ours"]):
                break
            await asyncio.sleep(0.05)
        assert any(call_id in line for line in lines["ours"])
        assert not any(call_id in line for line in lines["theirs"])

        async with opened(stack.db_url) as database:
            await set_active(database, "0367", False)  # `callgate enterprise disable 0367`
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(asyncio.gather(*ours), 10)
        assert asyncio.get_running_loop().time() - started < 5
        assert not theirs.done()  # the other enterprise's stream stays
        theirs.cancel()
        assert await stack.originates() == 1
