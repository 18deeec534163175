"""SessionManager: the registry service of call sessions. No orchestration, no event loop."""

from __future__ import annotations

from collections.abc import Iterator

from sessioncore.api.types import CallSession, CallState, SessionId
from sessioncore.errors import SessionNotFoundError
from sessioncore.registry.store import InMemorySessionStore, SessionStore

__all__ = ["SessionManager"]


class SessionManager:
    """Registers, finds, updates and removes :class:`CallSession` objects."""

    def __init__(self, store: SessionStore | None = None) -> None:
        self._store: SessionStore = store if store is not None else InMemorySessionStore()

    def register(self, session: CallSession) -> None:
        """Add a new session."""
        self._store.put(session)

    def get(self, session_id: SessionId) -> CallSession | None:
        """The session, or ``None`` when unknown."""
        return self._store.get(session_id)

    def require(self, session_id: SessionId) -> CallSession:
        """The session; raises :class:`SessionNotFoundError` when unknown."""
        session = self._store.get(session_id)
        if session is None:
            raise SessionNotFoundError(
                f"no session {session_id!r}: it never existed or has already ended "
                "(see list_active_sessions())"
            )
        return session

    def update_state(self, session_id: SessionId, state: CallState) -> CallState:
        """Set a session's state; return the previous one."""
        session = self.require(session_id)
        old = session.state
        session.state = state
        return old

    def remove(self, session_id: SessionId) -> CallSession | None:
        """Remove and return the session (``None`` if it was not there)."""
        return self._store.pop(session_id)

    def list(self) -> list[CallSession]:
        """Every registered session."""
        return list(self._store.values())

    def __iter__(self) -> Iterator[CallSession]:
        return iter(self._store.values())

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, session_id: object) -> bool:
        return isinstance(session_id, str) and self._store.get(SessionId(session_id)) is not None
