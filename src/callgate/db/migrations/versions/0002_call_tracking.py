"""Call tracking: the state of every call, its phase times, and its events.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

`calls` gains its state (with an index: the live calls are read at every start), the times of
its phases, the customer leg, and the columns of idempotent requests (one key per enterprise).
Rows made before tracking existed become `failed` when their outcome was, `initiated`
otherwise: the tracker then looks at them once on its next start and ends them honestly
(`lost` when their channels are gone) instead of guessing.

`call_events` keeps each transition in order. `enterprises` is not touched.

The state names are copied here on purpose: a migration is history and must not change when
the application's states do.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES = (
    "initiated",
    "ringing_agent",
    "agent_answered",
    "ringing_customer",
    "connected",
    "completed",
    "failed",
    "agent_no_answer",
    "customer_no_answer",
    "canceled",
    "lost",
)
STATE_CHECK = "state IN (" + ", ".join(f"'{state}'" for state in STATES) + ")"


def upgrade() -> None:
    """Add the tracking columns and indexes to `calls`, backfill them, create `call_events`."""
    # Batch mode: SQLite cannot add a CHECK constraint in place, so there the table is copied;
    # PostgreSQL gets plain ALTER TABLE statements.
    with op.batch_alter_table("calls") as batch:
        batch.add_column(
            sa.Column("state", sa.String(32), nullable=False, server_default="initiated")
        )
        batch.add_column(sa.Column("state_changed_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("ring_timeout", sa.Integer()))
        batch.add_column(sa.Column("metadata", sa.JSON()))
        batch.add_column(sa.Column("idempotency_key", sa.String(255)))
        batch.add_column(sa.Column("request_hash", sa.String(64)))
        batch.add_column(sa.Column("customer_channel", sa.String(128)))
        batch.add_column(sa.Column("bridge_id", sa.String(64)))
        batch.add_column(sa.Column("agent_answered_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("customer_answered_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("ended_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("end_reason", sa.Text()))
        batch.create_check_constraint("ck_calls_state", STATE_CHECK)
        batch.create_index("ix_calls_state", ["state"])
        batch.create_index(
            "uq_calls_enterprise_number_idempotency_key",
            ["enterprise_number", "idempotency_key"],
            unique=True,
        )

    # Existing rows: a failed request ended when its outcome was stored; any other row keeps
    # the server default `initiated` until the tracker has looked at it.
    op.execute(
        "UPDATE calls SET state = 'failed', ended_at = finished_at, end_reason = error "
        "WHERE outcome = 'failed'"
    )
    op.execute("UPDATE calls SET state_changed_at = COALESCE(finished_at, created_at)")

    op.create_table(
        "call_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "call_id",
            sa.String(36),
            sa.ForeignKey("calls.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_call_events_call_id", "call_events", ["call_id"])


def downgrade() -> None:
    """Drop `call_events` and the tracking columns; the 0001 columns keep their data."""
    op.drop_index("ix_call_events_call_id", table_name="call_events")
    op.drop_table("call_events")
    with op.batch_alter_table("calls") as batch:
        batch.drop_index("uq_calls_enterprise_number_idempotency_key")
        batch.drop_index("ix_calls_state")
        batch.drop_constraint("ck_calls_state", type_="check")
        for column in (
            "end_reason",
            "ended_at",
            "customer_answered_at",
            "agent_answered_at",
            "bridge_id",
            "customer_channel",
            "request_hash",
            "idempotency_key",
            "metadata",
            "ring_timeout",
            "state_changed_at",
            "state",
        ):
            batch.drop_column(column)
