"""bench.breakdown's split: the parts of a call from the service's own log lines."""

from __future__ import annotations

import json

import pytest
from bench.breakdown import split


def _line(event: str, request_id: str, elapsed_ms: float) -> str:
    return json.dumps({"event": event, "request_id": request_id, "elapsed_ms": elapsed_ms})


def test_medians_of_each_part_and_calls_missing_a_line_left_out() -> None:
    lines = [
        _line("ssh originate", "a", 0.5),
        _line("cli done", "a", 2.5),
        _line("http", "a", 3.0),
        _line("ssh originate", "b", 0.7),
        _line("cli done", "b", 2.9),
        _line("http", "b", 3.6),
        _line("ssh originate", "c", 9.0),  # no `cli done`: a failed call, not counted
        json.dumps({"event": "call requested", "request_id": "a"}),
    ]
    parts = split(lines, [3.5, 4.0])
    assert parts["calls"] == 2
    assert parts["before the PBX (validation, authorisation read)"] == pytest.approx(0.6)
    assert parts["the PBX (originate + listing over the console)"] == pytest.approx(2.1)
    key = "routing to the handler, and after the PBX until the answer is written"
    assert parts[key] == pytest.approx(0.6)
    assert parts["outside the middleware (HTTP parsing, network)"] == pytest.approx(0.45)


def test_no_complete_call_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        split([_line("http", "a", 1.0)], [1.0])
