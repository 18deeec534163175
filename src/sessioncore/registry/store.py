"""Session storage behind the registry: in memory by default, pluggable."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from sessioncore.api.types import CallSession, SessionId

__all__ = ["InMemorySessionStore", "SessionStore"]


class SessionStore(Protocol):
    """What the registry needs from a store."""

    def put(self, session: CallSession) -> None: ...
    def get(self, session_id: SessionId) -> CallSession | None: ...
    def pop(self, session_id: SessionId) -> CallSession | None: ...
    def values(self) -> Iterable[CallSession]: ...
    def __len__(self) -> int: ...


class InMemorySessionStore:
    """A dict of sessions."""

    def __init__(self) -> None:
        self._sessions: dict[SessionId, CallSession] = {}

    def put(self, session: CallSession) -> None:
        """Store (or replace) a session."""
        self._sessions[session.id] = session

    def get(self, session_id: SessionId) -> CallSession | None:
        """The session or ``None``."""
        return self._sessions.get(session_id)

    def pop(self, session_id: SessionId) -> CallSession | None:
        """Remove and return the session."""
        return self._sessions.pop(session_id, None)

    def values(self) -> Iterable[CallSession]:
        """All sessions."""
        return list(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)
