"""The deliveries' HTTP client: httpcore's connection pool, connecting only where a webhook may.

An endpoint's URL names a host its enterprise chose; left alone, a delivery could lead into the
service's own network. The URL is checked when the endpoint is added (`webhooks.check_target`),
and again at every connection the pool makes: ``Guarded`` resolves the host itself, refuses
it when any of its addresses is private, loopback or link-local (unless the operator allows
those), and connects to an address it checked. A name that answers with another address a
moment after a check (DNS rebinding) thus cannot lead past it; TLS still checks the
certificate against the host's name. A kept connection serves the endpoint's later requests,
and the name is resolved again only for a new one.

httpcore rather than the httpx client built on it: its network backend is the seam for such a
check, and its request gives what a delivery reads (status, headers, body) at less CPU per
request (`python -m bench.events`).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore

from callgate import __version__
from callgate.calls.webhooks import TargetRefused, allowed_addresses

KEEP_ALIVE = 5.0  # seconds an idle connection is kept for the endpoint's next request
# Bytes of an answer read at most: a delivery looks only at RetailCRM's short JSON, and a
# receiver must not make the service hold more.
MAX_ANSWER = 64 * 1024

# What a request can fail with short of an answer, besides a timeout and a refused target.
FAILURES = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ConnectionNotAvailable,
)


class Guarded(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, asked to connect only to the addresses `allowed_addresses`
    gives for the host (see the module docstring); anything goes with ``allow_private``."""

    def __init__(
        self, allow_private: bool, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self._allow_private = allow_private
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self._allow_private:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        failure: Exception | None = None
        for address in await allowed_addresses(host, port):
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # the host's next address, as a browser would
        assert failure is not None  # allowed_addresses gives one at least
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("a webhook goes over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class DeliveryFailed(Exception):
    """A request that got no answer: timed out, or the connection failed (its kind)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A receiver's answer: its status, headers (names in lower case) and at most
    ``MAX_ANSWER`` bytes of its body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class DeliveryClient:
    """A pool of connections per receiver (scheme, host and port), at most ``connections``
    each; a request takes at most ``timeout`` seconds from its start to the answer's end,
    whatever the receiver does (a slow drip of bytes included).

    A pool per receiver rather than one for all: httpcore's pool looks over each of its
    connections at every request (idle, expired, readable), and an endpoint is sent to one
    request at a time, so its own pool holds one connection, two at most
    (`python -m bench.events`). A pool whose connections have all closed is forgotten.
    """

    def __init__(
        self,
        *,
        timeout: float,
        connections: int,
        allow_private: bool,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._timeout = timeout
        self._connections = connections
        self._backend = Guarded(allow_private)
        # One for every pool (loading the CA bundle is slow); certificates are checked against
        # the URL's host name, whichever checked address the connection went to.
        self._ssl = ssl_context or httpcore.default_ssl_context()
        self._pools: dict[str, httpcore.AsyncConnectionPool] = {}

    def _pool(self, url: str) -> httpcore.AsyncConnectionPool:
        parts = urlsplit(url)
        receiver = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        pool = self._pools.get(receiver)
        if pool is None:
            for name in [n for n, p in self._pools.items() if not p.connections]:
                del self._pools[name]  # nothing open, nothing under way: nothing to close
            pool = self._pools[receiver] = httpcore.AsyncConnectionPool(
                ssl_context=self._ssl,
                max_connections=self._connections,
                keepalive_expiry=KEEP_ALIVE,
                network_backend=self._backend,
            )
        return pool

    async def post(self, url: str, body: bytes, headers: Sequence[tuple[str, str]]) -> Answer:
        """POST ``body``; the answer. Raises TargetRefused or DeliveryFailed; a redirect is an
        answer like any other, never followed (it could lead past the check)."""
        sent = [("user-agent", f"callgate/{__version__}"), *headers]
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._pool(url).stream("POST", url, headers=sent, content=body) as response,
            ):
                read = b""
                async for chunk in response.aiter_stream():
                    read += chunk
                    if len(read) >= MAX_ANSWER:  # the rest is not read: the connection closes
                        break
        except (TimeoutError, httpcore.TimeoutException):
            raise DeliveryFailed("timed out") from None
        except FAILURES as exc:
            raise DeliveryFailed(type(exc).__name__) from None
        found = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in response.headers
        }
        return Answer(response.status, found, read[:MAX_ANSWER])

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()
