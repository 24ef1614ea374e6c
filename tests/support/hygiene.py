"""Leak hygiene: no secret, password or full phone number a test used may show up in clear.

Fixtures record every such value they hand to the service (``record``) and every log file a
service writes (``record_log_file``). ``tests/conftest.py`` scans each test's captured
stdout/stderr/log sections as its reports arrive, and the log files at session end; any hit
fails the run. A finding names the place and the kind of value, never the value itself: the
report must not become the leak.

Scanning reports as they arrive sees the same values as a scan at session end would: a value
is recorded by the fixture that makes it, before any output can contain it; and it keeps no
test output in memory.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["secret", "ssh_password", "db_password", "phone"]

# Stack.call()'s default number (tests/support/stack.py): used by most integration tests.
STACK_PHONE = "+375296254070"
# Shorter values would match unrelated text by chance (counters, ports, timestamps); every
# value our fixtures generate is longer. A phone counts by its digits (7: the shortest
# international number the allow-list accepts).
MIN_SECRET_LENGTH = 8
MIN_PHONE_DIGITS = 7
ROTATED_LOGS = 5  # RotatingFileHandler's backupCount in callgate.logs


@dataclass(frozen=True, order=True)
class Finding:
    """One place where a recorded value appeared in clear."""

    where: str
    kind: str

    def __str__(self) -> str:
        return f"{self.where}: a {self.kind} in clear (value not shown)"


class Registry:
    """The recorded values and log files of one test session, and the findings so far."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # stacks also run in worker threads (schemathesis)
        self._needles: dict[str, Kind] = {}
        self._log_files: set[Path] = set()
        self._pattern: re.Pattern[str] | None = None
        self._findings: set[Finding] = set()

    def record(self, kind: Kind, value: str | None) -> None:
        """Remember a value that must never appear in clear (too short ones are ignored)."""
        if not value:
            return
        needles = [value]
        if kind == "phone":
            digits = "".join(c for c in value if c.isdigit())
            # Without its `+` (URL-encoded as %2B, in CSV cells): the digits are the leak.
            needles = [digits] if len(digits) >= MIN_PHONE_DIGITS else []
        elif len(value) < MIN_SECRET_LENGTH:
            needles = []
        with self._lock:
            for needle in needles:
                self._needles.setdefault(needle, kind)
            self._pattern = None

    def record_log_file(self, path: Path | None) -> None:
        """Remember a log file a service writes (it is scanned at session end, if it exists)."""
        if path is not None:
            with self._lock:
                self._log_files.add(Path(path))

    def record_stack(self, secret: str, log_file: Path | None) -> None:
        """What a call stack uses: its enterprise secret, its log file and its phone number."""
        self.record("secret", secret)
        self.record("phone", STACK_PHONE)
        self.record_log_file(log_file)

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._needles:
                # Longest first, so that a value containing another is reported as itself.
                ordered = sorted(self._needles, key=len, reverse=True)
                self._pattern = re.compile("|".join(map(re.escape, ordered)))
            return self._pattern

    def scan_text(self, text: str, where: str) -> list[Finding]:
        """Findings in ``text``: one per kind, at the first line where that kind appears."""
        pattern = self._compiled()
        if pattern is None:
            return []
        first: dict[Kind, int] = {}
        for match in pattern.finditer(text):
            kind = self._needles[match.group()]
            first.setdefault(kind, text.count("\n", 0, match.start()) + 1)
        return [Finding(f"{where}, line {line}", kind) for kind, line in first.items()]

    def scan_sections(self, test_id: str, sections: Iterable[tuple[str, str]]) -> list[Finding]:
        """Scan pytest's captured sections of a test ("Captured stdout call", ...)."""
        found = [
            finding
            for title, content in sections
            for finding in self.scan_text(content, f"{test_id} [{title}]")
        ]
        with self._lock:
            self._findings.update(found)
        return found

    def scan_log_files(self) -> list[Finding]:
        """Scan every recorded log file and its rotated predecessors (``.1`` .. ``.5``)."""
        found: list[Finding] = []
        with self._lock:
            files = sorted(self._log_files)
        for path in files:
            rotated = [path.with_name(f"{path.name}.{n}") for n in range(1, ROTATED_LOGS + 1)]
            for candidate in (path, *rotated):
                if candidate.is_file():
                    text = candidate.read_text(encoding="utf-8", errors="replace")
                    found += self.scan_text(text, str(candidate))
        with self._lock:
            self._findings.update(found)
        return found

    def findings(self) -> list[Finding]:
        """Everything found so far, sorted."""
        with self._lock:
            return sorted(self._findings)


# The session's registry: fixtures record into it, the conftest hooks scan with it.
REGISTRY = Registry()


def record(kind: Kind, value: str | None) -> None:
    """Record into the session's registry (see Registry.record)."""
    REGISTRY.record(kind, value)
