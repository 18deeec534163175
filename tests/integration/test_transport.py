"""The SIP transport layer over real loopback sockets (UDP, TCP, IPv4 and IPv6)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from sessioncore.errors import SipParseError, TransportError
from sessioncore.sip.address import Address
from sessioncore.sip.headers import Via
from sessioncore.sip.transport import TransportManager, response_destination, stamp_received
from tests.integration.conftest import IPV6_SKIP

TIMEOUT = 2.0


def sip(n: int = 0, body: bytes = b"", method: str = "OPTIONS") -> bytes:
    """A small but complete SIP request; ``n`` tells messages apart."""
    head = (
        f"{method} sip:bob@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{n}\r\n"
        f"Call-ID: call-{n}\r\n"
        f"CSeq: {n + 1} {method}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Peer:
    """A TransportManager plus queues of what it received and what it reported."""

    def __init__(self, **kwargs: int | float) -> None:
        self.received: asyncio.Queue[tuple[bytes, Address, Address]] = asyncio.Queue()
        self.errors: asyncio.Queue[tuple[Address, Exception]] = asyncio.Queue()
        self.tm = TransportManager(
            lambda d, s, lo: self.received.put_nowait((d, s, lo)),
            lambda dest, exc: self.errors.put_nowait((dest, exc)),
            **kwargs,  # type: ignore[arg-type]
        )

    async def recv(self) -> tuple[bytes, Address, Address]:
        return await asyncio.wait_for(self.received.get(), TIMEOUT)

    async def error(self) -> tuple[Address, Exception]:
        return await asyncio.wait_for(self.errors.get(), TIMEOUT)


@pytest.fixture
async def make_peer() -> AsyncIterator[Callable[..., Peer]]:
    peers: list[Peer] = []

    def factory(**kwargs: int | float) -> Peer:
        p = Peer(**kwargs)
        peers.append(p)
        return p

    yield factory
    for p in peers:
        await p.tm.close()


needs_ipv6 = pytest.mark.skipif(IPV6_SKIP, reason="IPv6 loopback (::1) not usable")


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(cond: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# --- UDP -------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)])
async def test_udp_both_ways(make_peer: Callable[..., Peer], host: str) -> None:
    a, b = make_peer(), make_peer()
    la = await a.tm.listen("udp", host, 0)
    lb = await b.tm.listen("udp", host, 0)
    assert la.transport == "udp" and la.host == host and la.port != 0
    assert a.tm.local_address("udp") == la

    a.tm.send(sip(1), lb)
    data, source, local = await b.recv()
    assert data == sip(1)
    assert source == la  # sent from the listening socket: symmetric routing works
    assert local == lb

    b.tm.send(sip(2), source)
    data, source, local = await a.recv()
    assert (data, source, local) == (sip(2), lb, la)

    stats = a.tm.stats()
    assert stats["udp_messages_sent"] == 1 and stats["udp_messages_received"] == 1
    assert stats["udp_bytes_sent"] == len(sip(1))
    assert stats["udp_bytes_received"] == len(sip(2))


async def test_udp_family_selection(make_peer: Callable[..., Peer]) -> None:
    a = make_peer()
    await a.tm.listen("udp", "127.0.0.1", 0)
    assert a.tm.local_address("udp", socket.AF_INET6) is None
    with pytest.raises(TransportError, match="no IPv6 UDP socket"):
        a.tm.send(sip(), Address("udp", "::1", 5060))
    with pytest.raises(TransportError, match="not an IP address"):
        a.tm.send(sip(), Address("udp", "example.com", 5060))


async def test_udp_oversize_datagram_dropped(make_peer: Callable[..., Peer]) -> None:
    b = make_peer(max_message_size=1000)
    lb = await b.tm.listen("udp", "127.0.0.1", 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(sip(1, b"x" * 2000), (lb.host, lb.port))
        s.sendto(sip(2), (lb.host, lb.port))
    data, _, _ = await b.recv()
    assert data == sip(2)
    assert b.tm.stats()["udp_dropped"] == 1


async def test_send_oversize_raises(make_peer: Callable[..., Peer]) -> None:
    a = make_peer(max_message_size=1000)
    await a.tm.listen("udp", "127.0.0.1", 0)
    await a.tm.listen("tcp", "127.0.0.1", 0)
    big = sip(1, b"x" * 1000)
    for tp in ("udp", "tcp"):
        with pytest.raises(TransportError, match="larger than the 1000-byte limit"):
            a.tm.send(big, Address(tp, "127.0.0.1", 5060))


async def test_callback_exception_does_not_kill_receiving(make_peer: Callable[..., Peer]) -> None:
    got: list[bytes] = []

    def on_message(data: bytes, source: Address, local: Address) -> None:
        got.append(data)
        raise RuntimeError("boom")

    tm = TransportManager(on_message)
    try:
        lu = await tm.listen("udp", "127.0.0.1", 0)
        lt = await tm.listen("tcp", "127.0.0.1", 0)
        a = make_peer()
        await a.tm.listen("udp", "127.0.0.1", 0)
        a.tm.send(sip(1), lu)
        a.tm.send(sip(2), lu)
        a.tm.send(sip(3), lt)
        a.tm.send(sip(4), lt)
        await until(lambda: len(got) == 4)
        assert tm.stats()["tcp_connections_open"] == 1
        assert tm.stats()["errors"] == 4
    finally:
        await tm.close()


# --- TCP -------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)])
async def test_tcp_connection_reuse_both_directions(
    make_peer: Callable[..., Peer], host: str
) -> None:
    a, b = make_peer(), make_peer()
    la = await a.tm.listen("tcp", host, 0)
    lb = await b.tm.listen("tcp", host, 0)

    a.tm.send(sip(1), lb)
    a.tm.send(sip(2), lb)  # queued behind the connect, same connection
    data, source, local = await b.recv()
    assert data == sip(1)
    assert source.transport == "tcp" and source.host == host
    assert source.port != la.port  # the connection's ephemeral port
    assert local == lb
    data2, source2, _ = await b.recv()
    assert data2 == sip(2) and source2 == source

    # The reply to the accepted connection goes back on it (no new connection).
    b.tm.send(sip(3), source)
    data, src_a, local_a = await a.recv()
    assert data == sip(3)
    assert src_a == lb
    assert local_a == la  # an outgoing connection reports our listener as local

    a.tm.send(sip(4), lb)  # reuses the open connection
    data, source4, _ = await b.recv()
    assert data == sip(4) and source4 == source

    for peer in (a, b):
        stats = peer.tm.stats()
        assert stats["tcp_connections_open"] == 1
        assert stats["tcp_connections_opened"] == 1
    assert a.tm.stats()["tcp_messages_sent"] == 3
    assert b.tm.stats()["tcp_messages_received"] == 3


async def test_tcp_framing(make_peer: Callable[..., Peer]) -> None:
    b = make_peer()
    lb = await b.tm.listen("tcp", "127.0.0.1", 0)
    _reader, writer = await asyncio.open_connection(lb.host, lb.port)
    try:
        # several messages in one write, with a CRLF keep-alive in between
        writer.write(sip(1, b"v=0\r\n") + b"\r\n\r\n" + sip(2) + sip(3, b"abc"))
        await writer.drain()
        assert [(await b.recv())[0] for _ in range(3)] == [
            sip(1, b"v=0\r\n"),
            sip(2),
            sip(3, b"abc"),
        ]

        # one message split over several writes (inside the headers and inside the body)
        msg = sip(4, b"0123456789")
        for part in (msg[:10], msg[10:60], msg[60:-4], msg[-4:]):
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.02)
        data, source, _ = await b.recv()
        assert data == msg
        assert source.port == writer.get_extra_info("sockname")[1]
        assert b.received.empty()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_tcp_framing_error_closes_connection(make_peer: Callable[..., Peer]) -> None:
    b = make_peer()
    lb = await b.tm.listen("tcp", "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(lb.host, lb.port)
    try:
        writer.write(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: 1\r\n\r\n")  # no Content-Length
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # closed by b
        await until(lambda: b.tm.stats()["tcp_connections_open"] == 0)
        assert b.tm.stats()["tcp_errors"] == 1
        assert b.received.empty()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_tcp_connection_refused_reports_error(make_peer: Callable[..., Peer]) -> None:
    a = make_peer()
    await a.tm.listen("tcp", "127.0.0.1", 0)
    dest = Address("tcp", "127.0.0.1", free_tcp_port())
    a.tm.send(sip(1), dest)
    a.tm.send(sip(2), dest)  # queued on the same attempt: one report per destination
    where, exc = await a.error()
    assert where == dest
    assert isinstance(exc, TransportError) and "cannot connect" in str(exc)
    assert isinstance(exc.__cause__, OSError)
    await asyncio.sleep(0.05)
    assert a.errors.empty()
    assert a.tm.stats()["tcp_connections_pending"] == 0
    assert a.tm.stats()["errors"] == 1


async def test_large_request_switches_to_tcp(make_peer: Callable[..., Peer]) -> None:
    a, b = make_peer(), make_peer()
    await a.tm.listen("udp", "127.0.0.1", 0)
    lb = await b.tm.listen("udp", "127.0.0.1", 0)
    lbt = await b.tm.listen("tcp", "127.0.0.1", lb.port)  # same port number, as SIP expects
    big = sip(1, b"x" * 1500)

    assert not a.tm.should_use_tcp(len(big), lb)  # a has no TCP listener yet
    a.tm.send(big, lb, is_request=True)
    _, source, _ = await b.recv()
    assert source.transport == "udp"

    await a.tm.listen("tcp", "127.0.0.1", 0)
    assert a.tm.should_use_tcp(len(big), lb)
    assert not a.tm.should_use_tcp(1300, lb)
    assert not a.tm.should_use_tcp(len(big), lbt)  # already TCP
    a.tm.send(big, lb, is_request=True)
    data, source, local = await b.recv()
    assert data == big and source.transport == "tcp" and local == lbt

    a.tm.send(big, lb)  # responses are never switched
    _, source, _ = await b.recv()
    assert source.transport == "udp"


async def test_switched_request_failure_reports_original_dest(
    make_peer: Callable[..., Peer],
) -> None:
    a = make_peer()
    await a.tm.listen("udp", "127.0.0.1", 0)
    await a.tm.listen("tcp", "127.0.0.1", 0)
    dest = Address("udp", "127.0.0.1", free_tcp_port())
    a.tm.send(sip(1, b"x" * 1500), dest, is_request=True)
    where, exc = await a.error()
    assert where == dest and isinstance(exc, TransportError)


async def test_idle_connections_closed(make_peer: Callable[..., Peer]) -> None:
    a, b = make_peer(idle_timeout=0.2), make_peer()
    await a.tm.listen("tcp", "127.0.0.1", 0)
    lb = await b.tm.listen("tcp", "127.0.0.1", 0)
    a.tm.send(sip(1), lb)
    await b.recv()
    assert a.tm.stats()["tcp_connections_open"] == 1
    await until(lambda: a.tm.stats()["tcp_connections_open"] == 0, timeout=3)
    await until(lambda: b.tm.stats()["tcp_connections_open"] == 0)
    a.tm.send(sip(2), lb)  # a new connection is opened
    data, _, _ = await b.recv()
    assert data == sip(2)
    assert a.tm.stats()["tcp_connections_opened"] == 2


async def test_response_target_prefers_open_connection(make_peer: Callable[..., Peer]) -> None:
    a, b = make_peer(), make_peer()
    await a.tm.listen("tcp", "127.0.0.1", 0)
    lb = await b.tm.listen("tcp", "127.0.0.1", 0)
    a.tm.send(sip(1), lb)
    _, source, _ = await b.recv()
    via = f"SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK1;rport={source.port}"
    assert b.tm.response_target(via, source) == source
    await a.tm.close()
    await until(lambda: b.tm.stats()["tcp_connections_open"] == 0)
    assert b.tm.response_target(via, source) == Address("tcp", "127.0.0.1", 5099)


# --- lifecycle -------------------------------------------------------------------------------


async def test_close_is_idempotent_and_cleans_up() -> None:
    a = Peer()
    b = Peer()
    await a.tm.listen("udp", "127.0.0.1", 0)
    await a.tm.listen("tcp", "127.0.0.1", 0)
    lb = await b.tm.listen("tcp", "127.0.0.1", 0)
    a.tm.send(sip(1), lb)
    await b.recv()
    a.tm.send(sip(2), Address("tcp", "127.0.0.1", free_tcp_port()))  # a connect in progress
    assert a.tm.stats()["tcp_connections_pending"] == 1

    await a.tm.close()  # cancels the connect before it can fail
    await asyncio.gather(a.tm.close(), a.tm.close())
    assert a.tm.closed
    stats = a.tm.stats()
    assert stats["tcp_connections_open"] == 0 and stats["tcp_connections_pending"] == 0
    assert a.tm.local_address("udp") is None and a.tm.local_address("tcp") is None
    with pytest.raises(TransportError, match="closed"):
        a.tm.send(sip(3), lb)
    with pytest.raises(TransportError, match="closed"):
        await a.tm.listen("udp", "127.0.0.1", 0)
    assert a.errors.empty()  # shutdown is not a transport error

    await until(lambda: b.tm.stats()["tcp_connections_open"] == 0)
    await b.tm.close()
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []


async def test_listen_errors(make_peer: Callable[..., Peer]) -> None:
    a = make_peer()
    la = await a.tm.listen("udp", "127.0.0.1", 0)
    with pytest.raises(TransportError, match="cannot listen"):
        await a.tm.listen("udp", "127.0.0.1", la.port)
    with pytest.raises(TransportError, match="TLS"):
        await a.tm.listen("tls", "127.0.0.1", 0)
    with pytest.raises(TransportError, match="unknown transport"):
        await a.tm.listen("sctp", "127.0.0.1", 0)


# --- RFC 3261 §18.2 / RFC 3581 helpers -------------------------------------------------------

SRC = Address("udp", "192.0.2.7", 40001)


def test_stamp_received_same_ip_unchanged() -> None:
    via = "SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1"
    assert stamp_received(via, SRC) is via


def test_stamp_received_different_ip_or_name() -> None:
    via = "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1"
    assert stamp_received(via, SRC) == via + ";received=192.0.2.7"
    via = "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1"
    assert stamp_received(via, SRC) == via + ";received=192.0.2.7"


def test_stamp_received_rport() -> None:
    via = "SIP/2.0/UDP 192.0.2.7:5060;rport;branch=z9hG4bK1"
    out = stamp_received(via, SRC)
    assert out == "SIP/2.0/UDP 192.0.2.7:5060;rport=40001;branch=z9hG4bK1;received=192.0.2.7"
    parsed = Via.parse(out)
    assert parsed.params["rport"] == "40001" and parsed.branch == "z9hG4bK1"
    # an rport that already has a value is left alone
    via = "SIP/2.0/UDP 192.0.2.7:5060;rport=1234;branch=z9hG4bK1"
    assert stamp_received(via, SRC) is via


def test_stamp_received_replaces_existing_received_and_keeps_head() -> None:
    via = "SIP/2.0/udp  10.0.0.1:5060 ; received=1.2.3.4 ; branch=z9hG4bK1"
    assert (
        stamp_received(via, SRC) == "SIP/2.0/udp  10.0.0.1:5060;branch=z9hG4bK1;received=192.0.2.7"
    )


def test_stamp_received_ipv6() -> None:
    src6 = Address("udp", "2001:db8::9", 5062)
    same = "SIP/2.0/UDP [2001:db8:0::9]:5060;branch=z9hG4bK1"
    assert stamp_received(same, src6) is same  # same address, different spelling
    via = "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport"
    out = stamp_received(via, src6)
    assert out == "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport=5062;received=2001:db8::9"
    assert response_destination(out, "udp") == Address("udp", "2001:db8::9", 5062)


def test_stamp_received_bad_via() -> None:
    with pytest.raises(SipParseError):
        stamp_received("garbage", SRC)


@pytest.mark.parametrize(
    ("via", "transport", "expected"),
    [
        ("SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1", "udp", ("udp", "192.0.2.1", 5070)),
        ("SIP/2.0/UDP host.example.com;branch=z9hG4bK1", "udp", ("udp", "host.example.com", 5060)),
        ("SIP/2.0/TLS host.example.com;branch=z9hG4bK1", "tls", ("tls", "host.example.com", 5061)),
        (
            "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;received=192.0.2.7",
            "udp",
            ("udp", "192.0.2.7", 5070),
        ),
        (
            "SIP/2.0/UDP 10.0.0.1:5070;rport=40001;branch=z9hG4bK1;received=192.0.2.7",
            "udp",
            ("udp", "192.0.2.7", 40001),
        ),
        (
            "SIP/2.0/UDP 10.0.0.1;rport;branch=z9hG4bK1",  # rport not filled in: no port from it
            "udp",
            ("udp", "10.0.0.1", 5060),
        ),
        (  # over TCP rport names the peer's ephemeral port: a new connection uses sent-by
            "SIP/2.0/TCP 10.0.0.1:5070;rport=40001;branch=z9hG4bK1;received=192.0.2.7",
            "TCP",
            ("tcp", "192.0.2.7", 5070),
        ),
        (
            "SIP/2.0/UDP 10.0.0.1:5070;maddr=239.255.255.1;branch=z9hG4bK1",
            "udp",
            ("udp", "239.255.255.1", 5070),
        ),
        ("SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK1", "udp", ("udp", "2001:db8::1", 5060)),
        (
            "SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK1;received=[2001:db8::9];rport=6000",
            "udp",
            ("udp", "2001:db8::9", 6000),
        ),
    ],
)
def test_response_destination(via: str, transport: str, expected: tuple[str, str, int]) -> None:
    assert response_destination(via, transport) == Address(*expected)


def test_response_destination_bad_rport() -> None:
    with pytest.raises(SipParseError, match="rport"):
        response_destination("SIP/2.0/UDP 10.0.0.1;rport=99999;branch=z9hG4bK1", "udp")


async def test_crlf_keepalive_ping_and_pong() -> None:
    """RFC 5626 §3.5.1: our outbound connection pings with CRLFCRLF, the peer pongs CRLF."""
    got: list[bytes] = []
    a = TransportManager(lambda d, src, loc: got.append(d), keepalive_interval=0.1)
    b = TransportManager(lambda d, src, loc: got.append(d))
    try:
        await a.listen("tcp", "127.0.0.1", 0)
        bl = await b.listen("tcp", "127.0.0.1", 0)
        a.send(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n", bl)
        for _ in range(100):
            if a.stats()["tcp_keepalives"] >= 2 and b.stats()["tcp_keepalives"] >= 1:
                break
            await asyncio.sleep(0.05)
        assert a.stats()["tcp_keepalives"] >= 2  # pings sent
        assert b.stats()["tcp_keepalives"] >= 1  # pongs answered
        assert len(got) == 1  # pings and pongs are not messages
        assert a.stats()["tcp_connections_open"] == 1  # the connection stays up
    finally:
        await a.close()
        await b.close()
