"""What the metrics (`callgate.metrics`) need of the running service: the hosts and
enterprises the configuration names, read once at start so that each of their series exists
before its first event, and the state of the running objects, read at each scrape."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable

from callgate import errors, metrics
from callgate.calls.tracker import CallTracker
from callgate.db.enterprises import list_enterprises
from callgate.db.executor import Executor
from callgate.db.guard import db_step
from callgate.db.hosts import list_hosts
from callgate.domain.hosts import host_address
from callgate.metrics import Readings
from callgate.pbx.routing import RoutingTransport
from callgate.pbx.transport import HostTarget
from callgate.settings import Settings


async def configured(database: Executor, settings: Settings) -> tuple[list[str], list[str]]:
    """The host labels (as ``HostTarget.label`` names them) of the ``pbx_hosts`` rows and of
    the enterprises' hosts, and the enterprise numbers. An address that is not one is left
    out: a call to it never reaches a host."""
    async with db_step("reading the hosts and enterprises"):
        rows = {row.address: row for row in await list_hosts(database)}
        enterprises = [row for row, _secret in await list_enterprises(database)]
    labels: set[str] = set()
    for address in {*rows, *(row.ip for row in enterprises)}:
        with contextlib.suppress(errors.CallgateError):
            canonical = host_address(address)
            row = rows.get(canonical)
            port = row.ssh_port if row is not None and row.ssh_port else settings.ssh_port
            labels.add(HostTarget(canonical, port, settings.ssh_user).label)
    return sorted(labels), sorted(row.number for row in enterprises)


def readings(tracker: CallTracker, transport: RoutingTransport) -> Callable[[], Readings]:
    """What a scrape reads: the calls followed by state, each host's connections, consoles and
    circuit, the event subscriptions."""

    def read() -> Readings:
        live = Counter(state.value for state in tracker.live_calls().values())
        return Readings(live=live, hosts=transport.usage(), subscribers=tracker.subscribers())

    return read


async def start_metrics(
    settings: Settings, database: Executor, tracker: CallTracker, transport: RoutingTransport
) -> Callable[[], None]:
    """Initialise the configured series and read the service's state at each scrape until
    the function returned is called (at the service's stop); a database that cannot answer
    leaves the series to appear with their first event."""
    with contextlib.suppress(errors.DatabaseUnavailable):
        metrics.configure(*await configured(database, settings))
    source = readings(tracker, transport)
    metrics.read_from(source)
    return lambda: metrics.stop_reading(source)
