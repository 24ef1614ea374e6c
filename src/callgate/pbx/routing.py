"""Per host, the transport its ``target.transport`` names (see ``registry``), behind one
circuit breaker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

from callgate import errors
from callgate.metrics import HostReadings
from callgate.pbx.breaker import CircuitBreaker
from callgate.pbx.registry import Shared
from callgate.pbx.transport import EventSource, HostTarget, PbxTransport
from callgate.pbx.verbose import Heard


@runtime_checkable
class _Consoles(Protocol):
    """A transport holding consoles (the console transport's ``usage``)."""

    def usage(self) -> dict[str, tuple[int, int]]: ...


class RoutingTransport:
    """Runs each host's commands on the transport its target names: one dict lookup per run.

    Every registered transport is built at once from ``shared``. ``breaker`` guards every
    run around the choice: a failing host is short-circuited whichever transport it uses, and
    the console's rx fallback is not tried behind its back.
    """

    def __init__(self, shared: Shared, breaker: CircuitBreaker | None = None) -> None:
        self._shared = shared
        self._transports = shared.build_all()
        self._sources = {
            name: transport
            for name, transport in self._transports.items()
            if isinstance(transport, EventSource)
        }
        self._breaker = breaker
        self._consoles = [t for t in self._transports.values() if isinstance(t, _Consoles)]

    def _chosen(self, target: HostTarget) -> PbxTransport:
        try:
            return self._transports[target.transport]
        except KeyError:
            # The default (CALLGATE_TRANSPORT) was checked at start: this is the host's row.
            raise errors.ConfigurationError(
                f"PBX host {target.label}: pbx_hosts.transport names no transport "
                f"({', '.join(sorted(self._transports))} are known)"
            ) from None

    def listen(
        self, target: HostTarget
    ) -> AbstractAsyncContextManager[AsyncIterator[Heard | None]] | None:
        """A listening session when the host's transport can listen (the console's), else
        None."""
        source = self._sources.get(target.transport)
        return None if source is None else source.listen(target)

    async def run(
        self, target: HostTarget, commands: Sequence[str], *, notices: list[str] | None = None
    ) -> list[str]:
        chosen = self._chosen(target)
        if self._breaker is None:
            return await chosen.run(target, commands, notices=notices)
        return await self._breaker.call(
            target, lambda: chosen.run(target, commands, notices=notices)
        )

    def usage(self) -> dict[str, HostReadings]:
        """Per host label, what its connections, consoles and circuit hold now (metrics)."""
        hosts: dict[str, HostReadings] = {}
        for label, (connections, busy) in self._shared.pool.usage().items():
            found = hosts.setdefault(label, HostReadings())
            found.connections, found.sessions_busy = connections, busy
        for transport in self._consoles:
            for label, (consoles, busy) in transport.usage().items():
                found = hosts.setdefault(label, HostReadings())
                found.consoles += consoles
                found.consoles_busy += busy
        for label, state in (self._breaker.states() if self._breaker else {}).items():
            hosts.setdefault(label, HostReadings()).breaker = state
        return hosts

    def status(self) -> dict[str, object]:
        # Each transport's keys, the first registered winning a clash: rx's pool counters, which
        # the console's status repeats (its fallback), stay at the top where they always were.
        status: dict[str, object] = {}
        for transport in self._transports.values():
            for key, value in transport.status().items():
                status.setdefault(key, value)
        status["transport"] = "per-host"
        status["transports"] = sorted(self._transports)
        if self._breaker is not None:
            status["breaker"] = self._breaker.status()
        return status

    async def aclose(self) -> None:
        await self._shared.aclose()
