"""A switchable TCP proxy on 127.0.0.1 in front of PostgreSQL, for database fault tests.

    proxy = await DbProxy.start(5432)   # forwards 127.0.0.1:proxy.port -> 127.0.0.1:5432
    await proxy.down()                  # listener closed, live connections dropped: refused
    await proxy.blackhole()             # connects accepted, no byte forwarded either way
    await proxy.up()                    # forwarding again, on the same port

The port stays reserved while the proxy is down (a bound, never-listening socket shares it
through SO_REUSEPORT), so connections are refused rather than reaching whoever got the port.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Literal

from sqlalchemy.engine import make_url

HOST = "127.0.0.1"
CHUNK = 65536
Mode = Literal["up", "down", "blackhole"]


class _Link:
    """One client connection and (unless blackholed from the start) its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.black = False  # True: whatever arrives from either side is swallowed

    def abort(self) -> None:
        """Drop both sides at once, without a polite close: the peers see a reset."""
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class DbProxy:
    """See the module docstring. Create with ``await DbProxy.start(target_port)``."""

    def __init__(self, target_port: int, target_host: str = HOST) -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = "up"
        self.accepted = 0  # connections accepted in any mode
        self._reserve = socket.socket()
        self._reserve.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._reserve.bind((HOST, 0))
        self.port: int = self._reserve.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(cls, target_port: int, target_host: str = HOST) -> DbProxy:
        proxy = cls(target_port, target_host)
        await proxy._listen()
        return proxy

    def url(self, database_url: str, password: str | None = None) -> str:
        """``database_url`` pointed at the proxy (and given ``password``, if any)."""
        url = make_url(database_url).set(host=HOST, port=self.port)
        if password is not None:
            url = url.set(password=password)
        return url.render_as_string(hide_password=False)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, HOST, self.port, reuse_port=True
            )

    async def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    def _drop_links(self) -> None:
        for link in list(self._links):
            link.abort()
        self._links.clear()

    async def down(self) -> None:
        """Refuse new connections and drop the live ones (a stopped or unreachable server)."""
        self.mode = "down"
        self._drop_links()
        await self._unlisten()

    async def blackhole(self) -> None:
        """Accept connections but forward nothing, for new and live ones (a hung network)."""
        self.mode = "blackhole"
        for link in self._links:
            link.black = True
        await self._listen()

    async def up(self) -> None:
        """Forward again. Blackholed connections are dropped: their protocol state is lost."""
        self.mode = "up"
        for link in [link for link in self._links if link.black]:
            link.abort()
            self._links.discard(link)
        await self._listen()

    async def close(self) -> None:
        """Stop everything and release the port."""
        await self.down()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._reserve.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(writer)
        self._links.add(link)
        if self.mode == "blackhole":
            link.black = True
            await self._pump(reader, link, None)  # swallow until the client gives up
            return
        try:
            up_reader, link.upstream = await asyncio.open_connection(*self.target)
        except OSError:
            link.abort()
            self._links.discard(link)
            return
        back = asyncio.create_task(self._pump(up_reader, link, writer))
        self._tasks.add(back)
        back.add_done_callback(self._tasks.discard)
        await self._pump(reader, link, link.upstream)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        link: _Link,
        sink: asyncio.StreamWriter | None,
    ) -> None:
        """Copy ``source`` to ``sink`` until EOF; once the link is black, discard instead."""
        try:
            while data := await source.read(CHUNK):
                if link.black or sink is None:
                    continue
                sink.write(data)
                await sink.drain()
        except OSError:
            pass  # a dropped link: both sides are torn down below
        finally:
            if not link.black:  # a black link stays open: only up(), down() or close() end it
                link.abort()
                self._links.discard(link)

    async def __aenter__(self) -> DbProxy:
        await self._listen()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()
