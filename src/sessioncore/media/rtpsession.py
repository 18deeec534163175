"""The sans-I/O state of one RTP stream: sending, receiving, RTCP reports and statistics.

:class:`RtpSession` never touches a socket or a clock. The driver hands it

* payloads to send (:meth:`RtpSession.build_packet` returns the datagram),
* parsed RTP packets and raw RTCP datagrams with the monotonic time ``now`` they arrived,
* ``now`` and the wall clock (``time.time()``, for NTP timestamps) when it asks whether an
  RTCP report is due (:meth:`RtpSession.rtcp_due`) and builds it (:meth:`RtpSession.build_rtcp`).

What it computes follows RFC 3550: sequence validation and loss (Appendix A.1/A.3, in
:mod:`sessioncore.media.seqnum`), interarrival jitter (A.8), the randomised report interval
(§6.2/§6.3, without the bandwidth and timer-reconsideration parts, which matter only with many
participants), SR-versus-RR selection (§6.4) and round-trip time from LSR/DLSR (§6.4.1).
"""

from __future__ import annotations

import logging
import random
import struct
from dataclasses import dataclass

from sessioncore.errors import InvalidArgumentError
from sessioncore.media.rtcp import (
    SDES_CNAME,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    SenderReport,
    SourceDescription,
    ntp_from_unix,
    ntp_middle32,
    ntp_short_from_seconds,
    parse_compound,
)
from sessioncore.media.rtp import RtpPacket
from sessioncore.media.seqnum import MIN_SEQUENTIAL, SequenceTracker, clamp_packets_lost, ts_diff

__all__ = ["RtpSession", "RtpStats"]

_LOG = logging.getLogger("sessioncore.media.rtpsession")

_pack_header = struct.Struct("!BBHII").pack
_SENT_SR_MEMORY = 8  # how many of our own SRs we remember for RTT matching
_RTT_TOLERANCE = 0.001  # DLSR rounding can make a near-zero RTT slightly negative


@dataclass(frozen=True, slots=True)
class RtpStats:
    """A snapshot of one stream's statistics.

    ``packets_lost``/``fraction_lost``/``jitter_ms`` are our measurements of the remote stream
    (``fraction_lost`` covers the last report interval, 0..1); the ``remote_*`` figures are the
    peer's view of our stream from its last report about us (None until one arrives).
    """

    packets_sent: int
    octets_sent: int
    packets_received: int
    octets_received: int
    packets_lost: int
    fraction_lost: float
    jitter_ms: float
    rtt_ms: float | None
    remote_fraction_lost: float | None
    remote_jitter_ms: float | None
    remote_ssrc: int | None
    local_ssrc: int
    ssrc_changes: int
    remote_packets_lost: int | None = None


class RtpSession:
    """One RTP stream with its RTCP, as a sans-I/O state machine (see the module docstring).

    ``rng`` supplies the random SSRC, initial sequence number and timestamp and the RTCP
    interval jitter; pass a seeded :class:`random.Random` for deterministic tests (the default
    uses :class:`random.SystemRandom`). ``initial_sequence`` / ``initial_timestamp`` override
    the random starting values. ``min_sequential`` is the RFC 3550 A.1 probation length for a
    new remote source.
    """

    def __init__(
        self,
        *,
        clock_rate: int,
        payload_type: int,
        ssrc: int | None = None,
        cname: str,
        rtcp_interval: float = 5.0,
        rng: random.Random | None = None,
        initial_sequence: int | None = None,
        initial_timestamp: int | None = None,
        min_sequential: int = MIN_SEQUENTIAL,
    ) -> None:
        """Create the stream state; see the class docstring for the arguments."""
        if clock_rate <= 0:
            raise InvalidArgumentError(f"clock_rate must be positive, got {clock_rate}")
        if not 0 <= payload_type <= 127:
            raise InvalidArgumentError(f"payload type {payload_type} is out of range 0..127")
        if ssrc is not None and not 0 <= ssrc <= 0xFFFFFFFF:
            raise InvalidArgumentError(f"SSRC {ssrc} does not fit in 32 bits")
        if not 0 < len(cname.encode("utf-8")) <= 255:
            raise InvalidArgumentError("CNAME must be 1..255 bytes of UTF-8")
        if rtcp_interval <= 0:
            raise InvalidArgumentError(f"rtcp_interval must be positive, got {rtcp_interval}")
        self._rng = rng if rng is not None else random.SystemRandom()
        #: The RTP clock rate of the stream (Hz).
        self.clock_rate = clock_rate
        #: The payload type :meth:`build_packet` uses unless told otherwise.
        self.payload_type = payload_type
        #: Our SSRC.
        self.ssrc = ssrc if ssrc is not None else self._rng.getrandbits(32)
        #: Our canonical name, sent in every SDES.
        self.cname = cname
        #: The minimum RTCP report interval in seconds (RFC 3550 §6.2 uses 5).
        self.rtcp_interval = rtcp_interval
        seq = initial_sequence if initial_sequence is not None else self._rng.getrandbits(15)
        ts = initial_timestamp if initial_timestamp is not None else self._rng.getrandbits(32)
        self._seq = seq & 0xFFFF
        self._timestamp = ts & 0xFFFFFFFF
        self._marker_next = False
        self._ts_ref: int | None = None  # (timestamp, now) of the last paced packet
        self._ts_ref_now = 0.0
        # sender counters
        self._packets_sent = 0
        self._octets_sent = 0
        self._sent_since_report = False
        self._sent_srs: dict[int, float] = {}  # middle-32 NTP of our SRs -> now when built
        # receiver state
        self._min_sequential = min_sequential
        self._tracker = SequenceTracker(min_sequential)
        self._lost_before = 0  # lost in earlier remote sources (before SSRC changes)
        self._packets_received = 0
        self._octets_received = 0
        self._remote_ssrc: int | None = None
        self._ssrc_changes = 0
        self._jitter = 0.0  # timestamp units, RFC 3550 A.8
        self._jitter_ts: int | None = None
        self._jitter_arrival = 0.0
        self._last_fraction = 0
        # from the peer's RTCP
        self._lsr = 0
        self._lsr_ssrc: int | None = None
        self._lsr_arrival = 0.0
        self._rtt: float | None = None
        self._remote_fraction: int | None = None
        self._remote_lost: int | None = None
        self._remote_jitter: int | None = None
        #: The peer's CNAME from its SDES, once seen.
        self.remote_cname: str | None = None
        #: True once the peer sent an RTCP BYE.
        self.remote_bye = False
        # schedule
        self._next_rtcp: float | None = None

    # --- sending ------------------------------------------------------------------------------

    @property
    def next_sequence_number(self) -> int:
        """The sequence number the next packet will carry."""
        return self._seq

    @property
    def next_timestamp(self) -> int:
        """The timestamp the next packet will carry (unless one is given explicitly)."""
        return self._timestamp

    def build_packet(
        self,
        payload: bytes,
        samples: int,
        *,
        marker: bool = False,
        payload_type: int | None = None,
        timestamp: int | None = None,
        now: float | None = None,
    ) -> bytes:
        """Build the next RTP packet carrying ``payload`` and return its bytes.

        The packet takes the next sequence number (wrapping at 2**16) and the current
        timestamp, which then advances by ``samples`` (wrapping at 2**32). An explicit
        ``timestamp`` (RFC 4733 events reuse one) is used as is and leaves the running
        timestamp alone. ``payload_type`` overrides the session's for this packet. Passing
        ``now`` lets SRs extrapolate their RTP timestamp exactly.
        """
        pt = self.payload_type if payload_type is None else payload_type
        if not 0 <= pt <= 127:
            raise InvalidArgumentError(f"payload type {pt} is out of range 0..127")
        if self._marker_next:
            marker = True
            self._marker_next = False
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        if timestamp is None:
            if samples < 0:
                raise InvalidArgumentError(f"samples must not be negative, got {samples}")
            ts = self._timestamp
            self._timestamp = (ts + samples) & 0xFFFFFFFF
            if now is not None:
                self._ts_ref = ts
                self._ts_ref_now = now
        else:
            ts = timestamp & 0xFFFFFFFF
        self._packets_sent += 1
        self._octets_sent += len(payload)
        self._sent_since_report = True
        return _pack_header(0x80, pt | 0x80 if marker else pt, seq, ts, self.ssrc) + payload

    def skip(self, samples: int) -> None:
        """Advance the timestamp by ``samples`` without sending (silence, hold, DTMF)."""
        if samples < 0:
            raise InvalidArgumentError(f"samples must not be negative, got {samples}")
        self._timestamp = (self._timestamp + samples) & 0xFFFFFFFF

    def set_marker_next(self) -> None:
        """Set the marker bit on the next packet built (start of a talkspurt)."""
        self._marker_next = True

    # --- receiving RTP ------------------------------------------------------------------------

    @property
    def remote_ssrc(self) -> int | None:
        """The SSRC of the remote stream, once a packet has arrived."""
        return self._remote_ssrc

    def receive_rtp(self, packet: RtpPacket, now: float) -> bool:
        """Account for a received RTP packet; False means drop it.

        Packets are dropped only when the sequence number jumps far and the next packet has
        not confirmed the jump yet (RFC 3550 A.1). Packets of a new source on probation are
        accepted (they do not count in the RFC loss figures). A new SSRC resets the receiver
        state and is counted in ``ssrc_changes``.
        """
        ssrc = packet.ssrc
        if ssrc != self._remote_ssrc:
            if self._remote_ssrc is not None:
                self._ssrc_changes += 1
                _LOG.info("remote SSRC changed from %08x to %08x", self._remote_ssrc, packet.ssrc)
                self._lost_before += max(0, self._tracker.lost)
                self._tracker = SequenceTracker(self._min_sequential)
                self._jitter = 0.0
                self._jitter_ts = None
                self._last_fraction = 0
            self._remote_ssrc = ssrc
        tracker = self._tracker
        if not tracker.update(packet.sequence_number) and not tracker.probation:
            return False
        self._packets_received += 1
        self._octets_received += len(packet.payload)
        # RFC 3550 A.8, skipping packets that repeat the previous timestamp (several packets
        # of one video frame, RFC 4733 event updates): they would only add sending delay
        arrival = now * self.clock_rate
        ts = packet.timestamp
        last_ts = self._jitter_ts
        if last_ts is None:
            self._jitter_ts = ts
            self._jitter_arrival = arrival
        elif ts != last_ts:
            d = (arrival - self._jitter_arrival) - ts_diff(ts, last_ts)
            if d < 0:
                d = -d
            self._jitter += (d - self._jitter) / 16.0
            self._jitter_ts = ts
            self._jitter_arrival = arrival
        return True

    # --- receiving RTCP -----------------------------------------------------------------------

    def receive_rtcp(
        self, data: bytes, now: float, wallclock: float | None = None
    ) -> list[RtcpPacket]:
        """Parse an RTCP datagram, update the state from it, and return its packets.

        Raises :class:`~sessioncore.media.rtcp.RtcpError` when it is malformed. The RTT is
        matched against the SRs this session built (so only ``now`` is needed); ``wallclock``
        enables the plain RFC 3550 §6.4.1 computation for an LSR we do not remember.
        """
        packets = parse_compound(data)
        for p in packets:
            if isinstance(p, SenderReport):
                self._lsr = ntp_middle32(p.ntp_timestamp)
                self._lsr_ssrc = p.ssrc
                self._lsr_arrival = now
                self._handle_blocks(p.reports, now, wallclock)
            elif isinstance(p, ReceiverReport):
                self._handle_blocks(p.reports, now, wallclock)
            elif isinstance(p, SourceDescription):
                for chunk_ssrc, _items in p.chunks:
                    if chunk_ssrc != self.ssrc:
                        cname = p.cname(chunk_ssrc)
                        if cname is not None:
                            self.remote_cname = cname
            elif isinstance(p, Bye) and any(s != self.ssrc for s in p.sources):
                if not self.remote_bye:
                    _LOG.info("remote RTCP BYE from %s (%s)", p.sources, p.reason or "no reason")
                self.remote_bye = True
        return packets

    def _handle_blocks(
        self, blocks: list[ReportBlock], now: float, wallclock: float | None
    ) -> None:
        for b in blocks:
            if b.ssrc != self.ssrc:
                continue
            self._remote_fraction = b.fraction_lost
            self._remote_lost = b.packets_lost
            self._remote_jitter = b.jitter
            if not b.lsr:
                continue
            rtt: float | None = None
            sent = self._sent_srs.get(b.lsr)
            if sent is not None:
                rtt = now - sent - b.dlsr / 65536.0
            elif wallclock is not None:
                arrival = ntp_middle32(ntp_from_unix(wallclock))
                diff = (arrival - b.lsr - b.dlsr) & 0xFFFFFFFF
                if diff < 0x80000000:
                    rtt = diff / 65536.0
            if rtt is not None and rtt > -_RTT_TOLERANCE:
                self._rtt = max(rtt, 0.0)

    # --- RTCP sending -------------------------------------------------------------------------

    def _interval(self, initial: bool) -> float:
        base = self.rtcp_interval / 2 if initial else self.rtcp_interval
        return base * self._rng.uniform(0.5, 1.5)

    def start(self, now: float) -> None:
        """Schedule the first RTCP report at half the interval, randomised (no-op if done)."""
        if self._next_rtcp is None:
            self._next_rtcp = now + self._interval(initial=True)

    @property
    def next_rtcp_time(self) -> float | None:
        """When the next RTCP report is due (None until :meth:`start` or :meth:`rtcp_due`)."""
        return self._next_rtcp

    def rtcp_due(self, now: float) -> bool:
        """True when a report should be sent now; the first call starts the schedule."""
        if self._next_rtcp is None:
            self.start(now)
            return False
        return now >= self._next_rtcp

    def _report_blocks(self, now: float) -> list[ReportBlock]:
        remote = self._remote_ssrc
        tracker = self._tracker
        if remote is None or not tracker.valid:
            return []
        fraction = tracker.fraction_lost_since_last()
        self._last_fraction = fraction
        lsr = dlsr = 0
        if self._lsr and self._lsr_ssrc == remote:
            lsr = self._lsr
            dlsr = ntp_short_from_seconds(now - self._lsr_arrival)
        return [
            ReportBlock(
                ssrc=remote,
                fraction_lost=fraction,
                packets_lost=clamp_packets_lost(tracker.lost),
                highest_seq=tracker.extended_max & 0xFFFFFFFF,
                jitter=min(int(self._jitter), 0xFFFFFFFF),
                lsr=lsr,
                dlsr=dlsr,
            )
        ]

    def _report(self, now: float, wallclock: float) -> list[RtcpPacket]:
        blocks = self._report_blocks(now)
        packets: list[RtcpPacket] = []
        if self._sent_since_report:
            ntp = ntp_from_unix(wallclock)
            if self._ts_ref is not None:
                rtp_ts = self._ts_ref + round((now - self._ts_ref_now) * self.clock_rate)
            else:
                rtp_ts = self._timestamp
            packets.append(
                SenderReport(
                    ssrc=self.ssrc,
                    ntp_timestamp=ntp,
                    rtp_timestamp=rtp_ts & 0xFFFFFFFF,
                    packet_count=self._packets_sent & 0xFFFFFFFF,
                    octet_count=self._octets_sent & 0xFFFFFFFF,
                    reports=blocks,
                )
            )
            self._sent_srs[ntp_middle32(ntp)] = now
            while len(self._sent_srs) > _SENT_SR_MEMORY:
                del self._sent_srs[next(iter(self._sent_srs))]
        else:
            packets.append(ReceiverReport(ssrc=self.ssrc, reports=blocks))
        self._sent_since_report = False
        packets.append(SourceDescription([(self.ssrc, [(SDES_CNAME, self.cname.encode())])]))
        return packets

    def build_rtcp(self, now: float, wallclock: float) -> bytes:
        """Build a compound report and schedule the next one.

        An SR when we sent RTP since the last report, else an RR; a report block about the
        remote source once it is valid; always an SDES with our CNAME. ``wallclock`` is Unix
        time for the SR's NTP timestamp.
        """
        packets = self._report(now, wallclock)
        self._next_rtcp = now + self._interval(initial=False)
        return b"".join(bytes(p) for p in packets)

    def build_bye(self, now: float, wallclock: float, reason: str | None = None) -> bytes:
        """Build a compound report ending with a BYE for our SSRC (RFC 3550 §6.6)."""
        packets = self._report(now, wallclock)
        packets.append(Bye([self.ssrc], reason))
        return b"".join(bytes(p) for p in packets)

    # --- statistics ---------------------------------------------------------------------------

    def stats(self) -> RtpStats:
        """A snapshot of the counters and quality figures."""
        rate = self.clock_rate
        rj = self._remote_jitter
        rf = self._remote_fraction
        return RtpStats(
            packets_sent=self._packets_sent,
            octets_sent=self._octets_sent,
            packets_received=self._packets_received,
            octets_received=self._octets_received,
            packets_lost=max(0, self._lost_before + self._tracker.lost),
            fraction_lost=self._last_fraction / 256.0,
            jitter_ms=self._jitter * 1000.0 / rate,
            rtt_ms=None if self._rtt is None else self._rtt * 1000.0,
            remote_fraction_lost=None if rf is None else rf / 256.0,
            remote_jitter_ms=None if rj is None else rj * 1000.0 / rate,
            remote_ssrc=self._remote_ssrc,
            local_ssrc=self.ssrc,
            ssrc_changes=self._ssrc_changes,
            remote_packets_lost=self._remote_lost,
        )
