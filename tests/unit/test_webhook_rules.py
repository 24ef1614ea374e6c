"""The webhook rules (`domain.webhooks`) and the dispatcher's pure parts (`calls.dispatcher`,
`calls.webhook_messages`): which URLs and addresses may be endpoints, the retry schedule,
RetailCRM's mapping, what an event's webhook body and RetailCRM requests say, `Retry-After`,
the per-key spacing."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from callgate.calls.dispatcher import Spacing, retry_after
from callgate.calls.webhook_messages import retailcrm_requests, webhook_body
from callgate.domain import webhooks as rules
from callgate.domain.outcomes import SideOutcome, SideResult, Sides

R = SideOutcome


@pytest.mark.parametrize(
    "url",
    ["http://example.com/hook", "https://example.com:8443/a?b=c", "http://[2001:db8::1]/"],
)
def test_urls_that_may_be_endpoints(url: str) -> None:
    assert rules.check_url(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/", "http"),
        ("example.com/hook", "http"),
        ("http://user:pw@example.com/", "password"),
        ("http://user@example.com/", "password"),
        ("http:///path", "host"),
        ("http://example.com/#frag", "fragment"),
        ("http://example.com:99999/", "URL"),
        ("http://exa mple.com/", "spaces"),
        ("http://example.com/" + "a" * 2048, "2048"),
    ],
)
def test_urls_that_may_not(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        rules.check_url(url)


@pytest.mark.parametrize(
    ("address", "private"),
    [
        ("127.0.0.1", True),
        ("10.0.0.1", True),
        ("172.16.5.4", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),
        ("::1", True),
        ("fe80::1%eth0", True),
        ("fc00::1", True),
        ("::ffff:127.0.0.1", True),
        ("224.0.0.1", True),
        ("93.184.216.34", False),
        ("2606:4700::1111", False),
    ],
)
def test_private_addresses(address: str, private: bool) -> None:
    assert rules.is_private(address) is private


def test_event_types() -> None:
    assert rules.check_event_types(None) is None
    assert (
        rules.check_event_types(["call.failed", "call.completed"]) == "call.completed call.failed"
    )
    assert rules.wanted("call.completed call.failed", "failed")
    assert not rules.wanted("call.completed", "initiated")
    assert rules.wanted(None, "initiated")
    with pytest.raises(ValueError, match="not one of"):
        rules.check_event_types(["completed"])
    with pytest.raises(ValueError, match="at least one"):
        rules.check_event_types([])


def test_the_retry_schedule_is_jittered_and_ends() -> None:
    delays = [5.0, 30.0, 120.0]
    assert rules.retry_delay(1, delays, 0.0) == pytest.approx(4.0)
    assert rules.retry_delay(1, delays, 0.999) == pytest.approx(6.0, rel=1e-2)
    assert rules.retry_delay(3, delays, 0.5) == pytest.approx(120.0)
    assert rules.retry_delay(4, delays, 0.5) is None  # spent: the endpoint is disabled
    default = [5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800]
    assert 20 * 3600 < sum(default) < 28 * 3600  # about a day in all


def test_secrets_are_standard_webhooks_secrets() -> None:
    secret = rules.new_secret()
    assert secret.startswith("whsec_") and secret != rules.new_secret()
    Webhook(secret)  # its own parser takes it


def side(outcome: SideOutcome) -> SideResult:
    return SideResult(outcome, 1.0)


@pytest.mark.parametrize(
    ("sides", "status", "result"),
    [
        (Sides(side(R.ANSWERED), side(R.ANSWERED)), "answered", "answered"),
        (Sides(side(R.ANSWERED), side(R.BUSY)), "busy", "busy"),
        (Sides(side(R.ANSWERED), side(R.NO_ANSWER)), "no answered", "no answer"),
        (Sides(side(R.ANSWERED), side(R.CANCELED)), "cancel", "failed"),
        (Sides(side(R.ANSWERED), side(R.CONGESTION)), "failed", "failed"),
        (Sides(side(R.ANSWERED), side(R.UNKNOWN)), "failed", "unknown"),
        (Sides(side(R.NO_ANSWER), None), "failed", "failed"),
        (Sides(side(R.BUSY), None), "failed", "failed"),
        (Sides(side(R.CANCELED), None), "cancel", "failed"),
        (Sides(SideResult(R.FAILED, None, "no such extension"), None), "failed", "failed"),
        (None, "failed", "unknown"),
    ],
)
def test_retailcrm_mapping(sides: Sides | None, status: str, result: str) -> None:
    assert rules.hangup_status(sides) == status
    assert rules.upload_result(sides) == result
    assert status in rules.HANGUP_STATUSES and result in rules.UPLOAD_RESULTS


def event_row(state: str, **more: object) -> dict[str, object]:
    at = datetime(2026, 12, 6, 12, 0, 10, tzinfo=UTC)
    row: dict[str, object] = {
        "id": 42,
        "call_id": "c-1",
        "state": state,
        "at": at,
        "detail": "why",
        "enterprise_number": "0367",
        "extension": "150",
        "phone": "+375296254070",
        "created_at": at - timedelta(seconds=10),
        "customer_answered_at": None,
        "ended_at": None,
    }
    for name in ("agent", "customer"):
        row |= {f"{name}_outcome": None, f"{name}_ring_s": None, f"{name}_reason": None}
    return row | more


def test_a_webhook_body() -> None:
    live = json.loads(webhook_body(event_row("ringing_agent")))
    assert live == {
        "type": "call.ringing_agent",
        "timestamp": "2026-12-06T12:00:10+00:00",
        "data": {
            "call_id": "c-1",
            "state": "ringing_agent",
            "at": "2026-12-06T12:00:10+00:00",
            "reason": "why",
            "sides": None,
            "sequence": 42,
        },
    }
    ended = event_row(
        "completed", agent_outcome="answered", agent_ring_s=1.23456, customer_outcome="answered"
    )
    sides = json.loads(webhook_body(ended))["data"]["sides"]
    assert sides == {
        "agent": {"result": "answered", "ring_s": 1.235, "reason": None},
        "customer": {"result": "answered", "ring_s": None, "reason": None},
    }


def test_retailcrm_requests() -> None:
    ((name, form),) = retailcrm_requests(event_row("initiated"))
    assert name == "crm.event"
    assert json.loads(form["event"]) == {
        "phone": "+375296254070",
        "type": "out",
        "codes": ["150"],
        "callExternalId": "c-1",
    }
    assert retailcrm_requests(event_row("connected")) == []
    at = datetime(2026, 12, 6, 12, 0, 10, tzinfo=UTC)
    ended = event_row(
        "completed",
        agent_outcome="answered",
        customer_outcome="answered",
        customer_answered_at=at - timedelta(seconds=4.6),
        ended_at=at,
    )
    (event_name, event), (upload_name, upload) = retailcrm_requests(ended)
    assert (event_name, upload_name) == ("crm.event", "crm.upload")
    assert json.loads(event["event"])["hangupStatus"] == "answered"
    assert json.loads(upload["calls"]) == [
        {
            "date": "2026-12-06 12:00:00",
            "type": "out",
            "phone": "+375296254070",
            "code": "150",
            "result": "answered",
            "duration": 5,
            "externalId": "c-1",
        }
    ]


def test_retry_after() -> None:
    now = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    assert retry_after("120", now) == 120.0
    assert retry_after("Sun, 06 Dec 2026 12:00:30 GMT", now) == 30.0
    assert retry_after("Sun, 06 Dec 2026 11:00:00 GMT", now) == 0.0
    assert retry_after("soon", now) is None
    assert retry_after(None, now) is None


async def test_spacing_keeps_within_the_rate() -> None:
    spacing = Spacing(20.0)
    started = time.monotonic()
    await asyncio.gather(*(spacing.take() for _ in range(5)))
    assert time.monotonic() - started >= 4 * 1.05 / 20 - 0.01
