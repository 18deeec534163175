"""The session registry service."""

from sessioncore.registry.manager import SessionManager
from sessioncore.registry.store import InMemorySessionStore, SessionStore

__all__ = ["InMemorySessionStore", "SessionManager", "SessionStore"]
