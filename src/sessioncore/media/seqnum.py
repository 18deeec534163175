"""Wraparound arithmetic for RTP sequence numbers and timestamps, and RFC 3550 A.1 tracking.

RTP sequence numbers are 16 bits and timestamps 32 bits; both wrap. Every comparison or
difference of them in sessioncore goes through the helpers here so the modular arithmetic lives
in one place:

* :func:`seq_diff` / :func:`seq_gt` for sequence numbers (mod 2**16),
* :func:`ts_diff` / :func:`ts_gt` for timestamps (mod 2**32),
* :class:`SequenceTracker`, the receiver-side source state of RFC 3550 Appendix A.1 (probation,
  wrap counting, resynchronisation after a large jump) and the loss figures of Appendix A.3.
"""

from __future__ import annotations

__all__ = [
    "MAX_DROPOUT",
    "MAX_MISORDER",
    "MIN_SEQUENTIAL",
    "SEQ_MOD",
    "TS_MOD",
    "SequenceTracker",
    "clamp_packets_lost",
    "seq_diff",
    "seq_gt",
    "ts_diff",
    "ts_gt",
]

#: Sequence numbers are 16-bit.
SEQ_MOD = 1 << 16
#: Timestamps are 32-bit.
TS_MOD = 1 << 32
#: A forward jump of fewer than this many numbers is a (permissible) gap, RFC 3550 A.1.
MAX_DROPOUT = 3000
#: A backward step of at most this many numbers is a late (reordered) or duplicate packet.
MAX_MISORDER = 100
#: Sequential packets needed before a new source is declared valid, RFC 3550 A.1.
MIN_SEQUENTIAL = 2

_SEQ_MASK = SEQ_MOD - 1
_SEQ_HALF = SEQ_MOD >> 1
_TS_MASK = TS_MOD - 1
_TS_HALF = TS_MOD >> 1
_LOST_MAX = 0x7FFFFF
_LOST_MIN = -0x800000


def seq_diff(a: int, b: int) -> int:
    """Signed shortest distance ``a - b`` between two 16-bit sequence numbers.

    The result is in ``-32768 .. 32767``: ``seq_diff(0, 65535) == 1``, ``seq_diff(65535, 0) == -1``.
    """
    d = (a - b) & _SEQ_MASK
    return d - SEQ_MOD if d >= _SEQ_HALF else d


def seq_gt(a: int, b: int) -> bool:
    """True when sequence number ``a`` comes after ``b`` (modulo 2**16)."""
    return seq_diff(a, b) > 0


def ts_diff(a: int, b: int) -> int:
    """Signed shortest distance ``a - b`` between two 32-bit RTP timestamps."""
    d = (a - b) & _TS_MASK
    return d - TS_MOD if d >= _TS_HALF else d


def ts_gt(a: int, b: int) -> bool:
    """True when timestamp ``a`` comes after ``b`` (modulo 2**32)."""
    return ts_diff(a, b) > 0


def clamp_packets_lost(lost: int) -> int:
    """Clamp a cumulative loss count to the 24-bit signed field of an RTCP report block."""
    if lost > _LOST_MAX:
        return _LOST_MAX
    if lost < _LOST_MIN:
        return _LOST_MIN
    return lost


class SequenceTracker:
    """Receiver-side sequence state of one RTP source (RFC 3550 Appendix A.1 and A.3).

    Feed it every received sequence number with :meth:`update`. A new source is on *probation*
    until ``min_sequential`` packets with consecutive numbers have arrived; a forward jump of
    ``MAX_DROPOUT`` or more (or a backward one beyond ``MAX_MISORDER``) is rejected unless the
    next packet continues from it, in which case the tracker resynchronises (the sender
    restarted). Late and duplicate packets are valid and counted, so :attr:`lost` can go
    negative, exactly as the RFC specifies; use :func:`clamp_packets_lost` for reports.
    """

    __slots__ = (
        "_bad_seq",
        "_expected_prior",
        "_max_seq",
        "_received_prior",
        "_started",
        "base_seq",
        "cycles",
        "min_sequential",
        "probation",
        "received",
    )

    def __init__(self, min_sequential: int = MIN_SEQUENTIAL) -> None:
        """Create an empty tracker; ``min_sequential`` of 1 makes a source valid at once."""
        self.min_sequential = max(1, min_sequential)
        #: The first sequence number counted (after probation); ``expected`` counts from it.
        self.base_seq = 0
        #: How many times the sequence number has wrapped from 65535 to 0.
        self.cycles = 0
        #: Valid packets counted, duplicates and late packets included.
        self.received = 0
        #: Sequential packets still needed before the source is valid (0 = valid).
        self.probation = 0
        self._max_seq = 0
        self._bad_seq = SEQ_MOD + 1  # matches no sequence number
        self._received_prior = 0
        self._expected_prior = 0
        self._started = False

    # --- state ----------------------------------------------------------------------------

    @property
    def valid(self) -> bool:
        """True once the source has passed probation."""
        return self._started and self.probation == 0

    @property
    def max_seq(self) -> int:
        """The highest 16-bit sequence number seen."""
        return self._max_seq

    @property
    def extended_max(self) -> int:
        """The extended highest sequence number: wrap count in the high 16 bits."""
        return (self.cycles << 16) | self._max_seq

    @property
    def expected(self) -> int:
        """Packets expected since ``base_seq`` (RFC 3550 A.3); 0 before the source is valid."""
        if not self.valid:
            return 0
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost: expected minus received; negative with duplicates."""
        return self.expected - self.received

    # --- updates --------------------------------------------------------------------------

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self._max_seq = seq
        self._bad_seq = SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self._received_prior = 0
        self._expected_prior = 0

    def update(self, seq: int) -> bool:
        """Account for a packet with sequence number ``seq``; False while on probation or bad.

        A False result means the packet should not count (yet): either the source is still on
        probation or the number jumped so far that it is held back until the next one confirms
        it. Everything else, including duplicates and reordered packets, returns True.
        """
        seq &= _SEQ_MASK
        if not self._started:
            self._started = True
            self._init_seq(seq)
            self._max_seq = (seq - 1) & _SEQ_MASK
            self.probation = self.min_sequential
        if self.probation:
            if seq == (self._max_seq + 1) & _SEQ_MASK:
                self.probation -= 1
                self._max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = self.min_sequential - 1
                self._max_seq = seq
                if self.probation == 0:  # min_sequential == 1: any packet starts the source
                    self._init_seq(seq)
                    self.received += 1
                    return True
            return False
        udelta = (seq - self._max_seq) & _SEQ_MASK
        if udelta < MAX_DROPOUT:
            if seq < self._max_seq:  # in order with a permissible gap, and wrapped
                self.cycles += 1
            self._max_seq = seq
        elif udelta <= SEQ_MOD - MAX_MISORDER:
            # a very large jump: accept only when the next packet continues from it
            if seq == self._bad_seq:
                self._init_seq(seq)
            else:
                self._bad_seq = (seq + 1) & _SEQ_MASK
                return False
        # else: a duplicate or a reordered (late) packet
        self.received += 1
        return True

    def fraction_lost_since_last(self) -> int:
        """The fraction lost since the previous call, as 8-bit fixed point (RFC 3550 A.3).

        Starts a new interval: call it once per report. Returns 0 when nothing was expected or
        when duplicates outnumber losses in the interval.
        """
        expected = self.expected
        expected_interval = expected - self._expected_prior
        self._expected_prior = expected
        received_interval = self.received - self._received_prior
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval <= 0 or lost_interval <= 0:
            return 0
        return min(255, (lost_interval << 8) // expected_interval)
