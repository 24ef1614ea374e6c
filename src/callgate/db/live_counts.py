"""The live calls of every instance, as the live-call caps count them (`calls.rate_limits`)."""

from __future__ import annotations

from sqlalchemy import select

from callgate.db.executor import Executor
from callgate.db.models import CALLS
from callgate.domain.states import LIVE

# Three short columns of the live rows only (ix_calls_state): read every second per instance.
_LIVE = select(CALLS.c.id, CALLS.c.enterprise_number, CALLS.c.host).where(
    CALLS.c.state.in_([state.value for state in LIVE])
)


async def live_call_keys(database: Executor) -> list[tuple[str, str, str]]:
    """(call id, enterprise number, host) of every call in a non-terminal state."""
    rows = await database.rows(_LIVE)
    return [(row["id"], row["enterprise_number"], row["host"]) for row in rows]
