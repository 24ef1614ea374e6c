"""The service's Prometheus metrics (``GET /metrics``, README "Metrics"): one registry of its own.

Two kinds of numbers:

* events, counted where they happen (a call placed, a connection that failed, a database step
  that failed): counters and histograms below, their label children bound once per host,
  enterprise or outcome and kept (``host``, ``enterprise``), so a call pays a dict lookup and an
  ``inc``/``observe``, nothing more;
* state that already lives in objects (calls followed now, SSH connections and consoles, each
  host's circuit, event subscribers): read when Prometheus scrapes, from the ``Readings`` the
  composition root hands over (``read_from``), never kept up to date call by call.

Every label value is bounded by configuration: hosts (the ``pbx_hosts`` table and the
enterprises' hosts), enterprise numbers (the ``enterprises`` table), and fixed sets (outcomes,
states, error kinds, database steps, rejection scopes). Each set is initialised at start
(``configure``), so a series exists at 0 before its first event. No phone number, call id or
secret is ever a label.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from callgate import __version__, errors
from callgate.domain.states import LIVE, CallState

# The `_created` series (each child's creation time) double the output and say nothing here:
# every series is created at start.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()

# The call log's outcome of an originate (calls.outcome); a refused call is not placed.
PLACED_OUTCOMES = ("success", "failed", "unknown")
LIVE_STATES = tuple(state.value for state in LIVE)
END_STATES = tuple(state.value for state in CallState if state.is_terminal)
# How an SSH connection could not be opened: errors.PbxUnreachable's kinds, by their codes
# without the "pbx_" prefix.
CONNECT_ERRORS = tuple(
    kind.code.removeprefix("pbx_")
    for kind in (
        errors.SshConnectionRefused,
        errors.SshConnectTimeout,
        errors.SshAuthenticationFailed,
        errors.SshHostKeyRejected,
        errors.SshConnectionFailed,
    )
)
# Why a call was refused before anything was dialled (calls/rate_limits.py, the policy of
# domain/destinations.py), and a failed authentication over its limit.
REJECTION_SCOPES = (
    "enterprise_rate",
    "extension_rate",
    "destination_rate",
    "auth_failures",
    "enterprise_live_calls",
    "host_live_calls",
    "destination_policy",
)
# Every database step's name (`db.guard.db_step`'s ``what``); a test keeps it complete.
DB_OPERATIONS = (
    "adding a webhook",
    "checking for a repeated call",
    "checking the clientId",
    "checking the enterprises of the event streams",
    "counting the live calls",
    "counting the live calls of every instance",
    "counting waiting webhook deliveries",
    "deleting old call claims",
    "ending a call left pending",
    "ending stale calls",
    "finding hosts nobody follows",
    "letting a call claim go",
    "listing calls",
    "loading calls to adopt",
    "loading the calls heard starting",
    "loading the live calls",
    "loading the owned hosts' live calls",
    "looking for other instances",
    "marking webhooks delivered",
    "pruning delivered webhooks",
    "reading a call placed by another instance",
    "reading a webhook endpoint",
    "reading due webhook deliveries",
    "reading new call events",
    "reading the call",
    "reading the calls' channels",
    "reading the enterprises' limits",
    "reading the events of other instances",
    "reading the host settings",
    "reading the hosts and enterprises",
    "reading the idempotency key",
    "reading the status page",
    "reading webhook endpoints",
    "reading webhooks",
    "reading where the event log stands",
    "recording a failed webhook delivery",
    "recording calls' states",
    "recording the call",
    "recording the hangup",
    "recording the outcome",
    "releasing a lease",
    "removing a webhook",
    "renewing a lease",
    "resuming an event stream",
    "settling the calls left pending",
    "taking a lease",
    "writing webhook deliveries",
)
BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}
# Webhook and RetailCRM deliveries (calls/dispatcher.py): the endpoint's kind, and what one
# attempt came to: delivered (a 2xx), refused (RetailCRM refused that request itself: recorded,
# not retried) or failed (no answer, a timeout, any other status: retried, or the endpoint
# disabled).
WEBHOOK_KINDS = ("webhook", "retailcrm")
DELIVERY_RESULTS = ("delivered", "refused", "failed")

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_RING = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0)
_TALK = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
_LAG = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

CALLS_PLACED = Counter(
    "callgate_calls_placed",
    "Calls sent to a PBX, by the outcome of the originate (success: verified).",
    ["enterprise", "outcome"],
    registry=REGISTRY,
)
CALLS_FINISHED = Counter(
    "callgate_calls_finished",
    "Calls followed to their end, by terminal state.",
    ["enterprise", "state"],
    registry=REGISTRY,
)
ORIGINATE = Histogram(
    "callgate_originate_duration_seconds",
    "Time for a host to answer an originate and its first channel listing.",
    ["host"],
    buckets=_FAST,
    registry=REGISTRY,
)
VERIFIED = Histogram(
    "callgate_originate_verified_seconds",
    "Time from sending an originate to seeing the call progress (verified calls only).",
    ["host"],
    buckets=_FAST,
    registry=REGISTRY,
)
RING = Histogram(
    "callgate_call_ring_seconds",
    "How long a side of a call rang before it answered or gave up, when known.",
    ["side"],
    buckets=_RING,
    registry=REGISTRY,
)
TALK = Histogram(
    "callgate_call_talk_seconds",
    "Time from the customer answering to the end of the call.",
    buckets=_TALK,
    registry=REGISTRY,
)
SSH_CONNECTS = Counter(
    "callgate_ssh_connections_opened",
    "SSH connections opened to a host.",
    ["host"],
    registry=REGISTRY,
)
SSH_ERRORS = Counter(
    "callgate_ssh_connect_errors",
    "Failed attempts to open an SSH connection to a host, by kind.",
    ["host", "kind"],
    registry=REGISTRY,
)
HOST_UP = Gauge(
    "callgate_host_up",
    "1 unless the last attempt to connect to the host failed.",
    ["host"],
    registry=REGISTRY,
)
LISTING = Histogram(
    "callgate_tracker_listing_duration_seconds",
    "Time of the call tracker's channel listings that a host answered.",
    ["host"],
    buckets=_FAST,
    registry=REGISTRY,
)
LAST_LISTING = Gauge(
    "callgate_tracker_last_listing_timestamp_seconds",
    "Unix time of the last channel listing a host answered (0: none since start).",
    ["host"],
    registry=REGISTRY,
)
LAG = Histogram(
    "callgate_tracker_transition_lag_seconds",
    "Time from the tracker seeing a call's transition to it being stored and published.",
    buckets=_LAG,
    registry=REGISTRY,
)
DB_ERRORS = Counter(
    "callgate_database_errors",
    "Database steps that failed (timeout or error), by step.",
    ["operation"],
    registry=REGISTRY,
)
REJECTIONS = Counter(
    "callgate_rejections",
    "Requests refused by a limit or the destination policy before anything was dialled.",
    ["scope"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "callgate_webhook_deliveries",
    "Attempts to deliver a webhook or RetailCRM request, by endpoint kind and result.",
    ["kind", "result"],
    registry=REGISTRY,
)
WEBHOOK_DURATION = Histogram(
    "callgate_webhook_delivery_duration_seconds",
    "Time of one delivery attempt, from resolving the target to the answer (or the error).",
    ["kind"],
    buckets=_FAST,
    registry=REGISTRY,
)
WEBHOOK_DISABLED = Gauge(
    "callgate_webhook_endpoints_disabled",
    "Endpoints disabled (410, or failing for the whole retry schedule), by kind; set by the "
    "dispatcher every few seconds.",
    ["kind"],
    registry=REGISTRY,
)
WEBHOOK_WAITING = Gauge(
    "callgate_webhook_deliveries_waiting",
    "Outbox rows not delivered yet (disabled endpoints' included); set by the dispatcher "
    "every few seconds.",
    registry=REGISTRY,
)
BUILD = Info("callgate_build", "The running version.", registry=REGISTRY)
BUILD.info({"version": __version__})


class HostMetrics:
    """One host's label children, bound once."""

    __slots__ = ("connects", "errors", "last_listing", "listing", "originate", "up", "verified")

    def __init__(self, label: str) -> None:
        self.originate = ORIGINATE.labels(label)
        self.verified = VERIFIED.labels(label)
        self.listing = LISTING.labels(label)
        self.last_listing = LAST_LISTING.labels(label)
        self.connects = SSH_CONNECTS.labels(label)
        self.errors = {kind: SSH_ERRORS.labels(label, kind) for kind in CONNECT_ERRORS}
        self.up = HOST_UP.labels(label)
        self.up.set(1)


class EnterpriseMetrics:
    """One enterprise's label children, bound once."""

    __slots__ = ("finished", "placed")

    def __init__(self, number: str) -> None:
        self.placed = {outcome: CALLS_PLACED.labels(number, outcome) for outcome in PLACED_OUTCOMES}
        self.finished = {state: CALLS_FINISHED.labels(number, state) for state in END_STATES}


_hosts: dict[str, HostMetrics] = {}
_enterprises: dict[str, EnterpriseMetrics] = {}
_rejections = {scope: REJECTIONS.labels(scope) for scope in REJECTION_SCOPES}
_db_errors = {operation: DB_ERRORS.labels(operation) for operation in DB_OPERATIONS}
_ring = {side: RING.labels(side) for side in ("agent", "customer")}
_deliveries = {
    (kind, result): WEBHOOK_DELIVERIES.labels(kind, result)
    for kind in WEBHOOK_KINDS
    for result in DELIVERY_RESULTS
}
_delivery_time = {kind: WEBHOOK_DURATION.labels(kind) for kind in WEBHOOK_KINDS}
_disabled = {kind: WEBHOOK_DISABLED.labels(kind) for kind in WEBHOOK_KINDS}


def host(label: str) -> HostMetrics:
    """A host's metrics by its label (``HostTarget.label``), bound on first use."""
    found = _hosts.get(label)
    if found is None:
        found = _hosts[label] = HostMetrics(label)
    return found


def enterprise(number: str | None) -> EnterpriseMetrics:
    """An enterprise's metrics by its number ("" when a call's is not known)."""
    key = number or ""
    found = _enterprises.get(key)
    if found is None:
        found = _enterprises[key] = EnterpriseMetrics(key)
    return found


def configure(hosts: Iterable[str], enterprises: Iterable[str]) -> None:
    """Initialise the series of the configured hosts and enterprises (at start)."""
    for label in hosts:
        host(label)
    for number in enterprises:
        enterprise(number)


def placed(number: str, outcome: str) -> None:
    enterprise(number).placed[outcome].inc()


def finished(
    number: str | None,
    state: str,
    *,
    agent_ring: float | None = None,
    customer_ring: float | None = None,
    talk: float | None = None,
) -> None:
    """A call's end: its state, and the ring and talk times known of it."""
    enterprise(number).finished[state].inc()
    if agent_ring is not None:
        _ring["agent"].observe(agent_ring)
    if customer_ring is not None:
        _ring["customer"].observe(customer_ring)
    if talk is not None:
        TALK.observe(talk)


def connect_failed(label: str, kind: str) -> None:
    """A failed attempt to connect (``kind``: one of CONNECT_ERRORS): the host is down."""
    found = host(label)
    counter = found.errors.get(kind)
    if counter is None:  # a kind added to errors.py and not here: still counted
        counter = SSH_ERRORS.labels(label, kind)
    counter.inc()
    found.up.set(0)


def connected(label: str) -> None:
    found = host(label)
    found.connects.inc()
    found.up.set(1)


def listed(label: str, seconds: float) -> None:
    """A channel listing of the tracker that the host answered."""
    found = host(label)
    found.listing.observe(seconds)
    found.last_listing.set(time.time())


def rejected(scope: str) -> None:
    _rejections[scope].inc()


def database_failed(operation: str) -> None:
    counter = _db_errors.get(operation)
    if counter is None:  # a step not in DB_OPERATIONS yet: counted all the same
        counter = _db_errors[operation] = DB_ERRORS.labels(operation)
    counter.inc()


def delivery(kind: str, result: str, seconds: float) -> None:
    """One delivery attempt (``kind``: WEBHOOK_KINDS; ``result``: DELIVERY_RESULTS)."""
    _deliveries[kind, result].inc()
    _delivery_time[kind].observe(seconds)


def outbox(disabled: Mapping[str, int], waiting: int) -> None:
    """The outbox as the dispatcher last counted it: disabled endpoints by kind, rows waiting."""
    for kind, gauge in _disabled.items():
        gauge.set(disabled.get(kind, 0))
    WEBHOOK_WAITING.set(waiting)


def rejection_counts() -> dict[str, float]:
    """Requests refused so far by scope (REJECTION_SCOPES), since start."""
    return {
        sample.labels["scope"]: sample.value
        for family in REJECTIONS.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


@dataclass(slots=True)
class HostReadings:
    """What one host's objects hold now."""

    connections: int = 0  # SSH connections open
    sessions_busy: int = 0  # SSH sessions in use on them (commands, consoles)
    consoles: int = 0  # Asterisk consoles open (the console transport)
    consoles_busy: int = 0  # those running a command now
    breaker: str = "closed"  # closed, half-open or open


@dataclass(slots=True)
class Readings:
    """The running service's state, read at each scrape."""

    live: Mapping[str, int] = field(default_factory=dict)  # calls followed, by state
    hosts: Mapping[str, HostReadings] = field(default_factory=dict)  # by host label
    subscribers: int = 0  # event stream subscriptions open


_source: Callable[[], Readings] | None = None


def read_from(source: Callable[[], Readings] | None) -> None:
    """Where each scrape reads the service's state (None: nothing runs, all zero)."""
    global _source
    _source = source


def stop_reading(source: Callable[[], Readings]) -> None:
    """``source``'s service has stopped: scrapes read nothing more from it (a source set
    since, by another service in the same process, stays)."""
    if _source is source:
        read_from(None)


class _StateCollector(Collector):
    """The gauges read at scrape time from ``read_from``'s source."""

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # nothing to check at registration: the names are fixed below

    def collect(self) -> Iterable[GaugeMetricFamily]:
        readings = _source() if _source is not None else Readings()
        live = GaugeMetricFamily(
            "callgate_calls_live", "Calls followed now, by state.", labels=["state"]
        )
        for state in LIVE_STATES:
            live.add_metric([state], readings.live.get(state, 0))
        subscribers = GaugeMetricFamily(
            "callgate_event_subscribers", "Event stream subscriptions open now."
        )
        subscribers.add_metric([], readings.subscribers)
        families = {
            name: GaugeMetricFamily(f"callgate_{name}", text, labels=["host"])
            for name, text in (
                ("ssh_connections", "SSH connections open to a host."),
                ("ssh_sessions_busy", "SSH sessions in use on a host's connections."),
                ("consoles", "Asterisk consoles open on a host."),
                ("consoles_busy", "Asterisk consoles running a command now."),
                ("breaker_state", "A host's circuit breaker: 0 closed, 1 half-open, 2 open."),
            )
        }
        idle = HostReadings()
        for label in sorted({*_hosts, *readings.hosts}):
            found = readings.hosts.get(label, idle)
            families["ssh_connections"].add_metric([label], found.connections)
            families["ssh_sessions_busy"].add_metric([label], found.sessions_busy)
            families["consoles"].add_metric([label], found.consoles)
            families["consoles_busy"].add_metric([label], found.consoles_busy)
            families["breaker_state"].add_metric([label], BREAKER_STATES.get(found.breaker, 0))
        return [live, subscribers, *families.values()]


REGISTRY.register(_StateCollector())
