"""The media plane between our own UAC and UAS over loopback: audio, DTMF, RTCP, hold, pacing."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from sessioncore import CallDecision, CallState, SessionManagerBuilder
from sessioncore.media.analysis import dominant_frequency
from sessioncore.media.manager import MediaConfig, MediaManager
from sessioncore.media.sources import EchoBridge, ToneSource
from sessioncore.sip.message import SipResponse, parse_message
from tests.integration.conftest import Pair, RecordingHandler, make_ua, settle


async def _up(pair: Pair) -> tuple[str, str]:
    session = await pair.uac.make_call(pair.target())
    await pair.uac.wait_for_answer(session.id, timeout=5)
    for _ in range(100):
        if pair.uas_handler.incoming:
            break
        await asyncio.sleep(0.01)
    return session.id, pair.uas_handler.incoming[0].id


async def _collect(frames_iter, seconds: float) -> bytes:  # type: ignore[no-untyped-def]
    out = bytearray()

    async def run() -> None:
        async for frame in frames_iter:
            out.extend(frame)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run(), seconds)
    return bytes(out)


async def test_tone_reaches_the_far_end_and_echo_comes_back(pair: Pair) -> None:
    uac_sid, uas_sid = await _up(pair)
    pair.uac.set_audio_source(uac_sid, ToneSource(700))
    bridge = EchoBridge()
    pair.uas.set_audio_source(uas_sid, bridge)
    pair.uas.add_audio_sink(uas_sid, bridge)
    uac_session = pair.uac.get_session(uac_sid)
    assert uac_session is not None
    heard = await _collect(uac_session.audio_frames(), 1.5)
    assert len(heard) > 8000  # over half a second of 8 kHz audio
    assert abs(dominant_frequency(heard[-8000:], 8000) - 700) < 5
    info = pair.uac.get_media_info(uac_sid)
    assert info["codec"] == "PCMU"
    stats = pair.uac.get_media_stats(uac_sid)
    assert stats.packets_sent > 50 and stats.packets_received > 50
    await pair.uac.terminate_session(uac_sid)
    await settle(pair.uac, pair.uas)
    ended = pair.uac.get_session(uac_sid)
    assert ended is not None and ended.media_stats is not None
    assert ended.media_stats.packets_received > 50
    assert pair.uac.media.active == 0 and pair.uas.media.active == 0  # ports released


async def test_send_audio_api(pair: Pair) -> None:
    uac_sid, uas_sid = await _up(pair)
    uas_session = pair.uas.get_session(uas_sid)
    uac_session = pair.uac.get_session(uac_sid)
    assert uas_session is not None and uac_session is not None
    tone = ToneSource(1200)
    pcm = b"".join(tone.read(160) or b"" for _ in range(50))  # 1 s
    collector = asyncio.ensure_future(_collect(uas_session.audio_frames(), 1.6))
    await uac_session.send_audio(pcm)
    heard = await collector
    assert abs(dominant_frequency(heard, 8000) - 1200) < 5
    await pair.uac.terminate_session(uac_sid)
    await settle(pair.uac, pair.uas)


async def test_rfc4733_dtmf_between_our_uas(pair: Pair) -> None:
    uac_sid, _ = await _up(pair)
    await pair.uac.send_dtmf(uac_sid, "19#*", method="rfc4733")
    for _ in range(300):
        if len(pair.uas_handler.dtmf) >= 4:
            break
        await asyncio.sleep(0.01)
    assert "".join(d for _, d, _ in pair.uas_handler.dtmf) == "19#*"
    assert all(ms >= 100 for _, _, ms in pair.uas_handler.dtmf)
    await pair.uac.terminate_session(uac_sid)
    await settle(pair.uac, pair.uas)


async def test_hold_stops_media_one_way(pair: Pair) -> None:
    uac_sid, uas_sid = await _up(pair)
    await asyncio.sleep(0.3)
    await pair.uac.hold_session(uac_sid)
    assert pair.uac.get_media_info(uac_sid)["direction"] == "sendonly"
    assert pair.uas.get_media_info(uas_sid)["direction"] == "recvonly"
    before = pair.uac.get_media_stats(uac_sid).packets_received
    uas_sent = pair.uas.get_media_stats(uas_sid).packets_sent
    await asyncio.sleep(0.5)
    # the held side (UAS, recvonly) stops sending; we keep sending
    assert pair.uas.get_media_stats(uas_sid).packets_sent - uas_sent <= 1
    assert pair.uac.get_media_stats(uac_sid).packets_received - before <= 2
    await pair.uac.resume_session(uac_sid)
    mid = pair.uac.get_media_stats(uac_sid).packets_received
    await asyncio.sleep(0.5)
    assert pair.uac.get_media_stats(uac_sid).packets_received - mid >= 15
    assert pair.uac.get_session(uac_sid).state is CallState.ACTIVE  # type: ignore[union-attr]
    await pair.uac.terminate_session(uac_sid)
    await settle(pair.uac, pair.uas)


async def test_unsatisfiable_offer_gets_488_with_warning() -> None:
    handler = RecordingHandler(decision=CallDecision.accept())
    uas = await make_ua(handler, "bob")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        port = uas.dialogs.local_address("udp").port
        sdp = (
            b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            b"m=audio 7000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
        )
        invite = (
            f"INVITE sip:bob@127.0.0.1:{port} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK488\r\nMax-Forwards: 70\r\n"
            "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: c488\r\n"
            "CSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:9>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n"
        ).encode() + sdp
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
        assert final is not None and final.status == 488
        warning = final.headers.get("Warning") or ""
        assert warning.startswith("304 ") and "G729" in warning
        await handler.wait_ended(1)
        assert uas.media.active == 0
    finally:
        sock.close()
        await uas.stop()


async def test_pacing_is_drift_free_and_does_not_burst() -> None:
    """Drive the scheduler with literal times: 10 minutes of 20 ms slots, then a stall."""
    media = MediaManager(MediaConfig(port_start=42000, port_end=42100))
    await media.start()
    offer_text = media.create_offer("s1")
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer_port = peer.getsockname()[1]
    answer = (
        "v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {peer_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
    )
    assert "m=audio" in offer_text
    media.apply_answer("s1", answer)
    ms = media.get("s1")
    assert ms is not None
    peer.close()  # nobody reads: sends may fail with ECONNREFUSED, which is fine
    start = ms.next_send
    now = start
    slots = 30_000  # 10 minutes
    for i in range(slots):
        now = start + i * 0.020 + 0.001  # every tick fires 1 ms after its slot
        with contextlib.suppress(OSError):
            media._service(ms, now)
    c = ms.counters
    assert c.frames_sent == slots
    assert c.late_frames == 0 and c.skipped_slots == 0
    # the schedule has not drifted: the next slot is exactly slots * 20 ms after the start
    assert abs(ms.next_send - (start + slots * 0.020)) < 1e-6
    # a 200 ms stall: one frame is sent (for the latest slot), the ten missed slots are skipped
    stalled = ms.next_send + 0.200
    with contextlib.suppress(OSError):
        media._service(ms, stalled)
    assert c.frames_sent == slots + 1
    assert c.late_frames == 0 and c.skipped_slots == 10
    assert ms.next_send > stalled
    await media.stop()
    assert media.active == 0


async def test_many_media_calls_release_ports() -> None:
    uac_h, uas_h = RecordingHandler(), RecordingHandler()
    uac = await make_ua(uac_h, "alice")
    uas = await make_ua(uas_h, "bob")
    try:
        pair = Pair(uac, uas, uac_h, uas_h)
        sessions = [await uac.make_call(pair.target()) for _ in range(20)]
        await asyncio.gather(*(uac.wait_for_answer(s.id, timeout=5) for s in sessions))
        assert uac.media.streaming == 20 and uas.media.streaming == 20
        await asyncio.sleep(0.3)
        await asyncio.gather(*(uac.terminate_session(s.id) for s in sessions))
        await settle(uac, uas)
        assert uac.media.active == 0 and uas.media.active == 0
        assert uac.media.streaming == 0 and uas.media.streaming == 0
    finally:
        await uac.stop()
        await uas.stop()


async def test_rtcp_round_trip_time() -> None:
    uac_h, uas_h = RecordingHandler(), RecordingHandler()
    builder = (
        SessionManagerBuilder()
        .with_local_address("sip:alice@127.0.0.1")
        .with_local_bind_addr("127.0.0.1", 0)
        .with_handler(uac_h)
    )
    uac = await builder.build_coordinator().__aenter__()
    uac.media.config.rtcp_interval = 0.5
    uas = await make_ua(uas_h, "bob")
    uas.media.config.rtcp_interval = 0.5
    try:
        pair = Pair(uac, uas, uac_h, uas_h)
        session = await uac.make_call(pair.target())
        await uac.wait_for_answer(session.id, timeout=5)
        for _ in range(60):
            if uac.get_media_stats(session.id).rtt_ms is not None:
                break
            await asyncio.sleep(0.1)
        rtt = uac.get_media_stats(session.id).rtt_ms
        assert rtt is not None and 0 <= rtt < 50  # loopback
        await uac.terminate_session(session.id)
        await settle(uac, uas)
    finally:
        await uac.stop()
        await uas.stop()


async def test_latching_follows_a_new_sdp_address() -> None:
    """Symmetric RTP latches to where packets come from, and a new SDP address resets it."""
    media = MediaManager(MediaConfig(port_start=42200, port_end=42300))
    await media.start()
    media.create_offer("s1")
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b, other):
        s.bind(("127.0.0.1", 0))

    def answer(port: int, version: int) -> str:
        return (
            f"v=0\r\no=p 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )

    try:
        media.apply_answer("s1", answer(a.getsockname()[1], 1))
        ms = media.get("s1")
        assert ms is not None and ms.remote_rtp == a.getsockname()
        from sessioncore.media.rtp import RtpPacket

        pkt = bytes(RtpPacket(0, 1, 160, 0x1234, b"\xff" * 160))
        # the peer's packets come from another port (a NAT): we latch to it
        other.sendto(pkt, ("127.0.0.1", ms.rtp_port))
        for _ in range(100):
            if ms.latched:
                break
            await asyncio.sleep(0.01)
        assert ms.latched and ms.remote_rtp == other.getsockname()
        # a stranger's packets after latching are dropped and counted
        a.sendto(bytes(RtpPacket(0, 2, 320, 0x9999, b"\xff" * 160)), ("127.0.0.1", ms.rtp_port))
        for _ in range(100):
            if ms.counters.wrong_source:
                break
            await asyncio.sleep(0.01)
        assert ms.counters.wrong_source == 1
        # a re-offer/answer that moves the peer's media: follow the new SDP address
        media.reoffer("s1", "sendrecv")
        media.apply_answer("s1", answer(b.getsockname()[1], 2))
        assert ms.remote_rtp == b.getsockname() and not ms.latched
    finally:
        for s in (a, b, other):
            s.close()
        await media.stop()


async def test_media_timeout_hangs_up_a_silent_call() -> None:
    """A peer that stops sending RTP (gone without a BYE) is hung up after the timeout."""
    uas_h, uac_h = RecordingHandler(), RecordingHandler()
    uas = await make_ua(uas_h, "bob")
    uac = await (
        SessionManagerBuilder()
        .with_local_address("sip:alice@127.0.0.1")
        .with_local_bind_addr("127.0.0.1", 0)
        .with_media_timeout(0.5)
        .with_handler(uac_h)
        .build()
    )
    try:
        s = await uac.make_call(Pair(uac, uas, uac_h, uas_h).target())
        await uac.wait_for_answer(s.id, timeout=5)
        await asyncio.sleep(0.8)
        assert uac.get_session(s.id).state is CallState.ACTIVE  # type: ignore[union-attr]
        for ms in list(uas.media._streams.values()):
            uas.media._stop_stream(ms)  # the far end goes quiet (no BYE)
        reason = await uac.wait_for_end(s.id, timeout=5)
        assert reason == "media timeout"
        await settle(uac, uas)  # our BYE ended the far end too
        assert uac_h.ended_count(s.id) == 1
    finally:
        await uac.stop()
        await uas.stop()
