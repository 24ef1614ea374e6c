"""The simulated remote console (``asterisk -r -q``): the bytes a real Asterisk 22.7 writes.

``ConsoleScreen`` is the one place that produces them, for both simulators: the bash program's
console client (``main()`` below, run once per console) and the in-process SSH server. The
reference is ``recordings/asterisk/remote-console-over-ssh-pty.txt``, whose bytes come from
``ast_el_read_char()`` in Asterisk's ``main/asterisk.c`` and editline, as seen through a pty:

* each line read from the terminal is echoed as ``<line>\\r\\n`` and the next prompt is shown;
* each block the console reads from Asterisk's socket (at most 511 bytes) is written over the
  prompt (``\\r\\x1b[0K``, unless the previous block ended mid-line), its ``\\n`` become
  ``\\r\\n`` (the pty's ONLCR), and when it ends a line editline redraws: ``\\r\\r\\n<prompt>``.
  ``core show channels concise`` writes one line at a time, so the prompt is redrawn between
  its lines; other answers arrive in one block, as the capture shows;
* what Asterisk writes to the console on its own (``pushed()``: verbose lines of every call at
  ``core set verbose 3``, log lines such as core_local.c's NOTICE at any verbosity, byte for
  byte as in ``recordings/asterisk/console-verbose-outcomes.repr.txt``) is a block like any
  other: it arrives while the console idles as well as while it waits for an answer.

``main()`` reads the terminal and the daemon's connection together (``select``): the daemon
answers each command on that connection and also writes ``out`` frames on it, the blocks
Asterisk writes to this console on its own, whenever they are due (see ``daemon``).

This file is also run as a script by ``python -I -S`` from the bash program: it must import
nothing but the standard library, and it gets the daemon's address and the not-running text
on its command line.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys
import tty
from collections import deque
from collections.abc import Callable, Iterator, Sequence

CLEAR_LINE = "\r\x1b[0K"  # written over the prompt before output arrives
REFRESH = "\r\r\n"  # editline's redraw after a block that ends a line, through ONLCR
RESET = "\x1b[0m"
READ_SIZE = 511  # EL_BUF_SIZE - 1: the console reads Asterisk's output in blocks this large
VERSION = "22.7.0"
DISCONNECTED = "\r\nDisconnected from Asterisk server\r\n"
GOODBYE = "Asterisk cleanly ending (0).\r\nExecuting last minute cleanups\r\n" + RESET
NEEDS_TERMINAL = "asterisk: the remote console (-r) is simulated on a terminal only (ssh -t)\n"
# A real console sends this on connect (unless -m): it is silent, and it tells us whether
# Asterisk is up before the banner is printed.
LOGGER_MUTE = "logger mute silent"
EXIT_WORDS = frozenset({"exit", "quit"})
# Answers that Asterisk writes one line per block (the capture shows the prompt redrawn).
LINE_BY_LINE = frozenset({"core show channels concise"})
_BANNER = (
    "Asterisk {version}, Copyright (C) 1999 - 2025, Sangoma Technologies Corporation and others."
    "\r\nCreated by Mark Spencer <markster@digium.com>\r\n"
    "Asterisk comes with ABSOLUTELY NO WARRANTY; type 'core show warranty' for details.\r\n"
    "This is free software, with components licensed under the GNU General Public\r\n"
    "License version 2 and other licenses; you are welcome to redistribute it under\r\n"
    "certain conditions. Type 'core show license' for details.\r\n" + "=" * 73 + "\r\n"
)

Ask = Callable[[str], tuple[str, int]]  # a command -> (what `-rx` prints, its exit status)


class ConsoleScreen:
    """What one remote console writes to its terminal, as text (ASCII in practice)."""

    def __init__(self, hostname: str, pid: int) -> None:
        self.hostname = hostname
        self.pid = pid
        self.prompt = f"{hostname}*CLI> "
        self.exit_status: int | None = None  # set once the console has ended
        # asterisk.c's `lastpos`: the last block ended mid-line, so the next one continues it
        # without clearing the line. It lasts until editline gets a key or redraws.
        self._mid_line = False

    def banner(self) -> str:
        return (
            RESET
            + _BANNER.format(version=VERSION)
            + RESET
            + RESET
            + f"Connected to Asterisk {VERSION} currently running on {self.hostname} "
            + f"(pid = {self.pid})\r\n"
            + self.prompt
        )

    def echo(self, lines: Sequence[str]) -> str:
        """Editline's echo of the lines typed; after `exit` no prompt comes back."""
        out = []
        for line in lines:
            self._mid_line = False
            out.append(line + "\r\n")
            if line.strip() in EXIT_WORDS:
                break
            out.append(self.prompt)
        return "".join(out)

    def output(self, command: str, text: str) -> str:
        """One command's answer (``text`` as ``asterisk -rx`` prints it) on the console."""
        writes = text.splitlines(keepends=True) if command in LINE_BY_LINE else [text]
        return "".join(self._write(write) for write in writes)

    def pushed(self, text: str) -> str:
        """A block Asterisk wrote to the console on its own (verbose or log lines)."""
        return self._write(text)

    def _write(self, write: str) -> str:
        """One write of Asterisk's, as the console reads it in blocks of at most 511 bytes."""
        out = []
        for start in range(0, len(write), READ_SIZE):
            block = write[start : start + READ_SIZE]
            if not self._mid_line:
                out.append(CLEAR_LINE)
            out.append(block.replace("\n", "\r\n"))
            # The condition in ast_el_read_char(): a short block whose last or next to last
            # byte is a newline makes editline redraw the prompt.
            if len(block) < READ_SIZE and "\n" in block[-2:]:
                out.append(REFRESH + self.prompt)
                self._mid_line = False
            else:
                self._mid_line = True
        return "".join(out)

    def respond(
        self,
        lines: Sequence[str],
        ask: Ask,
        send_ahead: Callable[[Sequence[str]], None] | None = None,
    ) -> Iterator[str]:
        """Echo ``lines`` at once (a console reads typed keys before Asterisk's output), then
        answer each. The echo is written before any command is sent, as the real one does;
        ``send_ahead`` gets every command up to an ``exit`` before the first answer is read."""
        if not lines:
            return
        yield self.echo(lines)
        if send_ahead is not None:
            commands = []
            for line in lines:
                if line.strip() in EXIT_WORDS:
                    break
                if line.strip():
                    commands.append(line)
            send_ahead(commands)
        for line in lines:
            word = line.strip()
            if word in EXIT_WORDS:
                self.exit_status = 0
                yield GOODBYE
                return
            if not word:
                continue  # an empty line is not sent
            output, status = ask(line)
            if status != 0:  # Asterisk went away: the console says so and ends
                self.exit_status = 1
                yield DISCONNECTED
                return
            yield self.output(line, output)


class LineReader:
    """Splits typed input into lines; editline ends a line at ``\\r`` or ``\\n``."""

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, text: str) -> list[str]:
        parts = (self._pending + text).replace("\r", "\n").split("\n")
        self._pending = parts.pop()
        return parts


class DaemonLink:
    """The console's connection to Asterisk: each command as the daemon's ``cx`` request over
    one kept connection, as a real console keeps its socket to Asterisk.

    Calling it asks one command (an ``Ask``); a lost connection is made again once per
    command. ``send_ahead`` sends several at once, answered in order by the calls that follow:
    what asterisk.c's remote console does with lines typed ahead, since it reads the terminal
    before the socket (``ast_el_read_char``) and sends each line as soon as editline returns
    it, without waiting for the answer to the one before.

    The daemon also writes ``out`` frames, blocks for the screen, at any time: ``on_output``
    gets each, while an answer is awaited as well as from ``poll()`` when the console idles.
    """

    def __init__(
        self,
        host: str,
        port: int,
        not_running: str,
        on_output: Callable[[str], None] | None = None,
    ) -> None:
        self._address = (host, port)
        self._not_running = not_running
        self._on_output = on_output
        self._sock: socket.socket | None = None
        self._frames = _Frames()
        self._sent: deque[str] = deque()  # sent ahead, answers not read yet

    def send_ahead(self, commands: Sequence[str]) -> None:
        requests = [_request(command) for command in commands]
        try:
            self._connected().sendall(b"".join(requests))
        except OSError:
            self._drop()  # each command is then asked on its own, reconnecting if need be
            return
        self._sent.extend(commands)

    def __call__(self, command: str) -> tuple[str, int]:
        if self._sent:
            if self._sent.popleft() == command:
                try:
                    return self._answer()
                except OSError:
                    self._drop()  # sent, maybe run: never sent again
                    return self._not_running, 1
            self._drop()  # out of order: answers no longer match commands
        for attempt in (1, 2):
            reused = self._sock is not None
            try:
                self._connected().sendall(_request(command))
                return self._answer()
            except OSError:
                self._drop()
                if not reused or attempt == 2:
                    break  # a fresh connection failed too: the daemon is gone
        return self._not_running, 1  # no daemon: Asterisk is down

    def fileno(self) -> int | None:
        """The connection's socket, to wait on while idle; None when not connected."""
        return None if self._sock is None else self._sock.fileno()

    def poll(self) -> None:
        """Read what the daemon wrote while the console idled (call when it is readable)."""
        if self._sock is None:
            return
        try:
            data = self._sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop()  # the daemon went away; the next command finds out how far
            return
        self._frames.feed(data)
        self.show_buffered()

    def show_buffered(self) -> None:
        """Show the ``out`` frames already read (they may have come with the last answer)."""
        try:
            while (frame := self._frames.next_output()) is not None:
                self._show(frame)
        except ConnectionError:
            self._drop()  # not the daemon's frames: start again on a new connection

    def _connected(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection(self._address, timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock, self._frames = sock, _Frames()
        return self._sock

    def _answer(self) -> tuple[str, int]:
        """The next answer; ``out`` frames before it are shown as they come."""
        while True:
            frame = self._frames.next_frame()
            if frame is None:
                self._receive()
            elif frame[0] == "out":
                self._show(frame[1])
            else:
                return frame[1], int(frame[0])

    def _receive(self) -> None:
        assert self._sock is not None  # a request went out on this connection
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionError("the daemon closed without answering")
        self._frames.feed(data)

    def _show(self, text: str) -> None:
        if self._on_output is not None:
            self._on_output(text)

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._frames = _Frames()
        self._sent.clear()


class _Frames:
    """The daemon's frames on a console connection, from the bytes read so far:
    ``<status> <m>\\n<m bytes>`` (an answer) and ``out <m>\\n<m bytes>`` (a block to show)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_output(self) -> str | None:
        """The next frame if it is a whole ``out`` frame (an answer stays for ``next_frame``)."""
        if not self._buffer.startswith(b"out "):
            return None
        frame = self.next_frame()
        return None if frame is None else frame[1]

    def next_frame(self) -> tuple[str, str] | None:
        """(``out`` or the exit status, text) of the next whole frame; None until one is."""
        end = self._buffer.find(b"\n", 0, 64)
        if end < 0:
            if len(self._buffer) >= 64:
                raise ConnectionError("the daemon sent a malformed frame")
            return None
        kind, _, size = self._buffer[:end].decode("ascii", "replace").partition(" ")
        if not ((kind == "out" or kind.isdigit()) and size.isdigit()):
            raise ConnectionError("the daemon sent a malformed frame")
        stop = end + 1 + int(size)
        if len(self._buffer) < stop:
            return None
        text = self._buffer[end + 1 : stop].decode("utf-8", "surrogateescape")
        del self._buffer[:stop]
        return kind, text


def split_first_line(text: str) -> tuple[str, str]:
    """``text``'s first line (with its newline) and the rest."""
    end = text.find("\n") + 1
    return (text[:end], text[end:]) if end else (text, "")


def _request(command: str) -> bytes:
    body = command.encode("utf-8", "surrogateescape")
    return b"cx %d\n" % len(body) + body


def _write(fd: int, text: str) -> None:
    data = text.encode("utf-8", "surrogateescape")
    while data:
        data = data[os.write(fd, data) :]


def main(argv: Sequence[str] | None = None) -> int:
    """Serve one console on this process's terminal until ``exit``, EOF or a hang-up."""
    parser = argparse.ArgumentParser(prog="asterisk -r")
    parser.add_argument("--daemon-host", required=True)
    parser.add_argument("--daemon-port", type=int, required=True)
    parser.add_argument("--not-running", required=True)
    args, _asterisk_options = parser.parse_known_args(argv)  # -r, -q: what was asked of us
    if not os.isatty(0):
        _write(2, NEEDS_TERMINAL)
        return 1
    # Raw terminal, as editline sets it: the tty must not echo (Asterisk echoes, and so do we)
    # nor turn our \r\n into \r\r\n (the screen's bytes already are what the pty shows).
    tty.setraw(0)
    screen = ConsoleScreen(socket.gethostname(), os.getpid())
    link = DaemonLink(
        args.daemon_host,
        args.daemon_port,
        args.not_running,
        on_output=lambda text: _write(1, screen.pushed(text)),
    )
    output, status = link(LOGGER_MUTE)
    if status != 0:
        _write(1, output)  # "Unable to connect to remote asterisk (…)", exit 1, as -rx does
        return 1
    try:
        _write(1, screen.banner())
        return _serve(screen, link)
    except OSError:  # the terminal was hung up (the SSH channel closed)
        return 0


def _serve(screen: ConsoleScreen, link: DaemonLink) -> int:
    """Answer typed lines and show what Asterisk writes on its own, until exit or EOF."""
    reader = LineReader()
    while True:
        link.show_buffered()
        sock = link.fileno()
        waited = [0] if sock is None else [0, sock]
        readable, _, _ = select.select(waited, [], [])
        if sock is not None and sock in readable:
            link.poll()
        if 0 not in readable:
            continue
        data = os.read(0, 65536)
        if not data:
            return 0
        lines = reader.feed(data.decode("utf-8", "surrogateescape"))
        for piece in screen.respond(lines, link, link.send_ahead):
            _write(1, piece)
        if screen.exit_status is not None:
            return screen.exit_status


if __name__ == "__main__":
    sys.exit(main())
