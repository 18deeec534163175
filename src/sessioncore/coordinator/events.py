"""The events the coordinator's loop consumes: whatever the subsystems report.

The SIP subsystem's events are defined in :mod:`sessioncore.sip.events` (the SIP layer cannot
import from here); media events join this union with the media plane.
"""

from __future__ import annotations

from sessioncore.sip.events import DialogEvent

__all__ = ["SessionEvent"]

SessionEvent = DialogEvent
