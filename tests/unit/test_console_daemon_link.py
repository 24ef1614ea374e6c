"""The simulated console's link to the daemon: commands typed ahead go out together, as
asterisk.c's remote console sends each line without waiting for the answer before it."""

from __future__ import annotations

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
