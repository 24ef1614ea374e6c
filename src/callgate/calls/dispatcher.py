"""The webhook dispatcher: tells an enterprise's endpoints (webhooks, RetailCRM) of its calls.

Delivery goes through an outbox in the database, so nothing is lost to a restart and nothing
slows a call:

1. Every ``poll_interval`` the dispatcher reads the new events of the enterprises that have
   endpoints (``call_events``, written with each transition anyway: one bounded query, never
   a statement on the call path) and writes one delivery row per (endpoint, event, request),
   moving each endpoint's ``cursor`` in the same transaction. It reads only up to the log's
   head of the poll before: on PostgreSQL a transaction may commit a lower id after a higher
   one, and a poll later it has.
2. It then sends the due rows, each endpoint's in order, one request at a time per endpoint,
   at most ``concurrency`` endpoints at once, each request within ``timeout``. A 2xx answer
   delivers the row; anything else (no answer, a 5xx, a 429) makes the endpoint wait the
   next delay of the schedule (jittered; an answer's ``Retry-After`` instead when it gives
   one), and once the schedule is spent (about a day) the endpoint is disabled, as at once
   on ``410 Gone``. Its rows wait for ``callgate webhook enable``.

A webhook gets the Standard Webhooks headers (``webhook-id`` ``evt_<event id>``, the same at
every attempt; ``webhook-timestamp``; ``webhook-signature`` ``v1,<base64 HMAC-SHA256>``, made
by ``standardwebhooks``) and a JSON body ``{type, timestamp, data}``. A RetailCRM account gets
its telephony API's own requests (`retailcrm_requests`), within its rate limit.

At least once: a row sent but not marked (the process died in between) is sent again.
Several instances on one database: the holder of the lease `DISPATCHER_LEASE` sends.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import math
import random
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from standardwebhooks.webhooks import Webhook

from callgate import metrics
from callgate.calls.leases import Leases
from callgate.calls.webhook_http import Answer, DeliveryClient, DeliveryFailed
from callgate.calls.webhook_messages import deliveries_for
from callgate.calls.webhooks import RETAILCRM, TargetRefused, iso_time
from callgate.db import webhooks as store
from callgate.db.executor import Database
from callgate.db.guard import db_step
from callgate.db.models import utcnow
from callgate.domain import webhooks as rules
from callgate.domain.sealed import KeyMissing, WrongKey, unseal
from callgate.errors import DatabaseUnavailable
from callgate.logs import get_logger
from callgate.settings import Settings
from callgate.tasks import cancel_and_wait

log = get_logger("callgate.webhooks")

BATCH = 1000  # events turned into deliveries per poll at most
RETAILCRM_RATE = 10.0  # requests per second per API key (RetailCRM's documented limit)
EVENT_PATH = "/api/v5/telephony/call/event"
UPLOAD_PATH = "/api/v5/telephony/calls/upload"
# Several instances on one database: one of them sends, the holder of this lease
# (`calls.leases`); the others take it over within the lease's ttl if it dies.
DISPATCHER_LEASE = "webhooks"
PRUNE_EVERY = 60.0  # seconds between two deletions of the old delivered rows
MAX_RETRY_AFTER = 3600.0  # a longer Retry-After is taken as an hour
# Seconds between two counts of the outbox for the metrics (disabled endpoints, rows waiting):
# a scrape reads the last count, never the database.
COUNT_EVERY = 5.0
# Seconds an endpoint read by a poll is used as it is (`_serve`), unless written since.
FRESH_FOR = 1.0


class Spacing:
    """At most ``rate`` requests a second, evenly spaced (no burst): within RetailCRM's
    per-key limit in every window, however the window is placed."""

    def __init__(self, rate: float) -> None:
        # 5 % wider than the rate: what the network's jitter takes, the limit still has.
        self._gap, self._next = 1.05 / rate, 0.0
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(now, self._next) + self._gap


def retry_after(value: str | None, now: datetime) -> float | None:
    """An answer's ``Retry-After`` in seconds (delay-seconds or an HTTP date), None without
    a readable one."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: ``done`` (delivered, or refused for good by RetailCRM),
    ``gone`` (410: disable), else a failure with the wait the answer asked for."""

    status: int | None
    done: bool = False
    gone: bool = False
    error: str = ""
    wait: float | None = None
    seconds: float = 0.0  # the attempt's time (a RetailCRM account's spacing not included)

    @property
    def result(self) -> str:
        """As `callgate_webhook_deliveries_total` counts it (metrics.DELIVERY_RESULTS)."""
        if not self.done:
            return "failed"
        return "delivered" if self.status is not None and 200 <= self.status < 300 else "refused"


class Dispatcher:
    """Turns new events into deliveries and sends them (see the module docstring)."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        leases: Leases | None = None,
    ) -> None:
        self._database, self._settings = database, settings
        self._leases = leases
        self._delays = list(settings.webhook_retry_delays)
        self._client = DeliveryClient(
            timeout=settings.webhook_timeout,
            connections=settings.webhook_concurrency,
            allow_private=settings.webhook_allow_private,
        )
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        self._busy: set[int] = set()
        # Endpoints this dispatcher wrote (a back-off set or cleared), and when (`_serve`).
        self._written: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._spacings: dict[str, Spacing] = {}
        self._settled: int | None = None  # the log's head at the poll before
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = 0.0
        self._counted_at = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook dispatcher")

    async def aclose(self) -> None:
        """Stop; rows not yet marked delivered are sent again at the next start."""
        await cancel_and_wait(self._task, *self._tasks)
        await self._client.aclose()

    async def _run(self) -> None:
        down = False  # a database down is logged once, not at every poll
        while True:
            try:
                await self.poll()
                if down:
                    log.info("webhooks: database available again")
                down = False
            except DatabaseUnavailable as exc:
                if not down:
                    log.warning("webhooks: database unavailable", error=exc.message)
                down = True
            except Exception:  # one bad poll must not end deliveries for good
                log.exception("webhooks: poll failed")
            await asyncio.sleep(self._settings.webhook_poll_interval)

    async def poll(self) -> None:
        if self._leases is not None and await self._leases.acquire(DISPATCHER_LEASE) is None:
            self._settled = None  # another instance sends: its head is not ours to go on from
            return
        if time.monotonic() - self._counted_at > COUNT_EVERY:
            self._counted_at = time.monotonic()
            async with db_step("counting waiting webhook deliveries"):
                metrics.outbox(*await store.outbox_counts(self._database))
        read_at = time.monotonic()
        async with db_step("reading webhook endpoints"):
            endpoints = await store.active_endpoints(self._database)
            if not endpoints:  # nothing to send: the log's head is not even read
                self._settled = None
                return
            head = await store.head(self._database)
        if self._settled is not None:
            await self._enqueue(endpoints, self._settled)
        self._settled = head
        await self._deliver({e.id: e for e in endpoints}, read_at)
        if time.monotonic() - self._pruned_at > PRUNE_EVERY:
            self._pruned_at = time.monotonic()
            kept = timedelta(seconds=self._settings.events_retention)
            async with db_step("pruning delivered webhooks"):
                await store.prune(self._database, utcnow() - kept)

    async def _enqueue(self, endpoints: Sequence[store.EndpointRow], upto: int) -> None:
        after = min(e.cursor for e in endpoints)
        if after >= upto:
            return
        by_number: dict[str, list[store.EndpointRow]] = defaultdict(list)
        for endpoint in endpoints:
            by_number[endpoint.enterprise_number].append(endpoint)
        async with db_step("reading new call events"):
            rows = await store.new_events(self._database, list(by_number), after, upto, BATCH)
        last = rows[-1]["id"] if len(rows) == BATCH else upto
        made: list[dict[str, Any]] = []
        for row in rows:
            for endpoint in by_number[row["enterprise_number"]]:
                if row["id"] > endpoint.cursor:
                    made += deliveries_for(endpoint, row)
        cursors = {e.id: last for e in endpoints if e.cursor < last}
        async with db_step("writing webhook deliveries"):
            await store.enqueue(self._database, made, cursors)

    async def _deliver(self, endpoints: Mapping[int, store.EndpointRow], read_at: float) -> None:
        limit = self._settings.webhook_concurrency * 20
        # An endpoint busy now may finish while the query runs: the rows read would then be
        # stale (some just delivered), so it is skipped this time round.
        busy = set(self._busy)
        async with db_step("reading due webhook deliveries"):
            due = await store.due_deliveries(self._database, utcnow(), limit)
        grouped: dict[int, list[store.Delivery]] = defaultdict(list)
        for delivery in due:
            grouped[delivery.endpoint_id].append(delivery)
        for endpoint_id, deliveries in grouped.items():
            endpoint = endpoints.get(endpoint_id)
            if endpoint is None or endpoint_id in busy or endpoint_id in self._busy:
                continue
            self._busy.add(endpoint_id)
            task = asyncio.create_task(self._serve(endpoint, deliveries, read_at))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(
        self, endpoint: store.EndpointRow, deliveries: list[store.Delivery], read_at: float
    ) -> None:
        try:
            async with self._slots:
                # Read again when the poll's copy may be stale: this dispatcher wrote the
                # endpoint since (an attempt's back-off), or the slot took long to come (an
                # operator may have disabled it meanwhile). Otherwise the copy is a moment old:
                # a statement per endpoint and poll saved (`python -m bench.events`).
                written = self._written.get(endpoint.id, -math.inf)
                if written >= read_at or time.monotonic() - read_at > FRESH_FOR:
                    async with db_step("reading a webhook endpoint"):
                        fresh = await store.endpoint(self._database, endpoint.id)
                    if fresh is None:
                        return
                    endpoint = fresh
                now = utcnow()
                if endpoint.disabled_at is not None:
                    return
                if endpoint.retry_at is not None and endpoint.retry_at > now:
                    return
                await self._send_all(endpoint, deliveries)
        except DatabaseUnavailable as exc:
            log.warning("webhooks: database unavailable", error=exc.message)
        finally:
            self._busy.discard(endpoint.id)

    async def _send_all(
        self, endpoint: store.EndpointRow, deliveries: list[store.Delivery]
    ) -> None:
        """The endpoint's due rows in order, until one fails. Those delivered are marked
        together at the end (one statement for the batch, not one per request: `python -m
        bench.events`); a process that dies before sends them again, as at least once allows."""
        try:
            secret = unseal(endpoint.secret, self._settings.secret_key)
        except (KeyMissing, WrongKey):
            secret = None
        done: list[tuple[int, int]] = []
        try:
            for delivery in deliveries:
                outcome = await self._attempt(endpoint, delivery, secret)
                metrics.delivery(endpoint.kind, outcome.result, outcome.seconds)
                if outcome.done:
                    done.append((delivery.id, outcome.status or 0))
                    continue
                if done:  # the rows before it went: the failures count from this one
                    await self._mark(endpoint, done)
                    done = []
                    endpoint = replace(endpoint, failures=0, failing_since=None, retry_at=None)
                await self._failed(endpoint, delivery, outcome)
                return  # the endpoint's later rows wait: they go in order
        finally:
            if done:
                await self._mark(endpoint, done)

    async def _mark(self, endpoint: store.EndpointRow, done: Sequence[tuple[int, int]]) -> None:
        if endpoint.failures > 0:  # its back-off is cleared
            self._written[endpoint.id] = time.monotonic()
        async with db_step("marking webhooks delivered"):
            await store.delivered(
                self._database, endpoint.id, done, utcnow(), endpoint.failures > 0
            )

    async def _failed(
        self, endpoint: store.EndpointRow, delivery: store.Delivery, outcome: Outcome
    ) -> None:
        self._written[endpoint.id] = time.monotonic()
        now = utcnow()
        failures = endpoint.failures + 1
        since = endpoint.failing_since or now
        delay = rules.retry_delay(failures, self._delays, random.random())
        if delay is not None and outcome.wait is not None:  # the receiver said when
            delay = min(outcome.wait, MAX_RETRY_AFTER)
        reason = None
        if outcome.gone:
            reason = "410 Gone: the receiver asked to stop"
        elif delay is None:
            last = f"HTTP {outcome.status}" if outcome.status else outcome.error
            reason = f"failing since {iso_time(since)}, {failures - 1} retries; last: {last}"
        log.warning(
            "webhook delivery failed",
            endpoint=endpoint.id,
            enterprise=endpoint.enterprise_number,
            event_id=delivery.event_id,
            status=outcome.status,
            error=outcome.error,
            retry_in_s=None if delay is None or reason else round(delay, 1),
            disabled=reason is not None,
        )
        async with db_step("recording a failed webhook delivery"):
            await store.failed(
                self._database,
                delivery,
                outcome.status,
                outcome.error or f"HTTP {outcome.status}",
                failures=failures,
                failing_since=since,
                retry_at=None if delay is None else now + timedelta(seconds=delay),
                disabled_at=now if reason else None,
                disabled_reason=reason,
            )

    async def _attempt(
        self, endpoint: store.EndpointRow, delivery: store.Delivery, secret: str | None
    ) -> Outcome:
        if secret is None:
            return Outcome(None, error="the stored secret cannot be opened with this key")
        if endpoint.kind == RETAILCRM:  # waiting for the account's rate is not the attempt's
            bucket_key = hashlib.sha256(secret.encode()).hexdigest()
            await self._spacings.setdefault(bucket_key, Spacing(RETAILCRM_RATE)).take()
        started = time.perf_counter()
        outcome = await self._send(endpoint, delivery, secret)
        return replace(outcome, seconds=time.perf_counter() - started)

    async def _send(
        self, endpoint: store.EndpointRow, delivery: store.Delivery, secret: str
    ) -> Outcome:
        try:
            if endpoint.kind == RETAILCRM:
                response = await self._send_retailcrm(endpoint, delivery, secret)
            else:
                response = await self._send_webhook(endpoint, delivery, secret)
        except TargetRefused as exc:
            return Outcome(None, error=f"target refused: {exc}")
        except DeliveryFailed as exc:
            return Outcome(None, error=str(exc))
        status = response.status
        if status == 410:
            return Outcome(status, gone=True)
        if 200 <= status < 300:
            if endpoint.kind == RETAILCRM and not _crm_success(response):
                return Outcome(status, error="RetailCRM answered success=false")
            return Outcome(status, done=True)
        if endpoint.kind == RETAILCRM and 400 <= status < 500 and status not in (408, 429):
            # RetailCRM refused this request itself (an unknown manager code, say): sending
            # the same again gets the same answer. Recorded, not retried.
            log.warning("RetailCRM refused a request", endpoint=endpoint.id, status=status)
            return Outcome(status, done=True)
        return Outcome(status, wait=retry_after(response.headers.get("retry-after"), utcnow()))

    async def _send_webhook(
        self, endpoint: store.EndpointRow, delivery: store.Delivery, secret: str
    ) -> Answer:
        message_id = f"evt_{delivery.event_id}"
        now = datetime.now(UTC)
        signature = Webhook(secret).sign(message_id, now, delivery.body)
        headers = [
            ("content-type", "application/json"),
            ("webhook-id", message_id),
            ("webhook-timestamp", str(int(now.timestamp()))),
            ("webhook-signature", signature),
        ]
        return await self._client.post(endpoint.url, delivery.body.encode(), headers)

    async def _send_retailcrm(
        self, endpoint: store.EndpointRow, delivery: store.Delivery, api_key: str
    ) -> Answer:
        path = EVENT_PATH if delivery.request == "crm.event" else UPLOAD_PATH
        form = urlencode(json.loads(delivery.body)).encode()
        headers = [("content-type", "application/x-www-form-urlencoded"), ("x-api-key", api_key)]
        return await self._client.post(endpoint.url + path, form, headers)


def _crm_success(response: Answer) -> bool:
    try:
        return bool(json.loads(response.body).get("success"))
    except (ValueError, AttributeError):
        return False
