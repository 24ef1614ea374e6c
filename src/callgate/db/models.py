"""The tables: the legacy ``enterprises``, per-host SSH settings, calls and their events.

Declared once, as Core tables (``METADATA``): every statement of the service is a Core
statement on them (`callgate.db.executor` runs it). The schema itself is made by the
migrations in ``callgate.db.migrations`` (never by ``create_all`` in production), which must
stay in step with this module (a test compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    true,
)
from sqlalchemy.types import TypeDecorator

from callgate.domain.outcomes import SideOutcome
from callgate.domain.states import CallState


class CallOutcome(StrEnum):
    """What became of a call request; ``unknown``: the command may have run, unverified."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILED = "failed"
    UNKNOWN = "unknown"


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both databases.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zones, so values are stored as naive
    UTC and given back their ``UTC`` tzinfo when read. Naive datetimes are refused on the way
    in: guessing their zone is how timestamps silently shift by hours.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware value (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - drivers return datetimes
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


METADATA = MetaData()

# An enterprise, in the legacy table shared with the old service: exactly these five columns.
# Production tables may lack any primary-key or unique constraint; ``number`` is a key only
# where callgate made the table, so no statement depends on a constraint existing.
ENTERPRISES = Table(
    "enterprises",
    METADATA,
    Column("number", String(32), primary_key=True, autoincrement=False),
    Column("name", String(255), nullable=False),
    Column("ip", String(253), nullable=False),  # the Asterisk host: IP address or host name
    Column("secret", String(255), nullable=False),
    Column("active", Boolean, nullable=False, default=True, server_default=true()),
    # Made only when callgate creates the table: one secret must name one enterprise.
    UniqueConstraint("secret", name="uq_enterprises_secret"),
)

# An enterprise's destination policy (domain/destinations.py): a table of its own, because
# the legacy ``enterprises`` table keeps exactly its five columns. The row numbered ``*`` is
# the global default; NULL means "inherited" (the enterprise's, then the default's, then the
# shipped value); lists are space-separated. No foreign key: the legacy table may have none.
ENTERPRISE_POLICIES = Table(
    "enterprise_policies",
    METADATA,
    Column("enterprise_number", String(32), primary_key=True),
    Column("region", String(3)),
    Column("allowed_regions", Text),
    Column("allowed_prefixes", Text),
    Column("denied_prefixes", Text),
    Column("denied_types", Text),
    Column("max_length", Integer),
    Column("extensions", Text),
    Column("updated_at", UtcDateTime, nullable=False, default=utcnow, server_default=func.now()),
)

# An enterprise's rate and live-call limits where they differ from the ``CALLGATE_LIMIT_*``
# defaults (calls/rate_limits.py); NULL means "the default", 0 "off". A table of its own: the
# legacy ``enterprises`` table keeps exactly its five columns.
ENTERPRISE_LIMITS = Table(
    "enterprise_limits",
    METADATA,
    Column("enterprise_number", String(32), primary_key=True),
    Column("enterprise_per_second", Integer),
    Column("enterprise_per_minute", Integer),
    Column("extension_per_minute", Integer),
    Column("destination_per_10_minutes", Integer),
    Column("destination_per_day", Integer),
    Column("live_calls_per_enterprise", Integer),
    Column("updated_at", UtcDateTime, nullable=False, default=utcnow, server_default=func.now()),
)

# Per-host overrides of the ``CALLGATE_SSH_*`` defaults; NULL means "use the default".
PBX_HOSTS = Table(
    "pbx_hosts",
    METADATA,
    Column("address", String(253), primary_key=True),  # = enterprises.ip
    Column("ssh_port", Integer),
    Column("ssh_user", String(64)),
    # Stored as given: the database is as sensitive as the old service's code was. Never shown.
    Column("ssh_password", String(1024)),
    Column("ssh_key_file", String(4096)),
    Column("host_key_policy", String(16)),
    Column("dial_context", String(79)),
    Column("transport", String(16)),  # a registered transport's name (pbx/registry.py)
    Column("host_key", Text),  # "type base64", pinned on first contact
    Column("updated_at", UtcDateTime, nullable=False, default=utcnow, server_default=func.now()),
    CheckConstraint(
        "host_key_policy IS NULL OR host_key_policy IN ('strict', 'accept-new', 'off')",
        name="ck_pbx_hosts_host_key_policy",
    ),
)

# One call request, written when it arrives and finished when its outcome is known.
CALLS = Table(
    "calls",
    METADATA,
    Column("id", String(36), primary_key=True),
    # No foreign key: the legacy enterprises table may have no key to point at.
    Column("enterprise_number", String(32), nullable=False),
    Column("extension", String(32), nullable=False),
    Column("phone", String(32), nullable=False),
    Column("host", String(253), nullable=False),
    Column(
        "outcome",
        String(16),
        nullable=False,
        default=CallOutcome.PENDING.value,
        server_default=CallOutcome.PENDING.value,
    ),
    Column("error_code", String(64)),
    Column("error", Text),
    Column("channel", String(128)),  # first leg, once verified
    Column("request_id", String(64)),
    Column("created_at", UtcDateTime, nullable=False, default=utcnow, server_default=func.now()),
    Column("finished_at", UtcDateTime),
    Column("response_time_ms", Float),
    # Tracking (migration 0002): where the call is now, and when each phase began.
    Column(
        "state",
        String(32),
        nullable=False,
        default=CallState.INITIATED.value,
        server_default=CallState.INITIATED.value,
    ),
    Column("state_changed_at", UtcDateTime, default=utcnow),
    Column("ring_timeout", Integer),
    Column("metadata", JSON),
    Column("idempotency_key", String(255)),
    Column("request_hash", String(64)),
    Column("customer_channel", String(128)),
    Column("bridge_id", String(64)),
    Column("agent_answered_at", UtcDateTime),
    Column("customer_answered_at", UtcDateTime),
    Column("ended_at", UtcDateTime),
    Column("end_reason", Text),
    # Why each side ended (migration 0003, `domain.outcomes`), stored with the terminal
    # state; NULL while the call is live, and for a side never reached.
    Column("agent_outcome", String(16)),
    Column("agent_ring_s", Float),
    Column("agent_reason", Text),
    Column("customer_outcome", String(16)),
    Column("customer_ring_s", Float),
    Column("customer_reason", Text),
    # A hangup sent by a process that does not follow the call (migration 0007): the
    # follower's own end of the call yields to that process's `canceled` for a moment.
    Column("hangup_requested_at", UtcDateTime),
    Index("ix_calls_enterprise_number_created_at", "enterprise_number", "created_at"),
    Index("ix_calls_host_extension", "host", "extension"),
    CheckConstraint(
        "outcome IN ('pending', 'success', 'failed', 'unknown')", name="ck_calls_outcome"
    ),
    CheckConstraint(
        "state IN (" + ", ".join(f"'{state.value}'" for state in CallState) + ")",
        name="ck_calls_state",
    ),
    Index("ix_calls_state", "state"),  # the live calls, read at every start (resume)
    *(
        CheckConstraint(
            f"{side}_outcome IS NULL OR {side}_outcome IN ("
            + ", ".join(f"'{outcome.value}'" for outcome in SideOutcome)
            + ")",
            name=f"ck_calls_{side}_outcome",
        )
        for side in ("agent", "customer")
    ),
    # A client's retry with the same key finds its first call instead of dialling again.
    Index(
        "uq_calls_enterprise_number_idempotency_key",
        "enterprise_number",
        "idempotency_key",
        unique=True,
    ),
)

# One transition of a call, in the order it happened: the call's history.
CALL_EVENTS = Table(
    "call_events",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "call_id",
        String(36),
        ForeignKey("calls.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("state", String(32), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("detail", Text),
)

# Where an enterprise's call events are sent (migration 0008, `calls.webhooks`): a signed
# webhook (`kind` webhook), or its RetailCRM account's telephony API (`kind` retailcrm, at most
# one per enterprise, `url` the account's address). ``secret``: the webhook's signing secret
# (`whsec_...`) or the RetailCRM API key, sealed (`domain.sealed`) when the service has a key.
# ``cursor``: the last ``call_events.id`` turned into deliveries; ``failures`` and
# ``retry_at``: the back-off of an endpoint whose receiver fails (deliveries go in order).
WEBHOOK_ENDPOINTS = Table(
    "webhook_endpoints",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("enterprise_number", String(32), nullable=False, index=True),
    Column("kind", String(16), nullable=False, server_default="webhook"),
    Column("url", String(2048), nullable=False),
    Column("event_types", Text),  # space-separated `call.<state>`; NULL: every event
    Column("secret", String(1024), nullable=False),
    Column("cursor", Integer, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("failing_since", UtcDateTime),
    Column("retry_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False, default=utcnow, server_default=func.now()),
    Column("disabled_at", UtcDateTime),
    Column("disabled_reason", Text),
    CheckConstraint("kind IN ('webhook', 'retailcrm')", name="ck_webhook_endpoints_kind"),
)

# The outbox: one request to make per (endpoint, event, request), its body fixed when it is
# written so that every attempt sends the same bytes. Delivered rows are kept for a while
# (CALLGATE_EVENTS_RETENTION) as a record, then pruned.
WEBHOOK_DELIVERIES = Table(
    "webhook_deliveries",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "endpoint_id",
        Integer,
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("event_id", Integer, nullable=False),
    Column("request", String(16), nullable=False),  # webhook, crm.event, crm.upload
    Column("body", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("created_at", UtcDateTime, nullable=False, default=utcnow, server_default=func.now()),
    Column("delivered_at", UtcDateTime),
    UniqueConstraint("endpoint_id", "event_id", "request", name="uq_webhook_deliveries_event"),
    # The waiting rows (delivered_at NULL) by endpoint, and the old delivered ones to prune.
    Index("ix_webhook_deliveries_pending", "delivered_at", "endpoint_id", "id"),
)

# Which instance follows a PBX host's calls now (migration 0009, `calls.leases`): its `owner`
# until `expires_at` (renewed while it lives); `token` is raised at each change of owner and
# fences a stale owner's writes. On PostgreSQL the same migration makes every stored
# `call_events` row send `NOTIFY callgate_events` with its id (every instance's streams).
HOST_LEASES = Table(
    "host_leases",
    METADATA,
    Column("host", String(253), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

# The double-click guard across instances (migration 0010, `db.claims`): the call placed for a
# (enterprise, extension, phone) key (its SHA-256, never the number itself) and when; a second
# request for the key within the window gets that call. One row per key, taken over once older
# than the window, deleted when its call fails.
CALL_CLAIMS = Table(
    "call_claims",
    METADATA,
    Column("key", String(64), primary_key=True),
    Column("call_id", String(36), nullable=False),
    Column("at", UtcDateTime, nullable=False),
)
