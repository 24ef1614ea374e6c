"""A real OpenSSH ``sshd`` on 127.0.0.1 for the integration tests.

Each :class:`SshdServer` has its own temporary directory (config, host key, authorized_keys,
``sshd.log``, ``bin/``) and port, and lets in only the unprivileged system user ``callgate-sim``
with this session's random password or client key (:func:`sim_user_session`). Needs root.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.support.hygiene import record
from tests.support.services import missing

SSHD = Path("/usr/sbin/sshd")
SIM_USER = "callgate-sim"
READY_TIMEOUT = 10.0
_STATE_DIR = Path("/run/callgate-sim")  # root-only, shared by concurrent sessions


@dataclass(frozen=True)
class SimUser:
    """The account that tests log in as, with its credentials for this session."""

    name: str
    password: str
    client_key_path: Path  # private key, root-only; every SshdServer authorizes its public half
    client_public_key: str


def require_sshd() -> None:
    """Skip (or fail, under CALLGATE_REQUIRE_SERVICES=1) if a real sshd cannot run here."""
    if not SSHD.is_file():
        missing("sshd", f"{SSHD} is not installed (apt-get install openssh-server)")
    if os.geteuid() != 0:
        missing("sshd", f"root is needed to create {SIM_USER} and to run sshd")


def _run(*argv: str, stdin: str | None = None) -> None:
    """Run a setup command; raise with its stderr (never its stdin: a password) if it fails."""
    done = subprocess.run(argv, input=stdin, text=True, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}")


def _keygen(path: Path, comment: str) -> str:
    """Make a passphrase-less ed25519 key pair at ``path``; return the public key line."""
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))
    return path.with_name(path.name + ".pub").read_text().strip()


def _try_exclusive(lock: IO[str]) -> bool:
    """Take ``lock`` exclusively if no other session holds it; never waits."""
    with contextlib.suppress(BlockingIOError):
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    return False


@contextlib.contextmanager
def sim_user_session() -> Iterator[SimUser]:
    """Provide ``callgate-sim`` with a fresh random password and client key for one session.

    Engineers run pytest on this machine concurrently, and a second ``chpasswd`` would break the
    first session's logins. So running sessions share a lock on ``holders.lock``: the first one
    in sets a new password, later ones reuse it (root-only file), the last one out locks it.
    Every step on ``holders.lock`` happens under ``mutex.lock``, so none can interleave.
    """
    _STATE_DIR.mkdir(mode=0o700, exist_ok=True)  # root-only: it holds the password
    password_file = _STATE_DIR / "password"
    key_dir = Path(tempfile.mkdtemp(prefix="callgate-sim-key-"))  # 0700: only root reads the key
    mutex, holders = (_STATE_DIR / "mutex.lock").open("a"), (_STATE_DIR / "holders.lock").open("a")
    with mutex, holders:  # closing the files releases the locks
        try:
            fcntl.flock(mutex, fcntl.LOCK_EX)
            if SIM_USER not in {entry.pw_name for entry in pwd.getpwall()}:
                _run("useradd", "--system", "--create-home", "--shell", "/bin/bash", SIM_USER)
            if _try_exclusive(holders):  # no other session runs: a new password
                password = secrets.token_urlsafe(24)
                _run("chpasswd", stdin=f"{SIM_USER}:{password}\n")  # stdin: argv shows in ps
                password_file.write_text(password)
            else:
                password = password_file.read_text()
            record("ssh_password", password)  # leak hygiene: see tests/support/hygiene.py
            fcntl.flock(holders, fcntl.LOCK_SH)
            fcntl.flock(mutex, fcntl.LOCK_UN)
            public_key = _keygen(key_dir / "client_key", "callgate-sim-client")
            yield SimUser(SIM_USER, password, key_dir / "client_key", public_key)
        finally:
            fcntl.flock(mutex, fcntl.LOCK_EX)
            if _try_exclusive(holders):  # the last session out leaves no usable password
                password_file.unlink(missing_ok=True)
                subprocess.run(["usermod", "--lock", SIM_USER], capture_output=True, check=False)
            shutil.rmtree(key_dir, ignore_errors=True)


def _free_port() -> int:
    """A port that was free a moment ago (sshd must bind it itself, so it cannot be held)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, parents first, from the ppid field in /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):  # it may exit as we read
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # comm may hold ") "
            children.setdefault(ppid, []).append(int(stat.parent.name))
    tree = [root]
    for pid in tree:  # grows while iterating: breadth-first
        tree.extend(children.get(pid, []))
    return tree


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its parent has finished)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pids: list[int], within: float = 5.0) -> None:
    """Wait until none of ``pids`` runs any more (bounded: a stuck one is left to the caller)."""
    deadline = time.monotonic() + within
    while any(map(_running, pids)) and time.monotonic() < deadline:
        time.sleep(0.01)


class SshdServer:
    """One ``sshd -D -e`` on 127.0.0.1 with its own directory, port, host key and log."""

    host = "127.0.0.1"

    def __init__(self, user: SimUser, port: int | None = None) -> None:
        """Prepare directory, keys and config (~10 ms); :meth:`start` runs sshd."""
        self.username, self.password = user.name, user.password
        self.client_key_path = user.client_key_path
        self.port = port or _free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        # mkdtemp, not pytest's tmp_path: that is 0700, and sshd's child, running as the user,
        # must read authorized_keys and run programs from bin/.
        self.dir = Path(tempfile.mkdtemp(prefix="callgate-sshd-"))
        try:
            self.dir.chmod(0o755)
            self.bin_dir, self.log_path = self.dir / "bin", self.dir / "sshd.log"
            self.bin_dir.mkdir()
            self.bin_dir.chmod(0o755)  # explicit: mkdir's mode is cut by the umask
            self._host_key, self._config = self.dir / "host_key", self.dir / "sshd_config"
            _keygen(self._host_key, "")
            (authorized := self.dir / "authorized_keys").write_text(user.client_public_key + "\n")
            authorized.chmod(0o644)  # the user's sshd child reads it, whatever the umask
            self._write_config()
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _write_config(self) -> None:
        # PATH: sshd sets its default (/usr/local/bin:/usr/bin:/bin:/usr/games on Debian) and
        # applies SetEnv after it, so SetEnv wins; `bash -c` then reads no profile that could
        # reset it (Debian's ~/.bashrc returns at once when not interactive). Checked with `env`.
        self._config.write_text(
            f"Port {self.port}\n"
            f"ListenAddress {self.host}\n"  # 127.0.0.1; a subclass may take another
            f"HostKey {self._host_key}\n"
            f"PidFile {self.dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\n"
            "PasswordAuthentication yes\n"
            "KbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\n"
            "UsePAM no\n"  # password login against /etc/shadow works here without PAM
            "PermitRootLogin no\n"
            f"AllowUsers {self.username}\n"
            "StrictModes no\n"  # the files belong to root, not to the user
            "MaxSessions 10\n"  # OpenSSH's default, explicit because tests count on it
            "MaxStartups 100:30:200\n"  # parallel handshakes must not be dropped at random
            "LogLevel VERBOSE\n"  # logs Accepted/Failed/Postponed for each method
            f"SetEnv PATH={self.bin_dir}:/usr/local/bin:/usr/bin:/bin\n"
        )

    @property
    def host_public_key(self) -> str:
        """The current host key as an OpenSSH public key line (``ssh-ed25519 AAAA...``)."""
        return self._host_key.with_name("host_key.pub").read_text().strip()

    @property
    def running(self) -> bool:
        """Whether the listening sshd process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Run sshd and wait until it accepts connections; on failure raise with the log."""
        if self.running:
            return
        # sshd's privilege separation refuses to run without this root-owned directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # a umask only removes bits: fine
        # The log is shared by every start of this server: only what this start writes counts.
        offset = len(self.read_log())  # in read_log's units: it turns sshd's \r\n into \n
        listening = f"Server listening on {self.host} port {self.port}."
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self._config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # Ctrl-C on pytest must not reach sshd before teardown
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                raise RuntimeError(f"sshd exited during start-up; log:\n{self.read_log()[-2000:]}")
            # A connect alone could reach another process on this port (the clash test does
            # that), so it counts only once this sshd has logged that it listens.
            if listening in self.read_log()[offset:]:
                with contextlib.suppress(OSError), socket.create_connection((self.host, self.port)):
                    return
            time.sleep(0.01)
        self.kill()
        raise RuntimeError(f"sshd not ready in {READY_TIMEOUT}s; log:\n{self.read_log()[-2000:]}")

    def process_ids(self) -> list[int]:
        """The listener and all its children (connections, user commands), listener first."""
        return _process_tree(self._proc.pid) if self._proc and self.running else []

    def stop(self) -> None:
        """Stop sshd with SIGTERM (a clean exit) and kill its open connections."""
        self._halt(signal.SIGTERM)

    def kill(self) -> None:
        """Kill sshd and its open connections with SIGKILL, like a crashing host."""
        self._halt(signal.SIGKILL)

    def _halt(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            # Connection processes call setsid(), so a process-group kill would miss them, and
            # they outlive the listener. Freeze the tree (SIGSTOP, repeated until no new process
            # appears) so nothing forks while we collect it, then kill all but the listener.
            frozen: list[int] = []
            while new := [pid for pid in _process_tree(proc.pid) if pid not in frozen]:
                for pid in new:
                    with contextlib.suppress(ProcessLookupError):  # it may have just exited
                        os.kill(pid, signal.SIGSTOP)
                frozen += new
            for pid in frozen[1:]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.send_signal(sig)
            proc.send_signal(signal.SIGCONT)  # a stopped process acts on SIGTERM only now
            _wait_gone(frozen[1:])  # SIGKILL is delivered at once, but dying takes a moment
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        proc.kill()  # a no-op once it has exited and been reaped
        proc.wait()

    def restart(self) -> None:
        """Stop and start again: same port, same host key, same log (appended)."""
        self.stop()
        self.start()

    def replace_host_key(self) -> None:
        """Give the server a new host key and restart it (for "host key changed" tests)."""
        self.stop()
        for path in (self._host_key, self._host_key.with_name("host_key.pub")):
            path.unlink(missing_ok=True)  # ssh-keygen would ask before overwriting
        _keygen(self._host_key, "")
        self.start()

    def add_program(self, name: str, script: str) -> Path:
        """Put an executable script in :attr:`bin_dir`, first on the user's PATH."""
        path = self.bin_dir / name
        path.write_text(script)
        path.chmod(0o755)
        return path

    def read_log(self) -> str:
        """sshd's log so far (all starts of this server), with sshd's CRLF line ends as LF."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def count_log(self, needle: str) -> int:
        """How many log lines contain ``needle`` (e.g. "Accepted password")."""
        return sum(needle in line for line in self.read_log().splitlines())

    def close(self) -> None:
        """Kill sshd and remove the directory; the server cannot be used again."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SshdServer:
        try:
            self.start()
        except BaseException:
            self.close()  # __exit__ does not run when __enter__ raises
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
