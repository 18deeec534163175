"""Our UAC against our UAS over real loopback sockets (UDP and TCP): every way a call ends."""

from __future__ import annotations

import asyncio

import pytest

from sessioncore import (
    CallDecision,
    CallFailed,
    CallState,
    HeaderInjectionError,
    IncomingCall,
    InvalidArgumentError,
    InvalidStateError,
    SessionId,
    SessionNotFoundError,
)
from sessioncore.api import functions as api
from tests.integration.conftest import Pair, RecordingHandler, make_ua, settle


async def test_basic_call_local_hangup(pair: Pair) -> None:
    session = await pair.uac.make_call(pair.target())
    assert session.state in (CallState.INITIATING, CallState.RINGING)
    await pair.uac.wait_for_answer(session.id, timeout=5)
    assert pair.uac.get_session(session.id).state is CallState.ACTIVE  # type: ignore[union-attr]
    assert len(pair.uas_handler.incoming) == 1
    incoming = pair.uas_handler.incoming[0]
    assert incoming.sip_call_id == session.sip_call_id
    assert incoming.sdp and "m=audio" in incoming.sdp
    assert "alice" in incoming.from_uri
    await api.hangup_call(pair.uac, session.id)
    await pair.uac_handler.wait_ended(1)
    await pair.uas_handler.wait_ended(1)
    await settle(pair.uac, pair.uas)
    assert pair.uac_handler.ended_count(session.id) == 1
    uas_sid = incoming.id
    assert pair.uas_handler.ended_count(uas_sid) == 1
    assert pair.uas_handler.ended[0][1] == "remote hangup"
    assert session.id in pair.uac_handler.established
    assert uas_sid in pair.uas_handler.established
    stats = pair.uac.get_stats()
    assert stats["calls_outgoing"] == 1 and stats["calls_answered"] == 1
    assert stats["active_sessions"] == 0


async def test_remote_hangup(pair: Pair) -> None:
    session = await pair.uac.make_call(pair.target())
    await pair.uac.wait_for_answer(session.id, timeout=5)
    uas_sid = pair.uas_handler.incoming[0].id
    await pair.uas.terminate_session(uas_sid)
    reason = await pair.uac.wait_for_end(session.id, timeout=5)
    assert reason == "remote hangup"
    await pair.uas_handler.wait_ended(1)
    await settle(pair.uac, pair.uas)
    assert pair.uac_handler.ended_count(session.id) == 1
    assert pair.uas_handler.ended_count(uas_sid) == 1


async def test_reject(pair: Pair) -> None:
    pair.uas_handler.decision = CallDecision.reject(486, "Busy Here")
    session = await pair.uac.make_call(pair.target())
    with pytest.raises(CallFailed) as info:
        await pair.uac.wait_for_answer(session.id, timeout=5)
    assert info.value.status == 486
    await pair.uac_handler.wait_ended(1)
    await pair.uas_handler.wait_ended(1)
    assert pair.uac.get_session(session.id).state is CallState.FAILED  # type: ignore[union-attr]
    assert pair.uac.get_session(session.id).failure_status == 486  # type: ignore[union-attr]
    await settle(pair.uac, pair.uas)


async def test_forward_302(pair: Pair) -> None:
    pair.uas_handler.decision = CallDecision.forward("sip:carol@127.0.0.1:5999")
    session = await pair.uac.make_call(pair.target())
    with pytest.raises(CallFailed) as info:
        await pair.uac.wait_for_answer(session.id, timeout=5)
    assert info.value.status == 302
    await settle(pair.uac, pair.uas)


async def test_defer_then_accept(pair: Pair) -> None:
    pair.uas_handler.decision = CallDecision.defer()
    session = await pair.uac.make_call(pair.target())
    for _ in range(100):
        if pair.uac.get_session(session.id).state is CallState.RINGING:  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.02)
    assert pair.uac.get_session(session.id).state is CallState.RINGING  # type: ignore[union-attr]
    uas_sid = pair.uas_handler.incoming[0].id
    assert pair.uas.get_session(uas_sid).state is CallState.RINGING  # type: ignore[union-attr]
    with pytest.raises(InvalidStateError):
        await pair.uas.hold_session(uas_sid)
    await api.answer_call(pair.uas, uas_sid)
    await pair.uac.wait_for_answer(session.id, timeout=5)
    await pair.uac.terminate_session(session.id)
    await settle(pair.uac, pair.uas)
    assert pair.uas_handler.ended_count(uas_sid) == 1


async def test_defer_then_reject(pair: Pair) -> None:
    pair.uas_handler.decision = CallDecision.defer()
    session = await pair.uac.make_call(pair.target())
    while not pair.uas_handler.incoming:
        await asyncio.sleep(0.01)
    await api.reject_call(pair.uas, pair.uas_handler.incoming[0].id, 603)
    with pytest.raises(CallFailed) as info:
        await pair.uac.wait_for_answer(session.id, timeout=5)
    assert info.value.status == 603
    await settle(pair.uac, pair.uas)


async def test_cancel_while_ringing(pair: Pair) -> None:
    pair.uas_handler.decision = CallDecision.defer()
    session = await pair.uac.make_call(pair.target())
    for _ in range(200):
        if pair.uac.get_session(session.id).state is CallState.RINGING:  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.01)
    await pair.uac.terminate_session(session.id)
    with pytest.raises(CallFailed):
        await pair.uac.wait_for_answer(session.id, timeout=5)
    await pair.uac_handler.wait_ended(1)
    await pair.uas_handler.wait_ended(1)
    assert pair.uac.get_session(session.id).state is CallState.CANCELLED  # type: ignore[union-attr]
    uas_sid = pair.uas_handler.incoming[0].id
    assert pair.uas.get_session(uas_sid).state is CallState.CANCELLED  # type: ignore[union-attr]
    await settle(pair.uac, pair.uas)
    assert pair.uac_handler.ended_count(session.id) == 1
    assert pair.uas_handler.ended_count(uas_sid) == 1


async def test_cancel_before_provisional_waits_for_it(pair: Pair) -> None:
    async def slow(call: IncomingCall) -> CallDecision:
        await asyncio.sleep(0.3)
        return CallDecision.defer()

    pair.uas_handler.decision = slow
    session = await pair.uac.make_call(pair.target())
    await pair.uac.terminate_session(session.id)  # only 100 Trying so far: CANCEL must wait
    reason = await pair.uac.wait_for_end(session.id, timeout=5)
    assert "cancel" in reason
    await settle(pair.uac, pair.uas)


async def test_hold_and_resume_both_ways(pair: Pair) -> None:
    session = await pair.uac.make_call(pair.target())
    await pair.uac.wait_for_answer(session.id, timeout=5)
    uas_sid = pair.uas_handler.incoming[0].id
    await api.hold_call(pair.uac, session.id)
    assert pair.uac.get_session(session.id).state is CallState.ON_HOLD  # type: ignore[union-attr]
    assert "a=sendonly" in (pair.uac.get_session(session.id).local_sdp or "")  # type: ignore[union-attr]
    for _ in range(100):
        if pair.uas.get_session(uas_sid).state is CallState.ON_HOLD:  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.01)
    assert pair.uas.get_session(uas_sid).state is CallState.ON_HOLD  # type: ignore[union-attr]
    assert "a=recvonly" in (pair.uas.get_session(uas_sid).local_sdp or "")  # type: ignore[union-attr]
    await api.resume_call(pair.uac, session.id)
    assert pair.uac.get_session(session.id).state is CallState.ACTIVE  # type: ignore[union-attr]
    for _ in range(100):
        if pair.uas.get_session(uas_sid).state is CallState.ACTIVE:  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.01)
    assert pair.uas.get_session(uas_sid).state is CallState.ACTIVE  # type: ignore[union-attr]
    # and the callee can hold the caller
    await pair.uas.hold_session(uas_sid)
    assert pair.uas.get_session(uas_sid).state is CallState.ON_HOLD  # type: ignore[union-attr]
    await pair.uas.resume_session(uas_sid)
    await pair.uac.terminate_session(session.id)
    await settle(pair.uac, pair.uas)


async def test_dtmf_info(pair: Pair) -> None:
    session = await pair.uac.make_call(pair.target())
    await pair.uac.wait_for_answer(session.id, timeout=5)
    await api.send_dtmf(pair.uac, session.id, "12#")
    for _ in range(100):
        if len(pair.uas_handler.dtmf) == 3:
            break
        await asyncio.sleep(0.01)
    assert [d for _, d, _ in pair.uas_handler.dtmf] == ["1", "2", "#"]
    with pytest.raises(InvalidArgumentError):
        await pair.uac.send_dtmf(session.id, "12x")
    await pair.uac.terminate_session(session.id)
    await settle(pair.uac, pair.uas)


async def test_stop_hangs_up_live_calls(pair: Pair) -> None:
    sessions = [await pair.uac.make_call(pair.target()) for _ in range(3)]
    for s in sessions:
        await pair.uac.wait_for_answer(s.id, timeout=5)
    await pair.uac.stop()
    await pair.uas_handler.wait_ended(3)
    await settle(pair.uas)
    assert sorted(pair.uac_handler.ended_count(s.id) for s in sessions) == [1, 1, 1]
    assert len(pair.uac.list_active_sessions()) == 0


async def test_api_misuse_raises_typed_errors(pair: Pair) -> None:
    with pytest.raises(SessionNotFoundError):
        await pair.uac.terminate_session(SessionId("nope"))
    with pytest.raises(SessionNotFoundError):
        await pair.uac.hold_session(SessionId("nope"))
    with pytest.raises(InvalidArgumentError):
        await pair.uac.make_call("not a uri")
    with pytest.raises(InvalidArgumentError):
        await pair.uac.make_call("http://example.com/")
    with pytest.raises(HeaderInjectionError):
        await pair.uac.make_call(pair.target() + "\r\nX-Evil: 1")
    with pytest.raises(HeaderInjectionError):
        await pair.uac.make_call(pair.target(), headers={"X-Test": "a\r\nVia: evil"})
    assert pair.uac.list_active_sessions() == []


async def test_no_answer_times_out() -> None:
    handler = RecordingHandler()
    uac = await make_ua(handler, "alice", "udp", t1=0.01)
    try:
        import socket

        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))  # bound but never answers: a black hole
        port = s.getsockname()[1]
        session = await uac.make_call(f"sip:nobody@127.0.0.1:{port}")
        with pytest.raises(CallFailed) as info:
            await uac.wait_for_answer(session.id, timeout=5)
        assert info.value.status == 408
        s.close()
        await settle(uac)
        assert handler.ended_count(session.id) == 1
        assert uac.get_stats()["retransmissions"] > 0
    finally:
        await uac.stop()


async def test_handler_exception_rejects_with_500(pair: Pair) -> None:
    async def broken(call: IncomingCall) -> CallDecision:
        raise RuntimeError("boom")

    pair.uas_handler.decision = broken
    session = await pair.uac.make_call(pair.target())
    with pytest.raises(CallFailed) as info:
        await pair.uac.wait_for_answer(session.id, timeout=5)
    assert info.value.status == 500
    # the coordinator keeps serving
    pair.uas_handler.decision = CallDecision.accept()
    s2 = await pair.uac.make_call(pair.target())
    await pair.uac.wait_for_answer(s2.id, timeout=5)
    await pair.uac.terminate_session(s2.id)
    await settle(pair.uac, pair.uas)


async def test_many_concurrent_calls(pair: Pair) -> None:
    sessions = [await pair.uac.make_call(pair.target()) for _ in range(50)]
    await asyncio.gather(*(pair.uac.wait_for_answer(s.id, timeout=10) for s in sessions))
    await asyncio.gather(*(pair.uac.terminate_session(s.id) for s in sessions))
    await settle(pair.uac, pair.uas)
    assert len(pair.uas_handler.ended) == 50
    assert pair.uac.dialogs.active_calls == 0 and pair.uas.dialogs.active_calls == 0


async def test_blind_transfer(pair: Pair) -> None:
    carol_h = RecordingHandler()
    carol = await make_ua(carol_h, "carol", pair.uac.dialogs.config.transport)
    try:
        session = await pair.uac.make_call(pair.target())
        await pair.uac.wait_for_answer(session.id, timeout=5)
        addr = carol.dialogs.local_address()
        suffix = "" if addr.transport == "udp" else f";transport={addr.transport}"
        target = f"sip:carol@127.0.0.1:{addr.port}{suffix}"
        await api.transfer_call(pair.uac, session.id, target)
        # bob calls carol; when carol answers, alice's leg ends as "transferred"
        reason = await pair.uac.wait_for_end(session.id, timeout=10)
        assert reason == "transferred"
        assert len(carol_h.incoming) == 1
        assert "bob" in carol_h.incoming[0].from_uri
        await pair.uas_handler.wait_ended(1)  # alice's BYE ends bob's first leg
        bob_calls = pair.uas.list_active_sessions()
        assert len(bob_calls) == 1 and bob_calls[0].direction == "outgoing"
        await pair.uas.terminate_session(bob_calls[0].id)
        await settle(pair.uac, pair.uas, carol)
        assert pair.uac_handler.ended_count(session.id) == 1
    finally:
        await carol.stop()


async def test_transfer_to_unreachable_target_keeps_call(pair: Pair) -> None:
    pair.uac.operation_timeout = 5
    session = await pair.uac.make_call(pair.target())
    await pair.uac.wait_for_answer(session.id, timeout=5)
    uas_sid = pair.uas_handler.incoming[0].id
    carol_h = RecordingHandler(decision=CallDecision.reject(603, "Decline"))
    carol = await make_ua(carol_h, "carol", pair.uac.dialogs.config.transport)
    try:
        addr = carol.dialogs.local_address()
        suffix = "" if addr.transport == "udp" else f";transport={addr.transport}"
        await pair.uac.transfer_session(session.id, f"sip:carol@127.0.0.1:{addr.port}{suffix}")
        for _ in range(200):
            if pair.uac.get_session(session.id).state is CallState.ACTIVE:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.02)
        assert pair.uac.get_session(session.id).state is CallState.ACTIVE  # type: ignore[union-attr]
        assert pair.uas.get_session(uas_sid).state is CallState.ACTIVE  # type: ignore[union-attr]
        await pair.uac.terminate_session(session.id)
        await settle(pair.uac, pair.uas, carol)
    finally:
        await carol.stop()


async def test_large_invite_moves_to_tcp() -> None:
    uac_h, uas_h = RecordingHandler(), RecordingHandler()
    uac = await make_ua(uac_h, "alice", "udp")
    uas = await make_ua(uas_h, "bob", "udp")
    try:
        addr = uas.dialogs.local_address("udp")
        big = {f"X-Padding-{i}": "x" * 90 for i in range(15)}  # ~1.6 kB: over the MTU rule
        session = await uac.make_call(f"sip:bob@127.0.0.1:{addr.port}", headers=big)
        await uac.wait_for_answer(session.id, timeout=5)
        assert uas_h.incoming[0].headers["Via"].startswith("SIP/2.0/TCP")
        assert uac.dialogs._transport.stats()["tcp_messages_sent"] >= 1
        await uac.terminate_session(session.id)
        await settle(uac, uas)
    finally:
        await uac.stop()
        await uas.stop()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_ipv6_call(transport: str) -> None:
    import socket

    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.fail("IPv6 loopback (::1) is not available on this machine")
    uac_h, uas_h = RecordingHandler(), RecordingHandler()
    uac = await make_ua(uac_h, "alice", transport, host="::1")
    uas = await make_ua(uas_h, "bob", transport, host="::1")
    try:
        pair = Pair(uac, uas, uac_h, uas_h)
        session = await uac.make_call(pair.target())
        await uac.wait_for_answer(session.id, timeout=5)
        assert "IN IP6 ::1" in (uas_h.incoming[0].sdp or "")
        assert "[::1]" in uas_h.incoming[0].headers["Via"]
        await uac.terminate_session(session.id)
        await settle(uac, uas)
        assert uas_h.ended_count(uas_h.incoming[0].id) == 1
    finally:
        await uac.stop()
        await uas.stop()
