"""MediaManager: the media subsystem's driver.

For now it owns SDP offer/answer and the RTP port range per session: it builds offers and
answers with real addresses and ports so that peers accept them, and releases the ports when
the session ends. RTP/RTCP streams slot in here (media issue). It never calls user code and
knows nothing of SIP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sessioncore.errors import InvalidStateError, SdpError
from sessioncore.media.negotiation import (
    NegotiatedMedia,
    build_answer,
    build_offer,
    is_hold,
    process_answer,
    with_direction,
)
from sessioncore.media.ports import PortAllocator
from sessioncore.media.sdp import SessionDescription

__all__ = ["MediaConfig", "MediaManager", "MediaSession"]

log = logging.getLogger("sessioncore.media.manager")


@dataclass(slots=True)
class MediaConfig:
    """What the media subsystem needs."""

    local_ip: str = "127.0.0.1"
    port_start: int = 10000
    port_end: int = 20000
    codecs: Sequence[str] = ("PCMU", "PCMA")
    dtmf: bool = True
    ptime: int = 20


@dataclass(slots=True)
class MediaSession:
    """The media state of one session."""

    session_id: str
    rtp_port: int
    local_sdp: SessionDescription | None = None
    remote_sdp: SessionDescription | None = None
    negotiated: NegotiatedMedia | None = None
    pending_offer: SessionDescription | None = None
    direction: str = "sendrecv"
    remote_hold: bool = False
    extra: dict[str, object] = field(default_factory=dict)


class MediaManager:
    """Per-session SDP negotiation and port allocation."""

    def __init__(self, config: MediaConfig, emit: Callable[[object], None] | None = None) -> None:
        self.config = config
        self._emit = emit
        self._ports = PortAllocator(config.port_start, config.port_end)
        self._sessions: dict[str, MediaSession] = {}

    async def start(self) -> None:
        """Nothing to bind yet (RTP sockets come with the media plane)."""

    async def stop(self) -> None:
        """Release every session's ports."""
        for sid in list(self._sessions):
            self.release(sid)

    @property
    def active(self) -> int:
        """How many sessions hold media resources."""
        return len(self._sessions)

    def _session(self, session_id: str) -> MediaSession:
        ms = self._sessions.get(session_id)
        if ms is None:
            ms = MediaSession(session_id, self._ports.allocate())
            self._sessions[session_id] = ms
        return ms

    def get(self, session_id: str) -> MediaSession | None:
        """The media session, if any."""
        return self._sessions.get(session_id)

    def create_offer(self, session_id: str) -> str:
        """Our initial offer for an outgoing call."""
        ms = self._session(session_id)
        cfg = self.config
        offer = build_offer(
            cfg.local_ip, ms.rtp_port, codecs=cfg.codecs, dtmf=cfg.dtmf, ptime=cfg.ptime
        )
        ms.local_sdp = ms.pending_offer = offer
        return str(offer)

    def create_answer(self, session_id: str, offer_text: str) -> str:
        """Answer an incoming offer; raises :class:`SdpError` (488) when it cannot be met."""
        ms = self._session(session_id)
        offer = SessionDescription.parse(offer_text)
        cfg = self.config
        answer, negotiated = build_answer(
            offer, cfg.local_ip, ms.rtp_port, codecs=cfg.codecs, dtmf=cfg.dtmf,
            direction=ms.direction, ptime=cfg.ptime, previous=ms.local_sdp,
        )  # fmt: skip
        ms.remote_sdp = offer
        ms.local_sdp = answer
        ms.negotiated = negotiated
        ms.remote_hold = is_hold(offer)
        return str(answer)

    def apply_answer(self, session_id: str, answer_text: str) -> NegotiatedMedia:
        """Take the peer's answer to our pending offer."""
        ms = self._sessions.get(session_id)
        if ms is None or ms.pending_offer is None:
            raise SdpError("an SDP answer arrived but no offer is pending", status=400)
        answer = SessionDescription.parse(answer_text)
        negotiated = process_answer(ms.pending_offer, answer)
        ms.remote_sdp = answer
        ms.negotiated = negotiated
        ms.pending_offer = None
        return negotiated

    def reoffer(self, session_id: str, direction: str) -> str:
        """A new offer with the audio direction changed (hold: sendonly, resume: sendrecv)."""
        ms = self._sessions.get(session_id)
        if ms is None or ms.local_sdp is None:
            raise InvalidStateError(f"session {session_id} has no media to change")
        offer = with_direction(ms.local_sdp, direction)
        ms.local_sdp = ms.pending_offer = offer
        ms.direction = direction
        return str(offer)

    def cancel_offer(self, session_id: str) -> None:
        """Forget a pending offer that the peer refused."""
        ms = self._sessions.get(session_id)
        if ms is not None:
            ms.pending_offer = None

    def release(self, session_id: str) -> None:
        """Free the session's ports. Harmless when there is nothing to free."""
        ms = self._sessions.pop(session_id, None)
        if ms is not None:
            self._ports.release(ms.rtp_port)

    def info(self, session_id: str) -> dict[str, object]:
        """What was negotiated, for ``get_media_info``."""
        ms = self._sessions.get(session_id)
        if ms is None:
            return {}
        n = ms.negotiated
        return {
            "local_rtp_port": ms.rtp_port,
            "codec": n.codec if n else None,
            "payload_type": n.payload_type if n else None,
            "remote_address": f"{n.remote_address}:{n.remote_rtp_port}" if n else None,
            "direction": n.direction if n else ms.direction,
            "remote_hold": ms.remote_hold,
        }
