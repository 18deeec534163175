"""Public API details: built-in handlers, aliases, context manager, misuse, media controls."""

from __future__ import annotations

import asyncio

import pytest

from sessioncore import (
    CallDecision,
    CallFailed,
    CallHandler,
    CallSession,
    CallState,
    CompositeHandler,
    IncomingCall,
    InvalidArgumentError,
    MediaQuality,
    QueueHandler,
    RoutingHandler,
    SessionId,
    SessionManagerBuilder,
)
from sessioncore.media.sources import ToneSource
from tests.integration.conftest import Pair, RecordingHandler, make_ua, settle


async def _pair(uas_handler: CallHandler) -> Pair:
    uac_h = RecordingHandler()
    uac = await make_ua(uac_h, "alice")
    uas = await make_ua(uas_handler, "bob")
    return Pair(uac, uas, uac_h, RecordingHandler())


async def _close(pair: Pair) -> None:
    await pair.uac.stop()
    await pair.uas.stop()


async def test_queue_handler_and_cancelled_calls_leave_the_queue() -> None:
    queue = QueueHandler(max_pending=1)
    pair = await _pair(queue)
    try:
        first = await pair.uac.make_call(pair.target())
        for _ in range(100):
            if queue.pending == 1:
                break
            await asyncio.sleep(0.01)
        assert queue.pending == 1
        second = await pair.uac.make_call(pair.target())
        with pytest.raises(CallFailed) as info:  # the queue is full
            await pair.uac.wait_for_answer(second.id, timeout=5)
        assert info.value.status == 486
        await pair.uac.terminate_session(first.id)  # the caller gives up
        for _ in range(200):
            if queue.pending == 0:
                break
            await asyncio.sleep(0.01)
        assert queue.pending == 0
        third = await pair.uac.make_call(pair.target())
        call = await queue.next_call(timeout=5)
        await pair.uas.accept_incoming_call(call.id)
        await pair.uac.wait_for_answer(third.id, timeout=5)
        await pair.uac.terminate_session(third.id)
        await settle(pair.uac, pair.uas)
    finally:
        await _close(pair)


async def test_routing_handler_forwards_by_prefix() -> None:
    router = RoutingHandler({"sales": "sip:sales@127.0.0.1:5999", "s": "sip:s@127.0.0.1:5998"})
    pair = await _pair(router)
    try:
        s1 = await pair.uac.make_call(pair.target("sales-desk"))
        with pytest.raises(CallFailed) as info:
            await pair.uac.wait_for_answer(s1.id, timeout=5)
        assert info.value.status == 302
        s2 = await pair.uac.make_call(pair.target("bob"))  # no rule: accepted
        await pair.uac.wait_for_answer(s2.id, timeout=5)
        await pair.uac.terminate_session(s2.id)
        await settle(pair.uac, pair.uas)
    finally:
        await _close(pair)


async def test_composite_handler_skips_listeners_when_deciding() -> None:
    listener = RecordingHandler()  # decides too (RecordingHandler overrides on_incoming_call)

    class Logger(CallHandler):
        ended: list[str] = []

        async def on_call_ended(self, session: CallSession, reason: str) -> None:
            self.ended.append(reason)

    class Busy(CallHandler):
        async def on_incoming_call(self, call: IncomingCall) -> CallDecision:
            return CallDecision.reject(486, "Busy Here")

    logger = Logger()
    pair = await _pair(CompositeHandler([logger, Busy(), listener]))
    try:
        s = await pair.uac.make_call(pair.target())
        with pytest.raises(CallFailed) as info:
            await pair.uac.wait_for_answer(s.id, timeout=5)
        assert info.value.status == 486
        await settle(pair.uac, pair.uas)
        for _ in range(100):
            if logger.ended:
                break
            await asyncio.sleep(0.01)
        assert len(logger.ended) == 1  # every handler hears events
        assert listener.incoming == []  # Busy decided first
    finally:
        await _close(pair)


async def test_context_manager_alias_and_exactly_once_on_failures() -> None:
    uas_h = RecordingHandler(decision=CallDecision.reject(603, "Decline"))
    uac_h = RecordingHandler()
    async with await make_ua(uas_h, "bob") as uas, await make_ua(uac_h, "alice") as uac:
        pair = Pair(uac, uas, uac_h, uas_h)
        s = await uac.create_outgoing_call(pair.target())  # the alias
        with pytest.raises(CallFailed):
            await uac.wait_for_answer(s.id, timeout=5)
        await settle(uac, uas)
        await asyncio.sleep(0.1)
        assert uac_h.ended_count(s.id) == 1
        assert len(uas_h.ended) == 1
        assert uac.get_session(s.id).state is CallState.FAILED  # type: ignore[union-attr]
        # stop while a call rings: ended once, as TERMINATED
        uas_h.decision = CallDecision.defer()
        ringing = await uac.make_call(pair.target())
        for _ in range(100):
            if uas_h.incoming[-1:] and len(uas_h.incoming) == 2:
                break
            await asyncio.sleep(0.01)
    assert uac_h.ended_count(ringing.id) == 1
    assert not uac.is_running and not uas.is_running


async def test_bad_decisions_are_refused_early_and_never_leave_a_caller_hanging() -> None:
    with pytest.raises(InvalidArgumentError):
        CallDecision.reject(200)
    with pytest.raises(InvalidArgumentError):
        CallDecision.reject(486, "Busy\r\nX-Evil: 1")
    with pytest.raises(InvalidArgumentError):
        CallDecision.forward("not a uri")

    class Sneaky(CallHandler):
        async def on_incoming_call(self, call: IncomingCall) -> CallDecision:
            return CallDecision(CallDecision.reject().kind, 200, "OK")  # bypasses the checks

    pair = await _pair(Sneaky())
    try:
        s = await pair.uac.make_call(pair.target())
        with pytest.raises(CallFailed) as info:
            await pair.uac.wait_for_answer(s.id, timeout=5)
        assert info.value.status == 500
        await settle(pair.uac, pair.uas)
    finally:
        await _close(pair)


async def test_header_names_are_checked() -> None:
    pair = await _pair(RecordingHandler())
    try:
        for name in ("X-A: evil", "Via", "call-id", "X Bad"):
            with pytest.raises(InvalidArgumentError):
                await pair.uac.make_call(pair.target(), headers={name: "v"})
        s = await pair.uac.make_call(pair.target(), headers={"X-Custom": "fine"})
        await pair.uac.wait_for_answer(s.id, timeout=5)
        await pair.uac.terminate_session(s.id)
        await settle(pair.uac, pair.uas)
    finally:
        await _close(pair)


async def test_media_quality_callback_and_mute() -> None:
    reports: list[tuple[SessionId, MediaQuality]] = []

    class Quality(RecordingHandler):
        async def on_media_quality(self, session_id: SessionId, quality: MediaQuality) -> None:
            reports.append((session_id, quality))

    uac_h = Quality()
    uac = await (
        SessionManagerBuilder()
        .with_local_address("sip:alice@127.0.0.1")
        .with_local_bind_addr("127.0.0.1", 0)
        .with_handler(uac_h)
        .with_audio(source=lambda s: ToneSource(500))
        .build()
    )
    uac.media.config.quality_interval = 0.3
    uas_h = RecordingHandler()
    uas = await make_ua(uas_h, "bob")
    try:
        pair = Pair(uac, uas, uac_h, uas_h)
        s = await uac.make_call(pair.target())
        await uac.wait_for_answer(s.id, timeout=5)
        for _ in range(100):
            if reports:
                break
            await asyncio.sleep(0.02)
        assert reports and reports[0][0] == s.id
        assert reports[-1][1].packets_sent > 0 and 1.0 <= reports[-1][1].mos <= 4.5
        uas_sid = uas_h.incoming[0].id
        uac.mute_session(s.id)
        assert uac.get_media_info(s.id)["muted"] is True
        await asyncio.sleep(0.3)
        sent = uac.get_media_stats(s.id).packets_sent
        await asyncio.sleep(0.3)
        assert uac.get_media_stats(s.id).packets_sent > sent  # muted: still sending (silence)
        assert uas.get_media_stats(uas_sid).packets_received > 0
        await uac.terminate_session(s.id)
        await settle(uac, uas)
    finally:
        await uac.stop()
        await uas.stop()


async def test_no_answer_timeout_with_timer_c() -> None:
    uas_h = RecordingHandler(decision=CallDecision.defer())  # rings forever
    uas = await make_ua(uas_h, "bob")
    uac_h = RecordingHandler()
    uac = await (
        SessionManagerBuilder()
        .with_local_address("sip:alice@127.0.0.1")
        .with_local_bind_addr("127.0.0.1", 0)
        .with_timers(invite_timeout=0.5)
        .with_handler(uac_h)
        .build()
    )
    try:
        s = await uac.make_call(Pair(uac, uas, uac_h, uas_h).target())
        with pytest.raises(CallFailed) as info:
            await uac.wait_for_answer(s.id, timeout=10)
        assert info.value.status == 408
        assert uac_h.ended_count(s.id) <= 1
        await asyncio.sleep(0.1)
        assert uac_h.ended_count(s.id) == 1
    finally:
        await uac.stop()
        await uas.stop()
