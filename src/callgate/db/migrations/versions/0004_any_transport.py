"""A host's transport is any registered one: `pbx_hosts.transport` is no longer limited to
'rx' and 'console'.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Transports are registered by name in the running service (`callgate/pbx/registry.py`), so the
database cannot list them: the check constraint `ck_pbx_hosts_transport` goes. The column holds
a transport's name, checked on the way in (`callgate host set --transport` takes only a
registered one) and at each call (a name no transport is registered under is a configuration
error naming `pbx_hosts.transport`, and nothing is sent).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What 0001 allowed: copied on purpose, a migration is history.
BUILT_IN = "transport IS NULL OR transport IN ('rx', 'console')"


def upgrade() -> None:
    with op.batch_alter_table("pbx_hosts") as batch:
        batch.drop_constraint("ck_pbx_hosts_transport", type_="check")


def downgrade() -> None:
    # A host on another transport falls back to CALLGATE_TRANSPORT (NULL: the default).
    op.execute("UPDATE pbx_hosts SET transport = NULL WHERE transport NOT IN ('rx', 'console')")
    with op.batch_alter_table("pbx_hosts") as batch:
        batch.create_check_constraint("ck_pbx_hosts_transport", BUILT_IN)
