"""Files that hold secrets (the SQLite database, the log files): created readable by their
owner only, and a check for existing ones that others may read.

The SQLite database holds every enterprise's secret, the logs hold request details: created
``0600`` whatever the umask, and the service warns at start about one that is wider
(``callgate.wiring``), without changing an operator's file behind their back.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

OWNER_ONLY = 0o600


def owner_only_opener(path: str, flags: int) -> int:
    """An ``opener`` for `open`: a file it creates is ``0600`` (an existing one keeps its mode)."""
    return os.open(path, flags, OWNER_ONLY)


def create_owner_only(path: Path) -> None:
    """Create ``path`` empty and ``0600`` unless it exists (an existing file is left as it is)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY))


def wider_than_owner(path: Path) -> str | None:
    """``path``'s mode (``"0644"``) when its group or others have any access to it; None when
    only its owner has, or when it does not exist."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return f"{mode:04o}" if mode & (stat.S_IRWXG | stat.S_IRWXO) else None
