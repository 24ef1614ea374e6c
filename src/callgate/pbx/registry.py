"""The transports there are, by name: what a host's ``transport`` (its ``pbx_hosts`` row, else
CALLGATE_TRANSPORT) names.

A transport is one module plus its registration, ``TRANSPORTS.register(name, build)``: ``build``
makes it from what the service's transports share (``Shared``). The built-in ones, ``rx`` and
``console``, are registered so by the composition root (``callgate.wiring``), like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from callgate.pbx.ssh import SshPool
from callgate.pbx.transport import PbxTransport
from callgate.settings import Settings, transport_name


class Shared:
    """What every transport of one service may use: the settings, the one SSH pool (a host has
    one set of connections whatever its transport) and the other transports, each built once
    (the console falls back on the service's ``rx``)."""

    def __init__(
        self, settings: Settings, pool: SshPool, registry: TransportRegistry | None = None
    ) -> None:
        self.settings, self.pool = settings, pool
        self._registry = TRANSPORTS if registry is None else registry
        self._built: dict[str, PbxTransport] = {}
        self._building: set[str] = set()

    def transport(self, name: str) -> PbxTransport:
        """The service's transport called ``name``, built on first use."""
        if name not in self._built:
            if name in self._building:
                raise ValueError(f"transport {name!r} needs itself to be built")
            self._building.add(name)
            try:
                self._built[name] = self._registry.factory(name)(self)
            finally:
                self._building.discard(name)
        return self._built[name]

    def build_all(self) -> dict[str, PbxTransport]:
        """Every registered transport, by name."""
        return {name: self.transport(name) for name in self._registry}

    async def aclose(self) -> None:
        """Close every transport, then the pool (a transport may own it, like rx: closing the
        pool twice is harmless)."""
        for transport in reversed(self._built.values()):
            await transport.aclose()
        await self.pool.aclose()


Factory = Callable[[Shared], PbxTransport]


class TransportRegistry:
    """Transport factories by name."""

    def __init__(self) -> None:
        self._factories: dict[str, Factory] = {}

    def register(self, name: str, factory: Factory) -> None:
        """Add a transport; its name must be a valid one and not taken (ValueError)."""
        transport_name(name)
        if name in self._factories:
            raise ValueError(f"a transport named {name!r} is registered already")
        self._factories[name] = factory

    def factory(self, name: str) -> Factory:
        """The factory of ``name``; KeyError if none is registered under it."""
        return self._factories[name]

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._factories))

    def names(self) -> str:
        """The registered names, for messages: ``console, rx``."""
        return ", ".join(self)


TRANSPORTS = TransportRegistry()
