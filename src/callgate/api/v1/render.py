"""Calls as v1 bodies: a `CallView` as a `CallOut`, why each side ended as a `SidesOut`."""

from __future__ import annotations

from callgate.api.v1.schemas import CallError, CallEventOut, CallOut, SideOut, SidesOut
from callgate.calls.export import side_ring_s
from callgate.calls.reading import CallView
from callgate.domain.outcomes import SideResult, Sides


def sides_out(sides: Sides | None) -> SidesOut | None:
    """Why each side ended, as the API shows it (the call's body, its SSE events)."""
    if sides is None:
        return None

    def side(result: SideResult | None) -> SideOut | None:
        if result is None:
            return None
        return SideOut(result=result.outcome, ring_s=side_ring_s(result), reason=result.reason)

    return SidesOut(agent=side(sides.agent), customer=side(sides.customer))


def call_out(call: CallView) -> CallOut:
    error = None
    if call.error_code or call.error:
        error = CallError(code=call.error_code, detail=call.error)
    return CallOut.model_validate(
        {
            "id": call.id,
            "state": call.state,
            "outcome": call.outcome,
            "from": call.extension,
            "to": call.phone,
            "host": call.host,
            "created_at": call.created_at,
            "state_changed_at": call.state_changed_at,
            "ended_at": call.ended_at,
            "end_reason": call.end_reason,
            "ring_timeout": call.ring_timeout,
            "metadata": call.metadata,
            "channels": {"agent": call.channel, "customer": call.customer_channel},
            "bridge_id": call.bridge_id,
            "error": error,
            "durations": call.durations,
            "sides": sides_out(call.sides),
            "timeline": [
                CallEventOut(state=e.state, at=e.at, detail=e.detail) for e in call.timeline
            ],
        }
    )
