"""The text log's layout: callgate's lean renderer writes what structlog's console renderer
would, byte for byte, so operators' greps keep working."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import structlog

from callgate.logs import configure_logging, get_logger, render_text

REFERENCE = structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0)


def _event(**extra: Any) -> dict[str, Any]:
    return {
        "timestamp": "2026-11-26 10:00:00",
        "level": "info",
        "event": "ssh originate",
        "logger": "callgate.calls",
        "phone": "+375*******70",
        "elapsed_ms": 1.23,
        "calls": 3,
        "call_ids": ["a", "b"],
        "host": None,
        **extra,
    }


def test_same_line_as_the_console_renderer() -> None:
    for level in ("debug", "info", "warning", "error", "critical", "exception"):
        assert render_text(None, "info", _event(level=level)) == REFERENCE(
            None, "info", _event(level=level)
        )
    bare = {"event": "tracking resumed"}
    assert render_text(None, "info", dict(bare)) == REFERENCE(None, "info", dict(bare))


def test_exception_and_stack_as_the_console_renderer() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        formatted = structlog.processors.format_exc_info(None, "error", {"exc_info": True})
    trace = formatted["exception"]
    assert "ValueError: boom" in trace
    both = {"exception": trace, "stack": "stack lines"}
    for extra in ({"exception": trace}, {"stack": "stack lines"}, both):
        assert render_text(None, "error", _event(**extra)) == REFERENCE(
            None, "error", _event(**extra)
        )


def test_a_logged_exception_reaches_the_file(tmp_path: Path) -> None:
    """Through the whole configuration: the line, then the traceback, once per handler."""
    log_file = tmp_path / "service.log"
    root = logging.getLogger()
    saved = (structlog.get_config(), list(root.handlers), root.level)
    configure_logging(log_file, "text", "INFO")
    try:
        log = get_logger("callgate.test")
        try:
            raise RuntimeError("kaput")
        except RuntimeError:
            log.exception("tick failed", host="pbx")
        logging.getLogger("uvicorn.error").error("plain stdlib line")
    finally:  # as it was: other tests see the logging they set up, or none
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        structlog.configure(**saved[0])
        for handler in saved[1]:
            root.addHandler(handler)
        root.setLevel(saved[2])
    text = log_file.read_text()
    assert "[error    ] tick failed [callgate.test] host=pbx\nTraceback" in text
    assert "RuntimeError: kaput" in text
    assert "[error    ] plain stdlib line [uvicorn.error]" in text
    assert text.count("tick failed") == 1
