"""RetailCRM told of an enterprise's calls, through the real service, real calls on the
simulated PBX, and a local HTTP server that checks every request as RetailCRM's API v5
documents it (`telephony/call/event`, `telephony/calls/upload`: form-encoded JSON fields,
`X-API-KEY`, the enum values), on SQLite and PostgreSQL. The API key is given to the CLI in
the environment and stored encrypted; requests keep within 10 a second; a failed one is
retried through the outbox."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from callgate.cli import app
from callgate.db.models import WEBHOOK_ENDPOINTS
from callgate.domain.sealed import SEALED_PREFIX, new_key
from callgate.simulator.timeline import Scenario
from tests.support.database import opened
from tests.support.event_streams import place
from tests.support.hygiene import REGISTRY
from tests.support.receiver import Answer, Received, Receiver, receiver
from tests.support.sshd import SshdServer
from tests.support.stack import Stack, call_stack

pytestmark = [pytest.mark.sshd]
SECRET_KEY = new_key()
API_KEY = "rcrm-ApiKey-5b0c1e9f7d2a4c68"
EVENT_PATH = "/api/v5/telephony/call/event"
UPLOAD_PATH = "/api/v5/telephony/calls/upload"
# As RetailCRM's API v5 reference lists them.
EVENT_FIELDS = {
    "phone",
    "type",
    "codes",
    "userIds",
    "site",
    "hangupStatus",
    "externalPhone",
    "callExternalId",
    "webAnalyticsData",
}
CALL_FIELDS = {
    "date",
    "type",
    "phone",
    "code",
    "userId",
    "result",
    "duration",
    "durationWaiting",
    "externalId",
    "externalPhone",
    "recordUrl",
    "site",
}
HANGUP_STATUSES = {"answered", "busy", "cancel", "failed", "no answered"}
RESULTS = {"answered", "busy", "failed", "no answer", "not allowed", "unknown"}
DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
# Our customer side's result -> (hangupStatus, upload result): README, "RetailCRM".
MAPPING = {
    "answered": ("answered", "answered"),
    "busy": ("busy", "busy"),
    "no_answer": ("no answered", "no answer"),
    "canceled": ("cancel", "failed"),
    "congestion": ("failed", "failed"),
    "unknown": ("failed", "unknown"),
}


class RetailCrm:
    """What a RetailCRM account would accept: every request checked field by field; a bad one
    is answered 400 ``success: false`` and its problem kept in ``problems``."""

    def __init__(self, inbox: Receiver) -> None:
        self.inbox = inbox
        self.problems: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        inbox.answer = self.answer

    def answer(self, got: Received) -> Answer:
        problems = self.check(got)
        self.problems += problems
        if problems:
            body = {"success": False, "errorMsg": "; ".join(problems)}
            return Answer(400, {"content-type": "application/json"}, json.dumps(body).encode())
        body = {"success": True}
        if got.path == UPLOAD_PATH:
            body["processedCallsCount"] = 1
        return Answer(200, {"content-type": "application/json"}, json.dumps(body).encode())

    def check(self, got: Received) -> list[str]:
        found: list[str] = []
        if got.headers.get("x-api-key") != API_KEY:
            found.append("X-API-KEY missing or wrong")
        if got.headers.get("content-type") != "application/x-www-form-urlencoded":
            found.append(f"content-type {got.headers.get('content-type')}")
        try:
            form = parse_qs(got.body.decode(), strict_parsing=True)
        except ValueError:
            return [*found, "not form-encoded"]
        if got.path == EVENT_PATH:
            if set(form) != {"event"} or len(form["event"]) != 1:
                return [*found, f"event: fields {sorted(form)}"]
            event = json.loads(form["event"][0])
            found += check_event(event)
            self.events.append(event)
        elif got.path == UPLOAD_PATH:
            if set(form) != {"calls"} or len(form["calls"]) != 1:
                return [*found, f"upload: fields {sorted(form)}"]
            calls = json.loads(form["calls"][0])
            if not isinstance(calls, list) or not 1 <= len(calls) <= 50:
                return [*found, "calls: a list of 1 to 50 calls"]
            for call in calls:
                found += check_call(call)
            self.calls += calls
        else:
            found.append(f"path {got.path}")
        return found


def check_event(event: dict[str, Any]) -> list[str]:
    found = [f"event: unknown field {name}" for name in set(event) - EVENT_FIELDS]
    if not isinstance(event.get("phone"), str) or not event["phone"]:
        found.append("event: phone")
    if event.get("type") not in {"in", "out", "hangup"}:
        found.append(f"event: type {event.get('type')!r}")
    codes = event.get("codes")
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        found.append("event: codes must be a list of strings")
    if event.get("type") == "hangup" and event.get("hangupStatus") not in HANGUP_STATUSES:
        found.append(f"event: hangupStatus {event.get('hangupStatus')!r}")
    if event.get("type") != "hangup" and "hangupStatus" in event:
        found.append("event: hangupStatus only on hangup")
    return found


def check_call(call: dict[str, Any]) -> list[str]:
    found = [f"call: unknown field {name}" for name in set(call) - CALL_FIELDS]
    if not isinstance(call.get("date"), str) or not DATE.fullmatch(call["date"]):
        found.append(f"call: date {call.get('date')!r} (Y-m-d H:i:s)")
    if call.get("type") not in {"in", "out"}:
        found.append(f"call: type {call.get('type')!r}")
    if call.get("result") not in RESULTS:
        found.append(f"call: result {call.get('result')!r}")
    duration = call.get("duration")
    if not isinstance(duration, int) or isinstance(duration, bool) or duration < 0:
        found.append(f"call: duration {duration!r}")
    for name in ("phone", "code", "externalId"):
        if not isinstance(call.get(name), str) or not call[name]:
            found.append(f"call: {name}")
    return found


@pytest.fixture
def crm() -> Iterator[RetailCrm]:
    with receiver() as inbox:
        yield RetailCrm(inbox)


@pytest.fixture
async def api(db_url: str, sshd: SshdServer, tmp_path: Path) -> AsyncIterator[Stack]:
    settings: dict[str, Any] = {
        "track_interval": 0.1,
        "webhook_allow_private": True,
        "webhook_poll_interval": 0.1,
        "webhook_retry_delays": [0.3, 0.3, 0.3, 0.3],
        "secret_key": SECRET_KEY,
    }
    async with call_stack(db_url, sshd, tmp_path, **settings) as stack:
        yield stack


async def cli(stack: Stack, *args: str, **env: str | None) -> Any:
    """``callgate <args>`` against the stack's database, in a thread (it runs its own loop)."""
    environment: dict[str, str | None] = {
        "CALLGATE_DATABASE_URL": stack.db_url,
        "CALLGATE_SECRET_KEY": SECRET_KEY,
        "CALLGATE_WEBHOOK_ALLOW_PRIVATE": "true",
        **env,
    }
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=environment)


async def test_calls_are_told_to_retailcrm_as_its_api_documents(api: Stack, crm: RetailCrm) -> None:
    REGISTRY.record("secret", API_KEY)
    crm.inbox.script = [Answer(503)]  # the first request fails: retried through the outbox
    refused = await cli(api, "enterprise", "crm", "set", "0367", "--url", crm.inbox.url)
    assert refused.exit_code == 2  # --api-key-env is required: never the key in argv
    added = await cli(
        api,
        "enterprise",
        "crm",
        "set",
        "0367",
        "--url",
        crm.inbox.url + "/",
        "--api-key-env",
        "RCRM_KEY",
        RCRM_KEY=API_KEY,
    )
    assert added.exit_code == 0, added.output
    assert API_KEY not in added.output
    shown = await cli(api, "enterprise", "crm", "show", "0367")
    assert crm.inbox.url in shown.output and API_KEY not in shown.output
    async with opened(api.db_url) as database:
        stored = await database.value(select(WEBHOOK_ENDPOINTS.c.secret))
    assert stored.startswith(SEALED_PREFIX) and API_KEY not in stored

    scenarios = {
        "151": Scenario(agent_answer_after=0.2, customer_answer_after=0.2, talk=1.5),
        "152": Scenario(agent_answer_after=0.2, customer_answer_after=0.3, customer_outcome="busy"),
        "153": Scenario(agent_answer_after=None, originate_timeout=1.0),
    }
    placed: dict[str, str] = {}
    for extension, scenario in scenarios.items():
        await api.control.set_scenario(extension, scenario)
        placed[extension] = await place(api, extension)
    # 3 calls: each a start, an end and an upload, and the first request's retry.
    await crm.inbox.until(lambda got: len(got) >= 10, within=30)
    await asyncio.sleep(0.5)

    assert crm.problems == []
    first, again = crm.inbox.requests[:2]
    assert first.body == again.body and first.path == again.path == EVENT_PATH
    assert len(crm.inbox.requests) == 10
    # Within RetailCRM's 10 requests a second per key: evenly spaced (105 ms apart when
    # sent; as received, give or take the jitter of a loaded machine: never a burst), never
    # 10 in a second.
    times = [r.at for r in crm.inbox.requests[1:]]
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.05
    assert all(sum(t <= s < t + 1 for s in times) <= 10 for t in times)

    for extension, call_id in placed.items():
        call = await api.ended(call_id)
        events = [e for e in crm.events if e["callExternalId"] == call_id]
        assert [e["type"] for e in events] == ["out", "hangup"]
        assert all(e["codes"] == [extension] and e["phone"] == call["to"] for e in events)
        (uploaded,) = [c for c in crm.calls if c["externalId"] == call_id]
        assert (uploaded["type"], uploaded["code"], uploaded["phone"]) == (
            "out",
            extension,
            call["to"],
        )
        customer = call["sides"]["customer"]
        # No customer side: the agent never answered, the customer was never dialled.
        expected = ("failed", "failed") if customer is None else MAPPING[customer["result"]]
        assert (events[1]["hangupStatus"], uploaded["result"]) == expected, call["sides"]
        if extension == "151":
            assert expected == ("answered", "answered") and uploaded["duration"] >= 1
        else:
            assert uploaded["duration"] == 0
    assert placed and (await api.ended(placed["153"]))["state"] == "agent_no_answer"

    removed = await cli(api, "enterprise", "crm", "remove", "0367")
    assert removed.exit_code == 0, removed.output
    assert "no RetailCRM" in (await cli(api, "enterprise", "crm", "show", "0367")).output


async def test_without_a_secret_key_the_api_key_is_refused(api: Stack, crm: RetailCrm) -> None:
    result = await cli(
        api,
        "enterprise",
        "crm",
        "set",
        "0367",
        "--url",
        crm.inbox.url,
        "--api-key-env",
        "RCRM_KEY",
        RCRM_KEY=API_KEY,
        CALLGATE_SECRET_KEY=None,  # unset
    )
    assert result.exit_code == 2 and "CALLGATE_SECRET_KEY" in result.output
