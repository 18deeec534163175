"""SessionCoordinator: the top of the system.

It creates and starts the subsystems (:class:`DialogManager`, :class:`MediaManager`), consumes
their events in one task, keeps the :class:`SessionManager` registry up to date, orchestrates
media from signaling, notifies the :class:`CallHandler` directly and ends sessions through the
:class:`CleanupManager`. Every public operation goes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from sessioncore.api.handler import CallHandler
from sessioncore.api.types import (
    CallDecision,
    CallSession,
    CallState,
    DecisionKind,
    IncomingCall,
    MediaQuality,
    RegistrationInfo,
    SessionId,
)
from sessioncore.coordinator.cleanup import CleanupManager
from sessioncore.coordinator.events import SessionEvent
from sessioncore.errors import (
    CallFailed,
    InvalidArgumentError,
    InvalidStateError,
    NotStartedError,
    RegistrationFailed,
    SdpError,
    SessionError,
    SessionNotFoundError,
    SipParseError,
)
from sessioncore.media import events as mev
from sessioncore.media.dtmf import DtmfError, format_dtmf_relay, parse_dtmf_info
from sessioncore.media.manager import MediaConfig, MediaManager
from sessioncore.media.sinks import AudioSink, QueueSink
from sessioncore.media.sources import AudioSource, QueueSource
from sessioncore.sip import events as ev
from sessioncore.sip.manager import DialogManager, SipConfig
from sessioncore.sip.uri import SipUri, check_header_value, parse_uri

__all__ = ["SessionCoordinator"]

log = logging.getLogger("sessioncore.coordinator")

_DTMF_RE = re.compile(r"[0-9A-Da-d*#]+")
_ids = itertools.count(1)
_ID_PREFIX = os.urandom(3).hex()
_STATS_KEYS = (
    "calls_incoming",
    "calls_outgoing",
    "calls_answered",
    "calls_failed",
    "calls_rejected",
    "calls_cancelled",
    "calls_ended",
)


def _overrides(handler: CallHandler, name: str) -> bool:
    return getattr(type(handler), name) is not getattr(CallHandler, name)


class SessionCoordinator:
    """Orchestrates calls. Build one with :class:`~sessioncore.SessionManagerBuilder`."""

    def __init__(
        self,
        *,
        sip_config: SipConfig,
        media_config: MediaConfig,
        handler: CallHandler | None = None,
        local_uri: str | None = None,
        operation_timeout: float = 32.0,
        audio_source_factory: Callable[[CallSession], AudioSource | None] | None = None,
        audio_sink_factory: Callable[[CallSession], AudioSink | None] | None = None,
    ) -> None:
        from sessioncore.registry.manager import SessionManager

        self.handler = handler if handler is not None else CallHandler()
        self.local_uri = local_uri
        self.operation_timeout = operation_timeout
        self._source_factory = audio_source_factory
        self._sink_factory = audio_sink_factory
        self.registry = SessionManager()
        self._queue: asyncio.Queue[SessionEvent] | None = None
        self.dialogs = DialogManager(sip_config, self._post)
        self.media = MediaManager(media_config, self._post)
        self.cleanup = CleanupManager(
            self.registry,
            [self._snapshot_media, self.media.release, self.dialogs.forget],
            self._on_ended,
        )
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._answer_waiters: dict[SessionId, list[asyncio.Future[None]]] = {}
        self._end_waiters: dict[SessionId, list[asyncio.Future[str]]] = {}
        self._op_waiters: dict[SessionId, asyncio.Future[tuple[int, str, str | None]]] = {}
        self._deferred: set[SessionId] = set()
        self._offers: dict[SessionId, str | None] = {}  # SDP offers of deferred calls
        self._registrations: dict[str, RegistrationInfo] = {}
        self._reg_waiters: dict[str, list[asyncio.Future[RegistrationInfo]]] = {}
        self._running = False
        self._stats = dict.fromkeys(_STATS_KEYS, 0)
        self._wants = {
            name: _overrides(self.handler, name)
            for name in ("on_incoming_call", "on_call_established", "on_call_ended",
                         "on_call_state_changed", "on_dtmf", "on_media_quality",
                         "on_registration_state")
        }  # fmt: skip

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind sockets and start the event loop task."""
        if self._running:
            return
        self._queue = asyncio.Queue()
        await self.dialogs.start()
        await self.media.start()
        self._running = True
        self._loop_task = asyncio.create_task(self._run(), name="sessioncore-coordinator")
        addr = self.dialogs.local_address()
        log.info("sessioncore listening on %s", addr)
        for account in self.dialogs.config.accounts:
            if account.register:
                self.dialogs.register(account.aor)

    async def stop(self, grace: float = 2.0) -> None:
        """Hang up every call (the handler hears of each), then close every socket."""
        if not self._running:
            return
        for aor in list(self._registrations):
            self.dialogs.unregister(aor)
        for session in self.registry.list():
            try:
                self._hangup(session)
            except SessionError as exc:
                log.debug("%s: hangup at stop failed: %s", session.id, exc)
        deadline = time.monotonic() + grace
        while (
            self.registry or self.dialogs.pending_hangups() or self.dialogs.pending_registers()
        ) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for session in self.registry.list():
            self.cleanup.end(session.id, CallState.TERMINATED, "coordinator shutdown")
        self._running = False
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self.dialogs.stop()
        await self.media.stop()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)

    async def __aenter__(self) -> SessionCoordinator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def is_running(self) -> bool:
        """True between start() and stop()."""
        return self._running

    def _require_running(self) -> None:
        if not self._running:
            raise NotStartedError("the coordinator is not running (call build()/start() first)")

    # --- the event loop ---------------------------------------------------------------------

    def _post(self, event: object) -> None:
        if self._queue is not None:
            self._queue.put_nowait(event)  # type: ignore[arg-type]

    async def _run(self) -> None:
        assert self._queue is not None  # set in start()
        queue = self._queue
        while True:
            event = await queue.get()
            try:
                self._dispatch(event)
            except Exception:
                log.exception("error handling %r", event)
            # drain what is already queued without yielding per event
            while not queue.empty():
                event = queue.get_nowait()
                try:
                    self._dispatch(event)
                except Exception:
                    log.exception("error handling %r", event)

    def _dispatch(self, event: SessionEvent) -> None:
        if isinstance(event, ev.IncomingInvite):
            self._on_incoming(event)
            return
        if isinstance(event, mev.MediaTimeout):
            session = self.registry.get(SessionId(event.session_id))
            if session is not None:
                log.info("%s: no RTP for %.0f s; hanging up", session.id, event.silent_for)
                self.dialogs.hangup(session.id)
                self.cleanup.end(session.id, CallState.TERMINATED, "media timeout")
            return
        if isinstance(event, mev.DtmfReceived | mev.MediaQuality):
            self._on_media_event(event)
            return
        if isinstance(event, ev.RegistrationChanged):
            self._on_registration(event)
            return
        sid = SessionId(event.call_ref)
        session = self.registry.get(sid)
        if session is None:
            log.debug("event for ended session %s: %r", sid, event)
            return
        if isinstance(event, ev.CallProgress):
            if session.state is CallState.INITIATING:
                self._set_state(session, CallState.RINGING, f"{event.status} {event.reason}")
        elif isinstance(event, ev.CallAnswered):
            self._on_answered(session, event.sdp)
        elif isinstance(event, ev.CallConfirmed):
            if event.sdp and session.local_sdp and session.remote_sdp is None:
                self._apply_answer(session, event.sdp)
        elif isinstance(event, ev.CallFailedEvent):
            self._on_failed(session, event.status, event.reason)
        elif isinstance(event, ev.CallCancelled):
            self._stats["calls_cancelled"] += 1
            self.cleanup.end(sid, CallState.CANCELLED, "cancelled by caller")
        elif isinstance(event, ev.CallTerminated):
            reason = event.reason
            self.cleanup.end(sid, CallState.TERMINATED, reason)
        elif isinstance(event, ev.ReinviteReceived):
            self._on_reinvite(session, event.sdp)
        elif isinstance(event, ev.ReinviteResult | ev.ReferResult):
            fut = self._op_waiters.pop(sid, None)
            sdp = event.sdp if isinstance(event, ev.ReinviteResult) else None
            if fut is not None and not fut.done():
                fut.set_result((event.status, event.reason, sdp))
        elif isinstance(event, ev.InfoReceived):
            self._on_info(session, event.content_type, event.body)
        elif isinstance(event, ev.ReferReceived):
            self._spawn(self._transferred(session, event.target))
        elif isinstance(event, ev.ReferNotify):
            self._on_refer_notify(session, event.status, event.final)

    # --- incoming calls ---------------------------------------------------------------------

    def _on_incoming(self, event: ev.IncomingInvite) -> None:
        sid = SessionId(event.call_ref)
        session = CallSession(
            id=sid,
            from_uri=event.from_uri,
            to_uri=event.to_uri,
            sip_call_id=event.call_id,
            direction="incoming",
            remote_sdp=None,
        )
        self.registry.register(session)
        self._stats["calls_incoming"] += 1
        headers: dict[str, str] = {}
        for name, value in event.headers:
            headers.setdefault(name, value)
        call = IncomingCall(
            sid, event.from_uri, event.to_uri, event.sdp, headers, event.call_id,
            event.request_uri,
        )  # fmt: skip
        offer = event.sdp
        if not self._wants["on_incoming_call"]:
            self._apply_decision(session, CallDecision.accept(), offer)
            return
        self._spawn(self._decide(session, call, offer))

    async def _decide(self, session: CallSession, call: IncomingCall, offer: str | None) -> None:
        try:
            decision = await self.handler.on_incoming_call(call)
        except Exception:
            log.exception("%s: on_incoming_call failed; rejecting with 500", session.id)
            decision = CallDecision.reject(500, "Server Internal Error")
        if self.registry.get(session.id) is None:
            return  # cancelled while the handler was thinking
        if decision is None:
            decision = CallDecision.accept()
        self._apply_decision(session, decision, offer)

    def _apply_decision(
        self, session: CallSession, decision: CallDecision, offer: str | None
    ) -> None:
        sid = session.id
        try:
            if decision.kind is DecisionKind.ACCEPT:
                self._answer(session, offer, decision.sdp)
            elif decision.kind is DecisionKind.REJECT:
                self.dialogs.reject(sid, decision.status, decision.reason)
                self._stats["calls_rejected"] += 1
                self._end_failed(session, decision.status, decision.reason or "rejected")
            elif decision.kind is DecisionKind.FORWARD:
                self.dialogs.redirect(sid, decision.target or "")
                self._stats["calls_rejected"] += 1
                self._end_failed(session, 302, f"forwarded to {decision.target}")
            else:
                self._deferred.add(sid)
                self._offers[sid] = offer
                self.dialogs.ring(sid)
                self._set_state(session, CallState.RINGING, "deferred")
        except SessionError as exc:
            log.warning("%s: could not apply %s: %s", sid, decision.kind.value, exc)
            with contextlib.suppress(SessionError):
                self.dialogs.reject(sid, 500, "Server Internal Error")  # never leave it hanging
            self._end_failed(session, 500, str(exc))

    def _answer(self, session: CallSession, offer: str | None, sdp: str | None) -> None:
        sid = session.id
        if sdp is None:
            try:
                sdp = (
                    self.media.create_answer(sid, offer) if offer else self.media.create_offer(sid)
                )
            except (SdpError, SipParseError) as exc:
                status = exc.status if exc.status >= 400 else 488
                self.dialogs.reject(
                    sid, 488 if status == 400 else status, None,
                    headers=[("Warning", f'304 sessioncore "{_warning_text(str(exc))}"')],
                )  # fmt: skip
                self._stats["calls_rejected"] += 1
                self._end_failed(session, 488, f"SDP not acceptable: {exc}")
                return
        self.dialogs.answer(sid, sdp)
        session.local_sdp = sdp
        session.remote_sdp = offer
        self._setup_media(session)
        self._deferred.discard(sid)
        self._established(session)

    def _end_failed(self, session: CallSession, status: int, reason: str) -> None:
        session.failure_status = status
        session.failure_reason = reason
        self.cleanup.end(session.id, CallState.FAILED, reason)

    async def accept_incoming_call(self, session_id: SessionId, sdp: str | None = None) -> None:
        """Answer a deferred incoming call."""
        session = self._deferred_session(session_id)
        self._answer(session, self._offers.pop(session_id, None), sdp)

    async def reject_incoming_call(
        self, session_id: SessionId, status: int = 486, reason: str | None = None
    ) -> None:
        """Reject a deferred incoming call with ``status`` (300-699)."""
        session = self._deferred_session(session_id)
        self.dialogs.reject(session_id, status, reason)
        self._stats["calls_rejected"] += 1
        self._end_failed(session, status, reason or "rejected")

    def _deferred_session(self, session_id: SessionId) -> CallSession:
        session = self.registry.require(session_id)
        if session_id not in self._deferred:
            raise InvalidStateError(
                f"session {session_id} is not a deferred incoming call (state {session.state.name})"
            )
        return session

    # --- outgoing calls ---------------------------------------------------------------------

    async def make_call(
        self,
        to_uri: str,
        from_uri: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        transport: str | None = None,
    ) -> CallSession:
        """Place a call to ``to_uri`` (``sip:user@host[:port]``); returns at once (INITIATING).

        Raises :class:`InvalidArgumentError` for a malformed URI or header.
        """
        self._require_running()
        if not isinstance(to_uri, str):
            raise InvalidArgumentError(f"to_uri must be a string, not {type(to_uri).__name__}")
        check_header_value(to_uri, "destination URI")
        try:
            target = parse_uri(to_uri.strip())
        except SipParseError as exc:
            raise InvalidArgumentError(
                f"bad destination URI {to_uri!r}: {exc}; expected e.g. sip:bob@127.0.0.1:5070"
            ) from None
        if not isinstance(target, SipUri):
            raise InvalidArgumentError(f"destination must be a sip: or sips: URI, not {to_uri!r}")
        sid = SessionId(f"out-{_ID_PREFIX}{next(_ids):x}")
        from_uri = from_uri or self.local_uri
        session = CallSession(sid, from_uri or "", to_uri)
        self.registry.register(session)
        self._stats["calls_outgoing"] += 1
        try:
            targets = await self.dialogs.locate(
                self.dialogs.first_hop(to_uri.strip(), from_uri), transport
            )
            offer = self.media.create_offer(sid)
            session.local_sdp = offer
            self._setup_media(session)
            self.dialogs.make_call(
                sid, to_uri.strip(), from_uri, offer, list((headers or {}).items()), transport,
                targets=targets,
            )  # fmt: skip
        except BaseException:
            self.registry.remove(sid)
            self.media.release(sid)
            self._stats["calls_outgoing"] -= 1
            raise
        call = self.dialogs._calls.get(sid)
        if call is not None:
            session.sip_call_id = call.invite.call_id
            session.from_uri = call.invite.headers.get("From") or session.from_uri
        return session

    create_outgoing_call = make_call

    def _on_answered(self, session: CallSession, sdp: str | None) -> None:
        if sdp:
            self._apply_answer(session, sdp)
        self._established(session)

    def _apply_answer(self, session: CallSession, sdp: str) -> None:
        session.remote_sdp = sdp
        try:
            self.media.apply_answer(session.id, sdp)
        except (SdpError, SipParseError) as exc:
            log.warning("%s: unusable SDP answer: %s", session.id, exc)

    def _established(self, session: CallSession) -> None:
        session.answered_at = time.time()
        self._stats["calls_answered"] += 1
        self._set_state(session, CallState.ACTIVE, "answered")
        for fut in self._answer_waiters.pop(session.id, ()):
            if not fut.done():
                fut.set_result(None)
        if self._wants["on_call_established"]:
            self._spawn(
                self.handler.on_call_established(session, session.local_sdp, session.remote_sdp)
            )

    def _on_failed(self, session: CallSession, status: int, reason: str) -> None:
        if status == 487 and session.state is CallState.TERMINATING:
            self._stats["calls_cancelled"] += 1
            session.failure_status = 487
            session.failure_reason = "cancelled"
            self.cleanup.end(session.id, CallState.CANCELLED, "cancelled")
            return
        self._stats["calls_failed"] += 1
        self._end_failed(session, status, f"{status} {reason}")

    async def wait_for_answer(self, session_id: SessionId, timeout: float | None = None) -> None:
        """Wait until the call is answered.

        Raises :class:`CallFailed` (with ``status``) when it ends unanswered, and
        :class:`TimeoutError` after ``timeout`` seconds.
        """
        session = self.registry.get(session_id)
        if session is None:
            ended = self.cleanup.recent.get(session_id)
            if ended is None:
                raise SessionNotFoundError(f"no session {session_id!r}")
            if ended.answered_at is not None:
                return
            raise _call_failed(ended)
        if session.answered_at is not None:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._answer_waiters.setdefault(session_id, []).append(fut)
        await asyncio.wait_for(fut, timeout)

    async def wait_for_end(self, session_id: SessionId, timeout: float | None = None) -> str:
        """Wait until the call has ended; return the end reason."""
        ended = self.cleanup.recent.get(session_id)
        if ended is not None:
            return ended.end_reason or ""
        self.registry.require(session_id)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._end_waiters.setdefault(session_id, []).append(fut)
        return await asyncio.wait_for(fut, timeout)

    # --- in-call operations -----------------------------------------------------------------

    def _active(self, session_id: SessionId, action: str) -> CallSession:
        self._require_running()
        session = self.registry.require(session_id)
        if session.state not in (CallState.ACTIVE, CallState.ON_HOLD):
            raise InvalidStateError(
                f"cannot {action} session {session_id}: it is {session.state.name}, "
                "it must be ACTIVE (answered) first"
            )
        return session

    async def _reinvite(self, session: CallSession, direction: str) -> tuple[int, str]:
        sid = session.id
        if sid in self._op_waiters:
            raise InvalidStateError(f"session {sid} already has an operation in progress")
        offer = self.media.reoffer(sid, direction)
        fut: asyncio.Future[tuple[int, str, str | None]] = (
            asyncio.get_running_loop().create_future()
        )
        self._op_waiters[sid] = fut
        try:
            self.dialogs.reinvite(sid, offer)
            status, reason, sdp = await asyncio.wait_for(fut, self.operation_timeout)
        finally:
            self._op_waiters.pop(sid, None)
        if 200 <= status < 300:
            session.local_sdp = offer
            if sdp:
                self._apply_answer(session, sdp)
        else:
            self.media.cancel_offer(sid)
        return status, reason

    async def hold_session(self, session_id: SessionId) -> None:
        """Put the call on hold (re-INVITE with ``a=sendonly``)."""
        session = self._active(session_id, "hold")
        if session.state is CallState.ON_HOLD:
            return
        status, reason = await self._reinvite(session, "sendonly")
        if not 200 <= status < 300:
            raise CallFailed(f"hold refused: {status} {reason}", status, reason)
        if self.registry.get(session_id) is not None:
            self._set_state(session, CallState.ON_HOLD, "hold")

    async def resume_session(self, session_id: SessionId) -> None:
        """Take the call off hold (re-INVITE with ``a=sendrecv``)."""
        session = self._active(session_id, "resume")
        if session.state is not CallState.ON_HOLD:
            raise InvalidStateError(f"session {session_id} is not on hold")
        status, reason = await self._reinvite(session, "sendrecv")
        if not 200 <= status < 300:
            raise CallFailed(f"resume refused: {status} {reason}", status, reason)
        if self.registry.get(session_id) is not None:
            self._set_state(session, CallState.ACTIVE, "resume")

    async def send_dtmf(
        self, session_id: SessionId, digits: str, duration_ms: int = 160, method: str = "auto"
    ) -> None:
        """Send DTMF digits (``0-9 * # A-D``).

        ``method``: ``"rfc4733"`` (RTP telephone-event), ``"info"`` (SIP INFO
        ``application/dtmf-relay``) or ``"auto"``: RFC 4733 when the peer negotiated
        telephone-event, INFO otherwise.
        """
        session = self._active(session_id, "send DTMF on")
        if not isinstance(digits, str) or not _DTMF_RE.fullmatch(digits):
            raise InvalidArgumentError(f"DTMF digits must be 0-9, *, #, A-D; got {digits!r}")
        if not 40 <= duration_ms <= 5000:
            raise InvalidArgumentError(f"DTMF duration must be 40-5000 ms, not {duration_ms}")
        if method not in ("auto", "rfc4733", "info"):
            raise InvalidArgumentError(f"DTMF method must be auto, rfc4733 or info: {method!r}")
        if method != "info" and self.media.send_dtmf(session.id, digits.upper(), duration_ms):
            return
        if method == "rfc4733":
            raise InvalidStateError(
                f"session {session_id}: the peer did not negotiate telephone-event; "
                "use method='info'"
            )
        for digit in digits.upper():
            body = format_dtmf_relay(digit, duration_ms)
            self.dialogs.send_info(session.id, "application/dtmf-relay", body)

    async def transfer_session(self, session_id: SessionId, target: str) -> None:
        """Blind transfer: ask the peer (REFER) to call ``target``."""
        session = self._active(session_id, "transfer")
        check_header_value(target, "transfer target")
        sid = session.id
        if sid in self._op_waiters:
            raise InvalidStateError(f"session {sid} already has an operation in progress")
        fut: asyncio.Future[tuple[int, str, str | None]] = (
            asyncio.get_running_loop().create_future()
        )
        self._op_waiters[sid] = fut
        old = session.state
        self._set_state(session, CallState.TRANSFERRING, f"transfer to {target}")
        try:
            self.dialogs.refer(sid, target)
            status, reason, _ = await asyncio.wait_for(fut, self.operation_timeout)
        except BaseException:
            if self.registry.get(sid) is not None:
                self._set_state(session, old, "transfer failed")
            raise
        finally:
            self._op_waiters.pop(sid, None)
        if not 200 <= status < 300:
            if self.registry.get(sid) is not None:
                self._set_state(session, old, "transfer refused")
            raise CallFailed(f"transfer refused: {status} {reason}", status, reason)

    async def _transferred(self, session: CallSession, target: str) -> None:
        """The peer transferred us (REFER): call ``target`` and report how it goes."""
        sid = session.id
        self.dialogs.notify_refer(sid, 100, "Trying", final=False)
        try:
            new = await self.make_call(target)
            await self.wait_for_answer(new.id, timeout=self.operation_timeout)
        except CallFailed as exc:
            status = exc.status or 503
            self.dialogs.notify_refer(sid, status, exc.reason or "Failed", final=True)
            return
        except (SessionError, TimeoutError) as exc:
            log.info("%s: transfer to %s failed: %s", sid, target, exc)
            self.dialogs.notify_refer(sid, 503, "Service Unavailable", final=True)
            return
        self.dialogs.notify_refer(sid, 200, "OK", final=True)

    def _on_refer_notify(self, session: CallSession, status: int, final: bool) -> None:
        if session.state is not CallState.TRANSFERRING or status < 200:
            return
        if 200 <= status < 300:
            # the transfer target answered: our leg is done (RFC 5589 §6)
            self.dialogs.hangup(session.id)
            self.cleanup.end(session.id, CallState.TERMINATED, "transferred")
        elif final:
            self._set_state(session, CallState.ACTIVE, f"transfer failed with {status}")

    async def terminate_session(self, session_id: SessionId) -> None:
        """Hang up: CANCEL while ringing out, reject while ringing in, BYE when up."""
        self._require_running()
        session = self.registry.require(session_id)
        self._hangup(session)

    def _hangup(self, session: CallSession) -> None:
        sid = session.id
        done = self.dialogs.hangup(sid)
        if done == "cancel":
            self._set_state(session, CallState.TERMINATING, "cancel")
        elif done == "bye":
            self.cleanup.end(sid, CallState.TERMINATED, "local hangup")
        elif done == "reject":
            self.cleanup.end(sid, CallState.TERMINATED, "rejected locally")
        else:
            self.cleanup.end(sid, CallState.TERMINATED, "local hangup")

    def _on_reinvite(self, session: CallSession, offer: str | None) -> None:
        sid = session.id
        try:
            if offer:
                answer = self.media.create_answer(sid, offer)
            else:
                answer = self.media.reoffer(sid, "sendrecv")
        except (SdpError, SipParseError, SessionError) as exc:
            log.info("%s: refusing re-INVITE: %s", sid, exc)
            self.dialogs.respond_reinvite(sid, 488)
            return
        self.dialogs.respond_reinvite(sid, 200, answer)
        session.local_sdp = answer
        session.remote_sdp = offer or session.remote_sdp
        ms = self.media.get(sid)
        if ms is not None and session.state in (CallState.ACTIVE, CallState.ON_HOLD):
            held = ms.remote_hold
            if held and session.state is CallState.ACTIVE:
                self._set_state(session, CallState.ON_HOLD, "held by peer")
            elif not held and session.state is CallState.ON_HOLD and ms.direction == "sendrecv":
                self._set_state(session, CallState.ACTIVE, "resumed by peer")

    def _on_info(self, session: CallSession, content_type: str | None, body: bytes) -> None:
        if content_type not in ("application/dtmf-relay", "application/dtmf"):
            return
        try:
            digit, duration = parse_dtmf_info(content_type, body)
        except DtmfError as exc:
            log.info("%s: ignoring a malformed DTMF INFO: %s", session.id, exc)
            return
        if self._wants["on_dtmf"]:
            self._spawn(self.handler.on_dtmf(session.id, digit, duration))

    # --- accounts ---------------------------------------------------------------------------

    def _on_registration(self, event: ev.RegistrationChanged) -> None:
        info = RegistrationInfo(
            event.aor, event.state, event.status, event.reason, event.expires, event.retry_in
        )
        self._registrations[event.aor] = info
        if event.state in ("registered", "failed", "unregistered"):
            for fut in self._reg_waiters.pop(event.aor, ()):
                if not fut.done():
                    fut.set_result(info)
        if self._wants["on_registration_state"]:
            self._spawn(self.handler.on_registration_state(info))

    async def register(self, aor: str, timeout: float | None = 32.0) -> RegistrationInfo:
        """(Re-)register account ``aor``; wait for the outcome (registered or failed)."""
        self._require_running()
        fut: asyncio.Future[RegistrationInfo] = asyncio.get_running_loop().create_future()
        self._reg_waiters.setdefault(aor, []).append(fut)
        self.dialogs.register(aor)
        return await asyncio.wait_for(fut, timeout)

    async def unregister(self, aor: str, timeout: float | None = 32.0) -> RegistrationInfo:
        """Remove account ``aor``'s binding at its registrar and stop refreshing it."""
        self._require_running()
        fut: asyncio.Future[RegistrationInfo] = asyncio.get_running_loop().create_future()
        self._reg_waiters.setdefault(aor, []).append(fut)
        self.dialogs.unregister(aor)
        if self.dialogs.registration(aor) is None:  # nothing was bound: stopped at once
            self._reg_waiters[aor].remove(fut)
            fut.cancel()
            return RegistrationInfo(aor, "unregistered", 0, "stopped")
        return await asyncio.wait_for(fut, timeout)

    async def wait_registered(self, aor: str, timeout: float | None = 32.0) -> RegistrationInfo:
        """Wait until account ``aor`` is registered; raises :class:`RegistrationFailed`."""
        info = self._registrations.get(aor)
        while info is None or info.state not in ("registered", "failed"):
            fut: asyncio.Future[RegistrationInfo] = asyncio.get_running_loop().create_future()
            self._reg_waiters.setdefault(aor, []).append(fut)
            info = await asyncio.wait_for(fut, timeout)
        if info.state != "registered":
            raise RegistrationFailed(
                f"registration of {aor} failed: {info.status} {info.reason}", info.status,
                info.reason,
            )  # fmt: skip
        return info

    def get_registration(self, aor: str) -> RegistrationInfo | None:
        """The last known state of account ``aor``'s registration."""
        return self._registrations.get(aor)

    # --- media ------------------------------------------------------------------------------

    def _setup_media(self, session: CallSession) -> None:
        """Give a new media session its audio source and sinks, and the app's audio port."""
        sid = session.id
        if self.media.get(sid) is None:
            return
        if self._source_factory is not None:
            source = self._source_factory(session)
            if source is not None:
                self.media.set_source(sid, source)
        if self._sink_factory is not None:
            sink = self._sink_factory(session)
            if sink is not None:
                self.media.add_sink(sid, sink)
        session._audio = _AudioPort(self.media, sid)

    def _on_media_event(self, event: mev.DtmfReceived | mev.MediaQuality) -> None:
        sid = SessionId(event.session_id)
        if self.registry.get(sid) is None:
            return
        if isinstance(event, mev.DtmfReceived):
            if self._wants["on_dtmf"]:
                self._spawn(self.handler.on_dtmf(sid, event.digit, event.duration_ms))
        elif self._wants["on_media_quality"]:
            self._spawn(self.handler.on_media_quality(sid, _quality(event.stats)))

    def set_audio_source(self, session_id: SessionId, source: AudioSource) -> None:
        """Replace what the session sends (tone, WAV file, queue ...)."""
        self.registry.require(session_id)
        self.media.set_source(session_id, source)

    def add_audio_sink(self, session_id: SessionId, sink: AudioSink) -> None:
        """Also feed what the peer sends into ``sink`` (recorder, analyser ...)."""
        self.registry.require(session_id)
        self.media.add_sink(session_id, sink)

    def mute_session(self, session_id: SessionId, muted: bool = True) -> None:
        """Send silence instead of the session's audio (the stream keeps running)."""
        self.registry.require(session_id)
        self.media.set_muted(session_id, muted)

    def get_media_stats(self, session_id: SessionId) -> MediaQuality:
        """The call's current audio statistics."""
        self.registry.require(session_id)
        return _quality(self.media.stats(session_id))

    # --- queries ----------------------------------------------------------------------------

    def get_session(self, session_id: SessionId) -> CallSession | None:
        """The session (live, or recently ended), or ``None``."""
        return self.registry.get(session_id) or self.cleanup.recent.get(session_id)

    def list_active_sessions(self) -> list[CallSession]:
        """Every session that has not ended."""
        return self.registry.list()

    def get_media_info(self, session_id: SessionId) -> dict[str, object]:
        """What media was negotiated for the session."""
        self.registry.require(session_id)
        return self.media.info(session_id)

    def get_stats(self) -> dict[str, int]:
        """Counters: calls by outcome, active sessions, SIP messages and errors."""
        out = dict(self._stats)
        out["active_sessions"] = len(self.registry)
        out.update(self.dialogs.stats)
        out["retransmissions"] = self.dialogs.retransmissions()
        return out

    # --- plumbing ---------------------------------------------------------------------------

    def _set_state(self, session: CallSession, new: CallState, reason: str | None) -> None:
        old = session.state
        if old is new:
            return
        session.state = new
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s -> %s (%s)", session.id, old.name, new.name, reason)
        if self._wants["on_call_state_changed"]:
            self._spawn(self.handler.on_call_state_changed(session.id, old, new, reason))

    def _on_ended(self, session: CallSession, old: CallState, reason: str) -> None:
        sid = session.id
        self._stats["calls_ended"] += 1
        self._deferred.discard(sid)
        self._offers.pop(sid, None)
        err = _call_failed(session)
        for fut in self._answer_waiters.pop(sid, ()):
            if not fut.done():
                fut.set_exception(err)
        for efut in self._end_waiters.pop(sid, ()):
            if not efut.done():
                efut.set_result(reason)
        op = self._op_waiters.pop(sid, None)
        if op is not None and not op.done():
            op.set_result((481, "call ended", None))
        if self._wants["on_call_state_changed"]:
            self._spawn(self.handler.on_call_state_changed(sid, old, session.state, reason))
        if self._wants["on_call_ended"]:
            self._spawn(self.handler.on_call_ended(session, reason))

    def _snapshot_media(self, session_id: SessionId) -> None:
        """Cleanup step: keep the call's final audio statistics on the session."""
        stats = self.media.stats(session_id)
        session = self.cleanup.recent.get(session_id)
        if stats and session is not None:
            session.media_stats = _quality(stats)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a handler callback: at once up to its first real suspension, then as a task.

        Most callbacks never wait for anything (count, log, decide), so they finish here
        without the cost of a task per callback; one that awaits goes on in a task and never
        holds up the event loop. Exceptions are logged either way.
        """
        try:
            yielded = coro.send(None)
        except StopIteration:
            return
        except Exception:
            log.exception("handler callback failed")
            return
        task = asyncio.get_running_loop().create_task(_resume(coro, yielded))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("handler callback failed", exc_info=task.exception())


async def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
    """Drive ``coro`` (already started, suspended on ``yielded``) to its end, like a Task."""
    while True:
        try:
            if isinstance(yielded, asyncio.Future):
                await asyncio.wait((yielded,))
            else:
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            try:
                yielded = coro.throw(asyncio.CancelledError())
            except (StopIteration, asyncio.CancelledError):
                return
            continue
        try:
            yielded = coro.send(None)
        except StopIteration:
            return


class _AudioPort:
    """The application's audio for one session: frames in, PCM out (see CallSession)."""

    def __init__(self, media: MediaManager, session_id: str) -> None:
        self._media = media
        self._sid = session_id
        self._queue: QueueSource | None = None

    async def frames(self) -> AsyncIterator[bytes]:
        sink = QueueSink()
        self._media.add_sink(self._sid, sink)
        try:
            async for frame in sink.frames():
                yield frame
        finally:
            self._media.remove_sink(self._sid, sink)

    def send(self, pcm: bytes) -> None:
        if self._queue is None:
            self._queue = QueueSource()
            self._media.set_source(self._sid, self._queue)
        self._queue.push(pcm)


def _quality(stats: dict[str, Any]) -> MediaQuality:
    rtt = stats.get("rtt_ms")
    return MediaQuality(
        packets_sent=int(stats.get("packets_sent", 0)),
        packets_received=int(stats.get("packets_received", 0)),
        packets_lost=int(stats.get("packets_lost", 0)),
        fraction_lost=float(stats.get("fraction_lost", 0.0)),
        jitter_ms=float(stats.get("jitter_ms", 0.0)),
        rtt_ms=float(rtt) if rtt is not None else None,
        mos=float(stats.get("mos", 0.0)),
        late_frames=int(stats.get("late_frames", 0)) + int(stats.get("skipped_slots", 0)),
        details=dict(stats),
    )


def _call_failed(session: CallSession) -> CallFailed:
    status = session.failure_status
    reason = session.failure_reason or session.end_reason or "call ended"
    return CallFailed(f"call {session.id} was not answered: {reason}", status, reason)


def _warning_text(text: str) -> str:
    return "".join(ch for ch in text if 32 <= ord(ch) < 127 and ch != '"')[:120]
