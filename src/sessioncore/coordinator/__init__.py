"""The orchestration layer: the SessionCoordinator and its CleanupManager."""

from sessioncore.coordinator.cleanup import CleanupManager
from sessioncore.coordinator.coordinator import SessionCoordinator

__all__ = ["CleanupManager", "SessionCoordinator"]
