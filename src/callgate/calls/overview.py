"""What the operator's status page (`/admin`) shows, gathered in one read: each PBX host's
health, the calls live now, the newest failures, the limits' refusals, version and uptime.

The hosts come from configuration (the active enterprises' addresses, `pbx_hosts`) and from
what the running parts know of them: the circuit breaker (failures, last error), the
consoles, the tracker's listings. Every phone number leaves here masked
(`redaction.mask_phone`), and nothing here holds a secret: the page renders these values as
they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from callgate import __version__
from callgate.calls.tracker import CallTracker
from callgate.db.calls import CallRecord
from callgate.db.engine import database_state
from callgate.db.executor import Executor
from callgate.db.guard import db_step
from callgate.db.models import utcnow
from callgate.db.overview import host_ports, host_users, newest_failed, newest_live
from callgate.errors import DatabaseUnavailable
from callgate.pbx.client import PbxClient
from callgate.redaction import mask_phone
from callgate.settings import Settings

LIVE_SHOWN = 50  # live calls listed (the count says how many there are in all)
FAILURES_SHOWN = 10
READ_WITHIN = 2.0  # seconds for the page's database reads: a slow database must not hang it
# A listing older than this many tracking intervals means the host's calls are followed late.
LAG_INTERVALS = 3


class Health(Enum):
    """A host at a glance, worst first (the page sorts and colours by it)."""

    FAILING = "failing"  # cannot be reached now: its calls fail
    DEGRADED = "degraded"  # reached, but with a fallback or late listings
    OK = "ok"
    IDLE = "idle"  # not contacted since the service started: nothing known yet


@dataclass(frozen=True, slots=True)
class HostView:
    label: str  # address, and port unless 22
    health: Health
    reachable: bool | None  # None: not tried since start
    breaker: str  # closed, open, half-open, or "-" when the host was never tried
    failures: int  # connection failures in a row
    retry_in_s: float | None  # an open circuit's wait before the next probe
    rejected: int  # calls failed fast by the open circuit since start
    last_error: str | None
    mode: str | None  # the console transport's: console or rx-fallback; None for rx hosts
    consoles: int | None  # consoles open (None: no console transport for this host)
    consoles_idle: int | None
    listening: str | None  # the tracker's listening console: open, retrying, None
    live_calls: int  # followed by the tracker now
    poll_lag_s: float | None  # seconds since the tracker's last answered listing
    enterprises: tuple[str, ...]  # numbers of the active enterprises calling through it
    notes: tuple[str, ...]  # why it is not ok, in words


@dataclass(frozen=True, slots=True)
class LiveCall:
    id: str
    extension: str
    phone: str  # masked
    host: str
    enterprise: str
    state: str
    age_s: float
    in_state_s: float | None


@dataclass(frozen=True, slots=True)
class FailedCall:
    id: str
    at: datetime
    extension: str
    phone: str  # masked
    host: str
    enterprise: str
    state: str
    outcome: str
    reason: str


@dataclass(frozen=True, slots=True)
class Overview:
    version: str
    uptime_s: float
    now: datetime
    database: str  # connected, or the failure's class name
    hosts: list[HostView]
    live: list[LiveCall] | None  # None: the database could not say
    live_total: int
    failures: list[FailedCall] | None
    rejections: dict[str, float] | None  # None: not counted by this build

    @property
    def failing(self) -> list[HostView]:
        return [host for host in self.hosts if host.health is Health.FAILING]


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _label(address: str, port: int) -> str:
    """As ``HostTarget.label`` names a host, so configuration meets the runtime's names."""
    return address if port == 22 else f"{address}:{port}"


class StatusPage:
    """Builds the `Overview` from the running parts; ``started`` is the service's start."""

    def __init__(
        self,
        database: Executor,
        pbx: PbxClient,
        tracker: CallTracker,
        settings: Settings,
    ) -> None:
        self._database, self._pbx, self._tracker = database, pbx, tracker
        self._settings = settings
        self._started = time.monotonic()

    async def read(self, rejections: Callable[[], dict[str, float]] | None = None) -> Overview:
        """The overview now; ``rejections`` counts the limits' refusals by scope, if given."""
        now = utcnow()
        database = await database_state(self._database, READ_WITHIN)
        users: dict[str, list[str]] = {}
        ports: dict[str, int | None] = {}
        live: list[LiveCall] | None = None
        failures: list[FailedCall] | None = None
        total = 0
        try:
            async with db_step("reading the status page", within=READ_WITHIN):
                users = await host_users(self._database)
                ports = await host_ports(self._database)
                records, total = await newest_live(self._database, LIVE_SHOWN)
                live = [live_view(record, now) for record in records]
                failures = [
                    failed_view(record)
                    for record in await newest_failed(self._database, FAILURES_SHOWN)
                ]
        except DatabaseUnavailable:
            pass  # the page says so (`database`), and shows the hosts all the same
        return Overview(
            version=__version__,
            uptime_s=time.monotonic() - self._started,
            now=now,
            database=database,
            hosts=self._hosts(users, ports),
            live=live,
            live_total=total,
            failures=failures,
            rejections=rejections() if rejections is not None else None,
        )

    def _hosts(self, users: dict[str, list[str]], ports: dict[str, int | None]) -> list[HostView]:
        configured: dict[str, tuple[str, ...]] = {}
        for address in {*users, *ports}:
            label = _label(address, ports.get(address) or self._settings.ssh_port)
            configured[label] = tuple(users.get(address, ()))
        return host_views(
            self._pbx.transport.status(),
            self._tracker.status(),
            self._tracker.polling(),
            configured,
            lag_limit=LAG_INTERVALS * self._tracker.interval,
        )


def host_views(
    pbx: Mapping[str, Any],
    tracking: Mapping[str, Any],
    polling: Mapping[str, Mapping[str, float | int | None]],
    configured: Mapping[str, tuple[str, ...]],
    *,
    lag_limit: float,
) -> list[HostView]:
    """Every host configured (label: its enterprises) or seen since start, worst first, then
    by name, from the transports' status (`PbxTransport.status`), the tracker's
    (`CallTracker.status`, `CallTracker.polling`)."""
    breaker = _dict(_dict(pbx.get("breaker")).get("hosts"))
    consoles = _dict(_dict(pbx.get("consoles")).get("hosts"))
    listening = _dict(tracking.get("listening"))
    labels = {*configured, *breaker, *consoles, *polling}
    views = [
        _host(
            label,
            _dict(breaker.get(label)),
            _dict(consoles.get(label)) if label in consoles else None,
            _dict(listening.get(label)) if label in listening else None,
            polling.get(label),
            configured.get(label, ()),
            lag_limit,
        )
        for label in labels
    ]
    order = list(Health)
    return sorted(views, key=lambda view: (order.index(view.health), view.label))


def _host(
    label: str,
    circuit: Mapping[str, Any],
    console: Mapping[str, Any] | None,
    listening: Mapping[str, Any] | None,
    polled: Mapping[str, float | int | None] | None,
    enterprises: tuple[str, ...],
    lag_limit: float,
) -> HostView:
    failures = int(circuit.get("failures", 0))
    state = str(circuit.get("state", "-"))
    failing_s = polled.get("failing_s") if polled else None
    lag = polled.get("listed_s") if polled else None
    notes: list[str] = []
    if state in ("open", "half-open"):
        notes.append(f"circuit {state}: calls fail at once")
    elif failures:
        notes.append(f"{failures} connection failure(s) in a row")
    if failing_s is not None:
        notes.append(f"listings failing for {failing_s:.0f} s")
    failing = bool(notes)
    mode = str(console["mode"]) if console and "mode" in console else None
    if mode == "rx-fallback":
        notes.append("console unavailable: asterisk -rx fallback")
    if lag is not None and lag > lag_limit and failing_s is None:
        notes.append(f"listings {lag:.0f} s old")
    tried = bool(circuit) or console is not None or polled is not None
    if failing:
        health = Health.FAILING
    elif notes:
        health = Health.DEGRADED
    else:
        health = Health.OK if tried else Health.IDLE
    retry = circuit.get("retry_in_s")
    return HostView(
        label=label,
        health=health,
        reachable=None if not tried else not failing,
        breaker=state,
        failures=failures,
        retry_in_s=float(retry) if retry is not None else None,
        rejected=int(circuit.get("rejected", 0)),
        last_error=str(circuit["last_error"]) if circuit.get("last_error") else None,
        mode=mode,
        consoles=int(console.get("consoles", 0)) if console is not None else None,
        consoles_idle=int(console.get("idle", 0)) if console is not None else None,
        listening=str(listening.get("state")) if listening is not None else None,
        live_calls=int(polled.get("calls") or 0) if polled else 0,
        poll_lag_s=float(lag) if lag is not None else None,
        enterprises=enterprises,
        notes=tuple(notes),
    )


def _seconds(since: datetime | None, now: datetime) -> float | None:
    return None if since is None else max(0.0, (now - since).total_seconds())


def live_view(record: CallRecord, now: datetime) -> LiveCall:
    return LiveCall(
        id=record.id,
        extension=record.extension,
        phone=mask_phone(record.phone),
        host=record.host,
        enterprise=record.enterprise_number,
        state=record.state,
        age_s=_seconds(record.created_at, now) or 0.0,
        in_state_s=_seconds(record.state_changed_at, now),
    )


def failed_view(record: CallRecord) -> FailedCall:
    reason = record.error or record.end_reason or "-"
    # A reason quotes the PBX's words, which may name the customer's channel (its number).
    for shown in {record.phone, record.phone.lstrip("+")} - {""}:
        reason = reason.replace(shown, mask_phone(shown))
    return FailedCall(
        id=record.id,
        at=record.ended_at or record.finished_at or record.created_at,
        extension=record.extension,
        phone=mask_phone(record.phone),
        host=record.host,
        enterprise=record.enterprise_number,
        state=record.state,
        outcome=record.outcome,
        reason=reason,
    )
