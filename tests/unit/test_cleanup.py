"""CleanupManager: a session ends exactly once, and every release step runs even if one fails."""

from __future__ import annotations

from sessioncore.api.types import CallSession, CallState, SessionId
from sessioncore.coordinator.cleanup import CleanupManager
from sessioncore.registry.manager import SessionManager


def test_ends_exactly_once_and_runs_every_step() -> None:
    registry = SessionManager()
    released: list[str] = []
    ended: list[tuple[SessionId, CallState, CallState, str]] = []

    def failing_step(sid: SessionId) -> None:
        raise RuntimeError("media release failed")

    def recording_step(sid: SessionId) -> None:
        released.append(sid)

    cleanup = CleanupManager(
        registry,
        [failing_step, recording_step],
        lambda s, old, reason: ended.append((s.id, old, s.state, reason)),
    )
    sid = SessionId("s1")
    registry.register(CallSession(sid, "sip:a@x", "sip:b@y", CallState.ACTIVE))
    assert cleanup.end(sid, CallState.TERMINATED, "remote hangup")
    assert not cleanup.end(sid, CallState.FAILED, "late failure")  # already ended
    assert released == ["s1"]
    assert ended == [("s1", CallState.ACTIVE, CallState.TERMINATED, "remote hangup")]
    assert len(registry) == 0
    assert cleanup.recent[sid].end_reason == "remote hangup"


def test_recent_is_bounded() -> None:
    registry = SessionManager()
    cleanup = CleanupManager(registry, [], lambda s, o, r: None, remember=10)
    for i in range(50):
        sid = SessionId(f"s{i}")
        registry.register(CallSession(sid, "a", "b"))
        cleanup.end(sid, CallState.TERMINATED, "x")
    assert len(cleanup.recent) == 10
    assert SessionId("s49") in cleanup.recent and SessionId("s0") not in cleanup.recent
