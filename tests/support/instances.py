"""A second instance of the service beside a stack's, and the instances' listening connections
as PostgreSQL sees them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from callgate.db.notifications import APPLICATION_NAME
from tests.support.service import free_port, running_service
from tests.support.stack import Stack


@contextlib.asynccontextmanager
async def second_instance(stack: Stack, tmp_path: Path) -> AsyncIterator[Stack]:
    """Another instance of the service on the stack's database and PBX host."""
    settings = stack.service.settings.model_copy(
        update={"port": free_port(), "log_file": tmp_path / "second.log"}
    )
    async with running_service(settings) as service:
        yield dataclasses.replace(stack, service=service)


async def listening(url: str, count: int, *, other_than: set[int] | None = None) -> set[int]:
    """The pids of the instances' listening connections, once there are ``count`` (none of
    ``other_than``)."""
    connection = await asyncpg.connect(url)
    try:
        for _ in range(200):
            pids = {
                row["pid"]
                for row in await connection.fetch(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE application_name = $1 AND datname = current_database()",
                    APPLICATION_NAME,
                )
            }
            if len(pids) == count and not pids & (other_than or set()):
                return pids
            await asyncio.sleep(0.05)
    finally:
        await connection.close()
    raise AssertionError(f"not {count} listening connections")
