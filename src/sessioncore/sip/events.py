"""Events the DialogManager reports upward (to the coordinator).

Every event names the call by ``call_ref``: the string the coordinator uses as session id. The
SIP layer knows nothing of sessions or handlers; it only says what happened on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CallAnswered",
    "CallCancelled",
    "CallConfirmed",
    "CallFailedEvent",
    "CallProgress",
    "CallTerminated",
    "DialogEvent",
    "IncomingInvite",
    "InfoReceived",
    "ReferNotify",
    "ReferReceived",
    "ReferResult",
    "RegistrationChanged",
    "ReinviteReceived",
    "ReinviteResult",
]


@dataclass(frozen=True, slots=True)
class IncomingInvite:
    """A new INVITE arrived (100 Trying already sent); the coordinator must decide."""

    call_ref: str
    call_id: str
    from_uri: str
    to_uri: str
    request_uri: str
    sdp: str | None
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class CallProgress:
    """Our INVITE got a provisional response (180, 183 ...)."""

    call_ref: str
    status: int
    reason: str
    sdp: str | None


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """Our INVITE got a 2xx; the ACK has been sent."""

    call_ref: str
    sdp: str | None


@dataclass(frozen=True, slots=True)
class CallConfirmed:
    """The ACK for our 2xx arrived (UAS side)."""

    call_ref: str
    sdp: str | None


@dataclass(frozen=True, slots=True)
class CallFailedEvent:
    """Our INVITE ended without a dialog: final failure response, timeout or transport error."""

    call_ref: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class CallCancelled:
    """The caller cancelled an INVITE we had not answered yet (we sent 487)."""

    call_ref: str


@dataclass(frozen=True, slots=True)
class CallTerminated:
    """A confirmed call ended (BYE either way, no ACK, in-dialog timeout or transport failure)."""

    call_ref: str
    reason: str
    by_remote: bool


@dataclass(frozen=True, slots=True)
class ReinviteReceived:
    """The peer sent a re-INVITE; answer it with ``DialogManager.respond_reinvite``."""

    call_ref: str
    sdp: str | None


@dataclass(frozen=True, slots=True)
class ReinviteResult:
    """Our re-INVITE got its final response (status 2xx: accepted, ACK sent)."""

    call_ref: str
    status: int
    reason: str
    sdp: str | None


@dataclass(frozen=True, slots=True)
class InfoReceived:
    """An in-dialog INFO request arrived (answered 200)."""

    call_ref: str
    content_type: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class ReferResult:
    """Our REFER got its final response."""

    call_ref: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReferReceived:
    """The peer asked us (REFER, answered 202) to call ``target``: a blind transfer."""

    call_ref: str
    target: str


@dataclass(frozen=True, slots=True)
class ReferNotify:
    """A NOTIFY reported the progress of the call our REFER asked for (sipfrag status)."""

    call_ref: str
    status: int
    final: bool


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    """A registration moved (registered, refreshed, failed, unregistered)."""

    aor: str
    state: str
    status: int
    reason: str
    expires: int | None
    retry_in: float | None


DialogEvent = (
    IncomingInvite
    | CallProgress
    | CallAnswered
    | CallConfirmed
    | CallFailedEvent
    | CallCancelled
    | CallTerminated
    | ReinviteReceived
    | ReinviteResult
    | InfoReceived
    | ReferResult
    | ReferReceived
    | ReferNotify
    | RegistrationChanged
)
