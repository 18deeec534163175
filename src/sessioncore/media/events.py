"""Events the MediaManager reports upward (to the coordinator)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DtmfReceived", "MediaEvent", "MediaQuality", "MediaTimeout"]


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """The peer sent a DTMF digit as RFC 4733 telephone-event."""

    session_id: str
    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class MediaQuality:
    """Periodic statistics of a running stream (see ``MediaManager.stats``)."""

    session_id: str
    stats: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MediaTimeout:
    """No RTP arrived for ``silent_for`` seconds on a stream that should be receiving."""

    session_id: str
    silent_for: float


MediaEvent = DtmfReceived | MediaQuality | MediaTimeout
