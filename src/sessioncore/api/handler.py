"""The CallHandler base class applications subclass, and the built-in handlers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from sessioncore.api.types import (
    CallDecision,
    CallSession,
    CallState,
    IncomingCall,
    MediaQuality,
    RegistrationInfo,
    SessionId,
)

__all__ = [
    "AutoAnswerHandler",
    "CallHandler",
    "CompositeHandler",
    "QueueHandler",
    "RejectAllHandler",
    "RoutingHandler",
]

log = logging.getLogger("sessioncore.api.handler")


class CallHandler:
    """Receives call events from the coordinator. Every method is async; defaults do nothing.

    The coordinator runs each callback as its own task, so a slow handler never stalls
    signaling; exceptions are logged, and an exception in :meth:`on_incoming_call` rejects
    the call with 500.
    """

    async def on_incoming_call(self, call: IncomingCall) -> CallDecision:
        """Decide what to do with a new incoming call (default: accept)."""
        return CallDecision.accept()

    async def on_call_established(
        self, session: CallSession, local_sdp: str | None, remote_sdp: str | None
    ) -> None:
        """The call was answered (either direction)."""

    async def on_call_ended(self, session: CallSession, reason: str) -> None:
        """The call ended; called exactly once per session, whichever way it ended."""

    async def on_call_state_changed(
        self, session_id: SessionId, old: CallState, new: CallState, reason: str | None
    ) -> None:
        """The call moved from ``old`` to ``new``."""

    async def on_dtmf(self, session_id: SessionId, digit: str, duration_ms: int) -> None:
        """The peer sent a DTMF digit (RFC 4733 telephone-event or SIP INFO)."""

    async def on_media_quality(self, session_id: SessionId, quality: MediaQuality) -> None:
        """Periodic audio quality of a call: loss, jitter, round-trip time, estimated MOS."""

    async def on_registration_state(self, info: RegistrationInfo) -> None:
        """An account's registration changed (registered, refreshed, failed, unregistered)."""


class AutoAnswerHandler(CallHandler):
    """Accepts every incoming call."""

    async def on_incoming_call(self, call: IncomingCall) -> CallDecision:
        """Accept."""
        return CallDecision.accept()


class RejectAllHandler(CallHandler):
    """Rejects every incoming call with ``status`` (486 Busy Here by default)."""

    def __init__(self, status: int = 486, reason: str = "Busy Here") -> None:
        self.status = status
        self.reason = reason

    async def on_incoming_call(self, call: IncomingCall) -> CallDecision:
        """Reject."""
        return CallDecision.reject(self.status, self.reason)


class QueueHandler(CallHandler):
    """Defers incoming calls (they ring) and queues them for the application.

    Take calls with ``await handler.next_call()`` and then answer them with
    ``coordinator.accept_incoming_call(call.id)`` or ``reject_incoming_call``. When
    ``max_pending`` calls are already waiting, new ones are rejected with 486. A call the
    caller gives up on (CANCEL) leaves the queue.
    """

    def __init__(self, max_pending: int = 100) -> None:
        self.max_pending = max_pending
        self._pending: dict[SessionId, IncomingCall] = {}
        self._changed = asyncio.Event()

    async def on_incoming_call(self, call: IncomingCall) -> CallDecision:
        """Defer and queue the call, or reject it when the queue is full."""
        if len(self._pending) >= self.max_pending:
            return CallDecision.reject(486, "Busy Here")
        self._pending[call.id] = call
        self._changed.set()
        return CallDecision.defer()

    async def on_call_ended(self, session: CallSession, reason: str) -> None:
        """Drop a queued call that ended before the application took it."""
        self._pending.pop(session.id, None)

    async def next_call(self, timeout: float | None = None) -> IncomingCall:
        """Wait for the next deferred call (oldest first)."""

        async def wait() -> IncomingCall:
            while not self._pending:
                self._changed.clear()
                await self._changed.wait()
            sid = next(iter(self._pending))
            return self._pending.pop(sid)

        return await asyncio.wait_for(wait(), timeout)

    @property
    def pending(self) -> int:
        """How many deferred calls wait in the queue."""
        return len(self._pending)


class RoutingHandler(CallHandler):
    """Forwards (302) calls whose request user starts with a prefix; accepts the others.

    ``rules`` maps a prefix of the called user (``"sales"``, ``"+1"`` ...) to a target URI;
    the longest matching prefix wins. ``default`` (a :class:`CallDecision`) handles the rest.
    """

    def __init__(self, rules: Mapping[str, str], default: CallDecision | None = None) -> None:
        self.rules = sorted(rules.items(), key=lambda kv: len(kv[0]), reverse=True)
        self.default = default if default is not None else CallDecision.accept()

    async def on_incoming_call(self, call: IncomingCall) -> CallDecision:
        """Forward by prefix of the called user."""
        uri = call.request_uri or call.to_uri
        user = uri.split(":", 1)[-1].split("@", 1)[0].lstrip("<")
        for prefix, target in self.rules:
            if user.startswith(prefix):
                return CallDecision.forward(target)
        return self.default


class CompositeHandler(CallHandler):
    """Combines handlers: the first handler decides incoming calls, every handler hears events.

    A handler earlier in the list may return ``None`` from ``on_incoming_call`` to pass the
    decision on to the next one; if none decides, the call is accepted.
    """

    def __init__(self, handlers: Sequence[CallHandler]) -> None:
        self.handlers = list(handlers)

    async def on_incoming_call(self, call: IncomingCall) -> CallDecision:
        """Ask each handler that decides calls (overrides ``on_incoming_call``) in turn."""
        for h in self.handlers:
            if type(h).on_incoming_call is CallHandler.on_incoming_call:
                continue  # this one only listens to events
            decision: CallDecision | None = await h.on_incoming_call(call)
            if decision is not None:
                return decision
        return CallDecision.accept()

    async def on_call_established(
        self, session: CallSession, local_sdp: str | None, remote_sdp: str | None
    ) -> None:
        """Tell every handler."""
        for h in self.handlers:
            await _guard(h.on_call_established(session, local_sdp, remote_sdp))

    async def on_call_ended(self, session: CallSession, reason: str) -> None:
        """Tell every handler."""
        for h in self.handlers:
            await _guard(h.on_call_ended(session, reason))

    async def on_call_state_changed(
        self, session_id: SessionId, old: CallState, new: CallState, reason: str | None
    ) -> None:
        """Tell every handler."""
        for h in self.handlers:
            await _guard(h.on_call_state_changed(session_id, old, new, reason))

    async def on_dtmf(self, session_id: SessionId, digit: str, duration_ms: int) -> None:
        """Tell every handler."""
        for h in self.handlers:
            await _guard(h.on_dtmf(session_id, digit, duration_ms))

    async def on_media_quality(self, session_id: SessionId, quality: MediaQuality) -> None:
        """Tell every handler."""
        for h in self.handlers:
            await _guard(h.on_media_quality(session_id, quality))

    async def on_registration_state(self, info: RegistrationInfo) -> None:
        """Tell every handler."""
        for h in self.handlers:
            await _guard(h.on_registration_state(info))


async def _guard(coro: object) -> None:
    try:
        await coro  # type: ignore[misc]
    except Exception:
        log.exception("handler callback failed")
