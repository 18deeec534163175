"""The SIP TLS transport over real loopback sockets (RFC 3261 §26, RFC 5630).

Certificates come from :func:`tests.certs.make_test_pki` (generated with ``openssl`` per test
module, never stored in the repository).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from sessioncore.errors import TransportError
from sessioncore.sip.address import Address
from sessioncore.sip.transport import TransportManager, make_tls_contexts
from sessioncore.sip.transport import tls as tls_module
from tests.certs import TestPki, make_test_pki
from tests.integration.conftest import IPV6_SKIP

TIMEOUT = 3.0


def sip(n: int = 0, body: bytes = b"", method: str = "OPTIONS") -> bytes:
    """A small but complete SIP request; ``n`` tells messages apart."""
    head = (
        f"{method} sips:bob@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK{n}\r\n"
        f"Call-ID: call-{n}\r\n"
        f"CSeq: {n + 1} {method}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Peer:
    """A TransportManager plus queues of what it received and what it reported."""

    def __init__(
        self,
        server: ssl.SSLContext | None = None,
        client: ssl.SSLContext | None = None,
        **kwargs: float,
    ) -> None:
        self.received: asyncio.Queue[tuple[bytes, Address, Address]] = asyncio.Queue()
        self.errors: asyncio.Queue[tuple[Address, Exception]] = asyncio.Queue()
        self.tm = TransportManager(
            lambda d, s, lo: self.received.put_nowait((d, s, lo)),
            lambda dest, exc: self.errors.put_nowait((dest, exc)),
            tls_server_context=server,
            tls_client_context=client,
            **kwargs,  # type: ignore[arg-type]
        )

    async def recv(self) -> tuple[bytes, Address, Address]:
        return await asyncio.wait_for(self.received.get(), TIMEOUT)

    async def error(self) -> tuple[Address, Exception]:
        return await asyncio.wait_for(self.errors.get(), TIMEOUT)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def trusted(pki: TestPki) -> tuple[ssl.SSLContext | None, ssl.SSLContext]:
    """(server, client) contexts: our CA-signed certificate, trusting our CA."""
    return make_tls_contexts(certfile=pki.cert_file, keyfile=pki.key_file, cafile=pki.ca_file)


@pytest.fixture
def rogue(pki: TestPki) -> tuple[ssl.SSLContext | None, ssl.SSLContext]:
    """(server, client) contexts presenting the self-signed rogue certificate."""
    return make_tls_contexts(
        certfile=pki.rogue_cert_file, keyfile=pki.rogue_key_file, cafile=pki.ca_file
    )


@pytest.fixture
async def make_peer() -> AsyncIterator[Callable[..., Peer]]:
    peers: list[Peer] = []

    def factory(*args: ssl.SSLContext | None, **kwargs: float) -> Peer:
        p = Peer(*args, **kwargs)  # type: ignore[arg-type]
        peers.append(p)
        return p

    yield factory
    for p in peers:
        await p.tm.close()


async def until(cond: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- contexts ----------------------------------------------------------------------------------


def test_contexts_verify_by_default(pki: TestPki) -> None:
    server, client = make_tls_contexts(
        certfile=pki.cert_file, keyfile=pki.key_file, cafile=pki.ca_file
    )
    assert server is not None
    assert server.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert client.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    no_server, default_client = make_tls_contexts(certfile=None, keyfile=None, cafile=None)
    assert no_server is None
    assert default_client.verify_mode == ssl.CERT_REQUIRED and default_client.check_hostname


def test_contexts_verify_off_warns_once(
    pki: TestPki, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tls_module, "_warned_insecure", False)
    with caplog.at_level(logging.WARNING, logger="sessioncore.sip.transport"):
        for _ in range(2):
            _, client = make_tls_contexts(
                certfile=None, keyfile=None, cafile=pki.ca_file, verify=False
            )
            assert client.verify_mode == ssl.CERT_NONE and not client.check_hostname
    warnings = [r for r in caplog.records if "verification is OFF" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


def test_contexts_bad_files(pki: TestPki, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(TransportError, match=r"missing\.pem"):
        make_tls_contexts(certfile=missing, keyfile=None, cafile=None)
    with pytest.raises(TransportError, match="CA file"):
        make_tls_contexts(certfile=None, keyfile=None, cafile=missing)
    with pytest.raises(TransportError, match="key"):  # key does not match the certificate
        make_tls_contexts(certfile=pki.cert_file, keyfile=pki.rogue_key_file, cafile=None)


# --- listening -----------------------------------------------------------------------------


async def test_listen_tls_needs_a_certificate(make_peer: Callable[..., Peer]) -> None:
    a = make_peer()
    with pytest.raises(
        TransportError, match="TLS listening needs a certificate: configure tls_cert/tls_key"
    ):
        await a.tm.listen("tls", "127.0.0.1", 0)
    assert a.tm.local_address("tls") is None


async def test_local_address_per_transport(
    make_peer: Callable[..., Peer], trusted: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    a = make_peer(*trusted)
    lt = await a.tm.listen("tcp", "127.0.0.1", 0)
    ls = await a.tm.listen("tls", "127.0.0.1", 0)
    assert ls.transport == "tls" and lt.transport == "tcp" and ls.port != lt.port
    assert a.tm.local_address("tls") == ls
    assert a.tm.local_address("TLS", socket.AF_INET) == ls
    assert a.tm.local_address("tls", socket.AF_INET6) is None
    assert a.tm.local_address("tcp") == lt


# --- exchanging messages -------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        pytest.param("::1", marks=pytest.mark.skipif(IPV6_SKIP, reason="no IPv6 loopback")),
    ],
)
async def test_request_and_reply_over_one_connection(
    make_peer: Callable[..., Peer], trusted: tuple[ssl.SSLContext, ssl.SSLContext], host: str
) -> None:
    a, b = make_peer(*trusted), make_peer(*trusted)
    la = await a.tm.listen("tls", host, 0)
    lb = await b.tm.listen("tls", host, 0)

    a.tm.send(sip(1), lb)
    data, source, local = await b.recv()
    assert data == sip(1)
    assert local == lb
    assert source.transport == "tls" and source.host == host and source.port != la.port
    assert b.tm.response_target("SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK1", source) == source

    b.tm.send(sip(2), source)  # back over the accepted connection
    data, source_a, local_a = await a.recv()
    assert data == sip(2)
    assert source_a == lb and local_a == la

    a.tm.send(sip(3), lb)  # the outgoing connection is reused too
    assert (await b.recv())[1] == source
    for peer in (a, b):
        stats = peer.tm.stats()
        assert stats["tls_connections_open"] == 1
        assert stats["tls_connections_opened"] == 1
        assert stats["tcp_connections_opened"] == 0 and stats["tcp_messages_sent"] == 0
        assert stats["errors"] == 0
    assert a.tm.stats()["tls_messages_sent"] == 2
    assert a.tm.stats()["tls_messages_received"] == 1
    assert b.tm.stats()["tls_messages_received"] == 2
    assert b.tm.stats()["tls_bytes_sent"] == len(sip(2))


async def test_server_name_checked(
    make_peer: Callable[..., Peer], trusted: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    a, b = make_peer(*trusted), make_peer(*trusted)
    lb = await b.tm.listen("tls", "127.0.0.1", 0)
    a.tm.send(sip(1), lb, server_name="localhost")  # a DNS subjectAltName of the certificate
    assert (await b.recv())[0] == sip(1)

    c = make_peer(*trusted)
    c.tm.send(sip(2), lb, server_name="sip.example.com")
    dest, exc = await c.error()
    assert dest == lb and isinstance(exc, TransportError)
    assert isinstance(exc.__cause__, ssl.SSLCertVerificationError)
    assert "sip.example.com" in str(exc) or "mismatch" in str(exc)


async def test_framing_batched_and_split_writes(
    make_peer: Callable[..., Peer], trusted: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    a, b = make_peer(*trusted), make_peer(*trusted)
    lb = await b.tm.listen("tls", "127.0.0.1", 0)
    body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    batch = sip(1) + sip(2, body, "INVITE") + sip(3)
    a.tm.send(batch, lb)  # three messages in one write (one TLS record)
    got = [(await b.recv())[0] for _ in range(3)]
    assert got == [sip(1), sip(2, body, "INVITE"), sip(3)]

    whole = sip(4, body, "INVITE")
    cut = [whole[:7], whole[7:60], whole[60:-5], whole[-5:] + b"\r\n"]  # + keep-alive CRLF
    for piece in cut:
        a.tm.send(piece, lb)
        await asyncio.sleep(0.01)  # separate TLS records
    assert (await b.recv())[0] == whole
    a.tm.send(sip(5), lb)
    assert (await b.recv())[0] == sip(5)
    assert b.received.empty()
    assert b.tm.stats()["tls_connections_open"] == 1


# --- failures --------------------------------------------------------------------------------


async def test_untrusted_certificate_reported(
    make_peer: Callable[..., Peer],
    trusted: tuple[ssl.SSLContext, ssl.SSLContext],
    rogue: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    a, b = make_peer(*trusted), make_peer(*rogue)
    lb = await b.tm.listen("tls", "127.0.0.1", 0)
    a.tm.send(sip(1), lb)
    a.tm.send(sip(2), lb)  # queued on the same pending connect: one report per destination
    dest, exc = await a.error()
    assert dest == lb
    assert isinstance(exc, TransportError)
    assert isinstance(exc.__cause__, ssl.SSLCertVerificationError)
    text = str(exc)
    assert "TLS handshake" in text and "certificate" in text and str(lb) in text
    stats = a.tm.stats()
    assert stats["tls_connections_pending"] == 0 and stats["tls_connections_open"] == 0
    assert stats["errors"] == 1
    await asyncio.sleep(0.05)
    assert a.errors.empty() and b.received.empty()
    assert b.tm.stats()["tls_connections_open"] == 0


async def test_default_client_context_rejects_test_ca(
    make_peer: Callable[..., Peer], trusted: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    a = make_peer()  # no client context: system trust store, which does not know our CA
    b = make_peer(*trusted)
    lb = await b.tm.listen("tls", "127.0.0.1", 0)
    a.tm.send(sip(1), lb)
    _, exc = await a.error()
    assert isinstance(exc.__cause__, ssl.SSLCertVerificationError)
    assert "certificate" in str(exc)


async def test_verification_off_accepts_rogue_certificate(
    make_peer: Callable[..., Peer],
    pki: TestPki,
    rogue: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    _, insecure = make_tls_contexts(certfile=None, keyfile=None, cafile=None, verify=False)
    a, b = make_peer(None, insecure), make_peer(*rogue)
    lb = await b.tm.listen("tls", "127.0.0.1", 0)
    a.tm.send(sip(1), lb)
    data, source, _ = await b.recv()
    assert data == sip(1)
    b.tm.send(sip(2), source)
    assert (await a.recv())[0] == sip(2)
    assert a.errors.empty()


async def test_connection_refused_reported(
    make_peer: Callable[..., Peer], trusted: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    a = make_peer(*trusted)
    dest = Address("tls", "127.0.0.1", free_tcp_port())
    a.tm.send(sip(1), dest)
    got, exc = await a.error()
    assert got == dest and isinstance(exc, TransportError)
    assert "cannot connect" in str(exc)
    assert a.tm.stats()["tls_connections_pending"] == 0


async def test_plain_tcp_client_does_not_break_tls_listener(
    make_peer: Callable[..., Peer], trusted: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    b = make_peer(*trusted)
    lb = await b.tm.listen("tls", "127.0.0.1", 0)
    _, writer = await asyncio.open_connection("127.0.0.1", lb.port)
    writer.write(sip(1))  # plain text to a TLS port: the handshake fails on b's side
    await writer.drain()
    writer.close()
    a = make_peer(*trusted)
    a.tm.send(sip(2), lb)
    assert (await b.recv())[0] == sip(2)
    assert b.received.empty()


# --- lifecycle -------------------------------------------------------------------------------


async def test_close_is_idempotent_and_leaves_no_tasks(
    trusted: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    a, b = Peer(*trusted), Peer(*trusted)
    await a.tm.listen("tls", "127.0.0.1", 0)
    lb = await b.tm.listen("tls", "127.0.0.1", 0)
    a.tm.send(sip(1), lb)
    await b.recv()
    a.tm.send(sip(2), Address("tls", "127.0.0.1", free_tcp_port()))  # a connect in progress
    assert a.tm.stats()["tls_connections_pending"] == 1

    await a.tm.close()
    await asyncio.gather(a.tm.close(), a.tm.close())
    assert a.tm.closed
    stats = a.tm.stats()
    assert stats["tls_connections_open"] == 0 and stats["tls_connections_pending"] == 0
    assert a.tm.local_address("tls") is None
    with pytest.raises(TransportError, match="closed"):
        a.tm.send(sip(3), lb)
    with pytest.raises(TransportError, match="closed"):
        await a.tm.listen("tls", "127.0.0.1", 0)
    assert a.errors.empty()

    await until(lambda: b.tm.stats()["tls_connections_open"] == 0)
    await b.tm.close()
    await b.tm.close()
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []
