"""Logging: structlog over the standard library, to stdout and a rotating file.

One line per step of a call, as the seed wrote them (request, authorised, SSH, CLI done),
each with the request id, host, extension, masked phone and elapsed ms. Callers pass masked
values; the ``_scrub`` processor is the safety net that masks any secret-looking key anyway.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import logging.handlers
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import structlog

from callgate.redaction import mask_secret

_SECRET_KEYS = frozenset({"secret", "password", "clientid", "client_id", "authorization", "token"})


def _scrub(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.lower() in _SECRET_KEYS and isinstance(event[key], str):
            event[key] = mask_secret(event[key])
    return event


_LEVEL_WIDTH = len("exception")  # the longest level name: levels line up in a column


def render_text(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
    """``time [level   ] event [logger] key=value …``, keys sorted: the layout of structlog's
    ``ConsoleRenderer(colors=False, pad_event_to=0)``, byte for byte, without its general
    column machinery, which cost about half of every log line (and a call writes several).
    Exceptions come already formatted by ``format_exc_info``."""
    stack, exception = event.pop("stack", None), event.pop("exception", None)
    parts = []
    if (timestamp := event.pop("timestamp", None)) is not None:
        parts.append(str(timestamp))
    if (level := event.pop("level", None)) is not None:
        parts.append(f"[{level:<{_LEVEL_WIDTH}}]")
    if (text := event.pop("event", None)) is not None:
        parts.append(str(text))
    if logger := event.pop("logger", None):
        parts.append(f"[{logger}]")
    parts.extend(
        f"{key}={value if isinstance(value, str) else repr(value)}"
        for key, value in sorted(event.items())
    )
    line = " ".join(part for part in parts if part).rstrip(" ")
    if stack is not None:
        line += "\n" + stack
        if exception is not None:
            line += "\n\n" + "=" * 79 + "\n"
    if exception is not None:
        line += "\n" + exception
    return line


class _RenderOnce(structlog.stdlib.ProcessorFormatter):
    """Shared by both handlers (stdout and the file): each record is rendered once, not once
    per handler; the renderer is most of a log line's cost, paid on every step of a call."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record.__dict__
        rendered = fields.get("_callgate_rendered")
        if isinstance(rendered, str):
            return rendered
        if "_logger" in fields and "_name" in fields and isinstance(record.msg, dict):
            text = self._render_structlog(record, record.msg)
        else:  # a foreign line (uvicorn, asyncssh): the pre-chain, as structlog runs it
            text = super().format(record)
        fields["_callgate_rendered"] = text
        return text

    def _render_structlog(self, record: logging.LogRecord, event_dict: dict[str, Any]) -> str:
        """What ``ProcessorFormatter.format`` returns for a structlog line, without its
        copy of the record and the stdlib formatting around the rendered text (a fifth of
        a line's cost). With this formatter's settings (format "%(message)s", no
        exc_info or stack_info kept, no logger of its own) that formatting returns the
        processors' string unchanged; a structlog line's exception is in the event dict
        (``format_exc_info`` renders it), never in the record."""
        logger, name = record.__dict__["_logger"], record.__dict__["_name"]
        event = dict(event_dict)  # the record keeps its dict, as structlog leaves it
        event["_record"] = record
        event["_from_structlog"] = True
        result: Any = event
        for processor in self.processors:
            result = processor(logger, name, result)
        return str(result)  # as the stdlib formatting would: the rendered line itself


class _RotatingFile(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler without its per-record syscalls: the standard one stats the path
    twice and seeks to the end on every record, to learn what only matters when the file is
    about full. Here the stream's position (one tell) answers "not yet" on its own; a record
    that would reach `maxBytes` goes to the original check, which stats and seeks.

    The position is where our last write ended (the file is appended to), so a line written
    by another process shows up one record late; a file truncated under us (copytruncate)
    reads as full, and the original check then finds the true size.
    """

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.stream is None:  # opened lazily (delay=True)
            self.stream = self._open()
        # A pipe or a device (a log file set to /dev/stdout) has no position and never rolls
        # over: the original check returns False for anything but a regular file.
        if self.maxBytes <= 0 or not self.stream.seekable():
            return False
        # The original's arithmetic: characters of the line and its newline, against bytes.
        if self.stream.tell() + len(self.format(record)) + 1 < self.maxBytes:
            return False
        return bool(super().shouldRollover(record))


def configure_logging(
    log_file: Path | None, log_format: str = "text", level: str = "INFO", *, console: bool = True
) -> None:
    """Route structlog and the standard library (uvicorn, asyncssh) through one formatter, to
    stdout (``console``) and ``log_file``."""
    # What every LogRecord would otherwise gather and nothing here renders (logging's
    # documented "Optimization" switches): the caller's file, line and function (a walk up
    # the stack), the thread, the process id (a getpid syscall) and the process name.
    # Neither renderer nor the `shared` processors read them; a stdlib `stack_info=True`
    # goes with the caller lookup, and no logger of ours or our libraries passes it.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
        _scrub,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if log_format == "json" else render_text
    formatter = _RenderOnce(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)] if console else []
    if log_file is not None:
        handlers.append(
            _RotatingFile(log_file, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8")
        )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
    # asyncssh logs every channel at INFO: useful when debugging, noise on every call.
    quiet = max(logging.WARNING, logging.getLevelName(level))
    logging.getLogger("asyncssh").setLevel(quiet)
    # HTTP clients log whole URLs at INFO, a URL may carry a secret (webhooks, CLI calls);
    # aiosqlite logs every statement with its parameters (phone numbers) at DEBUG.
    for name in ("httpx", "httpcore", "aiosqlite"):
        logging.getLogger(name).setLevel(quiet)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Drop lines below the level before any processor runs (the level check of the
        # standard library would only come after the whole chain).
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "callgate") -> Any:
    return structlog.stdlib.get_logger(name)


class LinesSoon:
    """Log lines written a turn or two of the event loop later, while the database or the PBX
    is answering the await that follows them, instead of before that await: their 40-70 µs
    each leave the call's critical path. `flush()` writes those still waiting at once; call it
    before a later line, so that the lines keep their order.

    ``turns=2`` is for an await whose request goes out from a task of its own (a bounded
    database step, `db.guard.bounded`): that task only starts at the next turn, so a line
    written then would still come before the request.
    """

    def __init__(self, turns: int = 1) -> None:
        self._pending: list[Callable[[], object]] = []
        self._turns = turns

    def add(self, write: Callable[..., object], event: str, **values: object) -> None:
        if not self._pending:
            self._after(self._turns)
        self._pending.append(functools.partial(write, event, **values))

    def _after(self, turns: int) -> None:
        loop = asyncio.get_running_loop()
        if turns > 1:
            loop.call_soon(self._after, turns - 1)
        else:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for line in pending:
            line()
