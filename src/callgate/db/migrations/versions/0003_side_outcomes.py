"""Why each side of a call ended: the agent's and the customer's outcome, ring time, reason.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

`calls` gains, per side (`agent_`, `customer_`), `…_outcome` (answered, busy, congestion,
no_answer, canceled, failed, unknown; NULL while the call is live and for a side never reached),
`…_ring_s` and `…_reason`. Calls that had ended before are given what their state and stored
times say (the rules of `callgate/domain/outcomes.py` without Asterisk's words, which nobody
heard then): completed -> answered/answered; customer_no_answer -> answered/unknown;
agent_no_answer -> no_answer when the agent's leg rang the originate's 30 s (29 s and more, as
the tracker counts), else unknown; canceled -> answered where a side had answered, else
canceled (the customer only once the agent had answered); failed -> failed with the end
reason; lost -> answered where a side had answered, else unknown. `enterprises` is not touched.

The outcome names and the 30 s are copied here on purpose: a migration is history and must not
change when the application's rules do.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTCOMES = ("answered", "busy", "congestion", "no_answer", "canceled", "failed", "unknown")
SIDES = ("agent", "customer")
TIMED_OUT = 29.0  # the CLI originate's 30 s, less the tracker's one-poll slack


def _check(side: str) -> str:
    values = ", ".join(f"'{outcome}'" for outcome in OUTCOMES)
    return f"{side}_outcome IS NULL OR {side}_outcome IN ({values})"


def _seconds(dialect: str, start: str, end: str) -> str:
    """SQL for the seconds from column ``start`` to column ``end`` (NULL if either is)."""
    if dialect == "postgresql":
        return f"EXTRACT(EPOCH FROM ({end} - {start}))"
    return f"((julianday({end}) - julianday({start})) * 86400.0)"  # SQLite: naive UTC text


def upgrade() -> None:
    """Add the six columns and their checks, then give the ended calls their outcomes."""
    with op.batch_alter_table("calls") as batch:
        for side in SIDES:
            batch.add_column(sa.Column(f"{side}_outcome", sa.String(16)))
            batch.add_column(sa.Column(f"{side}_ring_s", sa.Float()))
            batch.add_column(sa.Column(f"{side}_reason", sa.Text()))
        for side in SIDES:
            batch.create_check_constraint(f"ck_calls_{side}_outcome", _check(side))

    dialect = op.get_bind().dialect.name
    agent_ring = _seconds(dialect, "created_at", "COALESCE(agent_answered_at, ended_at)")
    customer_ring = _seconds(
        dialect, "agent_answered_at", "COALESCE(customer_answered_at, ended_at)"
    )
    answered_ring = _seconds(dialect, "created_at", "agent_answered_at")
    connected_ring = _seconds(dialect, "agent_answered_at", "customer_answered_at")
    statements = {
        "completed": f"agent_outcome = 'answered', agent_ring_s = {agent_ring}, "
        f"customer_outcome = 'answered', customer_ring_s = {customer_ring}",
        "customer_no_answer": f"agent_outcome = 'answered', agent_ring_s = {agent_ring}, "
        f"customer_outcome = 'unknown', customer_ring_s = {customer_ring}",
        "agent_no_answer": "agent_outcome = CASE WHEN "
        f"{agent_ring} >= {TIMED_OUT} THEN 'no_answer' ELSE 'unknown' END, "
        f"agent_ring_s = {agent_ring}",
        "canceled": "agent_outcome = CASE WHEN agent_answered_at IS NULL THEN 'canceled' "
        f"ELSE 'answered' END, agent_ring_s = {agent_ring}, "
        "customer_outcome = CASE WHEN agent_answered_at IS NULL THEN NULL "
        "WHEN customer_answered_at IS NULL THEN 'canceled' ELSE 'answered' END, "
        f"customer_ring_s = {customer_ring}",
        "failed": "agent_outcome = 'failed', agent_reason = COALESCE(end_reason, error)",
        "lost": "agent_outcome = CASE WHEN agent_answered_at IS NULL THEN 'unknown' "
        f"ELSE 'answered' END, agent_ring_s = {answered_ring}, "
        "customer_outcome = CASE WHEN agent_answered_at IS NULL THEN NULL "
        "WHEN customer_answered_at IS NULL THEN 'unknown' ELSE 'answered' END, "
        f"customer_ring_s = {connected_ring}",
    }
    for state, assignments in statements.items():  # this module's constants only: no input
        op.execute(f"UPDATE calls SET {assignments} WHERE state = '{state}'")  # noqa: S608


def downgrade() -> None:
    """Drop the six columns; nothing else held their data."""
    with op.batch_alter_table("calls") as batch:
        for side in reversed(SIDES):
            batch.drop_constraint(f"ck_calls_{side}_outcome", type_="check")
        for side in reversed(SIDES):
            for column in ("reason", "ring_s", "outcome"):
                batch.drop_column(f"{side}_{column}")
