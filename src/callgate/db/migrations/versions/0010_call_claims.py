"""The double-click guard across instances: `call_claims`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

One row per (enterprise, extension, phone) key, by its SHA-256: the call placed for it and
when (`db.claims`). An instance takes a key with one upsert that succeeds only when the key is
free or older than the window, so two instances asked for the same call at once place it once.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_claims",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("call_id", sa.String(36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("call_claims")
