"""The use cases one running service offers, as ``callgate.wiring.running`` builds them once."""

from __future__ import annotations

from dataclasses import dataclass

from callgate.calls.placing import Placing
from callgate.calls.reading import CallReads
from callgate.calls.service import CallService
from callgate.calls.status import ServiceStatus
from callgate.calls.watching import Watching
from callgate.calls.webhooks import Webhooks
from callgate.settings import Settings


@dataclass
class Services:
    """What a request handler or a ``--direct`` command may call."""

    settings: Settings
    calls: CallService  # authorise, place (the legacy flow), hang up, list a host's channels
    placing: Placing  # place for the v1 API: idempotency, the call read back
    reads: CallReads  # an enterprise's calls
    watching: Watching  # an enterprise's calls as they change
    status: ServiceStatus  # the running parts, for /api/status
    webhooks: Webhooks  # an enterprise's webhook endpoints (calls/webhooks.py)
    # For the terminal once the port accepts connections (`app.serve`): the demo's commands.
    ready_message: str | None = None
