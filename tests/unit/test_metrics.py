"""callgate.metrics: the names follow Prometheus's conventions, every label set is known at
start, and the state read at scrape time is what its source says."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import IntegrityError

from callgate import errors, metrics
from callgate.db.guard import db_step
from callgate.metrics import HostReadings, Readings

SRC = Path(__file__).resolve().parents[2] / "src" / "callgate"
STEPS = {"db_step", "bounded", "bounded_retry"}


def samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.REGISTRY).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def step_names() -> Iterator[tuple[Path, str]]:
    """The first argument of every database step in the source, when it is a literal."""
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and node.args:
                name = getattr(node.func, "id", getattr(node.func, "attr", None))
                first = node.args[0]
                if name in STEPS and isinstance(first, ast.Constant):
                    yield path, str(first.value)


def test_every_database_step_is_initialised() -> None:
    """A step missing from DB_OPERATIONS would appear only with its first failure."""
    found = list(step_names())
    assert len(found) > 10  # the walk finds them
    unknown = {f"{path.name}: {name}" for path, name in found if name not in metrics.DB_OPERATIONS}
    assert sorted(unknown) == []


def test_names_and_units() -> None:
    families = list(text_string_to_metric_families(generate_latest(metrics.REGISTRY).decode()))
    assert families
    for family in families:
        assert family.name.startswith("callgate_"), family.name
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        for sample in family.samples:
            assert not {"phone", "call_id", "secret", "number"} & set(sample.labels)


async def test_a_failed_database_step_is_counted() -> None:
    operation = "reading the call"
    key = ("callgate_database_errors_total", frozenset({("operation", operation)}))
    before = samples()[key]
    with pytest.raises(errors.DatabaseUnavailable):
        async with db_step(operation):
            raise OSError("connection refused")
    with pytest.raises(errors.Conflict):  # the database answered: not an error of it
        async with db_step(operation):
            raise IntegrityError("INSERT", {}, Exception("duplicate"))
    assert samples()[key] == before + 1


def test_rejection_counts_by_scope() -> None:
    before = metrics.rejection_counts()
    assert set(before) == set(metrics.REJECTION_SCOPES)
    metrics.rejected("host_live_calls")
    after = metrics.rejection_counts()
    assert after["host_live_calls"] == before["host_live_calls"] + 1
    assert {k: v for k, v in after.items() if k != "host_live_calls"} == {
        k: v for k, v in before.items() if k != "host_live_calls"
    }


def test_state_is_read_at_scrape_time_and_zero_filled() -> None:
    metrics.configure(["10.0.0.9"], ["0999"])
    busy = HostReadings(connections=2, sessions_busy=3, consoles=2, consoles_busy=1, breaker="open")
    metrics.read_from(
        lambda: Readings(live={"connected": 4}, hosts={"10.0.0.8:5059": busy}, subscribers=2)
    )
    try:
        found = samples()
    finally:
        metrics.read_from(None)

    def one(name: str, **labels: str) -> float:
        return found[(name, frozenset(labels.items()))]

    assert one("callgate_calls_live", state="connected") == 4
    assert one("callgate_calls_live", state="initiated") == 0
    assert one("callgate_event_subscribers") == 2
    assert one("callgate_ssh_connections", host="10.0.0.8:5059") == 2
    assert one("callgate_ssh_sessions_busy", host="10.0.0.8:5059") == 3
    assert one("callgate_consoles_busy", host="10.0.0.8:5059") == 1
    assert one("callgate_breaker_state", host="10.0.0.8:5059") == 2
    assert one("callgate_breaker_state", host="10.0.0.9") == 0  # configured, not used yet
    assert one("callgate_consoles", host="10.0.0.9") == 0
    assert one("callgate_calls_finished_total", enterprise="0999", state="lost") == 0
    nothing = samples()  # no source: nothing runs, all zero
    assert nothing[("callgate_calls_live", frozenset({("state", "connected")}))] == 0
