"""CleanupManager: ends sessions exactly once and releases everything they hold."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

from sessioncore.api.types import CallSession, CallState, SessionId
from sessioncore.registry.manager import SessionManager

__all__ = ["CleanupManager"]

log = logging.getLogger("sessioncore.coordinator.cleanup")


class CleanupManager:
    """Ends a session once, whatever path ends it, and runs every release step.

    ``steps`` are called with the session id; a step that raises is logged and the others still
    run. ``on_ended(session, reason)`` runs last (the coordinator uses it to notify the handler
    and wake waiters). The registry removal is the "exactly once" latch: a session that is no
    longer registered is not ended again.
    """

    def __init__(
        self,
        registry: SessionManager,
        steps: list[Callable[[SessionId], None]],
        on_ended: Callable[[CallSession, CallState, str], None],
        remember: int = 1000,
    ) -> None:
        self._registry = registry
        self._steps = steps
        self._on_ended = on_ended
        # recently ended sessions, so that wait_for_end/get_session still answer after the end
        self.recent: collections.OrderedDict[SessionId, CallSession] = collections.OrderedDict()
        self._remember = remember

    def end(self, session_id: SessionId, state: CallState, reason: str) -> bool:
        """End the session with final ``state``; return False if it had already ended."""
        session = self._registry.remove(session_id)
        if session is None:
            return False
        old = session.state
        session.state = state
        session.end_reason = reason
        session.ended_at = time.time()
        self.recent[session_id] = session  # steps may still look the session up
        if len(self.recent) > self._remember:
            self.recent.popitem(last=False)
        for step in self._steps:
            try:
                step(session_id)
            except Exception:
                log.exception("%s: cleanup step %s failed", session_id, step)
        try:
            self._on_ended(session, old, reason)
        except Exception:
            log.exception("%s: end notification failed", session_id)
        return True
