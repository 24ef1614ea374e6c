"""The v1 API end to end: Bearer auth, problem+json, idempotency, history, hangup, channels."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callgate.db.enterprises import add_enterprise
from callgate.domain.states import TERMINAL
from callgate.simulator.timeline import Scenario
from tests.support.database import opened
from tests.support.netfaults import Blackhole, refused_port
from tests.support.sshd import SshdServer
from tests.support.stack import Stack, call_stack

pytestmark = [pytest.mark.sshd, pytest.mark.postgres]
PROBLEM = "application/problem+json"


@pytest.fixture
async def api(pg_url: str, sshd: SshdServer, tmp_path: Path) -> AsyncIterator[Stack]:
    """The stack over the default (console) transport, tracking every 0.1 s."""
    async with call_stack(pg_url, sshd, tmp_path, track_interval=0.1) as stack:
        yield stack


async def _ended(stack: Stack, call_id: str, within: float = 15.0) -> Any:
    """The call once it has ended (the tracker polls every 0.1 s)."""
    return await stack.ended(call_id, within)


def _csv_rows(text: str) -> dict[str, dict[str, str]]:
    """A CSV export by call id."""
    return {row["id"]: row for row in csv.DictReader(io.StringIO(text))}


def _auth(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.secret}"}


async def _post(stack: Stack, body: dict[str, Any], **headers: str) -> Any:
    return await stack.service.client.post("/v1/calls", json=body, headers=_auth(stack) | headers)


async def test_post_then_follow_a_call_to_its_end(api: Stack) -> None:
    """201 with the call; GET shows it move through the states to `completed`."""
    await api.control.set_scenario(
        "150", Scenario(agent_answer_after=0.2, customer_answer_after=0.2, talk=0.6)
    )
    created = await _post(api, {"from": "150", "to": "+375 29 625-40-70", "metadata": {"deal": 7}})
    assert created.status_code == 201, created.text
    call = created.json()
    assert (call["from"], call["to"], call["metadata"]) == ("150", "+375296254070", {"deal": 7})
    assert call["channels"]["agent"].startswith("Local/150@inoffice-")
    for _ in range(60):
        call = (await api.service.client.get(f"/v1/calls/{call['id']}", headers=_auth(api))).json()
        if call["state"] == "completed":
            break
        await asyncio.sleep(0.1)
    assert call["state"] == "completed"
    states = [event["state"] for event in call["timeline"]]
    assert states[-1] == "completed"
    assert "connected" in states
    assert call["durations"]["talk_s"] is not None
    assert 0.3 <= call["durations"]["talk_s"] <= 2.0
    agent, customer = call["sides"]["agent"], call["sides"]["customer"]
    assert (agent["result"], customer["result"]) == ("answered", "answered")
    assert 0.1 <= agent["ring_s"] <= 1.0 and 0.1 <= customer["ring_s"] <= 1.0
    assert agent["reason"] is None and customer["reason"] is None
    assert await api.originates() == 1


async def test_idempotency_key_dials_once_even_in_parallel(api: Stack) -> None:
    """Five parallel requests with one key: one dial, one call id; another body: 422."""
    body = {"from": "151", "to": "+375296254070"}
    answers = await asyncio.gather(
        *(_post(api, body, **{"Idempotency-Key": "k-1"}) for _ in range(5))
    )
    assert {a.status_code for a in answers} <= {200, 201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert await api.originates() == 1
    again = await _post(api, body, **{"Idempotency-Key": "k-1"})
    assert again.json()["id"] == answers[0].json()["id"]
    other = await _post(api, {**body, "to": "+375296254071"}, **{"Idempotency-Key": "k-1"})
    assert other.status_code == 422
    assert other.headers["content-type"] == PROBLEM
    assert other.json()["code"] == "idempotency_key_reused"
    assert await api.originates() == 1


async def test_double_click_guard_on_v1_and_legacy(api: Stack) -> None:
    """The same extension and phone twice within the window: one dial, the same call."""
    body = {"from": "152", "to": "+375296254070"}
    first, second = await asyncio.gather(_post(api, body), _post(api, body))
    assert sorted([first.status_code, second.status_code]) == [200, 201]
    assert first.json()["id"] == second.json()["id"]
    legacy_a = await api.call(code="153")
    legacy_b = await api.call(code="153")
    assert legacy_a.status_code == legacy_b.status_code == 200
    assert legacy_a.json()["call_id"] == legacy_b.json()["call_id"]
    assert await api.originates() == 2


async def test_secret_in_query_is_refused(api: Stack) -> None:
    """/v1 refuses a secret in the URL, and a missing one, as problem+json 401."""
    response = await api.service.client.get("/v1/calls", params={"clientId": api.secret})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "secret_in_query"
    assert api.secret not in response.text
    anonymous = await api.service.client.get("/v1/calls")
    assert anonymous.status_code == 401
    wrong = await api.service.client.get("/v1/calls", headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["code"]) == (401, "unauthorized")


async def test_bad_body_is_422_naming_the_field(api: Stack) -> None:
    """Hostile or missing fields: 422 naming them, nothing dialled."""
    cases: list[tuple[dict[str, Any], str]] = [
        ({"from": "15;0", "to": "+375296254070"}, "from"),
        ({"from": "150", "to": "+375$(id)"}, "to"),
        ({"from": "150"}, "to"),
        ({"from": "150", "to": "+375296254070", "ring_timeout": 1}, "ring_timeout"),
    ]
    for body, field in cases:
        response = await _post(api, body)
        assert response.status_code == 422, body
        assert response.json()["field"] == field
    assert await api.host_commands() == 0


async def test_enterprises_never_see_each_other(api: Stack) -> None:
    """Another enterprise's call is a 404, and its list is empty."""
    call = (await _post(api, {"from": "154", "to": "+375296254070"})).json()
    other_secret = secrets.token_hex(16)
    async with opened(api.db_url) as database:
        await add_enterprise(database, "0400", "other", "127.0.0.1", other_secret)
    headers = {"Authorization": f"Bearer {other_secret}"}
    response = await api.service.client.get(f"/v1/calls/{call['id']}", headers=headers)
    assert (response.status_code, response.json()["code"]) == (404, "call_not_found")
    listing = await api.service.client.get("/v1/calls", headers=headers)
    assert listing.json()["items"] == []


async def test_history_filters_pages_and_csv(api: Stack) -> None:
    """Filters, cursor pages without overlap, and a CSV export."""
    for index in range(5):
        assert (await _post(api, {"from": "160", "to": f"+37529600000{index}"})).status_code == 201
    assert (await _post(api, {"from": "161", "to": "+375296000009"})).status_code == 201
    client, headers = api.service.client, _auth(api)
    page1 = (
        await client.get("/v1/calls", params={"extension": "160", "limit": 3}, headers=headers)
    ).json()
    assert len(page1["items"]) == 3
    page2 = (
        await client.get(
            "/v1/calls", params={"extension": "160", "limit": 3, "cursor": page1["next_cursor"]},
            headers=headers,
        )
    ).json()  # fmt: skip
    assert len(page2["items"]) == 2
    assert page2["next_cursor"] is None
    ids = [c["id"] for c in page1["items"] + page2["items"]]
    assert len(set(ids)) == 5
    by_phone = (
        await client.get("/v1/calls", params={"phone": "+375 29 600-00-09"}, headers=headers)
    ).json()
    assert [c["from"] for c in by_phone["items"]] == ["161"]
    csv_text = (await client.get("/v1/calls", params={"format": "csv"}, headers=headers)).text
    assert csv_text.splitlines()[0].startswith("id,state,outcome,from,to")
    assert len(csv_text.splitlines()) == 7
    bad = await client.get("/v1/calls", params={"cursor": "garbage!"}, headers=headers)
    assert (bad.status_code, bad.json()["field"]) == (422, "cursor")


async def test_hangup_cancels_and_then_conflicts(api: Stack) -> None:
    """Hangup sends `channel request hangup`, the call ends `canceled`; again: 409."""
    await api.control.set_scenario("170", Scenario(agent_answer_after=None))
    call = (await _post(api, {"from": "170", "to": "+375296254070"})).json()
    client, headers = api.service.client, _auth(api)
    response = await client.post(f"/v1/calls/{call['id']}/hangup", headers=headers)
    assert response.status_code == 200, response.text
    for _ in range(50):
        state = (await client.get(f"/v1/calls/{call['id']}", headers=headers)).json()["state"]
        if state == "canceled":
            break
        await asyncio.sleep(0.1)
    assert state == "canceled"
    ended = (await client.get(f"/v1/calls/{call['id']}", headers=headers)).json()
    assert ended["sides"]["agent"]["result"] == "canceled"  # hung up while it rang
    assert ended["sides"]["agent"]["ring_s"] is not None
    assert ended["sides"]["customer"] is None  # never dialled
    assert await api.control.calls() == []
    assert any(c.command.startswith("channel request hangup") for c in await api.control.commands())
    again = await client.post(f"/v1/calls/{call['id']}/hangup", headers=headers)
    assert (again.status_code, again.json()["code"]) == (409, "call_not_live")


async def test_each_side_says_why_it_ended(api: Stack) -> None:
    """An agent who never answers (the originate gives up after 1 s here: not Asterisk's own
    30 s, so the listing cannot tell why) and an originate into a context the PBX does not
    have: GET, the list and the CSV export say why each side ended."""
    await api.control.set_scenario("156", Scenario(agent_answer_after=None, originate_timeout=1.0))
    unanswered = (await _post(api, {"from": "156", "to": "+375296254070"})).json()
    await api.control.set_contexts({"sales"})  # "inoffice" is gone: the PBX creates nothing
    refused = await _post(api, {"from": "157", "to": "+375296254070"})
    assert (refused.status_code, refused.json()["code"]) == (502, "pbx_call_not_created")
    await api.control.set_contexts({"inoffice"})
    call = await _ended(api, unanswered["id"])
    assert call["state"] == "agent_no_answer"
    agent = call["sides"]["agent"]
    assert (agent["result"], agent["reason"]) == ("unknown", None)
    assert 0.8 <= agent["ring_s"] <= 3.0
    assert call["sides"]["customer"] is None

    client, headers = api.service.client, _auth(api)
    failed = (await client.get("/v1/calls", params={"state": "failed"}, headers=headers)).json()
    [call] = failed["items"]
    assert call["from"] == "157"
    assert call["sides"] == {
        "agent": {"result": "failed", "ring_s": None, "reason": call["end_reason"]},
        "customer": None,
    }
    assert "157" in call["end_reason"]

    exported = await client.get("/v1/calls", params={"format": "csv"}, headers=headers)
    rows = _csv_rows(exported.text)
    assert list(rows[call["id"]])[-6:] == [
        "agent_result",
        "agent_ring_s",
        "agent_reason",
        "customer_result",
        "customer_ring_s",
        "customer_reason",
    ]
    assert rows[call["id"]]["agent_result"] == "failed"
    assert rows[call["id"]]["agent_reason"] == call["end_reason"]
    assert rows[unanswered["id"]]["agent_result"] == "unknown"
    assert float(rows[unanswered["id"]]["agent_ring_s"]) == agent["ring_s"]
    assert rows[unanswered["id"]]["customer_result"] == ""


async def test_events_of_an_ending_carry_its_sides(api: Stack) -> None:
    """/v1/events: live transitions have `sides: null`, the terminal one why each side ended."""
    await api.control.set_scenario(
        "158", Scenario(agent_answer_after=0.2, customer_answer_after=0.2, talk=0.3)
    )
    connected = asyncio.Event()
    events: list[dict[str, Any]] = []

    async def listen() -> None:
        async with api.service.client.stream(
            "GET", "/v1/events", headers=_auth(api), timeout=None
        ) as stream:
            async for line in stream.aiter_lines():
                connected.set()  # ": connected" comes first
                if line.startswith("data: "):
                    events.append(json.loads(line.removeprefix("data: ")))
                    if events[-1]["state"] in TERMINAL:
                        return

    listener = asyncio.create_task(listen())
    await asyncio.wait_for(connected.wait(), 5)
    placed = await _post(api, {"from": "158", "to": "+375296254070"})
    assert placed.status_code == 201, placed.text
    await asyncio.wait_for(listener, 15)
    assert events[-1]["state"] == "completed"
    assert all(event["sides"] is None for event in events[:-1])
    sides = events[-1]["sides"]
    assert (sides["agent"]["result"], sides["customer"]["result"]) == ("answered", "answered")
    stored = (await _ended(api, placed.json()["id"]))["sides"]
    assert sides == stored  # the event says what the call's body says


async def test_channels_are_listed(api: Stack) -> None:
    """/v1/channels parses the host's live channels."""
    await api.control.set_scenario("171", Scenario(agent_answer_after=None))
    assert (await _post(api, {"from": "171", "to": "+375296254070"})).status_code == 201
    channels = (await api.service.client.get("/v1/channels", headers=_auth(api))).json()
    assert {c["name"].rsplit(";", 1)[1] for c in channels} == {"1", "2"}
    assert all(c["name"].startswith("Local/171@inoffice-") for c in channels)


async def test_pbx_faults_map_to_502(api: Stack) -> None:
    """Refused and no-channel are 502 with stable codes; nothing verified is dialled twice."""
    await api.set_host(dial_context="nosuchcontext")
    response = await _post(api, {"from": "172", "to": "+375296254070"})
    assert (response.status_code, response.json()["code"]) == (502, "pbx_call_not_created")
    await api.set_host(ssh_port=refused_port())
    response = await _post(api, {"from": "173", "to": "+375296254070"})
    assert (response.status_code, response.json()["code"]) == (502, "pbx_connection_refused")
    assert response.json()["outcome"] == "not_dialled"


async def test_every_pbx_fault_has_its_status_and_code(
    pg_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    """502 for authentication, Asterisk down and a changed host key, 504 for a connect or a
    command timeout; each with its stable code and whether the call may have been dialled."""
    async with call_stack(
        pg_url, sshd, tmp_path, ssh_connect_timeout=1, ssh_command_timeout=1, breaker_failures=0
    ) as api:

        async def fault(code: str) -> tuple[int, str, str]:
            response = await _post(api, {"from": code, "to": "+375296254070"})
            assert response.headers["content-type"] == PROBLEM, response.text
            body = response.json()
            return response.status_code, body["code"], body["outcome"]

        await api.set_host(ssh_password="wrong-password")
        assert await fault("180") == (502, "pbx_authentication_failed", "not_dialled")
        await api.set_host(ssh_password=sshd.password)
        await api.control.set_running(False)
        assert await fault("181") == (502, "asterisk_not_running", "not_dialled")
        await api.control.set_running(True)
        await api.control.set_delay(2)  # longer than the command timeout
        assert await fault("182") == (504, "pbx_command_timeout", "unknown")
        await api.control.set_delay(0)
        async with Blackhole() as hole:
            await api.set_host(ssh_port=hole.port)
            assert await fault("183") == (504, "pbx_connect_timeout", "not_dialled")
        await api.set_host(ssh_port=sshd.port)
        assert (await _post(api, {"from": "184", "to": "+375296254070"})).status_code == 201
        sshd.replace_host_key()
        assert await fault("185") == (502, "pbx_host_key_rejected", "not_dialled")
        assert await api.originates() == 2  # the timed-out one (outcome unknown) and 184
