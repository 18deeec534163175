"""An adaptive jitter buffer for one incoming audio RTP stream. Sans-I/O.

The media driver calls :meth:`JitterBuffer.put` for every audio RTP packet (telephone-event
and comfort-noise packets go elsewhere) and :meth:`JitterBuffer.get` once per frame period; it
decodes ``audio`` frames, calls :func:`conceal` on the last decoded frame for ``concealed``
ones and plays silence (or comfort noise) for ``empty`` ones. Each packet is assumed to carry
one frame of ``frame_samples`` samples.

How playout works
-----------------
Every :meth:`get` consumes one frame slot and plays the packets in sequence-number order (16-bit
wraparound handled by extending numbers to 64 bits).

* Buffering (at the start, and again after the buffer ran dry): nothing is played until the
  oldest buffered packet is due, i.e. ``now >= ts/clock_rate + base_transit + target_delay``,
  where ``transit = arrival - ts/clock_rate`` and ``base_transit`` is the smallest transit of
  the last 128 packets (the fastest path through the network; a packet more than
  ``max_delay`` slower than that restarts the window: a delay step or a timestamp
  discontinuity, not jitter). So every talkspurt starts with
  exactly the target delay. Until then ``get`` returns ``empty`` (or ``concealed`` for the first
  3 frames after the buffer ran dry in the middle of speech, so the caller can fade out).
* Playing: the packet with the next sequence number is returned as ``audio``. If it is missing
  but a later one is buffered, the slot is ``concealed`` and the packet counted ``lost``; if it
  arrives afterwards it is dropped as ``late``. If nothing is buffered, playout goes back to
  buffering. A packet that starts a talkspurt (marker bit, or its timestamp jumps past the one
  expected after the last played packet) waits until it is due, like the first packet.

Adaptive delay
--------------
``current delay = now - ts/clock_rate - base_transit`` for the packet being played: how long the
fastest packets wait. Jitter is a peak-hold estimate of ``transit - base_transit`` (the extra
delay of the slowest recent packet): it jumps up at once and decays with a half-life of 1 s.
``target = clamp(1 * jitter + one frame, min_delay, max_delay)`` (``initial_delay`` for the
first 50 packets). The delay moves toward the target

* at a talkspurt start, for free (the start waits until due, see above);
* in the middle of speech, by inserting one ``concealed`` frame (when the current delay is
  below ``target - frame``; at most every 2nd frame) or dropping one packet (when it is above
  ``target + frame`` and the packet after it is already buffered; at most every 10th frame,
  counted as ``discarded``). A packet is never cut in part.

:attr:`JitterBuffer.stats` also reports the RFC 3550 §6.4.1 interarrival jitter (for RTCP).
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Literal

from sessioncore.errors import InvalidArgumentError

with warnings.catch_warnings():  # 3.11/3.12 warn that the stdlib module is deprecated
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["FrameKind", "JitterBuffer", "JitterFrame", "JitterStats", "conceal"]

FrameKind = Literal["audio", "concealed", "empty"]

_EPS = 1e-9
_WARMUP_PACKETS = 50  # use initial_delay as the target until this many packets arrived
_TRANSIT_WINDOW = 128  # packets over which base_transit is the minimum
_PEAK_HALF_LIFE = 1.0  # seconds
_INSERT_INTERVAL = 2  # frames between two inserted frames, at least
_DROP_INTERVAL = 10  # frames between two dropped packets, at least
_TAIL_CONCEAL = 3  # concealed frames when the buffer runs dry mid-speech
_MAX_DROPOUT = 3000  # a forward sequence jump larger than this restarts the stream (RFC 3550)
_CONCEAL_REPEATS = 3  # conceal(): silent after this many repeats


def conceal(last_pcm: bytes, count: int) -> bytes:
    """Packet-loss concealment: the last decoded frame repeated, faded 6 dB per repeat.

    ``count`` is the repeat number (1 for the first concealed frame in a row, as in
    :attr:`JitterFrame.concealment`): -6 dB, -12 dB, -18 dB, then silence from the 4th on.
    ``last_pcm`` is 16-bit PCM; the result has the same length.
    """
    if not isinstance(last_pcm, bytes | bytearray | memoryview) or len(last_pcm) % 2:
        raise InvalidArgumentError("conceal() needs 16-bit PCM bytes (an even length)")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise InvalidArgumentError(f"conceal() count must be a positive int, not {count!r}")
    if count > _CONCEAL_REPEATS:
        return bytes(len(last_pcm))
    return audioop.mul(bytes(last_pcm), 2, 0.5**count)


@dataclass(frozen=True, slots=True)
class JitterFrame:
    """What to play for one frame period.

    ``kind``: ``"audio"`` (decode ``payload``), ``"concealed"`` (no payload: conceal, e.g.
    ``conceal(last_pcm, concealment)``), ``"empty"`` (no payload: silence or comfort noise).
    ``seq`` / ``timestamp`` are the packet's 16/32-bit RTP values for ``audio`` frames.
    ``concealment`` counts concealed frames in a row (1, 2, ...; 0 unless concealed).
    """

    kind: FrameKind
    payload: bytes | None = None
    seq: int | None = None
    timestamp: int | None = None
    concealment: int = 0


@dataclass(frozen=True, slots=True)
class JitterStats:
    """Counters and delays of a :class:`JitterBuffer`.

    ``received`` counts every :meth:`~JitterBuffer.put` (duplicates and late ones included);
    ``played`` audio frames returned; ``late`` packets dropped because their slot had passed;
    ``lost`` slots whose packet had not arrived; ``concealed`` concealed frames returned;
    ``duplicates`` packets dropped as already received; ``reordered`` packets that arrived
    after one with a higher sequence number; ``discarded`` packets dropped to shrink the delay
    or because the buffer was full. ``current_delay_ms`` is the playout delay now,
    ``max_delay_ms`` the largest seen, ``target_delay_ms`` what the buffer steers to,
    ``jitter_ms`` the RFC 3550 interarrival jitter, ``buffered`` packets waiting.
    """

    received: int
    played: int
    late: int
    lost: int
    concealed: int
    duplicates: int
    reordered: int
    discarded: int
    current_delay_ms: float
    max_delay_ms: float
    target_delay_ms: float
    jitter_ms: float
    buffered: int


@dataclass(frozen=True, slots=True)
class _Packet:
    seq: int  # extended
    ts: int  # extended
    payload: bytes
    arrival: float
    marker: bool


def _seq_diff(a: int, b: int) -> int:
    """``a - b`` for 16-bit sequence numbers, in ``[-32768, 32768)``."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def _ts_diff(a: int, b: int) -> int:
    """``a - b`` for 32-bit RTP timestamps, in ``[-2**31, 2**31)``."""
    return ((a - b + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000


def _positive_int(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidArgumentError(f"{name} must be a positive int, not {value!r}")
    return value


class JitterBuffer:
    """Reorders, de-duplicates and paces one RTP audio stream (see the module docstring)."""

    def __init__(
        self,
        clock_rate: int = 8000,
        frame_samples: int = 160,
        min_delay_ms: int = 20,
        max_delay_ms: int = 200,
        initial_delay_ms: int = 40,
    ) -> None:
        self.clock_rate = _positive_int("clock_rate", clock_rate)
        self.frame_samples = _positive_int("frame_samples", frame_samples)
        for name, value in (
            ("min_delay_ms", min_delay_ms),
            ("max_delay_ms", max_delay_ms),
            ("initial_delay_ms", initial_delay_ms),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgumentError(f"{name} must be a non-negative int, not {value!r}")
        if not min_delay_ms <= initial_delay_ms <= max_delay_ms:
            raise InvalidArgumentError(
                "need min_delay_ms <= initial_delay_ms <= max_delay_ms, got "
                f"{min_delay_ms}, {initial_delay_ms}, {max_delay_ms}"
            )
        self._frame = frame_samples / clock_rate  # seconds
        self._min = min_delay_ms / 1000
        self._max = max_delay_ms / 1000
        self._initial = initial_delay_ms / 1000
        self._capacity = max(8, 2 * math.ceil(self._max / self._frame) + 4)
        self._reset_stream()
        self._received = self._played = self._late = self._lost = 0
        self._concealed = self._duplicates = self._reordered = self._discarded = 0
        self._max_seen_delay = 0.0

    def _reset_stream(self) -> None:
        self._packets: dict[int, _Packet] = {}
        self._highest_seq: int | None = None  # extended
        self._highest_ts: int | None = None  # extended
        self._recent: deque[int] = deque(maxlen=256)  # extended seqs received lately
        self._recent_set: set[int] = set()
        self._next_seq: int | None = None  # extended; None before the first playout
        self._playing = False
        self._last_ts: int | None = None  # extended ts of the last played packet
        self._last_seq: int | None = None
        self._conceal_run = 0
        self._tail_left = 0
        self._since_adjust = 0
        self._count = 0
        # transit tracking
        self._window: deque[tuple[int, float]] = deque()  # monotonic (index, transit) for min
        self._peak = 0.0
        self._last_arrival: float | None = None
        self._last_transit: float | None = None
        self._rfc_jitter = 0.0
        self._delay = 0.0

    # --- input ------------------------------------------------------------------------------

    def put(
        self, seq: int, timestamp: int, payload: bytes, arrival: float, marker: bool = False
    ) -> None:
        """Add a received packet (16-bit ``seq``, 32-bit ``timestamp``, its ``arrival`` time).

        Duplicates and packets whose slot has passed are dropped and counted. ``marker`` is the
        RTP marker bit (start of a talkspurt).
        """
        if not isinstance(seq, int) or not 0 <= seq <= 0xFFFF:
            raise InvalidArgumentError(f"seq must be a 16-bit int, not {seq!r}")
        if not isinstance(timestamp, int) or not 0 <= timestamp <= 0xFFFF_FFFF:
            raise InvalidArgumentError(f"timestamp must be a 32-bit int, not {timestamp!r}")
        self._received += 1
        if self._highest_seq is not None and _seq_diff(seq, self._highest_seq) > _MAX_DROPOUT:
            self._reset_stream()  # the sender restarted: a new stream
        if self._highest_seq is None or self._highest_ts is None:
            ext_seq, ext_ts = seq, timestamp
        else:
            ext_seq = self._highest_seq + _seq_diff(seq, self._highest_seq)
            ext_ts = self._highest_ts + _ts_diff(timestamp, self._highest_ts)
        if ext_seq in self._recent_set:
            self._duplicates += 1
            return
        self._remember(ext_seq)
        self._track_transit(ext_ts, arrival)
        if self._next_seq is not None and ext_seq < self._next_seq:
            self._late += 1
            return
        if self._highest_seq is None or ext_seq > self._highest_seq:
            self._highest_seq, self._highest_ts = ext_seq, ext_ts
        else:
            self._reordered += 1
        self._packets[ext_seq] = _Packet(ext_seq, ext_ts, bytes(payload), arrival, marker)
        while len(self._packets) > self._capacity:
            oldest = min(self._packets)
            del self._packets[oldest]
            self._discarded += 1
            if self._next_seq is not None and self._next_seq <= oldest:
                self._next_seq = oldest + 1

    def _remember(self, ext_seq: int) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(ext_seq)
        self._recent_set.add(ext_seq)

    def _track_transit(self, ext_ts: int, arrival: float) -> None:
        transit = arrival - ext_ts / self.clock_rate
        index = self._count
        self._count += 1
        window = self._window
        while window and window[-1][1] >= transit:
            window.pop()
        window.append((index, transit))
        while window[0][0] <= index - _TRANSIT_WINDOW:
            window.popleft()
        spread = transit - window[0][1]
        if spread > self._max:
            # a step in the network delay or a timestamp discontinuity (a sender that did not
            # advance its clock over a pause): start the window again from this packet
            window.clear()
            window.append((index, transit))
            spread = 0.0
        if self._last_arrival is not None and self._last_transit is not None:
            dt = max(0.0, arrival - self._last_arrival)
            self._peak *= 0.5 ** (dt / _PEAK_HALF_LIFE)
            d = abs(transit - self._last_transit)
            self._rfc_jitter += (d - self._rfc_jitter) / 16
        self._peak = max(self._peak, spread)
        self._last_arrival, self._last_transit = arrival, transit

    # --- output -----------------------------------------------------------------------------

    @property
    def target_delay(self) -> float:
        """The playout delay (seconds) the buffer steers to."""
        if self._count < _WARMUP_PACKETS:
            return self._initial
        return min(self._max, max(self._min, self._peak + self._frame))

    def _base_transit(self) -> float:
        return self._window[0][1] if self._window else 0.0

    def _delay_of(self, packet: _Packet, now: float) -> float:
        return now - packet.ts / self.clock_rate - self._base_transit()

    def _starts_talkspurt(self, packet: _Packet) -> bool:
        if packet.marker:
            return True
        if self._last_ts is None or self._last_seq is None:
            return True
        expected = self._last_ts + (packet.seq - self._last_seq) * self.frame_samples
        return packet.ts - expected > self.frame_samples // 2

    def get(self, now: float) -> JitterFrame:
        """The frame to play for this frame period (call once per period)."""
        self._since_adjust += 1
        if not self._playing or self._next_seq is None:
            return self._get_buffering(now)
        packet = self._packets.get(self._next_seq)
        if packet is None:
            if self._packets:  # only packets after the expected one are ever kept
                self._lost += 1
                self._next_seq += 1
                return self._concealed_frame()
            self._playing = False  # ran dry: buffer again, fading out meanwhile
            self._tail_left = _TAIL_CONCEAL
            return self._get_buffering(now)
        target = self.target_delay
        delay = self._delay_of(packet, now)
        if self._starts_talkspurt(packet):
            if delay < target - _EPS:
                return self._empty_frame()
        elif delay < target - self._frame - _EPS and self._since_adjust > _INSERT_INTERVAL:
            self._since_adjust = 0
            return self._concealed_frame()
        elif (
            delay > target + self._frame + _EPS
            and self._since_adjust > _DROP_INTERVAL
            and (self._next_seq + 1) in self._packets
        ):
            self._since_adjust = 0
            del self._packets[self._next_seq]
            self._discarded += 1
            self._next_seq += 1
            packet = self._packets[self._next_seq]
            delay = self._delay_of(packet, now)
        return self._play(packet, delay)

    def _get_buffering(self, now: float) -> JitterFrame:
        if self._packets:
            head = self._packets[min(self._packets)]
            delay = self._delay_of(head, now)
            if delay >= self.target_delay - _EPS:
                if self._next_seq is not None and head.seq > self._next_seq:
                    self._lost += head.seq - self._next_seq
                self._playing = True
                self._tail_left = 0
                return self._play(head, delay)
        if self._tail_left > 0:
            self._tail_left -= 1
            return self._concealed_frame()
        return self._empty_frame()

    def _play(self, packet: _Packet, delay: float) -> JitterFrame:
        del self._packets[packet.seq]
        self._next_seq = packet.seq + 1
        self._last_seq, self._last_ts = packet.seq, packet.ts
        self._played += 1
        self._conceal_run = 0
        self._delay = delay
        self._max_seen_delay = max(self._max_seen_delay, delay)
        return JitterFrame("audio", packet.payload, packet.seq & 0xFFFF, packet.ts & 0xFFFF_FFFF, 0)

    def _concealed_frame(self) -> JitterFrame:
        self._concealed += 1
        self._conceal_run += 1
        return JitterFrame("concealed", concealment=self._conceal_run)

    def _empty_frame(self) -> JitterFrame:
        self._conceal_run = 0
        return JitterFrame("empty")

    # --- state ------------------------------------------------------------------------------

    @property
    def stats(self) -> JitterStats:
        """A snapshot of the counters and delays."""
        return JitterStats(
            received=self._received,
            played=self._played,
            late=self._late,
            lost=self._lost,
            concealed=self._concealed,
            duplicates=self._duplicates,
            reordered=self._reordered,
            discarded=self._discarded,
            current_delay_ms=self._delay * 1000,
            max_delay_ms=self._max_seen_delay * 1000,
            target_delay_ms=self.target_delay * 1000,
            jitter_ms=self._rfc_jitter * 1000,
            buffered=len(self._packets),
        )

    def reset(self) -> None:
        """Forget the stream (new SSRC); the counters are kept."""
        self._reset_stream()
