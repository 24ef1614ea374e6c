"""The pieces of resumable event streams: event ids as clients send them, the hand-over from
replay to live, the WebSocket's filters, an overflow marked (and a close not taken for one),
and a handshake's query string redacted in uvicorn's log line."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from callgate.api.v1.ws import Filter, RedactedHandshakes
from callgate.calls.event_log import Handover, parse_event_id
from callgate.calls.history import Transition
from callgate.calls.tracker import CallTracker
from callgate.domain.states import CallState
from callgate.settings import Settings


def _event(event_id: int, call_id: str = "a", state: CallState = CallState.CONNECTED) -> Transition:
    return Transition(call_id, state, datetime.now(UTC), "", extension="150", event_id=event_id)


@pytest.mark.parametrize(
    ("given", "parsed"),
    [("12", 12), (" 12 ", 12), (0, 0), (7, 7), ("-1", None), (-1, None), ("x", None),
     ("1e3", None), ("٣", None), (True, None), (None, None), ("9" * 19, None), (1.5, None)],
)  # fmt: skip
def test_event_ids_as_clients_send_them(given: object, parsed: int | None) -> None:
    assert parse_event_id(given) == parsed


def test_handover_drops_what_was_replayed_and_what_a_reset_stands_for() -> None:
    replayed = Handover(replayed={5, 7})
    assert [e for e in (4, 5, 6, 7, 8) if replayed.fresh(_event(e))] == [4, 6, 8]
    reset = Handover(up_to=10)
    assert [e for e in (9, 10, 11) if reset.fresh(_event(e))] == [11]


def test_filters() -> None:
    assert Filter().wants(_event(1))
    assert Filter(event_types=frozenset({"call.connected"})).wants(_event(1))
    assert not Filter(event_types=frozenset({"call.completed"})).wants(_event(1))
    assert Filter(call_id="a", extension="150").wants(_event(1))
    assert not Filter(call_id="b").wants(_event(1))
    assert not Filter(extension="151").wants(_event(1))
    assert Filter(extension="150").wants_call("z", "150")
    assert not Filter(call_id="a").wants_call("z", "150")


async def test_an_overflow_is_marked_and_a_close_is_not_one() -> None:
    tracker = CallTracker(cast(Any, None), cast(Any, None), Settings())
    full = tracker.subscribe(1, enterprise_number="0367")
    full.offer(_event(1))
    full.close()  # makes room for its end mark
    assert not full.overflowed.is_set()
    behind = tracker.subscribe(1, enterprise_number="0367")
    behind.offer(_event(1))
    behind.offer(_event(2))
    assert behind.overflowed.is_set()
    assert behind.dropped == 1


def test_a_websocket_handshake_line_has_its_query_redacted() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/v1/ws?token=0123456789abcdef0123&x=1"), None,
    )  # fmt: skip
    assert RedactedHandshakes().filter(record)
    line = record.getMessage()
    assert "0123456789abcdef0123" not in line
    assert line.startswith('127.0.0.1:5000 - "WebSocket /v1/ws?token=')
    assert "x=1" in line
