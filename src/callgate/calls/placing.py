"""Placing a call for an API client, answered with the call as stored.

With an `Idempotency-Key` the call row is written with a known id before dialling, and a
repeated key answers as its first request did (`calls.idempotency`); without one the
double-click guard of `CallService.place` applies.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from callgate import errors
from callgate.calls.idempotency import fingerprint, replay
from callgate.calls.reading import CallReads, CallView
from callgate.calls.service import CallRequest, CallService, Enterprise, PlacedCall

MAX_METADATA = 4096  # bytes of a call's metadata, serialised


@dataclass(frozen=True, slots=True)
class Placement:
    call: CallView
    reused: bool = False  # the double-click guard answered with a call placed just before
    replayed: bool = False  # the first outcome of the same Idempotency-Key


class Placing:
    def __init__(self, calls: CallService, reads: CallReads) -> None:
        self._calls = calls
        self._reads = reads

    async def place(
        self,
        enterprise: Enterprise,
        extension: str,
        phone: str,
        *,
        request_id: str,
        ring_timeout: int | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Placement:
        """Place a call to the validated `extension` and `phone` (`metadata` is checked here)."""
        try:  # Python's JSON reads NaN and Infinity, which JSON itself (and PostgreSQL) refuse
            encoded = json.dumps(
                metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
        except ValueError:
            raise errors.InvalidInput("metadata", "holds NaN or Infinity: not JSON") from None
        try:
            size = len(encoded.encode("utf-8"))  # a lone surrogate cannot be stored or answered
        except UnicodeEncodeError:
            raise errors.InvalidInput("metadata", "is not valid Unicode text") from None
        if size > MAX_METADATA:
            raise errors.InvalidInput("metadata", f"is larger than {MAX_METADATA} bytes")
        if not idempotency_key:
            request = CallRequest(extension, phone, ring_timeout=ring_timeout, metadata=metadata)
            placed, reused = await self._calls.place(
                enterprise, request, request_id=request_id, record_first=True
            )
            return Placement(await self._read_back(placed, request), reused=reused)
        request_hash = fingerprint(extension, phone, ring_timeout, encoded)
        number = enterprise.number
        earlier = await replay(self._reads, number, idempotency_key, request_hash)
        if earlier is not None:
            return Placement(earlier, replayed=True)
        request = CallRequest(
            extension,
            phone,
            ring_timeout=ring_timeout,
            metadata=metadata,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            call_id=str(uuid.uuid4()),
        )
        try:
            placed, _ = await self._calls.place(
                enterprise, request, request_id=request_id, record_first=True
            )
        except errors.Conflict:  # a parallel duplicate inserted the key first: follow it
            earlier = await replay(self._reads, number, idempotency_key, request_hash)
            if earlier is None:
                raise
            return Placement(earlier, replayed=True)
        return Placement(await self._read_back(placed, request))

    async def _read_back(self, placed: PlacedCall, request: CallRequest) -> CallView:
        try:
            return await self._reads.call(placed.enterprise.number, placed.call_id)
        except errors.DatabaseUnavailable:
            # The call was dialled: answering an error now would invite a retry that rings the
            # agent twice. Answer what is known; the outcome is logged for the call log.
            return CallView(
                id=placed.call_id,
                state="initiated",
                outcome="success",
                extension=placed.extension,
                phone=placed.phone,
                host=placed.host,
                created_at=datetime.now(UTC),
                durations={},
                ring_timeout=request.ring_timeout,
                metadata=request.metadata,
                channel=placed.channel,
            )
