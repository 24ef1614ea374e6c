"""Webhook endpoints and their outbox: `webhook_endpoints`, `webhook_deliveries`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

An enterprise's endpoints (signed webhooks, its RetailCRM account) and one row per request to
make for an event of its calls (`callgate/calls/webhooks.py`), so that deliveries survive a
restart. `call_events` and `calls` are not touched: the dispatcher only reads them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str, **kwargs: object) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), **kwargs)  # type: ignore[arg-type]


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("enterprise_number", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False, server_default="webhook"),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("event_types", sa.Text),
        sa.Column("secret", sa.String(1024), nullable=False),
        sa.Column("cursor", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        _at("failing_since"),
        _at("retry_at"),
        _at("created_at", nullable=False, server_default=sa.func.now()),
        _at("disabled_at"),
        sa.Column("disabled_reason", sa.Text),
        sa.CheckConstraint("kind IN ('webhook', 'retailcrm')", name="ck_webhook_endpoints_kind"),
    )
    op.create_index(
        "ix_webhook_endpoints_enterprise_number", "webhook_endpoints", ["enterprise_number"]
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "endpoint_id",
            sa.Integer,
            sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_id", sa.Integer, nullable=False),
        sa.Column("request", sa.String(16), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        _at("created_at", nullable=False, server_default=sa.func.now()),
        _at("delivered_at"),
        sa.UniqueConstraint(
            "endpoint_id", "event_id", "request", name="uq_webhook_deliveries_event"
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_pending",
        "webhook_deliveries",
        ["delivered_at", "endpoint_id", "id"],
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
