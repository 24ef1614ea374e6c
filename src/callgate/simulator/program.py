"""``install_program()``: an ``asterisk`` executable that forwards ``-rx`` to the daemon.

It is a bash script, not Python: a host runs one ``asterisk -rx`` per command, and a Python
start would cost tens of milliseconds where the real program costs about 4 ms. bash opens
the daemon's socket itself (``/dev/tcp``), so a call starts no other process.

``asterisk -r`` (the persistent remote console) starts once per console, not per command, so
there the script runs ``simulator/console.py`` with Python, isolated (``-I -S``: no site, no
environment, stdlib only, about 10 ms). It needs a terminal, as callgate always asks for one.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

from callgate.simulator import console
from callgate.simulator.clitext import NOT_RUNNING
from callgate.simulator.daemon import HOST

_SCRIPT = r"""#!/bin/bash
# asterisk: callgate's simulated `asterisk -rx "<command>"` (written by callgate.simulator).
# It sends the command to the simulator daemon on @HOST@:@PORT@ and prints its answer.
LC_ALL=C  # ${#command} below must count bytes, and reads must not decode anything
not_running='@NOT_RUNNING@'

if [[ $# -eq 2 && $1 == -rx ]]; then
    command=$2
elif [[ $# -ge 1 && $1 =~ ^-r[qv]*$ ]]; then
    # The persistent remote console: a Python client (console.py) on this terminal, asking
    # the daemon the way -rx does. exec: the console is this one process, as Asterisk's is.
    if [[ ! -t 0 ]]; then
        printf '%s' '@NEEDS_TERMINAL@' >&2
        exit 1
    fi
    exec '@PYTHON@' -I -S '@CONSOLE@' "$@" --daemon-host @HOST@ --daemon-port @PORT@ \
        --not-running "$not_running"
else
    printf 'Usage: asterisk -rx "<command>"  (callgate simulator: nothing else is served)\n' >&2
    exit 1
fi

# Asterisk down (daemon gone, or switched to "not running"): the real message, no newline.
if ! { exec 3<>"/dev/tcp/@HOST@/@PORT@"; } 2>/dev/null; then
    printf '%s' "$not_running"
    exit 1
fi
printf 'rx %d\n%s' "${#command}" "$command" >&3
if ! IFS= read -r -u 3 status || [[ ! $status =~ ^[0-9]+$ ]]; then
    printf '%s' "$not_running"  # the daemon closed without answering: as if Asterisk died
    exit 1
fi
# The rest is the output, up to the daemon's close, printed as it came. `read -N` ignores
# delimiters (every newline is kept) and reads a socket in blocks, unlike `read -d ''` that
# reads it byte by byte; it stops at EOF, so the loop only repeats for outputs over 16 MiB.
while IFS= read -r -N 16777216 -u 3 chunk; do
    printf '%s' "$chunk"
done
printf '%s' "$chunk"
exit "$status"
"""


def program_text(port: int, python: str | None = None, console_path: Path | None = None) -> str:
    """The script for a daemon listening on ``port``; the console runs ``python``."""
    if not 0 < port < 65536:
        raise ValueError(f"not a TCP port: {port}")
    python = python or console_interpreter()
    script = str(console_path or Path(console.__file__).resolve())
    for value in (NOT_RUNNING, console.NEEDS_TERMINAL, python, script):
        if "'" in value:
            raise ValueError(f"cannot put {value!r} between single quotes")
    return (
        _SCRIPT.replace("@HOST@", HOST)
        .replace("@PORT@", str(port))
        .replace("@NOT_RUNNING@", NOT_RUNNING)
        .replace("@NEEDS_TERMINAL@", console.NEEDS_TERMINAL)
        .replace("@PYTHON@", python)
        .replace("@CONSOLE@", script)
    )


def console_interpreter() -> str:
    """The venv's Python (``sys.executable``) if the host's user may run it, else the system's.

    sshd runs the program as another user; a venv whose interpreter lives under a private
    home (pyenv in /root, mode 0700) cannot be run by that user. console.py needs only the
    standard library, so any Python 3 does.
    """
    system = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    for candidate in (sys.executable, system):
        if candidate and _others_can_run(Path(candidate)):
            return candidate
    return sys.executable


def _others_can_run(path: Path) -> bool:
    """Whether a user other than the owner can reach and execute ``path`` (and its target)."""
    try:
        real = path.resolve(strict=True)
        dirs = {*path.absolute().parents, *real.parents}
        return bool(real.stat().st_mode & stat.S_IXOTH) and all(
            d.stat().st_mode & stat.S_IXOTH for d in dirs
        )
    except OSError:
        return False


def install_program(bin_dir: Path, port: int) -> Path:
    """Write ``<bin_dir>/asterisk`` (mode 0755) for the daemon on ``port``; return its path.

    The file is replaced atomically, so a program running while the port changes sees either
    the old script or the new one, never half of one.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "asterisk"
    partial = bin_dir / f".asterisk.{os.getpid()}.tmp"
    partial.write_text(program_text(port), encoding="utf-8")
    partial.chmod(0o755)  # others (the sshd's test user) must read and run it
    partial.replace(path)
    return path
