"""bench.ablation's changed services: what each variant takes away, and its summary."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import structlog
import uvicorn
from bench import ablation
from fastapi.routing import APIRoute

import callgate.calls.service as service_module
from callgate import logs
from callgate.api import legacy
from callgate.calls.service import CallService
from callgate.calls.tracker import CallTracker
from callgate.domain.states import CallState
from callgate.pbx.parsing import Channel, parse_channels
from callgate.pbx.transport import HostTarget


def _probe() -> tuple[type[CallService], list[str | None]]:
    """A CallService subclass whose authorisation counts its database reads."""
    reads: list[str | None] = []

    class Probe(CallService):
        async def authorise(self, secret: str | None, *, client: str | None = None) -> Any:
            reads.append(secret)
            return (f"enterprise of {secret}", None)

    return Probe, reads


async def test_remembered_reads_each_secret_once() -> None:
    probe, reads = _probe()
    ablation.remember_authorisation(probe)
    service = object.__new__(probe)  # no database or PBX: only authorise is called
    first: Any = await service.authorise("secret-a")
    again: Any = await service.authorise("secret-a")
    other: Any = await service.authorise("secret-b")
    assert first == again == ("enterprise of secret-a", None)
    assert other == ("enterprise of secret-b", None)
    assert reads == ["secret-a", "secret-b"]


async def test_bare_writes_no_call_row() -> None:
    class Probe(CallService):
        pass

    ablation.skip_call_rows(Probe)
    service: Any = object.__new__(Probe)  # without its statements, a write would fail
    await service._insert("id", None, None, "rid")  # returns: nothing written
    await service._finish(None, "id", "success", 0.0, channel="Local/150@inoffice-1;1")
    assert Probe._insert is not CallService._insert
    assert Probe._finish is not CallService._finish


def test_unknown_variant_is_refused_and_only_bare_is_quiet() -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        ablation.prepare("fast")
    assert ablation.environment("bare") == {"CALLGATE_LOG_LEVEL": "WARNING"}
    assert ablation.environment("full") == ablation.environment("remembered") == {}


def test_summary_pairs_each_variant_with_full() -> None:
    times = {"full": [4.0, 5.0, 6.0], "remembered": [3.5, 4.6, 5.4], "bare": [3.0, 3.0, 3.0]}
    result = ablation.summarise([250.0, 260.0, 270.0], times)
    assert result["seed_ms"] == 260.0
    rows = result["variants"]
    assert rows["full"]["paired_ms"] == 0.0
    assert rows["remembered"]["paired_ms"] == pytest.approx(-0.5)
    assert rows["bare"]["paired_ms"] == pytest.approx(-2.0)
    assert rows["bare"]["ratio"] == pytest.approx(260.0 / 3.0)


def test_inline_lines_writes_each_line_when_added(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "LinesSoon", logs.LinesSoon)  # restored afterwards
    ablation.prepare("inline-lines")
    written: list[str] = []
    lines = vars(service_module)["LinesSoon"](turns=2)
    lines.add(lambda event: written.append(event), "call requested")
    assert written == ["call requested"]  # no event loop turn needed


def test_render_per_handler_renders_for_each_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs._RenderOnce, "format", logs._RenderOnce.format)
    ablation.prepare("render-per-handler")
    rendered: list[str] = []

    def render(_logger: object, _name: str, event: structlog.typing.EventDict) -> str:
        rendered.append(event["event"])
        return str(event["event"])

    formatter = logs._RenderOnce(processors=[render])
    record = logging.makeLogRecord({"msg": {"event": "hello"}, "_logger": None, "_name": "info"})
    assert formatter.format(record) == formatter.format(record) == "hello"
    assert rendered == ["hello", "hello"]  # once per format, as structlog's own formatter


def test_declared_params_declares_the_legacy_query(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(legacy.router, "routes", list(legacy.router.routes))
    ablation.prepare("declared-params")
    (route,) = [
        r for r in legacy.router.routes if getattr(r, "path", "") == "/api/makecallexternal"
    ]
    assert isinstance(route, APIRoute)
    declared = [param.alias for param in route.dependant.query_params]
    assert declared == ["code", "phone", "clientId", "userId", "externalPhone"]


def test_asyncio_h11_overrides_the_loop_and_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uvicorn, "Config", uvicorn.Config)  # the original back after the test
    ablation.prepare("asyncio-h11")
    config = uvicorn.Config(  # log_config=None: uvicorn's own would take over logging
        "callgate.app:nothing", loop="uvloop", http="httptools", port=1, log_config=None
    )
    assert (config.loop, config.http, config.port) == ("asyncio", "h11", 1)


def _tracker_probe() -> tuple[type[CallTracker], list[str]]:
    """A CallTracker whose taking in hand (`_begin`) is only recorded."""
    begun: list[str] = []

    class Probe(CallTracker):
        def _begin(self, call: Any, first_leg: Channel) -> None:
            self._claiming.discard(call.call_id)
            begun.append(call.call_id)

    return Probe, begun


def _bare_tracker(probe: type[CallTracker]) -> Any:
    tracker: Any = object.__new__(probe)  # no database or PBX: only track is called
    tracker._stopped, tracker._claiming, tracker._hosts = False, set(), {}
    return tracker


# The first leg as a real Asterisk lists it right after the originate
# (recordings/asterisk/console-verbose-outcomes.repr.txt).
(LEG,) = parse_channels(
    "Local/150@inoffice-00000061;1!inoffice!150!1!Down!AppDial2!(Outgoing Line)!!!!3!0!!"
    "1796565380.208\n"
)
TARGET = HostTarget(address="127.0.0.1", port=22, username="callgate")


async def test_track_takes_the_call_in_hand_at_the_next_turn_and_inline_at_once() -> None:
    probe_class, begun = _tracker_probe()
    tracker = _bare_tracker(probe_class)
    tracker.track("call-1", TARGET, LEG, "+375296254070")
    assert begun == [] and tracker.live_calls() == {"call-1": CallState.INITIATED}
    await asyncio.sleep(0)
    assert begun == ["call-1"] and tracker.live_calls() == {}

    inline_class, begun = _tracker_probe()
    ablation.track_inline(inline_class)
    tracker = _bare_tracker(inline_class)
    tracker.track("call-2", TARGET, LEG, "+375296254070")
    assert begun == ["call-2"]
