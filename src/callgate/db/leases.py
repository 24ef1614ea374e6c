"""Leases' statements (`host_leases`): take a named lease that is free or expired, renew or
release one held; the hosts with live calls nobody holds, and the live calls of those an
instance holds.

A lease is a row per name (a PBX host's address, or another component's name) with its
`owner`, its `expires_at` and its fencing `token`, raised at every acquisition: a write
checked against the token (`call_tracking.move` with a fence) is refused once another owner
took the name, whatever connection it comes from. The rules (when to take, renew, let go) are
`calls.leases`'; the times are the instances' clocks (kept in step, as NTP keeps them).

The row of a released lease stays (expired) so that its token keeps rising: a name's token
never repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import String, any_, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql

from callgate.db.calls import CALLS_WITH_HOSTS, CallRecord, with_host
from callgate.db.executor import Executor
from callgate.db.models import CALLS, HOST_LEASES, CallOutcome, UtcDateTime
from callgate.domain.hosts import HostRow
from callgate.domain.states import LIVE

_LEASES = HOST_LEASES.c
# required=False: a statement with an IN list is compiled with its values (the list's), and
# these are always given when it runs.
_NOW = bindparam("p_now", type_=UtcDateTime(), required=False)
_UNTIL = bindparam("p_until", type_=UtcDateTime())
_OWNER = bindparam("p_owner", type_=String(), required=False)
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)  # a released lease's expiry: free for anyone

# One statement, atomic on both databases (SQLAlchemy's SQLite compiler renders PostgreSQL's
# ON CONFLICT; SQLite runs it as one write transaction): a new name gets token 1; a known one
# is taken, its token raised, only while expired (or already this owner's: a restart under
# the same instance id fences its previous run). No row back: another owner holds it.
_insert = postgresql.insert(HOST_LEASES).values(
    host=bindparam("p_name"), owner=_OWNER, token=1, expires_at=_UNTIL
)
_ACQUIRE = _insert.on_conflict_do_update(
    index_elements=[_LEASES.host],
    set_={
        "owner": _insert.excluded.owner,
        "token": _LEASES.token + 1,
        "expires_at": _insert.excluded.expires_at,
    },
    where=or_(_LEASES.expires_at < _NOW, _LEASES.owner == _OWNER),
).returning(_LEASES.token)
_HELD = (
    _LEASES.host == bindparam("p_name"),
    _LEASES.owner == _OWNER,
    _LEASES.token == bindparam("p_token"),
)
# Every lease of one owner at once: one statement a round, however many hosts it holds.
_RENEW_ALL = (
    update(HOST_LEASES)
    .where(_LEASES.owner == _OWNER)
    .values(expires_at=_UNTIL)
    .returning(_LEASES.host, _LEASES.token)
)
_RELEASE = update(HOST_LEASES).where(*_HELD).values(expires_at=_NEVER)
_LIVE = CALLS.c.state.in_([state.value for state in LIVE])  # ix_calls_state
# A live call a tracker may follow: verified (its first leg stored) or its outcome known. A
# row still `pending` without a first leg is being placed (its placer stores the outcome) or
# was left by a placer that died (`calls.reconcile` settles it).
_FOLLOWABLE = or_(CALLS.c.channel.is_not(None), CALLS.c.outcome != CallOutcome.PENDING.value)
# The hosts with followable live calls whose lease nobody holds now (never taken, released, or
# expired: its owner died; or this owner's from a run before, under the same instance id):
# the takeover's candidates, read before anything is written.
_UNOWNED_HOSTS = (
    select(CALLS.c.host)
    .distinct()
    .select_from(CALLS.outerjoin(HOST_LEASES, _LEASES.host == CALLS.c.host))
    .where(
        _LIVE,
        _FOLLOWABLE,
        or_(_LEASES.host.is_(None), _LEASES.expires_at < _NOW, _LEASES.owner == _OWNER),
    )
)
# Ids and hosts only: run every half second, it mostly finds calls already followed.
_OWNED = (_LIVE, _FOLLOWABLE, _LEASES.owner == _OWNER)  # joined with the calls' leases
_OWNED_LIVE = (
    select(CALLS.c.id, CALLS.c.host).join(HOST_LEASES, _LEASES.host == CALLS.c.host).where(*_OWNED)
)
# A look on one host after unknown calls were heard starting there: those calls, by their
# first legs' channels, read whole with the host's row, in one statement.
_OWNED_ON = CALLS_WITH_HOSTS.join(HOST_LEASES, _LEASES.host == CALLS.c.host).where(
    *_OWNED,
    CALLS.c.host == bindparam("p_host", type_=String(), required=False),
    CALLS.c.channel
    == any_(bindparam("p_channels", type_=postgresql.ARRAY(String()), required=False)),
)
_TOKEN_OF = select(_LEASES.token).where(_LEASES.host == bindparam("p_name"))
# Each instance holds a lease of its own, named INSTANCE + its id, for as long as it runs.
INSTANCE = "instance:"
_OTHERS_ALIVE = (
    select(_LEASES.owner)
    .where(
        _LEASES.host.startswith(INSTANCE, autoescape=True),
        _LEASES.owner != _OWNER,
        _LEASES.expires_at > _NOW,
    )
    .limit(1)
)


async def acquire(
    database: Executor, name: str, owner: str, *, now: datetime, until: datetime
) -> int | None:
    """Take the lease ``name`` for ``owner`` until ``until`` if it is free or expired at
    ``now``: its new token; None while another owner holds it."""
    values = {"p_name": name, "p_owner": owner, "p_now": now, "p_until": until}
    token: int | None = await database.value(_ACQUIRE, values)
    return token


async def renew_all(database: Executor, owner: str, until: datetime) -> dict[str, int]:
    """Extend every lease ``owner`` still holds until ``until``: their names and tokens (a
    lease another owner took is not among them)."""
    found = await database.rows(_RENEW_ALL, {"p_owner": owner, "p_until": until})
    return {row["host"]: row["token"] for row in found}


async def release(database: Executor, name: str, owner: str, token: int) -> None:
    """Let a lease go (a clean stop): free at once for the next taker, its token kept."""
    await database.rowcount(_RELEASE, {"p_name": name, "p_owner": owner, "p_token": token})


async def token_of(database: Executor, name: str) -> int | None:
    """The lease's current token (None: never taken): tells a fenced write from another
    refusal."""
    token: int | None = await database.value(_TOKEN_OF, {"p_name": name})
    return token


async def unowned_hosts(database: Executor, owner: str, now: datetime) -> list[str]:
    """The hosts with followable live calls and no lease held by another owner at ``now``
    (the takeover's candidates)."""
    values = {"p_owner": owner, "p_now": now}
    return [found["host"] for found in await database.rows(_UNOWNED_HOSTS, values)]


async def owned_live_calls(database: Executor, owner: str) -> list[tuple[str, str]]:
    """(call id, host) of the followable live calls of the hosts whose lease ``owner``
    holds."""
    found = await database.rows(_OWNED_LIVE, {"p_owner": owner})
    return [(row["id"], row["host"]) for row in found]


async def owned_calls_on(
    database: Executor, owner: str, host: str, channels: Sequence[str]
) -> list[tuple[CallRecord, HostRow | None]]:
    """The followable live calls on ``host`` whose first legs are ``channels``, if ``owner``
    holds its lease, each with the host's row (None: no row), in one statement (PostgreSQL:
    leases are for several instances)."""
    values = {"p_owner": owner, "p_host": host, "p_channels": list(channels)}
    return [with_host(row) for row in await database.rows(_OWNED_ON, values)]


async def others_alive(database: Executor, owner: str, now: datetime) -> bool:
    """Whether an instance other than ``owner`` holds its instance lease at ``now``."""
    values = {"p_owner": owner, "p_now": now}
    return await database.value(_OTHERS_ALIVE, values) is not None
