"""GET /metrics through real HTTP, read with the Prometheus client library's own parser: the
values move with real calls (sshd, simulated Asterisk, PostgreSQL) and with faults.

The metrics live in one registry per process and the tests' services run in this process, so
each test compares a scrape after with a scrape before, series by series.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from callgate import __version__, metrics
from callgate.calls import dispatcher
from callgate.db.policies import set_policy
from callgate.simulator import Scenario
from tests.support.database import opened
from tests.support.dbproxy import DbProxy
from tests.support.event_streams import QUICK, place, settled
from tests.support.hygiene import record
from tests.support.netfaults import refused_port
from tests.support.receiver import Answer, receiver
from tests.support.sshd import SshdServer
from tests.support.stack import Stack, call_stack

pytestmark = [pytest.mark.sshd, pytest.mark.postgres]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
PHONE = "+375296254070"
OTHER = "+375296254071"


def parse(text: str) -> Samples:
    """Every sample by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One series' value; KeyError when the series does not exist."""
    return samples[(name, frozenset(labels.items()))]


async def scrape(stack: Stack, token: str | None = None) -> tuple[str, Samples]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await stack.service.client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return response.text, parse(response.text)


def host_label(stack: Stack, port: int | None = None) -> str:
    return f"127.0.0.1:{port or stack.sshd.port}"


@contextlib.asynccontextmanager
async def event_stream(stack: Stack) -> AsyncIterator[None]:
    """An open /v1/events stream of the stack's enterprise, for as long as the block runs."""
    connected = asyncio.Event()

    async def listen() -> None:
        async with stack.service.client.stream(
            "GET", "/v1/events", headers=stack.auth(), timeout=None
        ) as stream:
            async for _line in stream.aiter_lines():
                connected.set()

    listener = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(connected.wait(), 5)
        yield
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def until(check: object, within: float = 10.0) -> None:
    """Wait until ``check()`` (an async callable returning bool) holds."""
    deadline = time.monotonic() + within
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_calls_move_the_metrics(pg_url: str, sshd: SshdServer, tmp_path: Path) -> None:
    """A call through the API: placed, live, verified, followed to its end, with its ring and
    talk times; a second call to the number is refused by its rate. The token is required."""
    token = secrets.token_hex(16)
    async with call_stack(
        pg_url,
        sshd,
        tmp_path,
        host={"transport": "console"},
        metrics_token=token,
        track_interval=0.1,
        limit_destination_per_10_minutes=1,
    ) as stack:
        client = stack.service.client
        assert (await client.get("/metrics")).status_code == 401
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        host = host_label(stack)
        _, before = await scrape(stack, token)
        # Initialised at start from the configuration: the host and the enterprise, at 0 or
        # at what earlier tests in this process counted.
        for outcome in metrics.PLACED_OUTCOMES:
            value(before, "callgate_calls_placed_total", enterprise="0367", outcome=outcome)
        value(before, "callgate_originate_duration_seconds_count", host=host)
        assert value(before, "callgate_host_up", host=host) == 1
        assert value(before, "callgate_breaker_state", host=host) == 0
        assert value(before, "callgate_build_info", version=__version__) == 1

        await stack.control.set_default_scenario(
            Scenario(agent_answer_after=0.3, customer_answer_after=0.3, talk=0.8)
        )
        async with event_stream(stack):
            placed = await stack.call(phone=PHONE)
            assert placed.status_code == 200, placed.text
            call_id = placed.json()["call_id"]
            _, during = await scrape(stack, token)
            live = sum(
                value(during, "callgate_calls_live", state=state) for state in metrics.LIVE_STATES
            )
            assert live >= 1
            assert value(during, "callgate_event_subscribers") >= 1
            assert value(during, "callgate_ssh_connections", host=host) >= 1
            assert value(during, "callgate_consoles", host=host) >= 1
            assert (await stack.ended(call_id))["state"] == "completed"

            async def counted() -> bool:
                """The end counted, and every transition handed to the stream: on PostgreSQL
                the stream is fed from the event log, a moment after the end is stored."""
                _, now = await scrape(stack, token)
                key = {"enterprise": "0367", "state": "completed"}
                lag = "callgate_tracker_transition_lag_seconds_count"
                return (
                    value(now, "callgate_calls_finished_total", **key)
                    > value(before, "callgate_calls_finished_total", **key)
                    and value(now, lag) - value(before, lag) >= 4
                )

            await until(counted)
        refused = await stack.call(code="151", phone=PHONE)  # the number's rate: 1 per 10 min
        assert refused.status_code == 429, refused.text
        text, after = await scrape(stack, token)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("callgate_calls_placed_total", enterprise="0367", outcome="success") == 1
    assert moved("callgate_calls_placed_total", enterprise="0367", outcome="failed") == 0
    assert moved("callgate_calls_finished_total", enterprise="0367", state="completed") == 1
    assert moved("callgate_originate_duration_seconds_count", host=host) == 1
    assert moved("callgate_originate_verified_seconds_count", host=host) == 1
    assert moved("callgate_call_talk_seconds_count") == 1
    assert 0.5 < moved("callgate_call_talk_seconds_sum") < 5
    assert moved("callgate_call_ring_seconds_count", side="agent") == 1
    assert moved("callgate_call_ring_seconds_count", side="customer") == 1
    assert moved("callgate_tracker_listing_duration_seconds_count", host=host) >= 1
    assert value(after, "callgate_tracker_last_listing_timestamp_seconds", host=host) > (
        time.time() - 60
    )
    assert moved("callgate_tracker_transition_lag_seconds_count") >= 4  # initiated ... completed
    assert moved("callgate_ssh_connections_opened_total", host=host) >= 1
    assert moved("callgate_rejections_total", scope="destination_rate") == 1
    assert moved("callgate_rejections_total", scope="destination_policy") == 0
    assert value(after, "callgate_event_subscribers") == 0
    # No number, call id or secret in what anyone with the token reads.
    for secret in (PHONE.lstrip("+"), "254070", call_id, stack.secret, token, sshd.password):
        assert secret not in text


async def test_a_refusing_host_and_a_refused_destination(
    pg_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    """A host refusing SSH: connection errors by kind, host down, circuit open, calls failed;
    a destination the policy refuses: counted by scope. /metrics is open without a token."""
    port = refused_port()
    async with call_stack(
        pg_url, sshd, tmp_path, host={"ssh_port": port}, breaker_failures=2
    ) as stack:
        host = host_label(stack, port)
        _, before = await scrape(stack)
        for kind in metrics.CONNECT_ERRORS:  # the configured host's series exist at start
            assert value(before, "callgate_ssh_connect_errors_total", host=host, kind=kind) == 0
        assert value(before, "callgate_host_up", host=host) == 1
        for _ in range(3):  # two failures open the circuit; the third fails fast
            assert (await stack.call()).status_code == 500
        async with opened(stack.db_url) as database:
            await set_policy(database, "0367", {"extensions": "100-149"})
        refused = await stack.call(code="150", phone=OTHER)
        assert refused.status_code == 403, refused.text
        in_process = metrics.rejection_counts()
        _, after = await scrape(stack)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    errors = {"host": host, "kind": "connection_refused"}
    assert moved("callgate_ssh_connect_errors_total", **errors) == 2
    assert value(after, "callgate_host_up", host=host) == 0
    assert value(after, "callgate_breaker_state", host=host) == 2  # open
    assert value(after, "callgate_ssh_connections", host=host) == 0
    assert moved("callgate_calls_placed_total", enterprise="0367", outcome="failed") == 3
    assert moved("callgate_calls_finished_total", enterprise="0367", state="failed") == 3
    assert moved("callgate_originate_duration_seconds_count", host=host) == 0
    assert moved("callgate_rejections_total", scope="destination_policy") == 1
    assert in_process["destination_policy"] == value(
        after, "callgate_rejections_total", scope="destination_policy"
    )


async def test_a_database_outage_is_counted_by_step(
    pg_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    """The database down (a switchable proxy in front of PostgreSQL): the clientId check fails
    and is counted under its step; nothing of the database's address or password shows."""
    password = secrets.token_urlsafe(18)
    record("db_password", password)  # and never in a log (tests/support/hygiene.py)
    proxy = await DbProxy.start(make_url(pg_url).port or 5432)
    url = proxy.url(pg_url, password=password)
    step = {"operation": "checking the clientId"}
    try:
        async with call_stack(pg_url, sshd, tmp_path, database_url=url) as stack:
            _, before = await scrape(stack)
            await proxy.down()
            assert (await stack.call()).status_code == 500
            text, after = await scrape(stack)
            await proxy.up()
    finally:
        await proxy.close()
    failed = value(after, "callgate_database_errors_total", **step)
    assert failed >= value(before, "callgate_database_errors_total", **step) + 1
    for secret in (password, url, f"127.0.0.1:{proxy.port}"):
        assert secret not in text


async def test_webhook_deliveries_move_the_metrics(
    pg_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    """A real receiver that fails once (a 500) and then takes every event: one failed attempt,
    one delivered per event, each attempt timed; a second endpoint answering 410 is disabled,
    and the outbox gauges show it and its rows waiting."""
    with receiver() as inbox, receiver() as gone:
        inbox.script = [Answer(500)]
        gone.answer = lambda _request: Answer(410)
        async with call_stack(
            pg_url,
            sshd,
            tmp_path,
            track_interval=0.1,
            webhook_allow_private=True,  # the receivers are on 127.0.0.1
            webhook_poll_interval=0.1,
            webhook_retry_delays=[0.3, 0.3, 0.3],
        ) as stack:
            _, before = await scrape(stack)
            for kind in metrics.WEBHOOK_KINDS:  # initialised at start
                for result in metrics.DELIVERY_RESULTS:
                    key = {"kind": kind, "result": result}
                    value(before, "callgate_webhook_deliveries_total", **key)
                value(before, "callgate_webhook_delivery_duration_seconds_count", kind=kind)
                value(before, "callgate_webhook_endpoints_disabled", kind=kind)
            for url in (inbox.url, gone.url):
                created = await stack.service.client.post(
                    "/v1/webhooks", json={"url": url}, headers=stack.auth()
                )
                assert created.status_code == 201, created.text
                record("secret", created.json()["secret"])
            await stack.control.set_scenario("151", QUICK)
            call_id = await place(stack, "151")
            log = await settled(stack, call_id)
            await inbox.until(lambda got: len(got) >= len(log) + 1)
            await gone.until(lambda got: len(got) >= 1)

            async def counted() -> bool:
                _, now = await scrape(stack)
                key = {"kind": "webhook", "result": "delivered"}
                delivered = value(now, "callgate_webhook_deliveries_total", **key)
                disabled = value(now, "callgate_webhook_endpoints_disabled", kind="webhook")
                return (
                    delivered
                    >= value(before, "callgate_webhook_deliveries_total", **key) + len(log)
                    and disabled >= 1
                )

            await until(counted, within=dispatcher.COUNT_EVERY + 5)
            text, after = await scrape(stack)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    deliveries = "callgate_webhook_deliveries_total"
    assert moved(deliveries, kind="webhook", result="delivered") == len(log)
    assert moved(deliveries, kind="webhook", result="failed") == 2  # the 500 and the 410
    assert moved(deliveries, kind="webhook", result="refused") == 0
    assert moved(deliveries, kind="retailcrm", result="delivered") == 0
    assert moved("callgate_webhook_delivery_duration_seconds_count", kind="webhook") == (
        len(log) + 2
    )
    assert 0 < moved("callgate_webhook_delivery_duration_seconds_sum", kind="webhook") < 5
    assert value(after, "callgate_webhook_endpoints_disabled", kind="webhook") == 1
    assert value(after, "callgate_webhook_endpoints_disabled", kind="retailcrm") == 0
    # The disabled endpoint's rows wait for `callgate webhook enable`.
    assert value(after, "callgate_webhook_deliveries_waiting") >= 1
    assert inbox.url not in text and call_id not in text
