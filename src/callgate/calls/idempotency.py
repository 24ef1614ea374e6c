"""`Idempotency-Key`: the same key with the same request is one call, dialled once.

A request whose key was seen answers as the first one did: it waits for that first request's
outcome while it is still dialling (parallel duplicates included), replays its error if it
failed, and refuses a key reused with another request body.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

from callgate import errors
from callgate.calls.reading import CallReads, CallView

# How long a replayed request waits for the first one's outcome (verify window + timeouts).
REPLAY_WAIT = 30.0
REPLAY_POLL = 0.05  # seconds between two reads of the first request's outcome


class IdempotencyKeyReused(errors.CallgateError):
    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was used with another request body")


def fingerprint(extension: str, phone: str, ring_timeout: int | None, metadata: str) -> str:
    """What makes two requests the same one (`metadata` as the JSON text it is stored as)."""
    return hashlib.sha256(
        json.dumps([extension, phone, ring_timeout, metadata]).encode()
    ).hexdigest()


async def replay(
    reads: CallReads, enterprise_number: str, key: str, request_hash: str
) -> CallView | None:
    """The call of the first request with this key, once it has an outcome; None when the key
    is new. `IdempotencyKeyReused` for another body; the first request's error if it failed."""
    found = await reads.by_key(enterprise_number, key)
    if found is None:
        return None
    call, first_hash = found
    if first_hash != request_hash:
        raise IdempotencyKeyReused()
    deadline = time.monotonic() + REPLAY_WAIT
    while call.outcome == "pending" and time.monotonic() < deadline:
        await asyncio.sleep(REPLAY_POLL)  # the first request is still dialling
        call = await reads.current(enterprise_number, call.id)
    if call.outcome in ("failed", "unknown") and call.error_code:
        raise errors.error_class(call.error_code)(call.error or "call failed")
    return await reads.call(enterprise_number, call.id)
