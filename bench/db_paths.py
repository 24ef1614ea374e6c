"""The service's statements on PostgreSQL, each way they could run.

    python -m bench.db_paths [--calls N]

A fresh PostgreSQL database with one enterprise and its host row; then, N times each way, the
three statements every call runs, one after another: the authorisation read, the call row's
insert and its outcome's update. Reported per call: the process's CPU time and the wall time
(medians of five rounds, the ways interleaved). Every way is the same Core statements through
the same `Executor` interface:

- asyncpg's pool: `callgate.db.postgres`, the service's path on PostgreSQL;
- asyncpg's pool, reset on release: the same with asyncpg's default reset (a round trip each
  time a connection goes back to the pool), which `callgate.db.postgres` leaves out;
- SQLAlchemy's engine: the same driver under SQLAlchemy's async engine, at its leanest
  (autocommit, no pre-ping, no reset on return).

Then a tracker's state change that is alone in its tick, N times each way: one statement
committed by itself (what `calls.history.store_histories` does), or inside BEGIN and COMMIT;
and alone, fenced with its host's lease token (several instances, `calls.leases`).

The service's CPU per call is what bounds its calls per second.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from unittest import mock

import uvloop
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench import setup
from callgate.db import leases, postgres
from callgate.db.call_tracking import move
from callgate.db.calls import finish_call, finish_values, insert_call, new_call_values
from callgate.db.engine import POOL_SIZE, async_url
from callgate.db.enterprises import add_enterprise, by_secret_with_host
from callgate.db.executor import Database, Executor, Pooled, connect
from callgate.db.models import utcnow
from callgate.db.sqlite import EngineConnection
from callgate.domain.states import CallState

ROUNDS = 5


class EngineDatabase(Pooled):
    """The service's `Executor` on SQLAlchemy's async engine (the other way measured)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[EngineConnection]:
        async with self._engine.connect() as connection:
            yield EngineConnection(connection)

    def _alone(self) -> AbstractAsyncContextManager[Executor]:
        return self._connection()


async def one_call(database: Executor, secret: str) -> None:
    """The statements of one call, as `calls.service` runs them."""
    assert await by_secret_with_host(database, secret) is not None
    call_id = str(uuid.uuid4())
    values = new_call_values(
        id=call_id, enterprise_number="0367", extension="150", phone="375296254070", host="x"
    )
    await insert_call(database, values)
    await finish_call(database, finish_values(call_id, "success", channel="Local/150@x-1;1"))


async def one_move(
    database: Database, call_id: str, alone: bool, fence: tuple[str, int] | None = None
) -> None:
    """A state change of ``call_id`` (to the state it is in: the row is written each time),
    alone (fenced with ``fence`` if given) or inside a transaction."""
    state = CallState.INITIATED
    if alone:
        moved = await move(database, call_id, state, expected=state, at=utcnow(), fence=fence)
        assert moved.applied
        return
    async with database.transaction() as writing:
        await move(writing, call_id, state, expected=state, at=utcnow())


async def per_call_ms(work: Callable[[], Awaitable[None]], calls: int) -> tuple[float, float]:
    """(CPU, wall) milliseconds per run of ``work``, over ``calls`` runs."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await work()
    return (
        (time.process_time() - cpu) * 1000 / calls,
        (time.perf_counter() - wall) * 1000 / calls,
    )


async def default_reset(url: str) -> Database:
    """The service's `Database` whose pool resets each connection it takes back."""
    database = connect(url)
    with mock.patch.object(postgres, "_no_reset", None):  # asyncpg's reset, as by default
        await database.open()
    return database


async def measure(calls: int) -> dict[str, tuple[float, float]]:
    async with setup.database() as url:
        if not url.startswith("postgresql"):
            raise SystemExit("needs PostgreSQL (CALLGATE_TEST_POSTGRES)")
        await setup.migrate(url)
        service = connect(url)
        await service.open()
        secret = uuid.uuid4().hex
        await add_enterprise(service, "0367", "june", "127.0.0.1", secret)
        call_id = str(uuid.uuid4())
        values = new_call_values(
            id=call_id, enterprise_number="0367", extension="150", phone="1", host="x"
        )
        await insert_call(service, values)
        now = utcnow()
        token = await leases.acquire(service, "x", "bench", now=now, until=now + timedelta(hours=1))
        assert token is not None
        resetting = await default_reset(url)
        engine = create_async_engine(
            async_url(url),
            isolation_level="AUTOCOMMIT",
            pool_pre_ping=False,
            pool_reset_on_return=None,
            pool_size=POOL_SIZE,
        )
        lean = EngineDatabase(engine)
        ways: dict[str, Callable[[], Awaitable[None]]] = {
            "asyncpg's pool": lambda: one_call(service, secret),
            "asyncpg's pool, reset": lambda: one_call(resetting, secret),
            "SQLAlchemy's engine": lambda: one_call(lean, secret),
            "a state change alone": lambda: one_move(service, call_id, alone=True),
            "in BEGIN ... COMMIT": lambda: one_move(service, call_id, alone=False),
            "alone, fenced": lambda: one_move(service, call_id, alone=True, fence=("x", token)),
        }
        found: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for work in ways.values():
            await per_call_ms(work, 100)  # warm: connections, statement caches
        for _ in range(ROUNDS):
            for name, work in ways.items():
                found[name].append(await per_call_ms(work, calls))
        await service.close()
        await resetting.close()
        await engine.dispose()
    return {
        name: (
            round(statistics.median(cpu for cpu, _ in results), 3),
            round(statistics.median(wall for _, wall in results), 3),
        )
        for name, results in found.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.db_paths", description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    print(f"{'ms per call (3 statements)':<28}{'CPU':>8}{'wall':>8}")
    for name, (cpu, wall) in uvloop.run(measure(args.calls)).items():
        if name == "a state change alone":
            print(f"{'ms per state change':<28}{'CPU':>8}{'wall':>8}")
        print(f"{name:<28}{cpu:>8}{wall:>8}")


if __name__ == "__main__":
    main()
