"""Logging: structlog over the standard library, to stdout and a rotating file.

One line per step of a call, as the legacy service wrote them (request, authorised, SSH, CLI done),
each with the request id, host, extension, masked phone and elapsed ms. Callers pass masked
values; the ``_scrub`` processor is the safety net that masks any secret-looking key anyway.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import logging.handlers
import re
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import structlog

from callgate.private_files import owner_only_opener
from callgate.redaction import mask_secret

_SECRET_KEYS = frozenset({"secret", "password", "clientid", "client_id", "authorization", "token"})


def _scrub(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.lower() in _SECRET_KEYS and isinstance(event[key], str):
            event[key] = mask_secret(event[key])
    return event


# What could end a line or rewrite one on a terminal: C0 and C1 controls, DEL, and Unicode's
# line and paragraph separators (str.splitlines breaks at them too).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Multi-line by design; they follow the record's own line.
_MULTILINE_KEYS = frozenset({"exception", "stack"})
# A value holding one of these is written as its repr by the console renderer, which escapes
# every control character itself (escaping it here too would double its backslashes).
_QUOTED_BY_RENDERER = frozenset(" \t=\r\n\"'")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _escape_controls(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Text lines: control characters in the event and in string values written as ``\\xNN``,
    so request data (a path with ``%0A``, a header) can never start a line of its own. The
    console renderer writes the event as it is, and other values as they are unless they
    hold a space, a quote, ``=`` or a line break (then as their repr)."""
    for key, value in event.items():
        if (
            isinstance(value, str)
            and key not in _MULTILINE_KEYS
            and _CONTROL.search(value)
            and (key == "event" or _QUOTED_BY_RENDERER.isdisjoint(value))
        ):
            event[key] = _CONTROL.sub(_escaped, value)
    return event


class _RenderOnce(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter, rendering each record once: the standard handlers would render
    it three times (stdout, the file, and the file's rollover check, which measures the line).
    What that saves a call: ``python -m bench.ablation --only full render-per-handler``."""

    def format(self, record: logging.LogRecord) -> str:
        line: str | None = getattr(record, "_callgate_line", None)
        if line is None:
            line = super().format(record)
            record._callgate_line = line  # a cache, read above
        return line


class _OwnerOnlyFileHandler(logging.handlers.RotatingFileHandler):
    """The rotating file, each one it creates (the first, and the new one at each rollover)
    readable by the owner only: request lines name enterprises and hosts."""

    def _open(self) -> Any:
        return open(
            self.baseFilename,
            self.mode,
            encoding=self.encoding,
            errors=self.errors,
            opener=owner_only_opener,
        )


def configure_logging(
    log_file: Path | None, log_format: str = "text", level: str = "INFO", *, console: bool = True
) -> None:
    """Route structlog and the standard library (uvicorn, asyncssh) through one formatter, to
    stdout (``console``) and ``log_file``."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
        _scrub,
    ]
    # Text: `time [level   ] event [logger] key=value …`, keys sorted; a value with a space, a
    # quote or a line break is quoted, so each record is one line (a traceback follows it).
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0)
    )
    formatter = _RenderOnce(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,  # plain tracebacks, in either format
            *([] if log_format == "json" else [_escape_controls]),  # JSON escapes them itself
            renderer,
        ],
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)] if console else []
    if log_file is not None:
        handlers.append(
            _OwnerOnlyFileHandler(
                log_file, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"
            )
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
    # aiosqlite logs every statement with its parameters (phone numbers) at DEBUG; websockets
    # (uvicorn's /v1/ws) logs each handshake's headers, `Authorization` included, at DEBUG.
    for name in ("httpx", "httpcore", "aiosqlite", "websockets"):
        logging.getLogger(name).setLevel(quiet)
    # uvicorn hands its own error logger to websockets: its DEBUG lines are those headers.
    logging.getLogger("uvicorn.error").setLevel(max(logging.INFO, logging.getLevelName(level)))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "callgate") -> Any:
    return structlog.stdlib.get_logger(name)


class LinesSoon:
    """Log lines written a turn or two of the event loop later, while the database or the PBX
    is answering the await that follows them, instead of before that await: the lines leave
    the call's critical path. `flush()` writes those still waiting at once; call it before a
    later line, so that the lines keep their order. What that saves a call:
    ``python -m bench.ablation --only full inline-lines``.

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
