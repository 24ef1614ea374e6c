"""Several instances on one PostgreSQL: `host_leases`, and a notification per stored event.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

`host_leases`: which instance follows a PBX host's calls now (`owner`), until when
(`expires_at`, renewed by the owner), and the lease's fencing `token`, raised at every change
of owner so that a stale owner's writes can be told apart and refused.

On PostgreSQL, a trigger sends `NOTIFY callgate_events, '<call_events.id>'` for every event
stored (delivered at commit, only if it commits), so every instance's event streams hear of
transitions another instance stored. SQLite (one process) has no trigger.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION callgate_event_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('callgate_events', NEW.id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
_NOTIFY_TRIGGER = """
CREATE TRIGGER callgate_event_notify AFTER INSERT ON call_events
FOR EACH ROW EXECUTE FUNCTION callgate_event_notify()
"""


def upgrade() -> None:
    op.create_table(
        "host_leases",
        sa.Column("host", sa.String(253), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_NOTIFY_FUNCTION)
        op.execute(_NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS callgate_event_notify ON call_events")
        op.execute("DROP FUNCTION IF EXISTS callgate_event_notify()")
    op.drop_table("host_leases")
