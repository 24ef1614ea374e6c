"""The simulated console's link to the daemon: commands typed ahead go out together, as
asterisk.c's remote console sends each line without waiting for the answer before it."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from callgate.simulator.console import ConsoleScreen, DaemonLink

NOT_RUNNING = "Unable to connect to remote asterisk (does /var/run/asterisk/asterisk.ctl exist?)"
Serve = Callable[[socket.socket], None]


def _requests(conn: socket.socket, count: int) -> list[str]:
    """Read `count` `cx` requests; a client that waits for an answer first makes this time out."""
    reader = conn.makefile("rb")
    commands = []
    for _ in range(count):
        size = int(reader.readline().split()[1])
        commands.append(reader.read(size).decode())
    return commands


def _answer(conn: socket.socket, text: str, status: int = 0) -> None:
    data = text.encode()
    conn.sendall(b"%d %d\n" % (status, len(data)) + data)


@contextmanager
def _daemon(serve: Serve) -> Iterator[tuple[int, list[BaseException]]]:
    """A one-connection daemon on loopback that runs `serve`; its failures are reported."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(2)
            with conn:
                serve(conn)
        except BaseException as exc:  # reported to the test, which then fails
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], failures
    finally:
        thread.join(5)
        listener.close()


def test_typed_ahead_commands_are_sent_before_any_answer_is_read() -> None:
    """The daemon reads all three requests before it answers one; the answers keep the order."""
    seen: list[str] = []

    def serve(conn: socket.socket) -> None:
        seen.extend(_requests(conn, 3))
        for command in seen:
            _answer(conn, f"answer to {command}\n")

    with _daemon(serve) as (port, failures):
        link = DaemonLink("127.0.0.1", port, NOT_RUNNING)
        screen = ConsoleScreen("vm", 1)
        lines = ["channel originate x", "cgsync1", "core show channels concise", "exit", "never"]
        written = "".join(screen.respond(lines, link, link.send_ahead))
    assert failures == []
    assert seen == ["channel originate x", "cgsync1", "core show channels concise"]
    order = [written.index(f"answer to {c}") for c in seen]
    assert order == sorted(order)
    assert screen.exit_status == 0  # `exit` ended the console; `never` was never sent


def test_an_answer_lost_after_sending_is_not_running_and_never_sent_again() -> None:
    """The connection drops after the requests went out: the command may have run, so it is not
    repeated; the console reports Asterisk gone."""

    def serve(conn: socket.socket) -> None:
        _requests(conn, 2)
        _answer(conn, "")  # the first answer only, then the connection closes

    with _daemon(serve) as (port, failures):
        link = DaemonLink("127.0.0.1", port, NOT_RUNNING)
        link.send_ahead(["channel originate x", "cgsync1"])
        assert link("channel originate x") == ("", 0)
        assert link("cgsync1") == (NOT_RUNNING, 1)
    assert failures == []


def _out(conn: socket.socket, text: str) -> None:
    data = text.encode()
    conn.sendall(b"out %d\n" % len(data) + data)


def test_blocks_pushed_before_an_answer_are_shown_in_order() -> None:
    """`out` frames that come while an answer is awaited are shown, in order, before it."""
    shown: list[str] = []

    def serve(conn: socket.socket) -> None:
        _requests(conn, 1)
        _out(conn, "    -- Called 150@inoffice\n")
        _out(conn, "[Dec  6 13:56:17] NOTICE[1]: core_local.c:753 local_call: No such\n")
        _answer(conn, "Local/150@inoffice-00000000;1!…\n")

    with _daemon(serve) as (port, failures):
        link = DaemonLink("127.0.0.1", port, NOT_RUNNING, on_output=shown.append)
        assert link("core show channels concise") == ("Local/150@inoffice-00000000;1!…\n", 0)
    assert failures == []
    assert shown == [
        "    -- Called 150@inoffice\n",
        "[Dec  6 13:56:17] NOTICE[1]: core_local.c:753 local_call: No such\n",
    ]


def test_blocks_pushed_while_idle_are_read_by_poll() -> None:
    """While the console idles its socket becomes readable: poll() shows what came, including
    a block that arrived in the same read as the last answer (show_buffered())."""
    shown: list[str] = []
    idle = threading.Event()

    def serve(conn: socket.socket) -> None:
        _requests(conn, 1)
        data = b"0 0\n" + b"out 6\nafter\n"  # the answer and a block, in one write
        conn.sendall(data)
        idle.wait(5)
        _out(conn, "later\n")

    with _daemon(serve) as (port, failures):
        link = DaemonLink("127.0.0.1", port, NOT_RUNNING, on_output=shown.append)
        assert link("core set verbose 3") == ("", 0)
        link.show_buffered()
        assert shown == ["after\n"]
        idle.set()
        sock = link.fileno()
        assert sock is not None
        while len(shown) < 2 and select.select([sock], [], [], 5)[0] == [sock]:
            link.poll()
    assert failures == []
    assert shown == ["after\n", "later\n"]
