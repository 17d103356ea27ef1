"""Webhook egress: which addresses are internal, and connections made only to vetted ones, over
real sockets on 127.0.0.1 (names resolved for real unless a test says otherwise)."""

from __future__ import annotations

import asyncio
import datetime
import re
import socket
import ssl
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from identity.webhooks import addresses
from identity.webhooks.egress import EgressRefused, Resolver, VettingBackend, resolve
from identity.webhooks.service import refusal
from identity.webhooks.transport import VettedTransport

INTERNAL = [
    "127.0.0.1",
    "::1",
    "::ffff:127.0.0.1",
    "10.0.0.1",
    "169.254.169.254",
    "fd00::1",
    "0.0.0.0",  # noqa: S104 - judged, not bound to
    "::",
    "224.0.0.1",
    "ff02::1",
    "100.64.0.1",
    "::ffff:10.0.0.1",
    "::7f00:1",
    "fec0::1",  # site-local (RFC 3879): deprecated, yet routed inside older networks
    # Numeric spellings the system resolver reads as IPv4 addresses (inet_aton's forms).
    "127.1",
    "0x7f.1",
    "0177.0.0.1",
    "0x7f000001",
    "2130706433",
    "2852039166",  # 169.254.169.254
    "10.1",
    "1",  # 0.0.0.1
    # Addresses a translator or relay carries on to an internal IPv4 address.
    "64:ff9b::7f00:1",  # NAT64, RFC 6052
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::808:808",  # local-use NAT64, RFC 8215: internal whatever it embeds
    "2002:a9fe:a9fe::1",  # 6to4, RFC 3056
    "2002:a00:1::",
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, RFC 4380: client 10.0.0.1
    "2001:0:a00:1:8000:63bf:f7f7:f7f7",  # Teredo: server 10.0.0.1
]
PUBLIC = [
    "93.184.216.34",
    "2606:2800:220:1::1",
    "::ffff:93.184.216.34",
    "8.8.8.8",
    "134744072",  # 8.8.8.8
    "0x8.0x8.0x8.0x8",
    "64:ff9b::808:808",
    "2002:808:808::1",
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo: server 65.54.227.120, client 8.8.8.8
]


@pytest.mark.parametrize("text", INTERNAL)
def test_internal_addresses_are_internal(text: str) -> None:
    assert addresses.is_internal(addresses.parse(text))


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_are_not(text: str) -> None:
    assert not addresses.is_internal(addresses.parse(text))


def test_an_ipv4_mapped_address_is_judged_as_its_ipv4_address() -> None:
    assert addresses.parse("::ffff:127.0.0.1").is_loopback


@pytest.mark.parametrize(
    "host",
    ["127.1", "0x7f.1", "0177.0.0.1", "0x7f000001", "2852039166", "10.1", "1", "134744072"],
)
async def test_numeric_spellings_are_read_as_the_system_resolver_reads_them(host: str) -> None:
    assert [str(addresses.parse(host))] == await resolve(host)


@pytest.mark.parametrize(
    "host",
    [
        "billing.example.com",
        "127.0.0.1.",  # the resolver looks a trailing dot up as a name
        "08.0.0.1",  # 8 is no octal digit
        "4294967296",  # 2**32
        "1.2.3.4.5",
    ],
)
def test_a_host_that_spells_no_address_is_not_parsed_as_one(host: str) -> None:
    with pytest.raises(ValueError, match="does not spell an IP address"):
        addresses.parse(host)


def url_to(address: str) -> str:
    return f"https://[{address}]/h" if ":" in address else f"https://{address}/h"


@pytest.mark.parametrize("text", INTERNAL)
def test_the_url_check_refuses_every_internal_address(text: str) -> None:
    problem = "The URL must not point at a private, loopback or link-local address."
    assert refusal(url_to(text), allow_http_loopback=True) == problem


@pytest.mark.parametrize("text", PUBLIC)
def test_the_url_check_allows_every_public_address(text: str) -> None:
    assert refusal(url_to(text), allow_http_loopback=False) is None


@pytest.mark.parametrize(
    "url",
    [
        # IDNA reads these dots as full stops (UTS #46): the client connects to the address.
        "https://127\u30020\u30020\u30021/h",
        "https://10\uff0e0\uff0e0\uff0e1/h",
        "https://169\uff61254\uff61169\uff61254/latest/meta-data",
        "https://localhost\u3002/h",
        "https://api.localhost\u3002/h",
    ],
)
def test_the_url_check_judges_the_host_the_client_will_connect_to(url: str) -> None:
    problem = "The URL must not point at a private, loopback or link-local address."
    assert refusal(url, allow_http_loopback=False) == problem


@pytest.mark.parametrize(
    "url",
    [
        "https://bill ing.example.com/h",
        "https://bill%69ng.example.com/h",
        # A zone names an interface of the sending machine, not a host; browsers refuse it
        # (WHATWG URL), and the client sends it percent-encoded, which no resolver reads.
        "https://[2606:4700:4700::1111%25eth0]/h",
        "https://[2606:4700:4700::1111%eth0]/h",
    ],
)
def test_the_url_check_refuses_a_host_that_could_never_be_reached(url: str) -> None:
    problem = "The URL's host is not a valid host name or IP address."
    assert refusal(url, allow_http_loopback=False) == problem


def test_http_to_a_translator_is_not_http_to_loopback() -> None:
    # The loopback a NAT64 translator would reach is its own, not the one the setting allows.
    url = "http://[64:ff9b::7f00:1]/h"
    assert refusal(url, allow_http_loopback=True) == "The URL must use https."


# --- connecting --------------------------------------------------------------------------------


@pytest.fixture
async def listener() -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that accepts and closes; yields its port."""

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def resolving_to(*found: str) -> Resolver:
    async def resolve(host: str) -> list[str]:
        return list(found)

    return resolve


# A trailing dot is the fully-qualified spelling of the same host: the URL check refuses it
# as loopback and url_key makes it one subscription, so the system resolver must find it too
# (its hosts file lookup matches "localhost" alone, and refused "localhost." as unknown).
@pytest.mark.parametrize("host", ["localhost", "localhost.", "LOCALHOST.", "127.0.0.1."])
async def test_localhost_is_refused_unless_loopback_is_allowed(listener: int, host: str) -> None:
    with pytest.raises(EgressRefused, match=rf"{host} resolves to (127\.0\.0\.1|::1)"):
        await VettingBackend(allow_loopback=False).connect_tcp(host, listener, timeout=5)

    stream = await VettingBackend(allow_loopback=True).connect_tcp(host, listener, timeout=5)
    assert stream.get_extra_info("server_addr") == ("127.0.0.1", listener)
    await stream.aclose()


@pytest.mark.parametrize(
    ("host", "address"),
    [("10.1", "10.0.0.1"), ("2852039166", "169.254.169.254"), ("0x7f.1", "127.0.0.1")],
)
async def test_numeric_spellings_are_refused_at_connection_as_what_they_resolve_to(
    host: str, address: str
) -> None:
    # The URL check refuses these hosts first; the connection refuses them on its own too.
    with pytest.raises(EgressRefused, match=re.escape(f"{host} resolves to {address}")):
        await VettingBackend(allow_loopback=False).connect_tcp(host, 443, timeout=5)


@pytest.mark.parametrize("address", ["64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:a00:1::"])
async def test_a_name_resolving_to_an_address_embedding_an_internal_one_is_refused(
    address: str,
) -> None:
    backend = VettingBackend(allow_loopback=True, resolver=resolving_to("93.184.216.34", address))
    with pytest.raises(EgressRefused, match=re.escape(f"translated.example resolves to {address}")):
        await backend.connect_tcp("translated.example", 443, timeout=5)


async def test_a_private_address_is_refused_even_with_loopback_allowed() -> None:
    backend = VettingBackend(allow_loopback=True, resolver=resolving_to("10.0.0.1"))
    with pytest.raises(EgressRefused, match=r"internal\.example resolves to 10\.0\.0\.1"):
        await backend.connect_tcp("internal.example", 443, timeout=5)


async def test_one_internal_address_among_public_ones_refuses_the_name() -> None:
    backend = VettingBackend(
        allow_loopback=False, resolver=resolving_to("93.184.216.34", "::ffff:169.254.169.254")
    )
    with pytest.raises(EgressRefused, match=r"resolves to 169\.254\.169\.254"):
        await backend.connect_tcp("rebound.example", 443, timeout=5)


async def test_the_connection_goes_to_the_next_address_when_one_does_not_answer(
    listener: int,
) -> None:
    # Nothing listens on ::1 at this port (nor may IPv6 be there at all).
    backend = VettingBackend(allow_loopback=True, resolver=resolving_to("::1", "127.0.0.1"))
    stream = await backend.connect_tcp("consumer.example", listener, timeout=5)
    assert stream.get_extra_info("server_addr") == ("127.0.0.1", listener)
    await stream.aclose()


async def test_resolving_counts_against_the_connect_timeout() -> None:
    async def never(host: str) -> list[str]:
        await asyncio.sleep(60)
        return []

    backend = VettingBackend(allow_loopback=False, resolver=never)
    with pytest.raises(httpcore.ConnectTimeout):
        await backend.connect_tcp("slow.example", 443, timeout=0.05)


async def test_hanging_look_ups_leave_the_shared_thread_pool_free(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A consumer whose DNS hangs must not hold the threads the database driver, signing keys
    and the mail outbox wait for (asyncio's default pool: at most 32)."""
    answer = threading.Event()

    def hanging(host: str, *args: Any, **kwargs: Any) -> Any:
        answer.wait(30)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 0))]

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    lookups = [asyncio.create_task(resolve("hangs.example")) for _ in range(40)]
    try:
        await asyncio.sleep(0.1)
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 2) == "free"
    finally:
        answer.set()
    assert await asyncio.gather(*lookups) == [["93.184.216.34"]] * 40


async def test_a_name_that_does_not_resolve_is_a_connect_error() -> None:
    with pytest.raises(httpcore.ConnectError, match=r"nothing\.invalid does not resolve"):
        await VettingBackend(allow_loopback=False).connect_tcp("nothing.invalid", 443, timeout=5)


# --- TLS through the transport -----------------------------------------------------------------


def write_localhost_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate naming DNS:localhost only, no IP address; (cert, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class HttpsReceiver:
    """An HTTPS server on 127.0.0.1 answering 204, noting the SNI name each client sends."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.server_names: list[str | None] = []
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_file, key_file)
        self.context.sni_callback = lambda _socket, name, _context: self.server_names.append(name)

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()


@pytest.fixture
async def https(tmp_path: Path) -> AsyncIterator[tuple[HttpsReceiver, int, ssl.SSLContext]]:
    cert_file, key_file = write_localhost_certificate(tmp_path)
    receiver = HttpsReceiver(cert_file, key_file)
    server = await asyncio.start_server(receiver.answer, "127.0.0.1", 0, ssl=receiver.context)
    async with server:
        trusting = ssl.create_default_context(cafile=cert_file)
        yield receiver, server.sockets[0].getsockname()[1], trusting


async def test_tls_checks_the_url_host_name_while_connecting_by_ip(
    https: tuple[HttpsReceiver, int, ssl.SSLContext],
) -> None:
    receiver, port, trusting = https
    transport = VettedTransport(allow_loopback=True, ssl_context=trusting)
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        response = await client.get(f"https://localhost:{port}/")
        assert response.status_code == 204
        assert receiver.server_names == ["localhost"]
        # The certificate names no IP address, so it would not pass for the one connected to.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"https://127.0.0.1:{port}/")


async def test_the_transport_reports_a_refusal_as_an_httpx_connect_error(
    https: tuple[HttpsReceiver, int, ssl.SSLContext],
) -> None:
    receiver, port, trusting = https
    transport = VettedTransport(allow_loopback=False, ssl_context=trusting)
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        with pytest.raises(httpx.ConnectError, match="Refused: localhost resolves to"):
            await client.get(f"https://localhost:{port}/")
    assert receiver.server_names == []


async def test_tls_checks_a_host_name_written_with_a_trailing_dot_as_the_name(
    https: tuple[HttpsReceiver, int, ssl.SSLContext],
) -> None:
    # "localhost." is "localhost" fully qualified, one host (and one subscription, url_key),
    # but no certificate names it with the dot, and SNI carries names without one (RFC 6066
    # §3): sent as written, every delivery to such a URL failed the certificate check.
    receiver, port, trusting = https
    transport = VettedTransport(allow_loopback=True, ssl_context=trusting)
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        response = await client.get(f"https://localhost.:{port}/")
        assert response.status_code == 204
        assert receiver.server_names == ["localhost"]
