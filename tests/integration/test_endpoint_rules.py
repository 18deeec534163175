"""Endpoint rules of RFC 3261 §8.2 and §12, checked with raw SIP over loopback UDP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from sessioncore import CallDecision, SessionCoordinator, SessionManagerBuilder
from sessioncore.sip.message import SipResponse, parse_message
from tests.integration.conftest import RecordingHandler


def _request(
    method: str = "INVITE",
    *,
    port: int,
    branch: str = "z9hG4bK1",
    call_id: str = "rules-1",
    cseq: int = 1,
    to_tag: str | None = None,
    extra: str = "",
    max_forwards: int = 70,
) -> bytes:
    to = "<sip:bob@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:bob@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch={branch};rport\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        f"From: <sip:alice@127.0.0.1>;tag=a1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Contact: <sip:alice@127.0.0.1:9>\r\n"
        f"{extra}"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


class Peer:
    """A raw UDP socket that sends requests and collects the responses."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    async def send(self, data: bytes, wait: float = 0.4) -> list[SipResponse]:
        """Send ``data``; collect responses to it (not retransmissions answering others)."""
        branch = (
            data.split(b"branch=", 1)[1].split(b";", 1)[0].decode() if b"branch=" in data else ""
        )
        self.sock.sendto(data, ("127.0.0.1", self.port))
        loop = asyncio.get_running_loop()
        out: list[SipResponse] = []
        deadline = loop.time() + wait
        while loop.time() < deadline:
            try:
                msg = parse_message(self.sock.recv(65535))
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            assert isinstance(msg, SipResponse)
            if not branch or msg.branch == branch:
                out.append(msg)
        return out


@pytest.fixture
async def uas() -> AsyncIterator[tuple[SessionCoordinator, RecordingHandler, Peer]]:
    handler = RecordingHandler(decision=CallDecision.defer())
    coord = await (
        SessionManagerBuilder()
        .with_local_address("sip:bob@127.0.0.1")
        .with_sip_port(0)
        .with_handler(handler)
        .build()
    )
    peer = Peer(coord.dialogs.local_address("udp").port)
    try:
        yield coord, handler, peer
    finally:
        peer.sock.close()
        await coord.stop()


def _finals(responses: list[SipResponse]) -> list[int]:
    return [r.status for r in responses if r.status >= 200]


async def test_options_capabilities(uas) -> None:  # type: ignore[no-untyped-def]
    _, _, peer = uas
    res = await peer.send(_request("OPTIONS", port=peer.port))
    final = res[-1]
    assert final.status == 200
    for name in ("Allow", "Accept", "Supported"):
        assert final.headers.get(name) is not None, name
    assert "INVITE" in (final.headers.get("Allow") or "")


async def test_max_forwards_zero(uas) -> None:  # type: ignore[no-untyped-def]
    _, _, peer = uas
    assert _finals(await peer.send(_request(port=peer.port, max_forwards=0))) == [483]


async def test_unsupported_require(uas) -> None:  # type: ignore[no-untyped-def]
    _, _, peer = uas
    res = await peer.send(_request(port=peer.port, extra="Require: 100rel, foo\r\n"))
    assert _finals(res) == [420]
    assert "foo" in (res[-1].headers.get("Unsupported") or "")


async def test_unknown_method_and_unknown_dialog(uas) -> None:  # type: ignore[no-untyped-def]
    _, _, peer = uas
    res = await peer.send(_request("FOOBAR", port=peer.port, branch="z9hG4bKf"))
    assert _finals(res) == [501]
    assert res[-1].headers.get("Allow")
    bye = _request("BYE", port=peer.port, branch="z9hG4bKb", to_tag="nope")
    assert _finals(await peer.send(bye)) == [481]


async def test_merged_request_gets_482(uas) -> None:  # type: ignore[no-untyped-def]
    coord, handler, peer = uas
    first = await peer.send(_request(port=peer.port, branch="z9hG4bKm1", call_id="merge"))
    assert [r.status for r in first] == [100, 180]  # deferred: it rings
    # the same request forked back to us along another path (new branch)
    second = await peer.send(_request(port=peer.port, branch="z9hG4bKm2", call_id="merge"))
    assert _finals(second) == [482]
    assert len(handler.incoming) == 1
    # a retransmission of the first (same branch) is absorbed, not a new call
    again = await peer.send(_request(port=peer.port, branch="z9hG4bKm1", call_id="merge"))
    assert _finals(again) == [] and len(handler.incoming) == 1
    assert len(coord.list_active_sessions()) == 1


async def test_reinvite_overlap_gets_491(uas) -> None:  # type: ignore[no-untyped-def]
    coord, handler, peer = uas
    res = await peer.send(_request(port=peer.port, branch="z9hG4bKr1", call_id="ov"))
    assert res[-1].status == 180
    to_tag = res[-1].to.tag
    # a re-INVITE while the first INVITE is still ringing: 491 Request Pending
    re = await peer.send(
        _request(port=peer.port, branch="z9hG4bKr2", call_id="ov", cseq=2, to_tag=to_tag)
    )
    assert _finals(re) == [491]
    await coord.reject_incoming_call(handler.incoming[0].id, 486)


async def test_cancel_of_unknown_transaction(uas) -> None:  # type: ignore[no-untyped-def]
    _, _, peer = uas
    res = await peer.send(_request("CANCEL", port=peer.port, branch="z9hG4bKzzz"))
    assert _finals(res) == [481]


async def test_unsupported_body_type(uas) -> None:  # type: ignore[no-untyped-def]
    _, _, peer = uas
    req = _request(port=peer.port, branch="z9hG4bKct", extra="Content-Type: text/plain\r\n")
    req = req.replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: 5\r\n\r\nhello")
    res = await peer.send(req)
    assert _finals(res) == [415]
    assert res[-1].headers.get("Accept") == "application/sdp"


async def test_garbage_is_ignored_and_service_continues(uas) -> None:  # type: ignore[no-untyped-def]
    coord, _, peer = uas
    assert await peer.send(b"\x00\x01garbage\r\n\r\n", wait=0.2) == []
    assert await peer.send(b"SIP/2.0 200 OK\r\n\r\n", wait=0.2) == []  # stray response
    res = await peer.send(_request("OPTIONS", port=peer.port, branch="z9hG4bKafter"))
    assert _finals(res) == [200]
    assert coord.get_stats()["parse_errors"] >= 2
