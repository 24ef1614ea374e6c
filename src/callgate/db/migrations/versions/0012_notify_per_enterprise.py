"""Each stored event is notified on its enterprise's channel too: `callgate_events_<md5>`.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

A notification costs every connection that LISTENs on its channel a wake-up and a read,
about 0.1 ms of an instance's CPU each (`python -m bench.notify_cost`; six per call, on every
instance); most are dropped at once, since an instance's streams take the
events of a few enterprises. So the event is now also notified on a channel of its own
enterprise, `'callgate_events_' || md5(<enterprise number>)` (a hash: a channel name is at most
63 bytes, and an enterprise number up to 255), and an instance LISTENs on the channels of the
enterprises its streams take (`db.notifications`). The payload is the same on both. The
channel of every event, `callgate_events`, stays for a reader that takes every enterprise's,
and for an instance of the version before during a rolling upgrade.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PER_ENTERPRISE = """
CREATE OR REPLACE FUNCTION callgate_event_notify() RETURNS trigger AS $$
DECLARE
    enterprise text := coalesce(
        (SELECT enterprise_number FROM calls WHERE id = NEW.call_id), ''
    );
    payload text := NEW.id::text || ' ' || enterprise;
BEGIN
    PERFORM pg_notify('callgate_events', payload);
    PERFORM pg_notify('callgate_events_' || md5(enterprise), payload);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
_EVERY_EVENT_ALONE = """
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


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PER_ENTERPRISE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_EVERY_EVENT_ALONE)
