"""Simple functions for scripts: one-line delegations to the coordinator."""

from __future__ import annotations

from sessioncore.api.types import CallSession, SessionId
from sessioncore.coordinator.coordinator import SessionCoordinator

__all__ = [
    "answer_call",
    "hangup_call",
    "hold_call",
    "make_call",
    "reject_call",
    "resume_call",
    "send_dtmf",
    "transfer_call",
]


async def make_call(
    coordinator: SessionCoordinator, to: str, from_uri: str | None = None
) -> CallSession:
    """Place a call (see :meth:`SessionCoordinator.make_call`)."""
    return await coordinator.make_call(to, from_uri)


async def hold_call(coordinator: SessionCoordinator, session_id: SessionId) -> None:
    """Put a call on hold."""
    await coordinator.hold_session(session_id)


async def resume_call(coordinator: SessionCoordinator, session_id: SessionId) -> None:
    """Resume a held call."""
    await coordinator.resume_session(session_id)


async def hangup_call(coordinator: SessionCoordinator, session_id: SessionId) -> None:
    """Hang up a call."""
    await coordinator.terminate_session(session_id)


async def transfer_call(
    coordinator: SessionCoordinator, session_id: SessionId, target: str
) -> None:
    """Blind-transfer a call to ``target``."""
    await coordinator.transfer_session(session_id, target)


async def send_dtmf(coordinator: SessionCoordinator, session_id: SessionId, digits: str) -> None:
    """Send DTMF digits."""
    await coordinator.send_dtmf(session_id, digits)


async def answer_call(coordinator: SessionCoordinator, session_id: SessionId) -> None:
    """Answer a deferred incoming call."""
    await coordinator.accept_incoming_call(session_id)


async def reject_call(
    coordinator: SessionCoordinator, session_id: SessionId, status: int = 486
) -> None:
    """Reject a deferred incoming call."""
    await coordinator.reject_incoming_call(session_id, status)
