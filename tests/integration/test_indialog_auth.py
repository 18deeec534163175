"""A peer that challenges in-dialog requests (BYE, re-INVITE): we answer with credentials."""

from __future__ import annotations

import asyncio

from sessioncore import SessionManagerBuilder
from sessioncore.sip.auth import DigestServer
from sessioncore.sip.message import SipRequest, make_response, parse_message

SDP = (
    b"v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 7070 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class ChallengingPeer(asyncio.DatagramProtocol):
    """Answers the INVITE at once; challenges every later request once (401), then accepts."""

    def __init__(self) -> None:
        self.server = DigestServer("peer.test", {"alice": "pw"})
        self.transport: asyncio.DatagramTransport | None = None
        self.seen: list[tuple[str, bool]] = []  # (method, had credentials)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = parse_message(data)
        if not isinstance(msg, SipRequest) or msg.method == "ACK" or self.transport is None:
            return
        creds = msg.headers.get("Authorization")
        self.seen.append((msg.method, creds is not None))
        now = asyncio.get_running_loop().time() + 1e9  # any clock, used consistently
        port = self.transport.get_extra_info("sockname")[1]
        headers = [("Contact", f"<sip:peer@127.0.0.1:{port}>")]
        if msg.method == "INVITE" and msg.to.tag is None:
            resp = make_response(msg, 200, to_tag="peer", headers=headers, body=SDP)
            resp.headers.add("Content-Type", "application/sdp")
        elif creds is None or not self.server.verify(creds, msg.method, msg.uri, now).ok:
            resp = make_response(msg, 401, to_tag="peer")
            for value in self.server.challenge(now):
                resp.headers.add("WWW-Authenticate", value)
        else:
            resp = make_response(msg, 200, to_tag="peer", headers=headers)
            if msg.method == "INVITE":
                resp.body = SDP
                resp.headers.add("Content-Type", "application/sdp")
        self.transport.sendto(bytes(resp), addr)


async def test_bye_and_reinvite_are_retried_with_credentials() -> None:
    loop = asyncio.get_running_loop()
    peer = ChallengingPeer()
    await loop.create_datagram_endpoint(lambda: peer, local_addr=("127.0.0.1", 0))
    assert peer.transport is not None
    port = peer.transport.get_extra_info("sockname")[1]
    ua = await (
        SessionManagerBuilder()
        .with_local_bind_addr("127.0.0.1", 0)
        .with_account("sip:alice@127.0.0.1", "alice", "pw", register=False)
        .build()
    )
    try:
        s = await ua.make_call(f"sip:peer@127.0.0.1:{port}")
        await ua.wait_for_answer(s.id, timeout=5)
        await ua.hold_session(s.id)  # re-INVITE: 401, then again with credentials -> 200
        assert ua.get_session(s.id).state.name == "ON_HOLD"  # type: ignore[union-attr]
        await ua.terminate_session(s.id)  # BYE: 401, then again with credentials
        for _ in range(100):
            if peer.seen[-1:] == [("BYE", True)]:
                break
            await asyncio.sleep(0.02)
        # the re-INVITE was challenged and answered; the BYE then reused the realm's
        # credentials pre-emptively (no second challenge)
        assert peer.seen == [
            ("INVITE", False),
            ("INVITE", False),
            ("INVITE", True),
            ("BYE", True),
        ]
    finally:
        await ua.stop()
        peer.transport.close()
