"""Digest authentication of incoming INVITEs (server side) against our own client side."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sessioncore import CallFailed, SessionManagerBuilder
from sessioncore.sip.message import SipResponse, parse_message
from tests.integration.conftest import RecordingHandler, settle


async def _uas(handler: RecordingHandler):  # type: ignore[no-untyped-def]
    return await (
        SessionManagerBuilder()
        .with_local_address("sip:bob@127.0.0.1")
        .with_local_bind_addr("127.0.0.1", 0)
        .with_inbound_auth("sessioncore.test", {"alice": "s3cret", "carol": "other"})
        .with_handler(handler)
        .build()
    )


async def _uac(password: str, handler: RecordingHandler):  # type: ignore[no-untyped-def]
    return await (
        SessionManagerBuilder()
        .with_local_bind_addr("127.0.0.1", 0)
        .with_account("sip:alice@127.0.0.1", "alice", password, register=False)
        .with_handler(handler)
        .build()
    )


async def test_challenged_then_answered() -> None:
    uas_h, uac_h = RecordingHandler(), RecordingHandler()
    uas = await _uas(uas_h)
    uac = await _uac("s3cret", uac_h)
    try:
        port = uas.dialogs.local_address("udp").port
        s = await uac.make_call(f"sip:bob@127.0.0.1:{port}")
        await uac.wait_for_answer(s.id, timeout=5)
        auth = uas_h.incoming[0].headers.get("Authorization", "")
        assert auth.startswith("Digest ") and 'username="alice"' in auth
        await uac.terminate_session(s.id)  # the BYE is not challenged (only INVITEs are)
        await settle(uac, uas)
        # a second call reuses the realm's credentials pre-emptively: no 401 round trip
        before = uas.get_stats()["messages_sent"]
        s2 = await uac.make_call(f"sip:bob@127.0.0.1:{port}")
        await uac.wait_for_answer(s2.id, timeout=5)
        assert uas.get_stats()["messages_sent"] - before == 2  # 100 Trying + 200 OK only
        await uac.terminate_session(s2.id)
        await settle(uac, uas)
    finally:
        await uac.stop()
        await uas.stop()


async def test_wrong_password_fails_with_401_and_no_retry_storm() -> None:
    uas_h, uac_h = RecordingHandler(), RecordingHandler()
    uas = await _uas(uas_h)
    uac = await _uac("wrong", uac_h)
    try:
        port = uas.dialogs.local_address("udp").port
        s = await uac.make_call(f"sip:bob@127.0.0.1:{port}")
        with pytest.raises(CallFailed) as info:
            await uac.wait_for_answer(s.id, timeout=5)
        assert info.value.status == 401
        assert uas_h.incoming == []  # never offered to the application
        assert uas.get_stats()["messages_received"] <= 4  # INVITE, ACK, INVITE, ACK
        await settle(uac, uas)
    finally:
        await uac.stop()
        await uas.stop()


async def test_unauthenticated_invite_is_challenged_never_answered() -> None:
    uas_h = RecordingHandler()
    uas = await _uas(uas_h)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        port = uas.dialogs.local_address("udp").port
        invite = (
            f"INVITE sip:bob@127.0.0.1:{port} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKnoauth\r\nMax-Forwards: 70\r\n"
            "From: <sip:mallory@127.0.0.1>;tag=m\r\nTo: <sip:bob@127.0.0.1>\r\n"
            "Call-ID: noauth\r\nCSeq: 1 INVITE\r\nContact: <sip:m@127.0.0.1:9>\r\n"
            'Authorization: Digest username="alice", realm="sessioncore.test", nonce="forged",'
            ' uri="sip:bob@127.0.0.1", response="00000000000000000000000000000000"\r\n'
            "Content-Length: 0\r\n\r\n"
        ).encode()
        sock.sendto(invite, ("127.0.0.1", port))
        final: SipResponse | None = None
        for _ in range(100):
            try:
                msg = parse_message(sock.recv(65535))
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            assert isinstance(msg, SipResponse)
            if msg.status >= 200:
                final = msg
                break
        assert final is not None and final.status == 401
        challenges = final.headers.get_all("WWW-Authenticate")
        assert any("SHA-256" in c for c in challenges) and any("MD5" in c for c in challenges)
        assert uas_h.incoming == [] and uas.list_active_sessions() == []
    finally:
        sock.close()
        await uas.stop()
