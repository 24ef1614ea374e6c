"""The tables: the legacy ``enterprises``, per-host SSH settings, calls and their events.

These classes describe the schema for the ORM; the schema itself is made by the migrations in
``callgate.db.migrations`` (never by ``create_all`` in production), which must stay in step
with this module (a test compares the two).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
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


class Base(DeclarativeBase):
    """Declarative base of callgate's tables."""


class Enterprise(Base):
    """A tenant, in the legacy table shared with the old service: exactly these five columns.

    Production tables may lack any primary-key or unique constraint; ``number`` is the ORM's
    identity only, so nothing here depends on a constraint existing.
    """

    __tablename__ = "enterprises"
    # Made only when callgate creates the table: one secret must name one tenant.
    __table_args__ = (UniqueConstraint("secret", name="uq_enterprises_secret"),)

    number: Mapped[str] = mapped_column(String(32), primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(255))
    ip: Mapped[str] = mapped_column(String(253))  # the Asterisk host: IP address or host name
    secret: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return f"Enterprise(number={self.number!r}, name={self.name!r}, ip={self.ip!r})"


class PbxHost(Base):
    """Per-host overrides of the ``CALLGATE_SSH_*`` defaults; NULL means "use the default"."""

    __tablename__ = "pbx_hosts"
    __table_args__ = (
        CheckConstraint(
            "host_key_policy IS NULL OR host_key_policy IN ('strict', 'accept-new', 'off')",
            name="ck_pbx_hosts_host_key_policy",
        ),
        CheckConstraint(
            "transport IS NULL OR transport IN ('rx', 'console')",
            name="ck_pbx_hosts_transport",
        ),
    )

    address: Mapped[str] = mapped_column(String(253), primary_key=True)  # = enterprises.ip
    ssh_port: Mapped[int | None] = mapped_column(Integer)
    ssh_user: Mapped[str | None] = mapped_column(String(64))
    # Stored as given: the database is as sensitive as the old service's code was. Never shown.
    ssh_password: Mapped[str | None] = mapped_column(String(1024))
    ssh_key_file: Mapped[str | None] = mapped_column(String(4096))
    host_key_policy: Mapped[str | None] = mapped_column(String(16))
    dial_context: Mapped[str | None] = mapped_column(String(79))
    transport: Mapped[str | None] = mapped_column(String(16))
    host_key: Mapped[str | None] = mapped_column(Text)  # "type base64", pinned on first contact
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, onupdate=utcnow, server_default=func.now()
    )

    def __repr__(self) -> str:  # no password in logs and tracebacks
        return f"PbxHost(address={self.address!r})"


class CallRecord(Base):
    """One call request, written when it arrives and finished when its outcome is known."""

    __tablename__ = "calls"
    __table_args__ = (
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

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    # No foreign key: the legacy enterprises table may have no key to point at.
    enterprise_number: Mapped[str] = mapped_column(String(32))
    extension: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(253))
    outcome: Mapped[str] = mapped_column(
        String(16), default=CallOutcome.PENDING.value, server_default=CallOutcome.PENDING.value
    )
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(String(128))  # first leg, once verified
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, server_default=func.now()
    )
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    response_time_ms: Mapped[float | None] = mapped_column(Float)

    # Tracking (migration 0002): where the call is now, and when each phase began.
    state: Mapped[str] = mapped_column(
        String(32), default=CallState.INITIATED.value, server_default=CallState.INITIATED.value
    )
    state_changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=utcnow)
    ring_timeout: Mapped[int | None] = mapped_column(Integer)
    # `metadata` is taken on declarative classes: the attribute has another name.
    call_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    customer_channel: Mapped[str | None] = mapped_column(String(128))
    bridge_id: Mapped[str | None] = mapped_column(String(64))
    agent_answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    customer_answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    end_reason: Mapped[str | None] = mapped_column(Text)
    # Why each side ended (migration 0003, `calls.outcomes`), stored with the terminal state;
    # NULL while the call is live, and for a side never reached.
    agent_outcome: Mapped[str | None] = mapped_column(String(16))
    agent_ring_s: Mapped[float | None] = mapped_column(Float)
    agent_reason: Mapped[str | None] = mapped_column(Text)
    customer_outcome: Mapped[str | None] = mapped_column(String(16))
    customer_ring_s: Mapped[float | None] = mapped_column(Float)
    customer_reason: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"CallRecord(id={self.id!r}, outcome={self.outcome!r}, state={self.state!r})"


class CallEventRecord(Base):
    """One transition of a call, in the order it happened: the call's history."""

    __tablename__ = "call_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("calls.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    detail: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"CallEventRecord(call_id={self.call_id!r}, state={self.state!r})"


# The tables themselves, for Core statements on the per-call path: the ORM's unit of work,
# identity map and per-statement ORM compilation cost more CPU than the write or read they
# wrap, and these statements need none of them.
ENTERPRISES = cast(Table, Enterprise.__table__)
PBX_HOSTS = cast(Table, PbxHost.__table__)
CALLS = cast(Table, CallRecord.__table__)
CALL_EVENTS = cast(Table, CallEventRecord.__table__)
