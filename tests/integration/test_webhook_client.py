"""The deliveries' HTTP client against receivers on 127.0.0.1 that misbehave: one that drips
its answer a byte at a time is cut off at the request's timeout, whatever each byte's pace;
one that answers without end is read no further than `MAX_ANSWER`; a redirect is an answer,
never followed. Over TLS, the certificate is checked against the URL's host name."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from callgate.calls import webhook_http
from callgate.calls.webhook_http import MAX_ANSWER, DeliveryClient, DeliveryFailed

Answering = Callable[[asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def receiver(answer: Answering) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A receiver that reads each request's head and body, then answers with ``answer``."""
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            heads.append(head)
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            await answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook", heads
    finally:
        server.close()


def client(timeout: float = 5.0) -> DeliveryClient:
    return DeliveryClient(timeout=timeout, connections=2, allow_private=True)


async def test_a_dripping_answer_is_cut_off_at_the_timeout() -> None:
    async def drip(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
        for _ in range(100):  # each byte well within any per-read timeout
            writer.write(b".")
            await writer.drain()
            await asyncio.sleep(0.05)

    sending = client(timeout=0.5)
    async with receiver(drip) as (url, _):
        started = time.monotonic()
        with pytest.raises(DeliveryFailed, match="timed out"):
            await sending.post(url, b"{}", [("content-type", "application/json")])
        took = time.monotonic() - started
    await sending.aclose()
    assert 0.4 < took < 2.0  # the whole request's bound, not 100 bytes x 0.05 s


async def test_an_endless_answer_is_read_no_further_than_the_bound() -> None:
    async def flood(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 50000000\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(50000000 // len(chunk)):
            writer.write(chunk)
            await writer.drain()

    sending = client()
    async with receiver(flood) as (url, _):
        answer = await sending.post(url, b"{}", [])
    await sending.aclose()
    assert answer.status == 200 and len(answer.body) == MAX_ANSWER


async def test_a_redirect_is_not_followed() -> None:
    async def redirect(writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:9/inside\r\n"
            b"retry-after: 7\r\ncontent-length: 0\r\n\r\n"
        )
        await writer.drain()

    sending = client()
    async with receiver(redirect) as (url, heads):
        answer = await sending.post(url, b"{}", [("webhook-id", "evt_1")])
    await sending.aclose()
    assert answer.status == 307 and answer.headers["retry-after"] == "7"
    assert len(heads) == 1  # one request: the redirect's target was never asked
    assert b"webhook-id: evt_1" in heads[0] and b"user-agent: callgate/" in heads[0].lower()


async def test_a_receiver_whose_connections_closed_is_forgotten() -> None:
    async def closing(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
        await writer.drain()

    sending = client()
    async with receiver(closing) as (first, _), receiver(closing) as (second, _):
        assert (await sending.post(first, b"{}", [])).status == 204
        assert list(sending._pools) == [first.removesuffix("/hook")]
        assert (await sending.post(second, b"{}", [])).status == 204
        # The first receiver's pool held nothing any more: the new one took its place.
        assert list(sending._pools) == [second.removesuffix("/hook")]
    await sending.aclose()


def certificate(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A receiver's TLS context with a new self-signed certificate for ``name``, and a client
    context that trusts that certificate alone."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


@asynccontextmanager
async def tls_receiver(context: ssl.SSLContext) -> AsyncIterator[int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_tls_checks_the_certificate_against_the_urls_host_name(tmp_path: Path) -> None:
    server, trusted = certificate(tmp_path, "localhost")
    sending = DeliveryClient(timeout=5, connections=2, allow_private=True, ssl_context=trusted)
    async with tls_receiver(server) as port:
        answer = await sending.post(f"https://localhost:{port}/hook", b"{}", [])
        assert answer.status == 204
        # The same receiver under another name: its certificate does not name it.
        with pytest.raises(DeliveryFailed, match="ConnectError"):
            await sending.post(f"https://127.0.0.1:{port}/hook", b"{}", [])
    await sending.aclose()


async def test_a_checked_address_is_reached_and_verified_by_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With private targets refused: the connection goes to the address the check gave, and
    TLS checks the certificate against the URL's name, not that address."""
    server, trusted = certificate(tmp_path, "hooks.example")
    asked: list[str] = []

    async def checked(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]  # as if the name resolved to a public address (a test's stand-in)

    monkeypatch.setattr(webhook_http, "allowed_addresses", checked)
    sending = DeliveryClient(timeout=5, connections=2, allow_private=False, ssl_context=trusted)
    async with tls_receiver(server) as port:
        answer = await sending.post(f"https://hooks.example:{port}/hook", b"{}", [])
    await sending.aclose()
    assert answer.status == 204 and asked == ["hooks.example"]
