"""MediaManager: the media subsystem's driver.

Per session it owns SDP offer/answer, an even/odd RTP/RTCP port pair from the configured range
(bound at once, so the ports we announce are really ours) and, once the SDP is agreed, an RTP
stream: encode what the session's audio source gives and send it every ptime, receive RTP
through the jitter buffer into the session's sinks, RFC 4733 DTMF both ways, RTCP reports and
statistics.

One scheduler paces every stream: a single loop timer on an absolute 20 ms grid (no drift),
which skips the slots it missed after a stall instead of sending a burst. Sockets are plain
non-blocking UDP sockets watched with ``loop.add_reader``: receiving a packet is one callback,
no task. The protocol work (RTP/RTCP state, jitter buffer, DTMF) lives in sans-I/O classes.

It never calls user code and knows nothing of SIP; it reports through ``emit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sessioncore.errors import InvalidArgumentError, InvalidStateError, SdpError
from sessioncore.media import events as mev
from sessioncore.media.codecs import get_codec
from sessioncore.media.codecs.base import Codec
from sessioncore.media.dtmf import DtmfError, DtmfReceiver, DtmfSender
from sessioncore.media.jitter import JitterBuffer, conceal
from sessioncore.media.negotiation import (
    NegotiatedMedia,
    build_answer,
    build_offer,
    is_hold,
    process_answer,
    with_direction,
)
from sessioncore.media.ports import PortAllocator, PortsExhaustedError
from sessioncore.media.rtp import RtpError, RtpPacket, is_rtcp
from sessioncore.media.rtpsession import RtpSession, RtpStats
from sessioncore.media.sdp import SessionDescription
from sessioncore.media.sinks import AudioSink
from sessioncore.media.sources import AudioSource, SilenceSource

__all__ = ["MediaConfig", "MediaManager", "MediaSession"]

log = logging.getLogger("sessioncore.media.manager")

_TICK = 0.020  # the scheduler's grid; streams with another ptime send on their own slots
_LATE = 0.005  # a frame sent more than 5 ms after its slot counts as late
_QUALITY_INTERVAL = 5.0


@dataclass(slots=True)
class MediaConfig:
    """What the media subsystem needs."""

    local_ip: str = "127.0.0.1"
    port_start: int = 10000
    port_end: int = 20000
    codecs: Sequence[str] = ("PCMU", "PCMA")
    dtmf: bool = True
    ptime: int = 20
    symmetric_rtp: bool = True
    rtcp_interval: float = 5.0
    jitter_min_ms: int = 20
    jitter_max_ms: int = 200
    quality_interval: float = _QUALITY_INTERVAL
    rtp_timeout: float | None = None  # no RTP for this long while receiving: MediaTimeout


@dataclass(slots=True)
class _Counters:
    frames_sent: int = 0
    late_frames: int = 0
    skipped_slots: int = 0
    bad_packets: int = 0
    unknown_payload: int = 0
    wrong_source: int = 0
    frames_played: int = 0
    frames_concealed: int = 0


@dataclass(slots=True)
class MediaSession:
    """The media state of one session: negotiation, sockets and (once agreed) the stream."""

    session_id: str
    rtp_port: int
    rtp_sock: socket.socket
    rtcp_sock: socket.socket
    local_sdp: SessionDescription | None = None
    remote_sdp: SessionDescription | None = None
    negotiated: NegotiatedMedia | None = None
    pending_offer: SessionDescription | None = None
    direction: str = "sendrecv"
    remote_hold: bool = False
    # the stream (set by _start_stream)
    codec: Codec | None = None
    rtp: RtpSession | None = None
    jitter: JitterBuffer | None = None
    dtmf_tx: DtmfSender | None = None
    dtmf_rx: DtmfReceiver | None = None
    remote_rtp: tuple[str, int] | None = None
    sdp_remote: tuple[str, int] | None = None
    remote_rtcp: tuple[str, int] | None = None
    latched: bool = False
    source: AudioSource = field(default_factory=SilenceSource)
    sinks: list[AudioSink] = field(default_factory=list)
    muted: bool = False
    frame_samples: int = 160
    ptime: float = _TICK
    next_send: float = 0.0
    next_play: float = 0.0
    dtmf_timestamp: int | None = None
    last_pcm: bytes = b""
    concealed_run: int = 0
    started_at: float = 0.0
    counters: _Counters = field(default_factory=_Counters)
    last_quality: float = 0.0
    last_rtp: float = 0.0  # when RTP last arrived (or the stream (re)started)
    timed_out: bool = False

    @property
    def sending(self) -> bool:
        """True when we should send RTP."""
        n = self.negotiated
        return n is not None and n.sends and self.remote_rtp is not None

    @property
    def receiving(self) -> bool:
        """True when we expect RTP."""
        n = self.negotiated
        return n is not None and n.receives


class MediaManager:
    """Per-session SDP negotiation, RTP/RTCP streams and the one pacing scheduler."""

    def __init__(self, config: MediaConfig, emit: Callable[[object], None] | None = None) -> None:
        self.config = config
        self._emit = emit or (lambda event: None)
        self._ports = PortAllocator(config.port_start, config.port_end)
        self._sessions: dict[str, MediaSession] = {}
        self._streams: dict[str, MediaSession] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._grid_start = 0.0
        self._slot = 0
        self._family = socket.AF_INET6 if ":" in config.local_ip else socket.AF_INET
        # SSRCs and initial sequence numbers/timestamps: random, seeded once from the OS
        self._rng = random.Random(os.urandom(16))
        self.totals = _Counters()

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Remember the loop; sockets are opened per session."""
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        """Close every session's sockets and stop the scheduler."""
        for sid in list(self._sessions):
            self.release(sid)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def active(self) -> int:
        """How many sessions hold media resources."""
        return len(self._sessions)

    @property
    def streaming(self) -> int:
        """How many sessions have a running RTP stream."""
        return len(self._streams)

    # --- ports and sockets ------------------------------------------------------------------

    def _bind(self, port: int) -> tuple[socket.socket, socket.socket] | None:
        socks: list[socket.socket] = []
        try:
            for p in (port, port + 1):
                s = socket.socket(self._family, socket.SOCK_DGRAM)
                socks.append(s)
                s.setblocking(False)
                s.bind((self.config.local_ip, p))
        except OSError as exc:
            for s in socks:
                s.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return None
            raise
        return socks[0], socks[1]

    def _session(self, session_id: str) -> MediaSession:
        ms = self._sessions.get(session_id)
        if ms is not None:
            return ms
        for _ in range(self._ports.capacity):
            port = self._ports.allocate()
            pair = self._bind(port)
            if pair is not None:
                break
            self._ports.release(port)
        else:
            raise PortsExhaustedError(
                f"no free RTP port pair in {self.config.port_start}-{self.config.port_end}"
            )
        ms = MediaSession(session_id, port, pair[0], pair[1])
        self._sessions[session_id] = ms
        return ms

    def get(self, session_id: str) -> MediaSession | None:
        """The media session, if any."""
        return self._sessions.get(session_id)

    # --- offer/answer -----------------------------------------------------------------------

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
        """Answer an offer (initial or re-INVITE) and (re)start the stream with the result.

        Raises :class:`SdpError` (488) when the offer cannot be met.
        """
        ms = self._session(session_id)
        offer = SessionDescription.parse(offer_text)
        cfg = self.config
        answer, negotiated = build_answer(
            offer, cfg.local_ip, ms.rtp_port, codecs=cfg.codecs, dtmf=cfg.dtmf,
            direction=ms.direction, ptime=cfg.ptime, previous=ms.local_sdp,
        )  # fmt: skip
        ms.remote_sdp = offer
        ms.local_sdp = answer
        ms.remote_hold = is_hold(offer)
        self._apply(ms, negotiated)
        return str(answer)

    def apply_answer(self, session_id: str, answer_text: str) -> NegotiatedMedia:
        """Take the peer's answer to our pending offer and (re)start the stream."""
        ms = self._sessions.get(session_id)
        if ms is None or ms.pending_offer is None:
            raise SdpError("an SDP answer arrived but no offer is pending", status=400)
        answer = SessionDescription.parse(answer_text)
        negotiated = process_answer(ms.pending_offer, answer)
        ms.remote_sdp = answer
        ms.pending_offer = None
        self._apply(ms, negotiated)
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
            if ms.negotiated is not None:
                ms.direction = "sendrecv" if ms.negotiated.direction == "sendrecv" else ms.direction

    # --- streams ----------------------------------------------------------------------------

    def _apply(self, ms: MediaSession, negotiated: NegotiatedMedia) -> None:
        """Start or update the stream after an offer/answer exchange."""
        old = ms.negotiated
        ms.negotiated = negotiated
        if negotiated.rejected:
            self._stop_stream(ms)
            return
        remote = (negotiated.remote_address, negotiated.remote_rtp_port)
        if remote != ms.sdp_remote:
            # the peer's SDP moved its media (or this is the first SDP): follow it, and latch
            # afresh to what arrives from the new place
            ms.sdp_remote = remote
            ms.remote_rtp = remote
            ms.latched = False
        if negotiated.remote_address in ("0.0.0.0", "::"):
            ms.remote_rtp = None  # RFC 2543 hold: do not send
        ms.remote_rtcp = (negotiated.remote_address, negotiated.remote_rtcp_port)
        same_codec = (
            old is not None and ms.codec is not None and old.codec == negotiated.codec
            and old.payload_type == negotiated.payload_type
        )  # fmt: skip
        if ms.rtp is None or not same_codec:
            self._start_stream(ms, negotiated)

    def _start_stream(self, ms: MediaSession, n: NegotiatedMedia) -> None:
        codec = get_codec(n.codec)
        ms.codec = codec
        ms.frame_samples = codec.frame_samples(n.ptime)
        ms.ptime = n.ptime / 1000.0
        cname = f"{ms.session_id}@{self.config.local_ip}"
        if ms.rtp is None:
            ms.rtp = RtpSession(
                clock_rate=n.clock_rate, payload_type=n.payload_type, cname=cname,
                rtcp_interval=self.config.rtcp_interval, rng=self._rng,
            )  # fmt: skip
            loop = self._loop or asyncio.get_running_loop()
            self._loop = loop
            loop.add_reader(ms.rtp_sock.fileno(), self._on_rtp_readable, ms)
            loop.add_reader(ms.rtcp_sock.fileno(), self._on_rtcp_readable, ms)
        else:
            ms.rtp.payload_type = n.payload_type
        ms.jitter = JitterBuffer(
            clock_rate=n.clock_rate, frame_samples=ms.frame_samples,
            min_delay_ms=self.config.jitter_min_ms, max_delay_ms=self.config.jitter_max_ms,
        )  # fmt: skip
        if n.dtmf_payload_type is not None:  # only when the peer takes telephone-event
            ms.dtmf_tx = DtmfSender(clock_rate=n.clock_rate, ptime_ms=n.ptime)
            ms.dtmf_rx = DtmfReceiver(clock_rate=n.clock_rate)
        else:
            ms.dtmf_tx = ms.dtmf_rx = None
        now = self._now()
        ms.started_at = ms.started_at or now
        ms.last_quality = now
        ms.next_send = ms.next_play = self._next_slot(now)
        ms.last_rtp = now
        self._streams[ms.session_id] = ms
        self._ensure_clock()
        log.debug(
            "%s: stream %s/%d pt %d to %s", ms.session_id, n.codec, n.clock_rate,
            n.payload_type, ms.remote_rtp,
        )  # fmt: skip

    def _stop_stream(self, ms: MediaSession) -> None:
        self._streams.pop(ms.session_id, None)
        if ms.rtp is not None and self._loop is not None:
            for s in (ms.rtp_sock, ms.rtcp_sock):
                with contextlib.suppress(ValueError, OSError):
                    self._loop.remove_reader(s.fileno())

    def release(self, session_id: str) -> None:
        """End the session's media: RTCP BYE, close sockets, free the ports, close sinks."""
        ms = self._sessions.pop(session_id, None)
        if ms is None:
            return
        if ms.rtp is not None and ms.remote_rtcp is not None:
            with contextlib.suppress(OSError):
                ms.rtcp_sock.sendto(ms.rtp.build_bye(self._now(), time.time()), ms.remote_rtcp)
        self._stop_stream(ms)
        for s in (ms.rtp_sock, ms.rtcp_sock):
            s.close()
        self._ports.release(ms.rtp_port)
        for sink in ms.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("%s: closing a sink failed", session_id)
        try:
            ms.source.close()
        except Exception:
            log.exception("%s: closing the source failed", session_id)
        c, t = ms.counters, self.totals
        for name in c.__slots__:
            setattr(t, name, getattr(t, name) + getattr(c, name))

    # --- application audio ------------------------------------------------------------------

    def set_source(self, session_id: str, source: AudioSource) -> None:
        """What the session sends (replaces the previous source, which is closed)."""
        ms = self._require(session_id)
        old, ms.source = ms.source, source
        if old is not source:
            old.close()

    def add_sink(self, session_id: str, sink: AudioSink) -> None:
        """Add a consumer of what the peer sends (decoded PCM)."""
        self._require(session_id).sinks.append(sink)

    def remove_sink(self, session_id: str, sink: AudioSink) -> None:
        """Stop feeding ``sink`` (it is not closed)."""
        ms = self._sessions.get(session_id)
        if ms is not None and sink in ms.sinks:
            ms.sinks.remove(sink)

    def set_muted(self, session_id: str, muted: bool) -> None:
        """Muted sessions keep sending RTP, with silence."""
        self._require(session_id).muted = muted

    def send_dtmf(self, session_id: str, digits: str, duration_ms: int = 160) -> bool:
        """Queue RFC 4733 events; False when the peer did not negotiate telephone-event."""
        ms = self._require(session_id)
        n = ms.negotiated
        if n is None or n.dtmf_payload_type is None or ms.dtmf_tx is None:
            return False
        for digit in digits:
            ms.dtmf_tx.start(digit, duration_ms)
        return True

    def _require(self, session_id: str) -> MediaSession:
        ms = self._sessions.get(session_id)
        if ms is None:
            raise InvalidArgumentError(f"session {session_id} has no media")
        return ms

    # --- the scheduler ----------------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else time.monotonic()

    def _next_slot(self, now: float) -> float:
        if not self._grid_start:
            self._grid_start = now
        n = int((now - self._grid_start) / _TICK) + 1
        return self._grid_start + n * _TICK

    def _ensure_clock(self) -> None:
        if self._timer is None and self._streams and self._loop is not None:
            now = self._loop.time()
            self._timer = self._loop.call_at(self._next_slot(now), self._tick)

    def _tick(self) -> None:
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        self._timer = None
        wall = 0.0
        for ms in list(self._streams.values()):
            try:
                self._service(ms, now)
                rtp = ms.rtp
                if rtp is not None and ms.remote_rtcp is not None and rtp.rtcp_due(now):
                    wall = wall or time.time()
                    ms.rtcp_sock.sendto(rtp.build_rtcp(now, wall), ms.remote_rtcp)
                if now - ms.last_quality >= self.config.quality_interval:
                    ms.last_quality = now
                    self._emit(mev.MediaQuality(ms.session_id, self.stats(ms.session_id)))
                limit = self.config.rtp_timeout
                if (
                    limit
                    and not ms.timed_out
                    and ms.receiving
                    and not ms.remote_hold
                    and now - ms.last_rtp > limit
                ):
                    ms.timed_out = True
                    self._emit(mev.MediaTimeout(ms.session_id, now - ms.last_rtp))
            except OSError as exc:
                log.debug("%s: media send failed: %s", ms.session_id, exc)
            except Exception:
                log.exception("%s: media tick failed", ms.session_id)
        if self._streams:
            # absolute grid: the next slot after now, so a stall skips slots instead of bursting
            self._timer = loop.call_at(self._next_slot(now), self._tick)

    def _service(self, ms: MediaSession, now: float) -> None:
        c = ms.counters
        # sending: one frame per due slot, but never more than one per tick (no bursts)
        if now >= ms.next_send:
            slot = ms.next_send
            missed = int((now - slot) / ms.ptime + 1e-6)  # float-safe: a slot due now counts
            if missed:
                c.skipped_slots += missed
                slot += missed * ms.ptime
            ms.next_send = slot + ms.ptime
            if ms.sending:
                if now - slot > _LATE:
                    c.late_frames += 1
                self._send_frame(ms)
                c.frames_sent += 1
            elif ms.rtp is not None:
                ms.rtp.skip(ms.frame_samples * (missed + 1))
                ms.source.read(ms.frame_samples)  # keep the source's clock running
        # DTMF whose end packets were all lost is reported once it goes stale
        if ms.dtmf_rx is not None:
            for digit in ms.dtmf_rx.flush(now):
                self._emit(mev.DtmfReceived(ms.session_id, digit.digit, digit.duration_ms))
        # playout
        if now >= ms.next_play:
            missed = int((now - ms.next_play) / ms.ptime + 1e-6)
            ms.next_play += (missed + 1) * ms.ptime
            self._play(ms, now)

    def _send_frame(self, ms: MediaSession) -> None:
        rtp, codec, n = ms.rtp, ms.codec, ms.negotiated
        if rtp is None or codec is None or n is None or ms.remote_rtp is None:
            return
        dtmf = ms.dtmf_tx
        if dtmf is not None and n.dtmf_payload_type is not None:
            pkt = dtmf.next_packet()
            if pkt is not None:
                if pkt.event_start or ms.dtmf_timestamp is None:
                    ms.dtmf_timestamp = rtp.next_timestamp
                data = rtp.build_packet(
                    pkt.payload, 0, marker=pkt.marker, payload_type=n.dtmf_payload_type,
                    timestamp=ms.dtmf_timestamp,
                )  # fmt: skip
                if pkt.end_of_digit:
                    ms.dtmf_timestamp = None
                rtp.skip(ms.frame_samples)
                ms.source.read(ms.frame_samples)
                ms.rtp_sock.sendto(data, ms.remote_rtp)
                return
        pcm = ms.source.read(ms.frame_samples)
        muted = pcm is None or ms.muted
        payload = codec.silence(ms.frame_samples) if muted else codec.encode(pcm or b"")
        ms.rtp_sock.sendto(rtp.build_packet(payload, ms.frame_samples), ms.remote_rtp)

    def _play(self, ms: MediaSession, now: float) -> None:
        jb, codec = ms.jitter, ms.codec
        if jb is None or codec is None or not ms.sinks:
            if jb is not None:
                jb.get(now)  # keep the buffer draining even when nobody listens
            return
        frame = jb.get(now)
        if frame.kind == "audio" and frame.payload is not None:
            pcm = codec.decode(frame.payload)
            ms.last_pcm = pcm
            ms.concealed_run = 0
            ms.counters.frames_played += 1
        elif frame.kind == "concealed":
            ms.concealed_run += 1
            ms.counters.frames_concealed += 1
            pcm = conceal(ms.last_pcm or b"\x00\x00" * ms.frame_samples, ms.concealed_run)
        else:
            return  # nothing buffered yet (or a long gap): record nothing
        for sink in ms.sinks:
            sink.write(pcm)

    # --- receiving --------------------------------------------------------------------------

    def _on_rtp_readable(self, ms: MediaSession) -> None:
        sock = ms.rtp_sock
        for _ in range(64):  # bounded: let other readers run
            try:
                data, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP port unreachable and the like
                log.debug("%s: RTP socket error: %s", ms.session_id, exc)
                return
            self._on_rtp(ms, data, addr)

    def _on_rtp(self, ms: MediaSession, data: bytes, addr: tuple[str, int]) -> None:
        c = ms.counters
        if is_rtcp(data):  # rtcp-mux peers
            self._on_rtcp(ms, data, addr)
            return
        try:
            pkt = RtpPacket.parse(data)
        except RtpError:
            c.bad_packets += 1
            return
        n = ms.negotiated
        if n is None or ms.rtp is None:
            return
        src = (addr[0], addr[1])
        if src != ms.remote_rtp:
            if ms.latched or not self.config.symmetric_rtp:
                c.wrong_source += 1
                return
            pt_ok = pkt.payload_type in (n.payload_type, n.dtmf_payload_type)
            if not pt_ok:
                c.unknown_payload += 1
                return
            log.debug("%s: RTP latched to %s (SDP said %s)", ms.session_id, src, ms.remote_rtp)
            ms.remote_rtp = src
            ms.latched = True
        elif self.config.symmetric_rtp:
            ms.latched = True
        now = self._now()
        ms.last_rtp = now
        if pkt.payload_type == n.payload_type:
            ms.rtp.receive_rtp(pkt, now)
            if ms.jitter is not None and ms.receiving:
                ms.jitter.put(pkt.sequence_number, pkt.timestamp, pkt.payload, now, pkt.marker)
        elif pkt.payload_type == n.dtmf_payload_type and ms.dtmf_rx is not None:
            ms.rtp.receive_rtp(pkt, now)
            try:
                digit = ms.dtmf_rx.receive(pkt.payload, pkt.timestamp, pkt.marker, now)
            except DtmfError:  # a malformed event payload: drop it, keep the call
                c.bad_packets += 1
                return
            if digit is not None:
                self._emit(mev.DtmfReceived(ms.session_id, digit.digit, digit.duration_ms))
        else:
            c.unknown_payload += 1

    def _on_rtcp_readable(self, ms: MediaSession) -> None:
        sock = ms.rtcp_sock
        for _ in range(16):
            try:
                data, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._on_rtcp(ms, data, addr)

    def _on_rtcp(self, ms: MediaSession, data: bytes, addr: tuple[str, int]) -> None:
        if ms.rtp is None:
            return
        try:
            ms.rtp.receive_rtcp(data, self._now())
        except Exception:
            ms.counters.bad_packets += 1
            return
        if self.config.symmetric_rtp and ms.latched:
            ms.remote_rtcp = (addr[0], addr[1])

    # --- queries ----------------------------------------------------------------------------

    def stats(self, session_id: str) -> dict[str, object]:
        """RTP statistics and media counters for the session (empty when none)."""
        ms = self._sessions.get(session_id)
        if ms is None:
            return {}
        out: dict[str, object] = {}
        if ms.rtp is not None:
            st: RtpStats = ms.rtp.stats()
            for name in st.__dataclass_fields__:
                out[name] = getattr(st, name)
        c = ms.counters
        for name in c.__slots__:
            out[name] = getattr(c, name)
        if ms.jitter is not None:
            js = ms.jitter.stats
            out["jitter_buffer"] = {k: getattr(js, k) for k in js.__dataclass_fields__}
        out["mos"] = estimate_mos(
            float(out.get("fraction_lost", 0.0) or 0.0),  # type: ignore[arg-type]
            float(out.get("jitter_ms", 0.0) or 0.0),  # type: ignore[arg-type]
            out.get("rtt_ms"),  # type: ignore[arg-type]
        )
        return out

    def info(self, session_id: str) -> dict[str, object]:
        """What was negotiated and how the stream is doing, for ``get_media_info``."""
        ms = self._sessions.get(session_id)
        if ms is None:
            return {}
        n = ms.negotiated
        return {
            "local_address": f"{self.config.local_ip}:{ms.rtp_port}",
            "local_rtp_port": ms.rtp_port,
            "codec": n.codec if n else None,
            "payload_type": n.payload_type if n else None,
            "dtmf_payload_type": n.dtmf_payload_type if n else None,
            "ptime": n.ptime if n else None,
            "remote_address": f"{ms.remote_rtp[0]}:{ms.remote_rtp[1]}" if ms.remote_rtp else None,
            "direction": n.direction if n else ms.direction,
            "remote_hold": ms.remote_hold,
            "latched": ms.latched,
            "muted": ms.muted,
            "stats": self.stats(session_id),
        }


def estimate_mos(fraction_lost: float, jitter_ms: float, rtt_ms: float | None) -> float:
    """A simplified ITU-T G.107 E-model estimate of the MOS for G.711 (1.0 .. 4.5).

    Effective latency counts the jitter twice plus a 10 ms codec allowance; the loss penalty
    uses G.711's packet-loss robustness without PLC (Bpl = 4.3).
    """
    latency = (rtt_ms or 0.0) / 2 + 2 * jitter_ms + 10.0
    r = 93.2
    r -= latency / 40 if latency < 160 else (latency - 120) / 10
    ppl = max(0.0, min(1.0, fraction_lost)) * 100
    r -= 95 * ppl / (ppl + 4.3)  # Ie-eff with Ie = 0 for G.711
    if r <= 0:
        return 1.0
    mos = 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)
    return round(max(1.0, min(4.5, mos)), 2)
