"""Read the recorded Asterisk 22.7 transcripts (recordings/asterisk) into (command, output, status).

They are the facts the parser and the simulator are built on, so a missing file fails the test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

TRANSCRIPTS = Path(__file__).resolve().parents[2] / "recordings" / "asterisk"
_BLOCK = re.compile(r"^\$ asterisk -rx \"([^\n]*)\"\n(.*?)^\[exit status (\d+)\]\n", re.M | re.S)
_SNAPSHOT = re.compile(
    r"^--- t=\+([0-9.]+)s: core show channels concise\n(.*?)(?=^---|\Z)", re.M | re.S
)


@dataclass(frozen=True)
class Exchange:
    command: str
    output: str
    exit_status: int


def read(name: str) -> str:
    path = TRANSCRIPTS / name
    if not path.is_file():
        raise FileNotFoundError(f"transcript missing: recordings/asterisk/{name}")
    return path.read_text(encoding="utf-8")


def exchanges(name: str = "real-asterisk-22.7.0-cli.txt") -> list[Exchange]:
    """Every `$ asterisk -rx "…"` block with its exact output and exit status."""
    return [
        Exchange(command, output, int(status))
        for command, output, status in _BLOCK.findall(read(name))
    ]


def snapshots(name: str) -> list[tuple[float, str]]:
    """The `core show channels concise` listings of a call-lifecycle transcript, by time."""
    result = []
    for at, body in _SNAPSHOT.findall(read(name)):
        listing = "" if body.strip() == "(empty)" else body
        result.append((float(at), listing.rstrip("\n") + ("\n" if listing.strip() else "")))
    return result
