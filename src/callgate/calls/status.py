"""What /api/status reports of the running parts: the database, the PBX transports, tracking."""

from __future__ import annotations

from callgate.calls.tracker import CallTracker
from callgate.db.engine import database_state
from callgate.db.executor import Executor
from callgate.pbx.client import PbxClient


class ServiceStatus:
    def __init__(self, database: Executor, pbx: PbxClient, tracker: CallTracker) -> None:
        self._database = database
        self._pbx = pbx
        self._tracker = tracker

    async def database(self) -> str:
        """``"connected"`` or the failure's class name (never a DSN)."""
        return await database_state(self._database)

    def pbx(self) -> dict[str, object]:
        """Each host's transport state."""
        return self._pbx.transport.status()

    def tracking(self) -> dict[str, object]:
        """The calls followed per host and each host's listening console."""
        return self._tracker.status()
