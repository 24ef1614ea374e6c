"""Each enterprise's own rate and live-call limits: the table `enterprise_limits`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

One row per enterprise whose limits differ from the `CALLGATE_LIMIT_*` defaults
(`callgate/calls/rate_limits.py` reads them); NULL means "the default". `enterprises` is not
touched: other systems read its five columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out, not imported: a migration stays as it was written whatever the code becomes.
_LIMITS = (
    "enterprise_per_second",
    "enterprise_per_minute",
    "extension_per_minute",
    "destination_per_10_minutes",
    "destination_per_day",
    "live_calls_per_enterprise",
)


def upgrade() -> None:
    op.create_table(
        "enterprise_limits",
        sa.Column("enterprise_number", sa.String(32), primary_key=True),
        *(sa.Column(name, sa.Integer) for name in _LIMITS),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    op.drop_table("enterprise_limits")
