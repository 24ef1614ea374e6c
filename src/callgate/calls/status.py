"""What /api/status reports of the running parts: the database, the PBX transports, tracking,
and the hosts whose SSH host key is not checked; and the status page's overview (`page`)."""

from __future__ import annotations

import asyncio

from callgate.calls.overview import StatusPage
from callgate.calls.tracker import CallTracker
from callgate.db.engine import database_state
from callgate.db.executor import Executor
from callgate.db.hosts import list_hosts
from callgate.pbx.client import PbxClient
from callgate.settings import HostKeyPolicy, Settings


class ServiceStatus:
    def __init__(
        self, database: Executor, pbx: PbxClient, tracker: CallTracker, settings: Settings
    ) -> None:
        self._database = database
        self._pbx = pbx
        self._tracker = tracker
        self._settings = settings
        self.page = StatusPage(database, pbx, tracker, settings)  # /admin; its uptime starts now

    async def database(self, within: float = 5.0) -> str:
        """``"connected"`` or the failure's class name (never a DSN), within ``within`` s."""
        return await database_state(self._database, within)

    def pbx(self) -> dict[str, object]:
        """Each host's transport state."""
        return self._pbx.transport.status()

    def tracking(self) -> dict[str, object]:
        """The calls followed per host and each host's listening console."""
        return self._tracker.status()

    async def unchecked_hosts(self, within: float = 5.0) -> list[str] | None:
        """The configured hosts (`callgate host set`) whose host key is not checked: their own
        policy is `off`, or they keep the default and CALLGATE_SSH_HOST_KEY_POLICY is `off`.
        None when the database cannot say."""
        default = self._settings.ssh_host_key_policy.value
        try:
            async with asyncio.timeout(within):
                rows = await list_hosts(self._database)
        except Exception:  # a state to report, never a crash of /api/status or of the start
            return None
        off = HostKeyPolicy.OFF.value
        return [row.address for row in rows if (row.host_key_policy or default) == off]
