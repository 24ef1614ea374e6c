"""The log lines: structlog's own renderers, one line per record, each record rendered once."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import structlog

from callgate.logs import configure_logging, get_logger


@contextmanager
def _configured(log_file: Path, log_format: str = "text") -> Iterator[None]:
    """configure_logging, then all as it was: other tests see the logging they set up (or
    none)."""
    root = logging.getLogger()
    saved = (structlog.get_config(), list(root.handlers), root.level)
    configure_logging(log_file, log_format, "INFO")
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        structlog.configure(**saved[0])
        for handler in saved[1]:
            root.addHandler(handler)
        root.setLevel(saved[2])


def test_a_text_line_as_the_console_renderer_writes_it(tmp_path: Path) -> None:
    log_file = tmp_path / "service.log"
    with _configured(log_file):
        get_logger("callgate.calls").bind(request_id="r-1").info(
            "ssh originate", host="pbx:22", elapsed_ms=1.23, phone="+375*******70"
        )
    line = log_file.read_text()
    assert line.endswith(
        " [info     ] ssh originate [callgate.calls] elapsed_ms=1.23 host=pbx:22"
        " phone=+375*******70 request_id=r-1\n"
    )


def test_a_value_cannot_forge_a_line_and_secrets_are_masked(tmp_path: Path) -> None:
    """A value with a line break stays on its record's line (quoted); a secret-looking key is
    masked whatever the caller passed."""
    log_file = tmp_path / "service.log"
    forged = "x\n2026-01-01 00:00:00 [info     ] call placed [callgate.calls]"
    secret = "s3cr3t-abcdefghijklmnop"
    with _configured(log_file):
        get_logger("callgate.test").warning("odd value", detail=forged, clientId=secret)
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1
    assert "detail='x\\n2026-01-01" in lines[0]
    assert secret not in lines[0]


def test_a_logged_exception_reaches_the_file(tmp_path: Path) -> None:
    """Through the whole configuration: the line, then the traceback, once."""
    log_file = tmp_path / "service.log"
    with _configured(log_file):
        log = get_logger("callgate.test")
        try:
            raise RuntimeError("kaput")
        except RuntimeError:
            log.exception("tick failed", host="pbx")
        logging.getLogger("uvicorn.error").error("plain stdlib line")
    text = log_file.read_text()
    assert "[error    ] tick failed [callgate.test] host=pbx\nTraceback" in text
    assert "RuntimeError: kaput" in text
    assert "[error    ] plain stdlib line [uvicorn.error]" in text
    assert text.count("tick failed") == 1


def test_json_lines(tmp_path: Path) -> None:
    """One JSON object a line, for structlog's lines and the libraries' alike."""
    log_file = tmp_path / "service.log"
    with _configured(log_file, "json"):
        get_logger("callgate.calls").info("cli done", elapsed_ms=2.5, token="abcdefghijklmnop")
        logging.getLogger("uvicorn.error").warning("port %d busy", 8080)
        try:
            raise RuntimeError("kaput")
        except RuntimeError:
            get_logger("callgate.calls").exception("tick failed")
    entries = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(e["event"], e["level"], e["logger"]) for e in entries] == [
        ("cli done", "info", "callgate.calls"),
        ("port 8080 busy", "warning", "uvicorn.error"),
        ("tick failed", "error", "callgate.calls"),
    ]
    assert entries[0]["elapsed_ms"] == 2.5 and "abcdefghijklmnop" not in entries[0]["token"]
    assert "RuntimeError: kaput" in entries[2]["exception"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_each_record_is_rendered_once(tmp_path: Path, log_format: str) -> None:
    """Three formats per record with the standard handlers (stdout, the file and the file's
    rollover check); the renderer runs once."""
    with _configured(tmp_path / "service.log", log_format):
        formatter = logging.getLogger().handlers[0].formatter
        assert isinstance(formatter, structlog.stdlib.ProcessorFormatter)
        rendered: list[str] = []
        renderer = formatter.processors[-1]

        def counted(logger: object, name: str, event: structlog.typing.EventDict) -> str:
            rendered.append(event["event"])
            return str(renderer(logger, name, event))

        formatter.processors = (*formatter.processors[:-1], counted)
        get_logger("callgate.test").info("hello")
        logging.getLogger("asyncssh").warning("foreign")
    assert rendered == ["hello", "foreign"]
    assert (tmp_path / "service.log").read_text().count("hello") == 1


def test_libraries_that_log_request_values_stay_quiet_even_at_debug(tmp_path: Path) -> None:
    """aiosqlite logs each statement with its parameters (phone numbers), HTTP clients whole
    URLs, asyncssh each command, websockets each handshake's headers (`Authorization`): at
    DEBUG the service's own lines show, theirs do not."""
    configure_logging(tmp_path / "x.log", "text", "DEBUG", console=False)
    try:
        for name in ("aiosqlite", "httpx", "httpcore", "asyncssh", "websockets.server"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert not logging.getLogger("uvicorn.error").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("callgate.calls").isEnabledFor(logging.DEBUG)
    finally:
        configure_logging(None, "text", "INFO", console=False)
