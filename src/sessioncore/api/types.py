"""Plain types of the public API: session ids, call states, sessions, incoming calls, decisions."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import NewType

__all__ = [
    "CallDecision",
    "CallSession",
    "CallState",
    "DecisionKind",
    "IncomingCall",
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
        return cls(DecisionKind.REJECT, status, reason)

    @classmethod
    def defer(cls) -> CallDecision:
        """Ring (180) and decide later with ``accept_incoming_call``/``reject_incoming_call``."""
        return cls(DecisionKind.DEFER, 180)

    @classmethod
    def forward(cls, target: str) -> CallDecision:
        """Redirect the caller to ``target`` with 302 Moved Temporarily."""
        return cls(DecisionKind.FORWARD, 302, "Moved Temporarily", None, target)
