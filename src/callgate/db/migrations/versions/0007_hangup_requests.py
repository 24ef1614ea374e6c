"""A hangup asked for by a process that does not follow the call: `calls.hangup_requested_at`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Set just before such a process (`callgate call hangup --direct`, or an instance answering
`POST /v1/calls/{id}/hangup` for a call another one follows) sends the hangup, so the follower,
which hears the channels go a moment later, leaves the call's end to that process's `canceled`
(`callgate/db/call_tracking.py`). NULL for every call before. `enterprises` is not touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("hangup_requested_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("hangup_requested_at")
