"""bench.ablation's changed services: what each variant takes away, and its summary."""

from __future__ import annotations

from typing import Any

import pytest
from bench import ablation

from callgate.calls.service import CallService


def _probe() -> tuple[type[CallService], list[str | None]]:
    """A CallService subclass whose authorisation counts its database reads."""
    reads: list[str | None] = []

    class Probe(CallService):
        async def authorise(self, secret: str | None) -> Any:
            reads.append(secret)
            return (f"tenant of {secret}", None)

    return Probe, reads


async def test_remembered_reads_each_secret_once() -> None:
    probe, reads = _probe()
    ablation.remember_authorisation(probe)
    service = object.__new__(probe)  # no database or PBX: only authorise is called
    first: Any = await service.authorise("secret-a")
    again: Any = await service.authorise("secret-a")
    other: Any = await service.authorise("secret-b")
    assert first == again == ("tenant of secret-a", None)
    assert other == ("tenant of secret-b", None)
    assert reads == ["secret-a", "secret-b"]


async def test_bare_writes_no_call_row() -> None:
    class Probe(CallService):
        pass

    ablation.skip_call_rows(Probe)
    service: Any = object.__new__(Probe)  # without its statements, a write would fail
    await service._insert("id", None, None, "127.0.0.1", "rid")  # returns: nothing written
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
