"""Transports by name (pbx/registry.py) and the per-host routing over them (pbx/routing.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import pytest

from callgate import errors, wiring
from callgate.pbx import commands
from callgate.pbx.registry import Shared, TransportRegistry
from callgate.pbx.routing import RoutingTransport
from callgate.pbx.ssh import PoolLimits, SshPool
from callgate.pbx.transport import HostTarget, PbxTransport
from callgate.pbx.verbose import Heard
from callgate.settings import Settings, load_settings
from tests.support import memory_transport as memory

HOST = HostTarget("10.0.0.5", 5059, "callgate")


class Echo:
    """A transport answering each command with its own name and the command."""

    def __init__(self, name: str, fallback: PbxTransport | None = None) -> None:
        self.name, self.fallback = name, fallback
        self.closed = False

    async def run(
        self, target: HostTarget, cli_commands: Sequence[str], *, notices: list[str] | None = None
    ) -> list[str]:
        return [f"{self.name}: {command}" for command in cli_commands]

    def status(self) -> dict[str, object]:
        return {"transport": self.name, f"{self.name}_only": 1, "common": self.name}

    async def aclose(self) -> None:
        self.closed = True


class Listening(Echo):
    """An Echo that can also listen (an EventSource)."""

    @contextlib.asynccontextmanager
    async def _heard(self) -> AsyncIterator[AsyncIterator[Heard | None]]:
        async def nothing() -> AsyncIterator[Heard | None]:
            yield None

        yield nothing()

    def listen(
        self, target: HostTarget
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[Heard | None]] | None:
        return self._heard()


def routing(registry: TransportRegistry) -> tuple[RoutingTransport, Shared]:
    shared = Shared(Settings(_env_file=None), SshPool(PoolLimits()), registry)
    return RoutingTransport(shared), shared


def test_names_are_checked_and_taken_once() -> None:
    registry = TransportRegistry()
    registry.register("ami", lambda shared: Echo("ami"))
    with pytest.raises(ValueError, match="registered already"):
        registry.register("ami", lambda shared: Echo("other"))
    with pytest.raises(ValueError, match="transport's name"):
        registry.register("AMI over TLS", lambda shared: Echo("ami"))
    assert "ami" in registry and list(registry) == ["ami"]


async def test_each_host_runs_on_the_transport_its_target_names() -> None:
    """The routing is a lookup of the target's name; an unknown name is the host row's fault,
    reported naming the column, and nothing runs."""
    registry = TransportRegistry()
    registry.register("first", lambda shared: Echo("first"))
    registry.register("second", lambda shared: Echo("second"))
    transport, _ = routing(registry)
    first = await transport.run(replace(HOST, transport="first"), [commands.VERSION])
    second = await transport.run(replace(HOST, transport="second"), [commands.VERSION])
    assert (first, second) == (["first: core show version"], ["second: core show version"])
    with pytest.raises(errors.ConfigurationError, match=r"pbx_hosts\.transport") as raised:
        await transport.run(replace(HOST, transport="third"), [commands.VERSION])
    assert "first, second are known" in raised.value.message
    await transport.aclose()


async def test_a_transport_built_from_another_gets_the_same_one() -> None:
    """A factory asking for another transport (the console its rx fallback) gets the one the
    service routes to, built once; a factory that needs itself is refused."""
    registry = TransportRegistry()
    built: list[Echo] = []

    def base(shared: Shared) -> Echo:
        built.append(Echo("base"))
        return built[-1]

    registry.register("base", base)
    registry.register("layered", lambda shared: Echo("layered", shared.transport("base")))
    transport, shared = routing(registry)
    layered = shared.transport("layered")
    assert isinstance(layered, Echo) and layered.fallback is shared.transport("base")
    assert len(built) == 1
    await transport.aclose()
    assert built[0].closed and layered.closed

    looping = TransportRegistry()
    looping.register("loop", lambda shared: shared.transport("loop"))
    with pytest.raises(ValueError, match="needs itself"):
        routing(looping)


async def test_only_a_transport_that_can_listen_is_listened_to() -> None:
    registry = TransportRegistry()
    registry.register("quiet", lambda shared: Echo("quiet"))
    registry.register("loud", lambda shared: Listening("loud"))
    transport, _ = routing(registry)
    assert transport.listen(replace(HOST, transport="quiet")) is None
    assert transport.listen(replace(HOST, transport="nowhere")) is None
    session = transport.listen(replace(HOST, transport="loud"))
    assert session is not None
    async with session as heard:
        assert [line async for line in heard] == [None]
    await transport.aclose()


async def test_status_keeps_the_first_registered_keys_on_top() -> None:
    registry = TransportRegistry()
    registry.register("one", lambda shared: Echo("one"))
    registry.register("two", lambda shared: Echo("two"))
    transport, _ = routing(registry)
    status = transport.status()
    assert status["transport"] == "per-host" and status["transports"] == ["one", "two"]
    assert status["common"] == "one" and status["one_only"] == status["two_only"] == 1
    await transport.aclose()


async def test_the_memory_transport_places_a_call_like_the_simulator() -> None:
    """The test transport tests/support registers answers a verified originate's commands."""
    registry = TransportRegistry()
    registry.register(memory.NAME, memory.build)
    transport, _ = routing(registry)
    target = replace(HOST, transport=memory.NAME)
    originate = commands.originate("150", "+375296254070", "inoffice", None)
    answer, listing = await transport.run(target, [originate, commands.CHANNELS_CONCISE])
    assert answer == "" and "Local/150@inoffice-" in listing
    assert memory.BUILT[-1].originates() == 1
    memory.BUILT[-1].engine.running = False
    with pytest.raises(errors.AsteriskNotRunning) as raised:
        await transport.run(target, [commands.CHANNELS_CONCISE, commands.VERSION])
    assert raised.value.host == target.label and raised.value.completed == 0
    await transport.aclose()


def test_the_transport_setting_names_a_registered_transport() -> None:
    """CALLGATE_TRANSPORT is a name (checked with the settings), of a registered transport
    (checked by the composition root at start): both errors name the variable."""
    with pytest.raises(errors.ConfigurationError, match=r"CALLGATE_TRANSPORT: .*transport's name"):
        load_settings(_env_file=None, transport="Carrier Pigeon")
    pigeon = load_settings(_env_file=None, transport="carrier-pigeon")
    with pytest.raises(errors.ConfigurationError) as raised:
        wiring.check_settings(pigeon)
    assert raised.value.message.startswith(
        "invalid configuration: CALLGATE_TRANSPORT: no transport named 'carrier-pigeon'"
    )
    assert "console" in raised.value.message and "rx" in raised.value.message
    wiring.check_settings(load_settings(_env_file=None, transport=memory.NAME))
    wiring.check_settings(load_settings(_env_file=None, transport="rx"))
