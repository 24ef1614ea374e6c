"""Request and response bodies of the v1 API (they make its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from callgate.domain.outcomes import SideOutcome


class CallCreate(BaseModel):
    """A call to place: ring extension `from`, then dial `to` once the agent answers."""

    # Only the wire names: `extension` is the field's name in Python, `from` on the wire.
    model_config = ConfigDict(extra="forbid")

    extension: str = Field(alias="from", max_length=64, examples=["150"])
    to: str = Field(max_length=64, examples=["+375296254070"])
    ring_timeout: int | None = Field(
        None, ge=5, le=300, description="Seconds the customer's phone may ring (Dial timeout)."
    )
    metadata: dict[str, Any] | None = Field(
        None, description="Free JSON stored with the call (at most 4 KiB once serialised)."
    )


class CallEventOut(BaseModel):
    state: str
    at: datetime
    detail: str | None = None


class CallError(BaseModel):
    code: str | None
    detail: str | None


class SideOut(BaseModel):
    """How one side of an ended call ended."""

    result: SideOutcome = Field(
        description="`answered`; `busy`, `congestion` or `no_answer` (Asterisk said so, or for "
        "the agent: it rang the originate's whole 30 s); `canceled` (hung up through callgate "
        "while it rang); `failed` (the originate failed, see `reason`); `unknown` (it ended "
        "unanswered and nothing tells why: a channel listing cannot tell busy from no answer).",
    )
    ring_s: float | None = Field(
        description="Seconds it rang: the agent from the originate, the customer from the "
        "agent's answer, to the answer or the end (or as Asterisk printed it); null when not "
        "known (a failed originate, a lost call's unanswered side).",
    )
    reason: str | None = Field(description="Why the originate failed (`failed` only).")


class SidesOut(BaseModel):
    """Why each side ended; a side is null when it was never reached."""

    agent: SideOut | None = Field(description="The extension rung first (`from`).")
    customer: SideOut | None = Field(
        description="The number dialled once the agent answered (`to`); null when the agent "
        "never answered, so the customer was never dialled."
    )


class CallOut(BaseModel):
    """A call as callgate knows it."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: str
    state: str
    outcome: str
    extension: str = Field(alias="from")
    to: str
    host: str
    created_at: datetime
    state_changed_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    ring_timeout: int | None = None
    metadata: dict[str, Any] | None = None
    channels: dict[str, str | None]
    bridge_id: str | None = None
    error: CallError | None = None
    durations: dict[str, float | None]
    sides: SidesOut | None = Field(
        None, description="Why each side ended, once the call has ended; null while it is live."
    )
    timeline: list[CallEventOut] = []


class CallPage(BaseModel):
    items: list[CallOut]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")


class ChannelOut(BaseModel):
    name: str
    context: str
    extension: str
    priority: str
    state: str
    application: str
    data: str
    caller_id: str
    duration: int
    bridge_id: str
    uniqueid: str


class Problem(BaseModel):
    """application/problem+json (RFC 9457) with a stable `code`."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    field: str | None = None
    outcome: str | None = None
