"""The events the coordinator's loop consumes: whatever the subsystems report.

The subsystems define their own events (:mod:`sessioncore.sip.events`,
:mod:`sessioncore.media.events`): they cannot import from here.
"""

from __future__ import annotations

from sessioncore.media.events import MediaEvent
from sessioncore.sip.events import DialogEvent

__all__ = ["SessionEvent"]

SessionEvent = DialogEvent | MediaEvent
