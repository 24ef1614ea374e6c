"""Initial schema: enterprises (only if missing), pbx_hosts, calls.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

The `enterprises` table usually exists already: the old service's production table, with only
its five columns. It is then left exactly as it is (``IF NOT EXISTS``: no column, constraint or
index is added). A fresh database gets the same five columns plus the keys they deserve.
`pbx_hosts` and `calls` are created unconditionally, so that a foreign table of the same name in
a shared database stops the migration instead of being silently adopted.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the tables."""
    op.create_table(
        "enterprises",
        sa.Column("number", sa.String(32), primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("ip", sa.String(253), nullable=False),
        sa.Column("secret", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.UniqueConstraint("secret", name="uq_enterprises_secret"),
        if_not_exists=True,
    )

    op.create_table(
        "pbx_hosts",
        sa.Column("address", sa.String(253), primary_key=True),
        sa.Column("ssh_port", sa.Integer(), nullable=True),
        sa.Column("ssh_user", sa.String(64), nullable=True),
        sa.Column("ssh_password", sa.String(1024), nullable=True),
        sa.Column("ssh_key_file", sa.String(4096), nullable=True),
        sa.Column("host_key_policy", sa.String(16), nullable=True),
        sa.Column("dial_context", sa.String(79), nullable=True),
        sa.Column("transport", sa.String(16), nullable=True),
        sa.Column("host_key", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.CheckConstraint(
            "host_key_policy IS NULL OR host_key_policy IN ('strict', 'accept-new', 'off')",
            name="ck_pbx_hosts_host_key_policy",
        ),
        sa.CheckConstraint(
            "transport IS NULL OR transport IN ('rx', 'console')",
            name="ck_pbx_hosts_transport",
        ),
    )

    op.create_table(
        "calls",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("enterprise_number", sa.String(32), nullable=False),
        sa.Column("extension", sa.String(32), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("host", sa.String(253), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("channel", sa.String(128), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response_time_ms", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('pending', 'success', 'failed', 'unknown')", name="ck_calls_outcome"
        ),
    )
    # An enterprise's history, newest first; and "calls from this extension on this host".
    op.create_index(
        "ix_calls_enterprise_number_created_at", "calls", ["enterprise_number", "created_at"]
    )
    op.create_index("ix_calls_host_extension", "calls", ["host", "extension"])


def downgrade() -> None:
    """Drop callgate's own tables; `enterprises` is kept: it may be the production table."""
    op.drop_index("ix_calls_host_extension", table_name="calls")
    op.drop_index("ix_calls_enterprise_number_created_at", table_name="calls")
    op.drop_table("calls")
    op.drop_table("pbx_hosts")
