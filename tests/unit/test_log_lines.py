"""The text log's layout: callgate's lean renderer writes what structlog's console renderer
would, byte for byte, so operators' greps keep working."""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog

from callgate.logs import _RotatingFile, configure_logging, get_logger, render_text

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


class _Keep(logging.Handler):
    """Keeps the records, after callgate's handlers have formatted them."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _configured(log_file: Path, log_format: str = "text") -> Iterator[_Keep]:
    """configure_logging, then all as it was: other tests see the logging they set up (or
    none) and the logging module's switches at their defaults."""
    root = logging.getLogger()
    saved = (structlog.get_config(), list(root.handlers), root.level)
    switches = (
        logging._srcfile,
        logging.logThreads,
        logging.logProcesses,
        logging.logMultiprocessing,
    )
    configure_logging(log_file, log_format, "INFO")
    keep = _Keep()
    root.addHandler(keep)  # last: it sees each record once the others have rendered it
    try:
        yield keep
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        structlog.configure(**saved[0])
        for handler in saved[1]:
            root.addHandler(handler)
        root.setLevel(saved[2])
        (
            logging._srcfile,
            logging.logThreads,
            logging.logProcesses,
            logging.logMultiprocessing,
        ) = switches


def test_a_logged_exception_reaches_the_file(tmp_path: Path) -> None:
    """Through the whole configuration: the line, then the traceback, once per handler."""
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


_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def _as_structlog_renders(record: logging.LogRecord) -> None:
    """The line callgate wrote for `record` is the one structlog's own ProcessorFormatter
    makes of it (callgate's formatter skips structlog's record copy for its own lines).
    A foreign line is stamped when formatted: the two stamps may be a second apart."""
    formatter = logging.getLogger().handlers[0].formatter
    assert isinstance(formatter, structlog.stdlib.ProcessorFormatter)
    expected = structlog.stdlib.ProcessorFormatter.format(formatter, record)
    written = record.__dict__["_callgate_rendered"]
    assert _TIME.sub("<time>", written) == _TIME.sub("<time>", expected)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_lines_as_structlog_renders_them(tmp_path: Path, log_format: str) -> None:
    with _configured(tmp_path / "service.log", log_format) as keep:
        log = get_logger("callgate.calls").bind(request_id="r-1", host=None)
        log.info("ssh originate", elapsed_ms=1.23, call_ids=["a", "b"], token="abcdefghijkl")
        logging.getLogger("uvicorn.error").warning("port %d busy, %s", 8080, "retrying")
        try:
            raise RuntimeError("kaput")
        except RuntimeError as exc:  # a traceback is rendered while it is being handled
            log.exception("tick failed", phone="+375*******70")
            log.error("place failed", exc_info=exc)
            logging.getLogger("asyncssh").error("channel failed", exc_info=True)
            for record in keep.records:
                _as_structlog_renders(record)
        assert len(keep.records) == 5
    lines = (tmp_path / "service.log").read_text()
    assert lines.count("RuntimeError: kaput") == 3


def test_the_per_record_switches_are_off(tmp_path: Path) -> None:
    """Nothing rendered uses the caller, thread or process: records don't gather them."""
    with _configured(tmp_path / "service.log") as keep:
        get_logger("callgate.test").info("hello")
        assert logging._srcfile is None
        assert not (logging.logThreads or logging.logProcesses or logging.logMultiprocessing)
        record = keep.records[0]
        assert (record.process, record.thread, record.lineno) == (None, None, 0)


def _write(handler: logging.Handler, lines: list[str]) -> None:
    handler.setFormatter(logging.Formatter("%(message)s"))
    for line in lines:
        handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))
    handler.close()


def _files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_rollover_as_the_standard_handler(tmp_path: Path) -> None:
    """The same files, backups and cut points as RotatingFileHandler: lines of every length
    around the limit, non-ASCII ones (the limit compares characters to bytes, as Python's
    does) and a file that is already there."""
    lines = [f"line {n} " + "x" * (n * 7 % 53) + "é" * (n % 5) for n in range(120)]
    # Longer than the limit; then, after a 1-byte file, a line that just reaches the limit
    # (newline included) and one a byte short of it.
    lines += ["y" * 300, "", "v" * 98, "", "u" * 97, "w" * 100]
    for name in ("standard", "ours"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.log").write_text("already here\n")
    _write(
        logging.handlers.RotatingFileHandler(
            tmp_path / "standard" / "app.log", maxBytes=100, backupCount=3, encoding="utf-8"
        ),
        lines,
    )
    _write(
        _RotatingFile(tmp_path / "ours" / "app.log", maxBytes=100, backupCount=3, encoding="utf-8"),
        lines,
    )
    assert _files(tmp_path / "ours") == _files(tmp_path / "standard")
    assert sorted(_files(tmp_path / "ours")) == ["app.log", "app.log.1", "app.log.2", "app.log.3"]


def test_a_pipe_never_rolls_over(tmp_path: Path) -> None:
    """A log "file" that is a pipe has no size: every line goes to it, none is rotated."""
    fifo = tmp_path / "log.pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so the handler's open won't wait
    try:
        _write(_RotatingFile(fifo, maxBytes=10, backupCount=2), ["a long line", "another one"])
        assert os.read(reader, 1000) == b"a long line\nanother one\n"
    finally:
        os.close(reader)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["log.pipe"]


def test_libraries_that_log_request_values_stay_quiet_even_at_debug(tmp_path: Path) -> None:
    """aiosqlite logs each statement with its parameters (phone numbers), HTTP clients whole
    URLs, asyncssh each command: at DEBUG the service's own lines show, theirs do not."""
    configure_logging(tmp_path / "x.log", "text", "DEBUG", console=False)
    try:
        for name in ("aiosqlite", "httpx", "httpcore", "asyncssh"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger("callgate.calls").isEnabledFor(logging.DEBUG)
    finally:
        configure_logging(None, "text", "INFO", console=False)
