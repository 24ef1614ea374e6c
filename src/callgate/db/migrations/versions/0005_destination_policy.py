"""Each enterprise's destination policy: the table `enterprise_policies`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

One row per enterprise that has a policy of its own, and the row numbered `*`: the global
default (`callgate/domain/destinations.py` reads them). Every value is optional: NULL means
"inherited". Without any row an enterprise gets the shipped policy, so upgrading refuses
premium rate, shared cost, satellite and emergency numbers from the next call on.
`enterprises` is not touched: other systems read its five columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "enterprise_policies",
        sa.Column("enterprise_number", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(3)),
        sa.Column("allowed_regions", sa.Text),
        sa.Column("allowed_prefixes", sa.Text),
        sa.Column("denied_prefixes", sa.Text),
        sa.Column("denied_types", sa.Text),
        sa.Column("max_length", sa.Integer),
        sa.Column("extensions", sa.Text),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    op.drop_table("enterprise_policies")
