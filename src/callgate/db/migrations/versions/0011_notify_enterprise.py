"""Each stored event's notification names its enterprise too: `'<id> <enterprise number>'`.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

An instance reads from the event log only the events its own subscribers take
(`calls.shared_events`); with the enterprise in the notification it knows which ones without
a read, where before every notification of every enterprise cost each instance a read. The
call's row is found by its primary key, and the move that stored the event has just written
it in the same transaction. A listener also takes the old payload, the id alone (an instance
of the version before, during a rolling upgrade): such an event is read whoever it is for.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WITH_ENTERPRISE = """
CREATE OR REPLACE FUNCTION callgate_event_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify(
        'callgate_events',
        NEW.id::text || ' ' || coalesce(
            (SELECT enterprise_number FROM calls WHERE id = NEW.call_id), ''
        )
    );
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
_ID_ALONE = """
CREATE OR REPLACE FUNCTION callgate_event_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('callgate_events', NEW.id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_WITH_ENTERPRISE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_ID_ALONE)
