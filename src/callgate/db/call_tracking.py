"""Call tracking's statements: a call's compare-and-set move with its event, the live calls,
the bulk end of stale rows, and a call's events.

The rules (which moves the state machine allows, in which order a call's moves are written)
are the use case's (`calls.history`); here only what is stored, and how. A move is the
tracker's most frequent write: its statements are built once per shape (see `_move`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    Float,
    String,
    Text,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.sql.expression import ColumnElement

from callgate.db.calls import CallRecord, call_record
from callgate.db.executor import Database, Executor, UpdateWithRow
from callgate.db.models import CALL_EVENTS, CALLS, HOST_LEASES, UtcDateTime, utcnow
from callgate.domain.outcomes import SideOutcome, SideResult, Sides
from callgate.domain.states import LIVE, RANK, CallState


@dataclass(frozen=True, slots=True)
class TransitionResult:
    """``applied``: the row moved (``event_id``: its event's ``call_events.id``). Otherwise
    ``current`` is the row's state (None: no row); ``fenced``: refused because the host's
    lease has another token now (a stale owner's write)."""

    applied: bool
    current: CallState | None
    event_id: int | None = None
    fenced: bool = False


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One stored transition of a call (``call_events``)."""

    state: str
    at: datetime
    detail: str | None


# How long a hangup asked for by a process that does not follow the call holds the follower's
# own end of it (see `_move`): that process stores `canceled` right after its hangup answers,
# within milliseconds unless it died; past this, the follower's word is stored after all.
HANGUP_HOLD = timedelta(seconds=5)

# The parameters are named p_*: no name of theirs may be a column of the tables written.
_STATE_OF = select(CALLS.c.state).where(CALLS.c.id == bindparam("p_call"))
_EVENTS = (
    select(CALL_EVENTS.c.state, CALL_EVENTS.c.at, CALL_EVENTS.c.detail)
    .where(CALL_EVENTS.c.call_id == bindparam("call_id"))
    .order_by(CALL_EVENTS.c.id)
)
_LIVE_CALLS = (
    select(CALLS)
    .where(CALLS.c.state.in_([state.value for state in LIVE]))
    .order_by(CALLS.c.created_at, CALLS.c.id)
)
STALE_BATCH = 500  # rows `end_stale` ends per transaction


def side_values(sides: Sides) -> dict[str, Any]:
    """``sides`` as the six ``calls`` columns' values (a side never reached: NULLs)."""
    values: dict[str, Any] = {}
    for name, side in (("agent", sides.agent), ("customer", sides.customer)):
        values[f"{name}_outcome"] = side.outcome.value if side else None
        values[f"{name}_ring_s"] = side.ring_s if side else None
        values[f"{name}_reason"] = side.reason if side else None
    return values


def sides_of(record: CallRecord) -> Sides | None:
    """The stored sides of an ended call; None while it is live."""
    if not CallState(record.state).is_terminal:
        return None

    def side(outcome: str | None, ring_s: float | None, reason: str | None) -> SideResult | None:
        return None if outcome is None else SideResult(SideOutcome(outcome), ring_s, reason)

    return Sides(
        side(record.agent_outcome, record.agent_ring_s, record.agent_reason),
        side(record.customer_outcome, record.customer_ring_s, record.customer_reason),
    )


# A fenced move matches only while the host's lease still has the writer's token: once another
# instance took the host over (`db.leases.acquire` raised the token), the stale owner's moves
# change nothing, whichever pooled connection they run on.
_FENCE = exists(
    select(HOST_LEASES.c.token).where(
        HOST_LEASES.c.host == bindparam("p_host"), HOST_LEASES.c.token == bindparam("p_token")
    )
)
_TOKEN_OF = select(HOST_LEASES.c.token).where(HOST_LEASES.c.host == bindparam("p_host"))


@cache
def _move(
    state: CallState,
    channel: bool,
    customer_channel: bool,
    bridge_id: bool,
    sides: bool,
    fenced: bool = False,
) -> UpdateWithRow:
    """The compare-and-set UPDATE of a move to ``state``, with its event as the row inserted
    exactly when the call moved. Built once per shape (a few dozen in all), so running one
    costs no compilation; the values are parameters. A terminal move with ``sides`` stores
    why each side ended in the same statement.

    A terminal move other than `canceled` does not match while a hangup requested by another
    process (`request_hangup`) is younger than `HANGUP_HOLD`: the follower hears the channels
    go as that process hangs them up, and its `canceled` is the truth of why the call ended.

    ``fenced`` (several instances, `calls.leases`): the move also needs the host's lease to
    hold the writer's token (`_FENCE`); without leases (SQLite: one process) there is none.
    """
    at = bindparam("p_at", type_=UtcDateTime())
    reason = bindparam("p_reason", type_=Text())
    new_state = bindparam("p_state", type_=String())
    values: dict[str, Any] = {"state": new_state, "state_changed_at": at}
    # A later state implies the earlier phases began; COALESCE keeps a time already known.
    if state in LIVE and RANK[state] >= RANK[CallState.AGENT_ANSWERED]:
        values["agent_answered_at"] = func.coalesce(CALLS.c.agent_answered_at, at)
    if state is CallState.CONNECTED:
        values["customer_answered_at"] = func.coalesce(CALLS.c.customer_answered_at, at)
    if state.is_terminal:
        values["ended_at"] = at
        values["end_reason"] = reason
        if sides:
            for side in ("agent", "customer"):
                values[f"{side}_outcome"] = bindparam(f"p_{side}_outcome", type_=String())
                values[f"{side}_ring_s"] = bindparam(f"p_{side}_ring_s", type_=Float())
                values[f"{side}_reason"] = bindparam(f"p_{side}_reason", type_=Text())
    if channel:  # the service normally stores it; a fallback for resume
        values["channel"] = func.coalesce(CALLS.c.channel, bindparam("p_first_leg", type_=String()))
    if customer_channel:
        values["customer_channel"] = bindparam("p_customer_leg", type_=String())
    if bridge_id:
        values["bridge_id"] = bindparam("p_bridge", type_=String())
    moved = (
        update(CALLS)
        .where(CALLS.c.id == bindparam("p_call"), CALLS.c.state == bindparam("p_expected"))
        .values(values)
    )
    if _held(state):
        requested = CALLS.c.hangup_requested_at
        since = bindparam("p_hold_since", type_=UtcDateTime())
        moved = moved.where(or_(requested.is_(None), requested < since))
    if fenced:
        moved = moved.where(_FENCE)
    event: dict[str, ColumnElement[Any]] = {
        "call_id": bindparam("p_call", type_=String()),
        "state": new_state,
        "at": at,
        "detail": reason,
    }
    return UpdateWithRow(moved, CALL_EVENTS, event)


async def move(
    database: Executor,
    call_id: str,
    state: CallState,
    *,
    expected: CallState,
    at: datetime,
    reason: str | None = None,
    channel: str | None = None,
    customer_channel: str | None = None,
    bridge_id: str | None = None,
    sides: Sides | None = None,
    fence: tuple[str, int] | None = None,
) -> TransitionResult:
    """Move the call from ``expected`` to ``state`` and add its event, atomically.

    Compare-and-set: the UPDATE only matches while the row is still in ``expected``, so of two
    writers that both saw ``expected`` exactly one moves the call; the other learns the state
    it is in now (read only then). ``sides`` are stored with a terminal ``state``. Whether the
    move is allowed is the caller's to check (`calls.history`). ``fence``: (host, token) of
    the lease the writer holds; the move is refused (``fenced``) once the token is another.
    """
    sides = sides if state.is_terminal else None
    statement = _move(
        state, channel is not None, customer_channel is not None, bridge_id is not None,
        sides is not None, fence is not None,
    )  # fmt: skip
    params: dict[str, Any] = {
        "p_call": call_id,
        "p_expected": expected.value,
        "p_state": state.value,
        "p_at": at,
        "p_reason": reason,
        "p_first_leg": channel,
        "p_customer_leg": customer_channel,
        "p_bridge": bridge_id,
    }
    if sides is not None:
        params |= {f"p_{name}": value for name, value in side_values(sides).items()}
    if _held(state):
        params["p_hold_since"] = utcnow() - HANGUP_HOLD  # now: a retry of a held move counts on
    if fence is not None:
        params["p_host"], params["p_token"] = fence
    event_id = await database.update_with_row(statement, params)
    if event_id is not None:
        return TransitionResult(True, state, event_id)
    # A new statement: under READ COMMITTED it sees the other writer's committed move.
    current = await database.value(_STATE_OF, params)
    found = None if current is None else CallState(current)
    if fence is not None and await database.value(_TOKEN_OF, params) != fence[1]:
        return TransitionResult(False, found, fenced=True)  # only on a refusal: no cost else
    return TransitionResult(False, found)


def _held(state: CallState) -> bool:
    """Whether a move to ``state`` waits for a hangup another process asked for."""
    return state.is_terminal and state is not CallState.CANCELED


# Without .values(): the parameter named like the column is SET (as `calls.FINISH_CALL`). On
# an ended call it changes nothing that matters: only the moves of live calls read it.
_REQUEST_HANGUP = update(CALLS).where(CALLS.c.id == bindparam("call_id"))


async def request_hangup(database: Executor, call_id: str, at: datetime) -> None:
    """Say, before hanging a live call up from a process that does not follow it, that the
    end about to come is this hangup (`HANGUP_HOLD`)."""
    await database.rowcount(_REQUEST_HANGUP, {"call_id": call_id, "hangup_requested_at": at})


async def live_calls(database: Executor) -> list[CallRecord]:
    """Every call in a non-terminal state, oldest first (what a restarted tracker resumes)."""
    return [call_record(found) for found in await database.rows(_LIVE_CALLS)]


_CHANNELS_OF = select(CALLS.c.channel, CALLS.c.customer_channel, CALLS.c.bridge_id).where(
    CALLS.c.enterprise_number == bindparam("p_number"),
    CALLS.c.host == bindparam("p_host"),
    CALLS.c.created_at >= bindparam("p_since"),
    CALLS.c.channel.is_not(None),
    # Live (not ended), or ended a moment ago.
    or_(CALLS.c.ended_at.is_(None), CALLS.c.ended_at >= bindparam("p_ended_after")),
)


async def channels_of(
    database: Executor, enterprise_number: str, host: str, since: datetime, ended_after: datetime
) -> list[tuple[str | None, str | None, str | None]]:
    """The channel names (first leg, customer leg) and bridge of the enterprise's calls on
    ``host`` created since ``since`` that are live or ended after ``ended_after``."""
    params = {"p_number": enterprise_number, "p_host": host, "p_since": since}
    rows = await database.rows(_CHANNELS_OF, params | {"p_ended_after": ended_after})
    return [(row["channel"], row["customer_channel"], row["bridge_id"]) for row in rows]


async def call_events(database: Executor, call_id: str) -> list[CallEvent]:
    """The call's transitions in the order they were stored."""
    return [
        CallEvent(found["state"], found["at"], found["detail"])
        for found in await database.rows(_EVENTS, {"call_id": call_id})
    ]


async def end_stale(database: Database, created_before: datetime, at: datetime, reason: str) -> int:
    """End as ``lost`` up to `STALE_BATCH` live calls created before ``created_before``; how
    many, in one transaction.

    Their sides are ``decide``'s for ``lost``, from the row: answered where a side had
    answered, else unknown (the customer only once the agent had answered); no ring times.
    """
    live = [state.value for state in LIVE]
    ids = select(CALLS.c.id).where(CALLS.c.state.in_(live), CALLS.c.created_at < created_before)
    moment = literal(at, UtcDateTime())
    lost = CallState.LOST.value
    answered, unknown = SideOutcome.ANSWERED.value, SideOutcome.UNKNOWN.value
    agent_up = CALLS.c.agent_answered_at.is_not(None)
    agent = case((agent_up, answered), else_=unknown)
    customer = case(
        (CALLS.c.customer_answered_at.is_not(None), answered),
        (agent_up, unknown),
        else_=null(),
    )
    async with database.transaction() as writing:
        batch = [found["id"] for found in await writing.rows(ids.limit(STALE_BATCH))]
        if not batch:
            return 0
        chosen = CALLS.c.id.in_(batch), CALLS.c.state.in_(live)
        await writing.rowcount(
            insert(CALL_EVENTS).from_select(
                ["call_id", "state", "at", "detail"],
                select(CALLS.c.id, literal(lost), moment, literal(reason)).where(*chosen),
            )
        )
        await writing.rowcount(
            update(CALLS)
            .where(*chosen)
            .values(
                state=lost,
                state_changed_at=moment,
                ended_at=moment,
                end_reason=reason,
                agent_outcome=agent,
                customer_outcome=customer,
            )
        )
    return len(batch)
