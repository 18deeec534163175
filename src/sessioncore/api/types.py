"""Plain types of the public API: session ids, call states, sessions, incoming calls, decisions."""

from __future__ import annotations

import enum
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, NewType, Protocol

from sessioncore.errors import InvalidArgumentError, InvalidStateError, SipParseError
from sessioncore.sip.uri import check_header_value, parse_uri

__all__ = [
    "CallDecision",
    "CallSession",
    "CallState",
    "DecisionKind",
    "IncomingCall",
    "MediaQuality",
    "RegistrationInfo",
    "SessionId",
]

SessionId = NewType("SessionId", str)
"""Identifies one call session for its whole life (a string)."""


class CallState(enum.Enum):
    """Where a call is in its life."""

    INITIATING = "initiating"
    RINGING = "ringing"
    ACTIVE = "active"
    ON_HOLD = "on_hold"
    TRANSFERRING = "transferring"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        """True once the call has ended (terminated, cancelled or failed)."""
        return self in _FINAL


_FINAL = frozenset({CallState.TERMINATED, CallState.CANCELLED, CallState.FAILED})


class AudioPort(Protocol):
    """What the coordinator attaches to a session for the application's audio."""

    def frames(self) -> AsyncIterator[bytes]: ...
    def send(self, pcm: bytes) -> None: ...


@dataclass(slots=True)
class CallSession:
    """One call, as the application sees it.

    The coordinator updates ``state`` (and the failure fields) as the call progresses; treat the
    object as read-only.
    """

    id: SessionId
    from_uri: str
    to_uri: str
    state: CallState = CallState.INITIATING
    started_at: float = field(default_factory=time.time)
    sip_call_id: str | None = None
    direction: str = "outgoing"
    answered_at: float | None = None
    ended_at: float | None = None
    failure_status: int | None = None
    failure_reason: str | None = None
    end_reason: str | None = None
    local_sdp: str | None = None
    remote_sdp: str | None = None
    media_stats: MediaQuality | None = None
    _audio: AudioPort | None = field(default=None, repr=False, compare=False)

    def audio_frames(self) -> AsyncIterator[bytes]:
        """What the peer says, as 20 ms frames of 16-bit mono PCM at 8 kHz, until the call ends.

        ``async for frame in session.audio_frames(): ...``
        """
        if self._audio is None:
            raise InvalidStateError(f"session {self.id} has no media stream")
        return self._audio.frames()

    async def send_audio(self, pcm: bytes) -> None:
        """Queue 16-bit mono PCM at 8 kHz to be sent (replaces the session's audio source)."""
        if self._audio is None:
            raise InvalidStateError(f"session {self.id} has no media stream")
        self._audio.send(pcm)

    @property
    def is_active(self) -> bool:
        """True while the call is up (active or on hold)."""
        return self.state in (CallState.ACTIVE, CallState.ON_HOLD, CallState.TRANSFERRING)

    @property
    def duration(self) -> float | None:
        """Seconds from answer to end (or to now while the call is up)."""
        if self.answered_at is None:
            return None
        return (self.ended_at or time.time()) - self.answered_at


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """An INVITE waiting for the handler's decision.

    ``from_uri`` and ``to_uri`` are the From and To header values as they appeared.
    """

    id: SessionId
    from_uri: str
    to_uri: str
    sdp: str | None
    headers: dict[str, str]
    sip_call_id: str
    request_uri: str = ""


class DecisionKind(enum.Enum):
    """What to do with an incoming call."""

    ACCEPT = "accept"
    REJECT = "reject"
    DEFER = "defer"
    FORWARD = "forward"


@dataclass(frozen=True, slots=True)
class CallDecision:
    """The handler's answer to :meth:`CallHandler.on_incoming_call`.

    Build it with :meth:`accept`, :meth:`reject`, :meth:`defer` or :meth:`forward`.
    """

    kind: DecisionKind
    status: int = 200
    reason: str | None = None
    sdp: str | None = None
    target: str | None = None

    @classmethod
    def accept(cls, sdp: str | None = None) -> CallDecision:
        """Answer with 200 OK (``sdp`` overrides the answer the media layer would build)."""
        return cls(DecisionKind.ACCEPT, 200, None, sdp)

    @classmethod
    def reject(cls, status: int = 486, reason: str = "Busy Here") -> CallDecision:
        """Answer with a final failure response (300-699)."""
        if not isinstance(status, int) or not 300 <= status <= 699:
            raise InvalidArgumentError(f"a rejection status must be 300-699, not {status!r}")
        check_header_value(reason, "reason phrase")
        return cls(DecisionKind.REJECT, status, reason)

    @classmethod
    def defer(cls) -> CallDecision:
        """Ring (180) and decide later with ``accept_incoming_call``/``reject_incoming_call``."""
        return cls(DecisionKind.DEFER, 180)

    @classmethod
    def forward(cls, target: str) -> CallDecision:
        """Redirect the caller to ``target`` with 302 Moved Temporarily."""
        check_header_value(target, "forward target")
        try:
            parse_uri(target)
        except SipParseError as exc:
            raise InvalidArgumentError(f"bad forward target {target!r}: {exc}") from None
        return cls(DecisionKind.FORWARD, 302, "Moved Temporarily", None, target)


@dataclass(frozen=True, slots=True)
class MediaQuality:
    """A periodic report on a call's audio (see ``CallHandler.on_media_quality``).

    ``fraction_lost`` is 0..1 over the last RTCP interval, ``packets_lost`` cumulative,
    ``jitter_ms`` what we measure of the peer's stream, ``rtt_ms`` from RTCP (``None`` until
    known), ``mos`` an E-model estimate (1.0 .. 4.5), ``late_frames`` the frames sent more than
    5 ms after their slot plus the slots skipped after a stall.
    """

    packets_sent: int
    packets_received: int
    packets_lost: int
    fraction_lost: float
    jitter_ms: float
    rtt_ms: float | None
    mos: float
    late_frames: int = 0
    details: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class RegistrationInfo:
    """Where an account's registration stands (see ``CallHandler.on_registration_state``).

    ``state`` is ``"registering"``, ``"registered"``, ``"failed"``, ``"unregistering"`` or
    ``"unregistered"``; ``status``/``reason`` come from the last response (408 for a timeout,
    503 for a transport error); ``expires`` is what the registrar granted; ``retry_in`` is when
    the next attempt happens after a failure (``None``: no retry, e.g. wrong password).
    """

    aor: str
    state: str
    status: int
    reason: str
    expires: int | None = None
    retry_in: float | None = None

    @property
    def registered(self) -> bool:
        """True while the binding is in place."""
        return self.state == "registered"
