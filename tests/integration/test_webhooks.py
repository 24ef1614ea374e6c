"""Signed webhooks through the real service, real calls on the simulated PBX and a real HTTP
receiver, on SQLite and PostgreSQL: every request verifies with `standardwebhooks`' own
`Webhook.verify`; only the enterprise's own calls; `sequence` is the event id; retries after
a 5xx, `Retry-After` honoured, 410 and a spent schedule disable; deliveries survive a restart;
private targets are refused unless allowed; the secret is shown once."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook
from typer.testing import CliRunner

from callgate.cli import app
from callgate.db.models import WEBHOOK_ENDPOINTS
from callgate.domain.sealed import SEALED_PREFIX, new_key, unseal
from callgate.domain.states import TERMINAL
from tests.support.database import opened
from tests.support.event_streams import QUICK, other_enterprise, place, settled, sse
from tests.support.hygiene import REGISTRY
from tests.support.receiver import Answer, Receiver, receiver
from tests.support.service import running_service
from tests.support.sshd import SshdServer
from tests.support.stack import Stack, call_stack

pytestmark = [pytest.mark.sshd]
# Fast polls and short waits, and the receiver on 127.0.0.1 allowed.
FAST: dict[str, Any] = {
    "track_interval": 0.1,
    "webhook_allow_private": True,
    "webhook_poll_interval": 0.1,
    "webhook_retry_delays": [0.3, 0.3, 0.3, 0.3, 2.0],
}


@pytest.fixture
def inbox() -> Iterator[Receiver]:
    with receiver() as got:
        yield got


@pytest.fixture
async def api(db_url: str, sshd: SshdServer, tmp_path: Path) -> AsyncIterator[Stack]:
    async with call_stack(db_url, sshd, tmp_path, **FAST) as stack:
        yield stack


async def add_webhook(
    stack: Stack, url: str, headers: dict[str, str] | None = None, **body: Any
) -> dict[str, Any]:
    created = await stack.service.client.post(
        "/v1/webhooks", json={"url": url, **body}, headers=headers or stack.auth()
    )
    assert created.status_code == 201, created.text
    found: dict[str, Any] = created.json()
    REGISTRY.record("secret", found["secret"])  # never in any log line (tests/conftest.py)
    return found


async def listed(stack: Stack) -> list[dict[str, Any]]:
    response = await stack.service.client.get("/v1/webhooks", headers=stack.auth())
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def verified(secret: str, inbox: Receiver) -> list[dict[str, Any]]:
    """Every request's body, each verified by standardwebhooks' own `Webhook.verify`."""
    verifier = Webhook(secret)
    return [verifier.verify(r.body, r.headers) for r in inbox.requests]


async def test_signed_events_of_the_enterprises_own_calls_only(api: Stack, inbox: Receiver) -> None:
    hook = await add_webhook(api, inbox.url + "/hooks/callgate")
    secret = hook["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    theirs = await other_enterprise(api)
    await api.control.set_scenario("151", QUICK)
    await api.control.set_scenario("159", QUICK)
    async with sse(api) as stream:  # the same events on /v1/events, to compare
        ours = await place(api, "151")
        hidden = await place(api, "159", theirs, end=False)
        log = await settled(api, ours)
        await stream.until(lambda events: len(stream.of(ours)) >= len(log))
    await settled(api, hidden, "0999")
    await inbox.until(lambda got: len(got) >= len(log))
    await asyncio.sleep(0.5)  # a repeat, or the other enterprise's call, would come now

    bodies = verified(secret, inbox)
    assert [b["data"]["sequence"] for b in bodies] == [e.event_id for e in log]
    assert [r.headers["webhook-id"] for r in inbox.requests] == [f"evt_{e.event_id}" for e in log]
    assert all(r.path == "/hooks/callgate" for r in inbox.requests)
    assert all(r.headers["content-type"] == "application/json" for r in inbox.requests)
    assert all(r.headers["webhook-signature"].startswith("v1,") for r in inbox.requests)
    assert {b["data"]["call_id"] for b in bodies} == {ours}
    assert [b["type"] for b in bodies] == [f"call.{e.state}" for e in log]
    assert all(set(b) == {"type", "timestamp", "data"} for b in bodies)
    assert all(
        set(b["data"]) == {"call_id", "state", "at", "reason", "sides", "sequence"} for b in bodies
    )
    call = await api.ended(ours)
    assert bodies[-1]["data"]["state"] == call["state"] in {s.value for s in TERMINAL}
    assert bodies[-1]["data"]["sides"] == call["sides"]
    assert all(b["data"]["sides"] is None for b in bodies[:-1])
    # One event, one id, one `data` on every channel: as /v1/events sent it, and `sequence`.
    streamed = {int(e.id or 0): e for e in stream.of(ours)}
    for body in bodies:
        event = streamed[body["data"]["sequence"]]
        assert event.event == body["type"]
        assert event.data == {k: v for k, v in body["data"].items() if k != "sequence"}
    # A body altered on the way fails verification.
    forged = inbox.requests[0]
    with pytest.raises(Exception, match="signature"):
        Webhook(secret).verify(forged.body.replace(b"call.", b"call_"), forged.headers)

    # The secret was shown once: not in the list, nor to the other enterprise (nor in a log
    # line: the hygiene scan of tests/conftest.py).
    shown = await api.service.client.get("/v1/webhooks", headers=api.auth())
    assert secret not in shown.text and "secret" not in shown.json()[0]
    assert shown.json()[0]["id"] == hook["id"] and shown.json()[0]["disabled_at"] is None
    assert (await api.service.client.get("/v1/webhooks", headers=theirs)).json() == []
    gone = await api.service.client.delete(f"/v1/webhooks/{hook['id']}", headers=theirs)
    assert gone.status_code == 404


async def test_event_types_filter(api: Stack, inbox: Receiver) -> None:
    hook = await add_webhook(api, inbox.url, event_types=["call.completed"])
    assert hook["event_types"] == ["call.completed"]
    await api.control.set_scenario("151", QUICK)
    call_id = await place(api, "151")
    await settled(api, call_id)
    await inbox.until(lambda got: len(got) >= 1)
    await asyncio.sleep(0.5)
    assert [b["type"] for b in verified(hook["secret"], inbox)] == ["call.completed"]
    bad = await api.service.client.post(
        "/v1/webhooks", json={"url": inbox.url, "event_types": ["call.nope"]}, headers=api.auth()
    )
    assert bad.status_code == 422 and bad.json()["field"] == "event_types"


async def test_retries_after_a_5xx_honour_retry_after_and_keep_the_order(
    api: Stack, inbox: Receiver
) -> None:
    inbox.script = [Answer(500), Answer(503, {"Retry-After": "1"})]
    hook = await add_webhook(api, inbox.url)
    await api.control.set_scenario("151", QUICK)
    call_id = await place(api, "151")
    log = await settled(api, call_id)
    await inbox.until(lambda got: len(got) >= len(log) + 2)
    await asyncio.sleep(0.5)

    first, second, third, *rest = inbox.requests
    assert (
        first.headers["webhook-id"] == second.headers["webhook-id"] == third.headers["webhook-id"]
    )
    assert first.body == second.body == third.body  # the same message at every attempt
    assert second.at - first.at >= 0.2  # the first wait of the schedule (0.3 s, jittered)
    assert third.at - second.at >= 0.95  # Retry-After: 1
    delivered = [third, *rest]
    assert [r.headers["webhook-id"] for r in delivered] == [f"evt_{e.event_id}" for e in log]
    assert [b["data"]["sequence"] for b in verified(hook["secret"], inbox)][2:] == [
        e.event_id for e in log
    ]
    assert (await listed(api))[0]["disabled_at"] is None


async def test_410_gone_disables_the_endpoint(api: Stack, inbox: Receiver) -> None:
    inbox.answer = lambda _request: Answer(410)
    await add_webhook(api, inbox.url)
    await api.control.set_scenario("151", QUICK)
    await place(api, "151")
    await inbox.until(lambda got: len(got) >= 1)
    await asyncio.sleep(0.5)
    assert len(inbox.requests) == 1
    (shown,) = await listed(api)
    assert shown["disabled_at"] is not None and "410" in shown["disabled_reason"]
    status = (await api.service.status()).json()
    assert status["webhooks"]["disabled"][0]["id"] == shown["id"]
    assert "410" in status["webhooks"]["disabled"][0]["reason"]
    assert any("webhook" in warning for warning in status["warnings"])
    env = {"CALLGATE_DATABASE_URL": api.db_url}
    shown_cli = await asyncio.to_thread(CliRunner().invoke, app, ["webhook", "list"], env=env)
    assert shown_cli.exit_code == 0, shown_cli.output
    assert "disabled" in shown_cli.output and "410 Gone" in shown_cli.output
    await api.control.set_scenario("152", QUICK)
    await place(api, "152")
    await asyncio.sleep(0.5)
    assert len(inbox.requests) == 1  # disabled: nothing more is sent


async def test_a_spent_schedule_disables_the_endpoint(
    db_url: str, sshd: SshdServer, tmp_path: Path, inbox: Receiver
) -> None:
    inbox.answer = lambda _request: Answer(500)
    fast = FAST | {"webhook_retry_delays": [0.1, 0.1]}
    async with call_stack(db_url, sshd, tmp_path, **fast) as api:
        await add_webhook(api, inbox.url)
        await api.control.set_scenario("151", QUICK)
        await place(api, "151")
        await inbox.until(lambda got: len(got) >= 3)
        await asyncio.sleep(0.5)
        assert len(inbox.requests) == 3  # the first attempt and the schedule's two retries
        (shown,) = await listed(api)
    assert shown["disabled_at"] is not None
    assert "failing since" in shown["disabled_reason"] and "HTTP 500" in shown["disabled_reason"]


async def test_deliveries_survive_a_restart(
    db_url: str, sshd: SshdServer, tmp_path: Path, inbox: Receiver
) -> None:
    inbox.answer = lambda _request: Answer(503, {"Retry-After": "2"})
    async with call_stack(db_url, sshd, tmp_path, **FAST) as api:
        hook = await add_webhook(api, inbox.url)
        await api.control.set_scenario("151", QUICK)
        call_id = await place(api, "151")
        log = await settled(api, call_id)
        await inbox.until(lambda got: len(got) >= 1)
        await asyncio.sleep(0.3)  # every event written to the outbox
        settings = api.service.settings
    refused = len(inbox.requests)
    assert all(r.headers["webhook-id"] == f"evt_{log[0].event_id}" for r in inbox.requests)

    inbox.answer = lambda _request: Answer(204)
    async with running_service(settings):  # the same database; a new process's dispatcher
        await inbox.until(lambda got: len(got) >= refused + len(log))
        await asyncio.sleep(0.5)
    after = inbox.requests[refused:]
    assert [r.headers["webhook-id"] for r in after] == [f"evt_{e.event_id}" for e in log]
    verifier = Webhook(hook["secret"])
    assert [verifier.verify(r.body, r.headers)["data"]["sequence"] for r in after] == [
        e.event_id for e in log
    ]


async def test_a_slow_receiver_does_not_slow_calls(
    db_url: str, sshd: SshdServer, tmp_path: Path, inbox: Receiver
) -> None:
    inbox.delay = 3.0
    async with call_stack(db_url, sshd, tmp_path, **FAST | {"webhook_timeout": 0.5}) as api:
        await add_webhook(api, inbox.url)
        await api.control.set_scenario("151", QUICK)
        started = asyncio.get_running_loop().time()
        call_id = await place(api, "151", end=False)
        assert asyncio.get_running_loop().time() - started < 2.5
        assert (await api.ended(call_id, within=10))["state"] == "completed"
        await inbox.until(lambda got: len(got) >= 1)
        await asyncio.sleep(0.3)
        (shown,) = await listed(api)
    assert shown["disabled_at"] is None  # timed out: waiting to retry, not disabled yet


REFUSED = [
    "http://127.0.0.1:9/hook",
    "http://localhost/hook",
    "http://10.1.2.3/",
    "http://192.168.0.1/",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/",
    "http://100.64.0.1/",
    "http://user:password@example.com/",
    "ftp://example.com/",
    "http:///nohost",
]


async def test_private_targets_and_bad_urls_are_refused_by_default(
    db_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    async with call_stack(db_url, sshd, tmp_path) as api:  # CALLGATE_WEBHOOK_ALLOW_PRIVATE unset
        for url in REFUSED:
            refused = await api.service.client.post(
                "/v1/webhooks", json={"url": url}, headers=api.auth()
            )
            assert refused.status_code == 422, (url, refused.text)
            assert refused.json()["field"] == "url"
        assert await listed(api) == []


SECRET_KEY = new_key()


async def stored_secret(db_url: str) -> str:
    async with opened(db_url) as database:
        value: str = await database.value(select(WEBHOOK_ENDPOINTS.c.secret))
    return value


def test_cli_add_list_remove_enable(db_url: str, tmp_path: Path) -> None:
    env = {
        "CALLGATE_DATABASE_URL": db_url,
        "CALLGATE_WEBHOOK_ALLOW_PRIVATE": "true",
        "CALLGATE_LOG_FILE": str(tmp_path / "cli.log"),
        "CALLGATE_SECRET_KEY": SECRET_KEY,
    }
    old = Path.cwd()
    os.chdir(tmp_path)  # no .env of the developer's

    def run(*args: str, **extra: str) -> Any:
        return CliRunner().invoke(app, list(args), env=env | extra)

    try:
        assert run("db", "upgrade").exit_code == 0
        added = run("enterprise", "add", "--number", "0367", "--name", "june", "--ip", "10.0.0.5")
        assert added.exit_code == 0, added.output
        hook = run(
            "webhook", "add", "0367", "--url", "http://127.0.0.1:9/h", "--event", "call.completed"
        )
        assert hook.exit_code == 0, hook.output
        secrets = [line for line in hook.stdout.splitlines() if line.startswith("secret: whsec_")]
        assert len(secrets) == 1
        secret = secrets[0].removeprefix("secret: ")
        REGISTRY.record("secret", secret)
        stored = asyncio.run(stored_secret(db_url))
        assert stored.startswith(SEALED_PREFIX) and unseal(stored, SecretStr(SECRET_KEY)) == secret
        shown = run("webhook", "list")
        assert shown.exit_code == 0 and secret not in shown.output
        assert "http://127.0.0.1:9/h" in shown.output and "call.completed" in shown.output
        assert "active" in shown.output
        assert run("webhook", "add", "0999", "--url", "http://127.0.0.1:9/").exit_code == 2
        refused = run(
            "webhook",
            "add",
            "0367",
            "--url",
            "http://127.0.0.1:9/",
            CALLGATE_WEBHOOK_ALLOW_PRIVATE="false",
        )
        assert refused.exit_code == 2 and "--url" in refused.output
        assert run("webhook", "enable", "1").exit_code == 0
        assert run("webhook", "remove", "1").exit_code == 0
        assert run("webhook", "remove", "1").exit_code == 1
        assert "no webhooks" in run("webhook", "list").output
    finally:
        os.chdir(old)
