"""An endpoint answers every RFC 4475 torture message as the RFC says, and keeps serving.

Messages are sent over real UDP on 127.0.0.1 with their TEST-NET addresses rewritten to
127.0.0.x (see tests/rfc4475.py), to a coordinator whose handler rejects INVITEs with 486.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from sessioncore import RejectAllHandler, SessionManagerBuilder
from sessioncore.sip.message import SipResponse, parse_message
from tests.rfc4475 import EXPECTED, load


def _ident(data: bytes) -> tuple[bytes | None, bytes | None]:
    """(Call-ID, CSeq) lines of a raw message, to tell its responses from late retransmissions."""
    call_id = cseq = None
    head = data.split(b"\r\n\r\n", 1)[0]
    for fold in (b"\r\n ", b"\r\n\t"):
        head = head.replace(fold, b" ")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"call-id", b"i"):
            call_id = value.strip()
        elif name.strip().lower() == b"cseq":
            cseq = b" ".join(value.split())
    return call_id, cseq


async def _exchange(sock: socket.socket, data: bytes, dest: tuple[str, int]) -> list[SipResponse]:
    loop = asyncio.get_running_loop()
    want = _ident(data)
    sock.sendto(data, dest)
    out: list[SipResponse] = []
    deadline = loop.time() + 0.6
    while loop.time() < deadline:
        try:
            raw = sock.recv(65535)
        except BlockingIOError:
            await asyncio.sleep(0.01)
            continue
        msg = parse_message(raw, validate=False)
        assert isinstance(msg, SipResponse)
        got = _ident(raw)
        if (want[0] is not None and got[0] != want[0]) or got[1] != want[1]:
            continue  # a retransmission answering an earlier message
        out.append(msg)
        if msg.status >= 200:
            break
    return out


@pytest.fixture
async def endpoint():  # type: ignore[no-untyped-def]
    coord = await (
        SessionManagerBuilder()
        .with_local_address("sip:torture@127.0.0.1")
        .with_sip_port(0)
        .with_handler(RejectAllHandler(486))
        .build()
    )
    yield coord
    await coord.stop()


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_endpoint_answers_torture_message(endpoint, name: str) -> None:  # type: ignore[no-untyped-def]
    # A fresh endpoint per message: several messages share a branch, and to one endpoint the
    # second would rightly be a retransmission of the first.
    expected = EXPECTED[name][1]
    port = endpoint.dialogs.local_address("udp").port
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        responses = await _exchange(sock, load(name), ("127.0.0.1", port))
        finals = [r.status for r in responses if r.status >= 200]
        assert (finals[0] if finals else None) == expected
        if expected == 400:
            # a 400 made from a parse error says what was wrong
            assert responses[-1].headers.get("Warning")
        # and the endpoint still serves a plain OPTIONS afterwards
        ok = await _exchange(sock, load("lwsdisp"), ("127.0.0.1", port))
        assert ok and ok[-1].status == 200
    finally:
        sock.close()
    assert endpoint.get_stats()["active_sessions"] == 0


async def test_bext01_lists_unsupported(endpoint) -> None:  # type: ignore[no-untyped-def]
    port = endpoint.dialogs.local_address("udp").port
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        responses = await _exchange(sock, load("bext01"), ("127.0.0.1", port))
    finally:
        sock.close()
    final = responses[-1]
    assert final.status == 420
    unsupported = final.headers.get("Unsupported") or ""
    assert "nothingSupportsThis" in unsupported
