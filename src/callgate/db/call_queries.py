"""History queries of the v1 API: one tenant's calls, filtered, newest first, by cursor."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.db.models import CallRecord


@dataclass(frozen=True)
class CallFilter:
    enterprise_number: str
    state: str | None = None
    extension: str | None = None
    phone: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def encode_cursor(record: CallRecord) -> str:
    raw = f"{record.created_at.isoformat()}|{record.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a page ended at; ValueError when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, _, call_id = base64.urlsafe_b64decode(padded).decode().partition("|")
        return datetime.fromisoformat(at), call_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor returned by this API") from None


async def list_calls(
    session: AsyncSession, where: CallFilter, *, limit: int, cursor: str | None = None
) -> tuple[Sequence[CallRecord], str | None]:
    """A page of calls (newest first) and the cursor of the next page, if any."""
    stmt = select(CallRecord).where(CallRecord.enterprise_number == where.enterprise_number)
    if where.state:
        stmt = stmt.where(CallRecord.state == where.state)
    if where.extension:
        stmt = stmt.where(CallRecord.extension == where.extension)
    if where.phone:
        stmt = stmt.where(CallRecord.phone == where.phone)
    if where.since:
        stmt = stmt.where(CallRecord.created_at >= where.since)
    if where.until:
        stmt = stmt.where(CallRecord.created_at < where.until)
    if cursor:
        at, call_id = decode_cursor(cursor)
        stmt = stmt.where(
            or_(
                CallRecord.created_at < at,
                and_(CallRecord.created_at == at, CallRecord.id < call_id),
            )
        )
    stmt = stmt.order_by(CallRecord.created_at.desc(), CallRecord.id.desc()).limit(limit + 1)
    rows = list(await session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1]) if more and rows else None)


async def tenant_call(
    session: AsyncSession, enterprise_number: str, call_id: str
) -> CallRecord | None:
    """One call of this tenant; another tenant's call is as absent as a missing one."""
    stmt = select(CallRecord).where(
        CallRecord.id == call_id, CallRecord.enterprise_number == enterprise_number
    )
    return (await session.scalars(stmt.execution_options(populate_existing=True))).first()


async def by_idempotency_key(
    session: AsyncSession, enterprise_number: str, key: str
) -> CallRecord | None:
    stmt = select(CallRecord).where(
        CallRecord.enterprise_number == enterprise_number, CallRecord.idempotency_key == key
    )
    return (await session.scalars(stmt.execution_options(populate_existing=True))).first()
