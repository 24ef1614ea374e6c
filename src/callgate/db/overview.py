"""The reads of the operator's status page (`calls.overview`): the newest live calls, the
newest failed ones, and which enterprise uses which host. Each is bounded (a page shows a
screenful, however many rows the table holds) and filters on ``state``, which
``ix_calls_state`` indexes."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Select, func, select, true

from callgate.db.calls import CallRecord, call_record
from callgate.db.executor import Executor
from callgate.db.models import CALLS, ENTERPRISES, PBX_HOSTS
from callgate.domain.states import LIVE, CallState

_LIVE = tuple(state.value for state in LIVE)
# What the page lists as failures: not taken by the PBX (`failed`), or undecidable (`lost`:
# unknown outcome, host unreachable too long, channels gone unwatched).
_FAILED = (CallState.FAILED.value, CallState.LOST.value)

_LIVE_COUNT = select(func.count()).select_from(CALLS).where(CALLS.c.state.in_(_LIVE))


@cache
def _newest(states: tuple[str, ...], limit: int) -> Select[Any]:
    """The ``limit`` newest calls in ``states`` (one statement per shape, built once: a bound
    LIMIT is rendered into the SQL by some dialects, so it is a constant here)."""
    return (
        select(CALLS)
        .where(CALLS.c.state.in_(states))
        .order_by(CALLS.c.created_at.desc(), CALLS.c.id.desc())
        .limit(limit)
    )


_ENTERPRISE_HOSTS = (
    select(ENTERPRISES.c.number, ENTERPRISES.c.ip)
    .where(ENTERPRISES.c.active == true())
    .order_by(ENTERPRISES.c.number)
)
_HOST_PORTS = select(PBX_HOSTS.c.address, PBX_HOSTS.c.ssh_port)


async def newest_live(database: Executor, limit: int) -> tuple[Sequence[CallRecord], int]:
    """The ``limit`` newest live calls, and how many are live in all."""
    rows = await database.rows(_newest(_LIVE, limit))
    count = await database.value(_LIVE_COUNT)
    return [call_record(found) for found in rows], int(count or 0)


async def newest_failed(database: Executor, limit: int) -> Sequence[CallRecord]:
    """The ``limit`` newest calls that ended ``failed`` or ``lost``."""
    return [call_record(found) for found in await database.rows(_newest(_FAILED, limit))]


async def host_users(database: Executor) -> dict[str, list[str]]:
    """Each address the active enterprises call through, with their numbers."""
    users: dict[str, list[str]] = {}
    for found in await database.rows(_ENTERPRISE_HOSTS):
        users.setdefault(found["ip"], []).append(found["number"])
    return users


async def host_ports(database: Executor) -> dict[str, int | None]:
    """Each configured host's own SSH port (None: the default applies)."""
    return {found["address"]: found["ssh_port"] for found in await database.rows(_HOST_PORTS)}
