"""Network failures on loopback: a port that refuses, and a server that never answers."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import socket
from types import TracebackType

# Sockets that keep refused ports reserved until the interpreter exits.
_RESERVED: list[socket.socket] = []


def refused_port() -> int:
    """A 127.0.0.1 port where a connection is refused at once (RST, ConnectionRefusedError).

    The port stays bound, without listen(), for the rest of the run: connections to it are still
    refused, but no sshd or Blackhole started later can be given the same port by the kernel.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _RESERVED.append(sock)
    port: int = sock.getsockname()[1]
    return port


@atexit.register
def _release_reserved() -> None:
    for sock in _RESERVED:
        sock.close()


class Blackhole:
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte.

    An SSH client connects, then waits for the server's version banner forever, so only its
    handshake timeout can end the attempt. Create with ``await Blackhole.start()`` or
    ``async with Blackhole() as hole``; :attr:`accepted` proves the TCP connect succeeded.
    """

    def __init__(self) -> None:
        """Create an unstarted blackhole; see :meth:`start`."""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.accepted = 0

    @classmethod
    async def start(cls, address: str = "127.0.0.1") -> Blackhole:
        """Listen on a free port of ``address`` (a loopback one: a second host, say)."""
        hole = cls()
        hole._server = await asyncio.start_server(hole._on_connect, address, 0)
        return hole

    def _on_connect(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Keep the writer so the connection stays open (and is closed by close()).
        self._writers.append(writer)
        self.accepted += 1

    @property
    def port(self) -> int:
        """The listening port."""
        if self._server is None:
            raise RuntimeError("Blackhole is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        """Stop listening and drop every accepted connection."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for writer in self._writers:
            writer.close()
        for writer in self._writers:
            with contextlib.suppress(OSError):  # the client may have reset the connection
                await writer.wait_closed()
        self._writers.clear()
        await server.wait_closed()

    async def __aenter__(self) -> Blackhole:
        if self._server is None:
            self._server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Relay:
    """A TCP relay on 127.0.0.1 in front of a server, to lose what the server says on the way.

    ``mute()`` stops forwarding the server's bytes on the live connections (the client's still
    go through: the server acts on them, the client hears nothing back); ``cut()`` then resets
    those connections on both sides. New connections are relayed as usual. Use as
    ``async with Relay(port) as relay`` and connect to :attr:`port`.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._muted: set[asyncio.StreamWriter] = set()  # clients that hear nothing any more
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("Relay is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def mute(self) -> None:
        """From now on, what the server writes on the live connections is dropped."""
        self._muted.update(client for client, _ in self._links)

    def cut(self) -> None:
        """Reset the live connections, both sides at once."""
        links, self._links = self._links, []
        for client, upstream in links:
            client.transport.abort()
            upstream.transport.abort()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, upstream = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._links.append((writer, upstream))
        back = asyncio.create_task(self._pump(up_reader, writer, writer))
        self._tasks.add(back)
        back.add_done_callback(self._tasks.discard)
        await self._pump(reader, upstream, writer)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, client: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await source.read(65536):
                if sink is client and client in self._muted:
                    continue  # lost on the way
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.transport.abort()

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
