"""Tasks that run beside the service (pollers, renewals, listeners): their start and end,
written once.

Each of them ends by being cancelled, at shutdown or when its owner closes; the owner waits
for the end so that nothing the task was writing is cut off halfway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from callgate.logs import get_logger

log = get_logger("callgate.tasks")


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel the tasks (None: none to cancel) and wait until every one has ended.

    Their cancellation is how they end, not an error. A task that had already failed is
    logged, not raised: a shutdown goes on past one broken task. A cancel of the caller
    itself while it waits is not swallowed (``gather`` raises it).
    """
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    ends = await asyncio.gather(*running, return_exceptions=True)
    for task, end in zip(running, ends, strict=True):
        if isinstance(end, Exception):
            log.warning("background task had failed", task=task.get_name(), error=repr(end))


class Background:
    """One task running ``run()`` from `start` until `aclose`; a start while it runs is a no-op,
    and a start after it ended (it failed, or was closed) runs it anew."""

    def __init__(self, run: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._run = run
        self._name = name
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
