"""`CallService._finish` and the originate lock of several instances: let go by the statement
storing the outcome, and alone, exactly once, when that statement cannot run."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import callgate.calls.service as service_module
from callgate import errors
from callgate.calls.service import CallService
from callgate.db.advisory import Held

HELD = Held("originate:127.0.0.1:22:150", None)


class _Locks:
    def __init__(self) -> None:
        self.released: list[Held] = []

    async def release(self, held: Held) -> None:
        self.released.append(held)


def _service() -> tuple[Any, _Locks]:
    service: Any = object.__new__(CallService)  # no database or PBX: only _finish runs
    locks = _Locks()
    service._originates = locks
    return service, locks


async def _done() -> None:
    return None


async def test_the_lock_goes_alone_when_the_call_row_was_not_written() -> None:
    service, locks = _service()

    async def not_written() -> None:
        raise errors.DatabaseUnavailable("database unavailable while recording the call")

    inserted = asyncio.create_task(not_written())
    await service._finish(inserted, "call-1", "success", time.perf_counter(), held=HELD)
    assert locks.released == [HELD]


async def test_the_outcome_statement_lets_the_lock_go_and_nothing_else_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, locks = _service()
    stored: list[tuple[dict[str, Any], Held]] = []

    async def releasing(_locks: Any, values: dict[str, Any], held: Held) -> bool:
        stored.append((values, held))
        return True

    monkeypatch.setattr(service_module, "finish_call_releasing", releasing)
    inserted = asyncio.create_task(_done())
    await service._finish(inserted, "call-1", "success", time.perf_counter(), held=HELD)
    assert [(values["call_id"], held) for values, held in stored] == [("call-1", HELD)]
    assert locks.released == []


async def test_a_failed_outcome_statement_is_not_followed_by_a_second_release(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The statement lets the lock go itself when it fails (`AdvisoryLocks.row_releasing`)."""
    service, locks = _service()

    async def failing(_locks: Any, _values: dict[str, Any], _held: Held) -> bool:
        raise errors.DatabaseUnavailable("database unavailable while recording the outcome")

    monkeypatch.setattr(service_module, "finish_call_releasing", failing)
    inserted = asyncio.create_task(_done())
    await service._finish(inserted, "call-1", "success", time.perf_counter(), held=HELD)
    assert locks.released == []
