"""DTMF: RFC 4733 telephone-event over RTP, and the SIP INFO fallback bodies. Sans-I/O.

* :class:`DtmfEvent` is the 4-byte telephone-event payload (``parse`` / ``__bytes__``).
* :class:`DtmfSender` turns queued digits into one :class:`DtmfPacket` per packetization tick.
* :class:`DtmfReceiver` turns received telephone-event payloads into :class:`DtmfDigit`\\ s, each
  digit exactly once however the packets were duplicated, reordered or lost.
* :func:`parse_dtmf_relay` / :func:`format_dtmf_relay` handle SIP INFO bodies of type
  ``application/dtmf-relay``; :func:`parse_dtmf_info` also takes ``application/dtmf``.

Digits are ``0-9 * # A-D`` (event codes 0-15, RFC 4733 §3.2); lower-case ``a-d`` are accepted on
input, upper case is returned.

Errors: :class:`DtmfError` is the base; :class:`DtmfArgumentError` (an
:class:`~sessioncore.errors.InvalidArgumentError`) is the local caller's mistake (a bad digit to
send), :class:`DtmfParseError` (a :class:`~sessioncore.errors.ProtocolError`, status 400) is
malformed input from the peer.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from sessioncore.errors import InvalidArgumentError, ProtocolError, SessionError

__all__ = [
    "DTMF_DIGITS",
    "DtmfArgumentError",
    "DtmfDigit",
    "DtmfError",
    "DtmfEvent",
    "DtmfPacket",
    "DtmfParseError",
    "DtmfReceiver",
    "DtmfSender",
    "digit_to_event",
    "event_to_digit",
    "format_dtmf_relay",
    "parse_dtmf_body",
    "parse_dtmf_info",
    "parse_dtmf_relay",
]

#: The DTMF digits in event-code order: ``DTMF_DIGITS[code]`` is the digit of event ``code``.
DTMF_DIGITS = "0123456789*#ABCD"
_EVENT_OF = {d: i for i, d in enumerate(DTMF_DIGITS)} | {
    d.lower(): i for i, d in enumerate(DTMF_DIGITS) if d.isalpha()
}

#: The largest duration a telephone-event packet can carry (16 bits of timestamp units).
MAX_DURATION = 0xFFFF
#: Duration assumed for an INFO body without ``Duration=`` (ms).
DEFAULT_INFO_DURATION_MS = 160


class DtmfError(SessionError, ValueError):
    """Base of the DTMF errors."""


class DtmfArgumentError(DtmfError, InvalidArgumentError):
    """The local caller asked for something invalid (unknown digit, volume out of range ...)."""


class DtmfParseError(DtmfError, ProtocolError):
    """A telephone-event payload or INFO body from the peer is malformed (answer 400)."""


# --- digits ---------------------------------------------------------------------------------


def digit_to_event(digit: str) -> int:
    """The RFC 4733 event code (0-15) of a DTMF digit ``0-9 * # A-D`` (``a-d`` accepted)."""
    code = _EVENT_OF.get(digit) if isinstance(digit, str) else None
    if code is None:
        raise DtmfArgumentError(f"not a DTMF digit: {digit!r} (expected one of {DTMF_DIGITS})")
    return code


def event_to_digit(event: int) -> str:
    """The DTMF digit of event code 0-15; other codes (flash, tones) raise :class:`DtmfError`."""
    if not isinstance(event, int) or isinstance(event, bool) or not 0 <= event <= 15:
        raise DtmfArgumentError(f"event {event!r} is not a DTMF digit (digits are events 0-15)")
    return DTMF_DIGITS[event]


# --- the wire object ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """One RFC 4733 §2.3 telephone-event payload (4 bytes)::

         0                   1                   2                   3
        |     event     |E|R| volume    |          duration             |

    ``volume`` is the power level as -dBm0 (0-63, 10 means -10 dBm0); ``duration`` is in RTP
    timestamp units since the event's timestamp (0-65535).
    """

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0
    reserved: bool = False

    def __post_init__(self) -> None:
        for name, value, high in (
            ("event", self.event, 255),
            ("volume", self.volume, 63),
            ("duration", self.duration, MAX_DURATION),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
                raise DtmfArgumentError(f"telephone-event {name} must be 0-{high}, not {value!r}")

    @classmethod
    def parse(cls, data: bytes) -> DtmfEvent:
        """Parse a 4-byte telephone-event payload; raises :class:`DtmfParseError`."""
        if len(data) != 4:
            raise DtmfParseError(f"telephone-event payload must be 4 bytes, got {len(data)}")
        flags = data[1]
        return cls(
            event=data[0],
            end=bool(flags & 0x80),
            reserved=bool(flags & 0x40),
            volume=flags & 0x3F,
            duration=int.from_bytes(data[2:4], "big"),
        )

    def __bytes__(self) -> bytes:
        flags = (0x80 if self.end else 0) | (0x40 if self.reserved else 0) | self.volume
        return bytes((self.event, flags)) + self.duration.to_bytes(2, "big")

    @property
    def digit(self) -> str | None:
        """The DTMF digit, or ``None`` for a non-digit event (flash, tones)."""
        return DTMF_DIGITS[self.event] if self.event < 16 else None


# --- sender ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtmfPacket:
    """One telephone-event packet for the media driver to send (see :class:`DtmfSender`).

    ``event_start``: this is the first packet of a new event; take the current media timestamp
    as the event's RTP timestamp and use it for every packet until the next ``event_start``.
    ``marker``: set the RTP marker bit (first packet of an event only). ``end``: the payload has
    the end bit set (one of the three final packets). ``end_of_digit``: this is the last packet
    of the event (the last end retransmission); the driver may forget the event's timestamp.
    """

    payload: bytes
    marker: bool
    event_start: bool
    end: bool
    end_of_digit: bool = False


@dataclass(slots=True)
class _Queued:
    event: int
    duration: int  # timestamp units
    volume: int


class DtmfSender:
    """Produces RFC 4733 packets for queued digits, one per packetization interval.

    Contract with the media driver, which calls :meth:`next_packet` once per ``ptime`` tick
    (in place of encoding an audio frame):

    * ``None``: no event is under way; send audio as usual.
    * a :class:`DtmfPacket`: send ``payload`` with the telephone-event payload type instead of
      audio. When ``event_start`` is true, the packet opens a new event: its RTP timestamp is the
      media timestamp of this tick, and the driver keeps sending that *same* timestamp for every
      following packet until the next ``event_start`` (or ``None``). Set the marker bit when
      ``marker`` is true (the first packet only). ``end_of_digit`` marks the event's last
      packet. Sequence numbers go on incrementing per packet as usual, and the media timestamp
      keeps advancing by one ptime per tick during the event, so the audio after it continues
      in step.

    For a digit of duration *D* (in timestamp units) and *P* units per ptime, the packets are:
    updates with duration ``P, 2P, 3P, ...`` while below *D* (the first with ``marker``), then
    the end packet with duration *D* and the end bit, sent 3 times (RFC 4733 §2.5.1.4), so one
    160 ms digit at 8000 Hz / 20 ms is 7 updates (160 ... 1120) and 3 end packets of 1280. After
    the last end packet the sender is idle for ``gap_ms`` (returns ``None``, rounded up to whole
    ticks) before the next queued digit starts, so queued digits never run together.

    Durations above 65535 units (8.19 s at 8000 Hz) are capped to 65535; the §2.5.1.3 split of
    long events into segments is not implemented.
    """

    def __init__(
        self,
        clock_rate: int = 8000,
        ptime_ms: int = 20,
        *,
        gap_ms: int = 40,
        end_repeats: int = 3,
    ) -> None:
        for name, value in (("clock_rate", clock_rate), ("ptime_ms", ptime_ms)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise DtmfArgumentError(f"{name} must be a positive int, not {value!r}")
        if not isinstance(gap_ms, int) or isinstance(gap_ms, bool) or gap_ms < 0:
            raise DtmfArgumentError(f"gap_ms must be a non-negative int, not {gap_ms!r}")
        if not isinstance(end_repeats, int) or isinstance(end_repeats, bool) or end_repeats < 1:
            raise DtmfArgumentError(f"end_repeats must be a positive int, not {end_repeats!r}")
        self.clock_rate = clock_rate
        self.ptime_ms = ptime_ms
        self._step = max(1, clock_rate * ptime_ms // 1000)  # timestamp units per tick
        self._gap_ticks = math.ceil(gap_ms / ptime_ms)
        self._end_repeats = end_repeats
        self._queue: deque[_Queued] = deque()
        self._current: _Queued | None = None
        self._elapsed = 0  # duration reported so far for the current event
        self._ends_sent = 0
        self._gap_left = 0

    def start(self, digit: str, duration_ms: int = 160, volume: int = 10) -> None:
        """Queue one digit (``0-9 * # A-D``) of ``duration_ms`` at ``volume`` (-dBm0, 0-63)."""
        event = digit_to_event(digit)
        if not isinstance(duration_ms, int) or isinstance(duration_ms, bool) or duration_ms <= 0:
            raise DtmfArgumentError(f"duration_ms must be a positive int, not {duration_ms!r}")
        if not isinstance(volume, int) or isinstance(volume, bool) or not 0 <= volume <= 63:
            raise DtmfArgumentError(f"volume must be 0-63 (-dBm0), not {volume!r}")
        units = min(MAX_DURATION, max(1, duration_ms * self.clock_rate // 1000))
        self._queue.append(_Queued(event, units, volume))

    def start_digits(self, digits: str, duration_ms: int = 160, volume: int = 10) -> None:
        """Queue every digit of ``digits`` (validated all first: nothing is queued on error)."""
        if not isinstance(digits, str) or not digits:
            raise DtmfArgumentError(f"digits must be a non-empty string, not {digits!r}")
        for d in digits:
            digit_to_event(d)
        for d in digits:
            self.start(d, duration_ms, volume)

    @property
    def busy(self) -> bool:
        """True while an event is being sent, digits are queued or the inter-digit gap runs."""
        return self._current is not None or bool(self._queue) or self._gap_left > 0

    def clear(self) -> None:
        """Drop the queued digits that have not started (the current one completes normally)."""
        self._queue.clear()

    def next_packet(self) -> DtmfPacket | None:
        """The packet for this tick, or ``None`` to send audio (see the class docstring)."""
        if self._current is None:
            if self._gap_left > 0:
                self._gap_left -= 1
                return None
            if not self._queue:
                return None
            self._current = self._queue.popleft()
            self._elapsed = 0
            self._ends_sent = 0
            first = True
        else:
            first = False
        cur = self._current
        if self._ends_sent == 0 and self._elapsed + self._step < cur.duration:
            self._elapsed += self._step
            payload = bytes(DtmfEvent(cur.event, False, cur.volume, self._elapsed))
            return DtmfPacket(payload, marker=first, event_start=first, end=False)
        self._elapsed = cur.duration
        self._ends_sent += 1
        payload = bytes(DtmfEvent(cur.event, True, cur.volume, cur.duration))
        last = self._ends_sent >= self._end_repeats
        if last:
            self._current = None
            self._gap_left = self._gap_ticks
        return DtmfPacket(payload, marker=first, event_start=first, end=True, end_of_digit=last)


# --- receiver -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """A received DTMF digit: ``digit`` (``0-9 * # A-D``), ``duration_ms``, ``volume`` (-dBm0).

    ``timestamp`` is the event's RTP timestamp; ``ended`` is false when the end packets were all
    lost and the digit was reported because a newer event started or it went stale.
    """

    digit: str
    duration_ms: int
    volume: int
    timestamp: int
    ended: bool = True


@dataclass(slots=True)
class _Receiving:
    timestamp: int
    event: int
    volume: int
    duration: int
    last_update: float
    reported: bool


def _ts_diff(a: int, b: int) -> int:
    """``a - b`` for 32-bit RTP timestamps, in ``[-2**31, 2**31)``."""
    return ((a - b + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000


class DtmfReceiver:
    """Turns telephone-event packets into digits, each reported exactly once.

    Feed every telephone-event payload to :meth:`receive` with its RTP timestamp, marker bit and
    the arrival time. An event is identified by its RTP timestamp. A digit is reported:

    * on the first end packet of its event (retransmitted end packets and late updates of an
      event already reported are ignored);
    * if every end packet was lost, when a packet of a newer event arrives, or when
      :meth:`flush` finds no update for ``stale_after_ms`` (call it once per tick, or at
      :meth:`next_deadline`).

    Packets with an older timestamp than the current event (reordered from a finished event)
    are ignored, unless the timestamp jumped back by more than 10 s of clock (a new stream:
    treated as a new event). Non-digit events (16 and up: flash, tones) are tracked the same
    way but never reported. The marker bit is not needed to tell events apart (the timestamp
    is), so a lost first packet does not lose the digit.

    :meth:`receive` returns one digit; on the rare packet that completes two (an unreported
    event superseded by a new one that is reported at once), the second is kept and returned by
    the next :meth:`receive` or :meth:`flush`.
    """

    def __init__(self, clock_rate: int = 8000, *, stale_after_ms: int = 200) -> None:
        if not isinstance(clock_rate, int) or isinstance(clock_rate, bool) or clock_rate <= 0:
            raise DtmfArgumentError(f"clock_rate must be a positive int, not {clock_rate!r}")
        if not isinstance(stale_after_ms, int) or stale_after_ms <= 0:
            raise DtmfArgumentError(
                f"stale_after_ms must be a positive int, not {stale_after_ms!r}"
            )
        self.clock_rate = clock_rate
        self._stale_after = stale_after_ms / 1000
        self._current: _Receiving | None = None
        self._ready: deque[DtmfDigit] = deque()

    def receive(
        self, payload: bytes, rtp_timestamp: int, marker: bool, now: float
    ) -> DtmfDigit | None:
        """Process one telephone-event payload; returns a digit when one completes.

        Raises :class:`DtmfParseError` for a malformed payload.
        """
        event = DtmfEvent.parse(payload)
        ts = rtp_timestamp & 0xFFFF_FFFF
        cur = self._current
        if cur is not None and ts == cur.timestamp:
            if not cur.reported:
                cur.duration = max(cur.duration, event.duration)
                cur.volume = event.volume
                cur.last_update = now
                if event.end:
                    self._finish(cur, ended=True)
        elif cur is None or not -10 * self.clock_rate <= _ts_diff(ts, cur.timestamp) <= 0:
            if cur is not None and not cur.reported:
                self._finish(cur, ended=False)
            cur = _Receiving(ts, event.event, event.volume, event.duration, now, False)
            self._current = cur
            if event.end:
                self._finish(cur, ended=True)
        # else: a reordered packet of an older event: already handled
        return self._ready.popleft() if self._ready else None

    def flush(self, now: float) -> list[DtmfDigit]:
        """Digits ready now: a pending one, and the current event if stale (no end packet)."""
        cur = self._current
        if (
            cur is not None
            and not cur.reported
            and now >= cur.last_update + self._stale_after - 1e-9  # float slack
        ):
            self._finish(cur, ended=False)
        out = list(self._ready)
        self._ready.clear()
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`flush` would report the current unfinished event, if there is one."""
        cur = self._current
        if self._ready:
            return float("-inf")
        if cur is None or cur.reported:
            return None
        return cur.last_update + self._stale_after

    def reset(self) -> None:
        """Forget the current event (a new RTP stream, e.g. after an SSRC change)."""
        self._current = None
        self._ready.clear()

    def _finish(self, cur: _Receiving, *, ended: bool) -> None:
        cur.reported = True
        if cur.event < 16:
            self._ready.append(
                DtmfDigit(
                    digit=DTMF_DIGITS[cur.event],
                    duration_ms=cur.duration * 1000 // self.clock_rate,
                    volume=cur.volume,
                    timestamp=cur.timestamp,
                    ended=ended,
                )
            )


# --- SIP INFO bodies ------------------------------------------------------------------------


def _signal_to_digit(value: str) -> str:
    text = value.strip()
    if text in _EVENT_OF:
        return DTMF_DIGITS[_EVENT_OF[text]]
    if text.isdigit() and 10 <= int(text) <= 15:  # some send the event code for * # A-D
        return DTMF_DIGITS[int(text)]
    raise DtmfParseError(f"not a DTMF signal: {value!r}")


def parse_dtmf_relay(body: bytes) -> tuple[str, int]:
    """Parse an ``application/dtmf-relay`` body into ``(digit, duration_ms)``.

    The body is lines of ``Key=Value``; ``Signal`` is required, ``Duration`` (ms) optional
    (:data:`DEFAULT_INFO_DURATION_MS` if absent), other keys are ignored. Keys are
    case-insensitive, whitespace around keys and values and CRLF or LF line ends are accepted.
    Raises :class:`DtmfParseError` for anything else.
    """
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DtmfParseError(f"dtmf-relay body is not UTF-8: {exc}") from None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise DtmfParseError(f"dtmf-relay line is not Key=Value: {line.strip()!r}")
        fields.setdefault(key.strip().casefold(), value.strip())
    if "signal" not in fields:
        raise DtmfParseError("dtmf-relay body has no Signal=")
    digit = _signal_to_digit(fields["signal"])
    raw = fields.get("duration")
    if raw is None:
        return digit, DEFAULT_INFO_DURATION_MS
    if not raw.isascii() or not raw.isdigit():
        raise DtmfParseError(f"dtmf-relay Duration is not a number of ms: {raw!r}")
    return digit, int(raw)


def parse_dtmf_body(body: bytes) -> str:
    """Parse an ``application/dtmf`` body: just the digit (or event code 10-15), whitespace ok."""
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DtmfParseError(f"dtmf body is not UTF-8: {exc}") from None
    return _signal_to_digit(text)


def parse_dtmf_info(content_type: str, body: bytes) -> tuple[str, int]:
    """Parse an INFO body by its Content-Type (parameters ignored) into ``(digit, duration_ms)``.

    ``application/dtmf-relay`` and ``application/dtmf`` are understood (the latter carries no
    duration: :data:`DEFAULT_INFO_DURATION_MS`); any other type raises :class:`DtmfParseError`
    with status 415.
    """
    kind = content_type.partition(";")[0].strip().casefold()
    if kind == "application/dtmf-relay":
        return parse_dtmf_relay(body)
    if kind == "application/dtmf":
        return parse_dtmf_body(body), DEFAULT_INFO_DURATION_MS
    raise DtmfParseError(f"not a DTMF content type: {content_type!r}", status=415)


def format_dtmf_relay(digit: str, duration_ms: int = 160) -> bytes:
    """An ``application/dtmf-relay`` body: ``Signal=<digit>\\r\\nDuration=<ms>\\r\\n``."""
    code = digit_to_event(digit)
    if not isinstance(duration_ms, int) or isinstance(duration_ms, bool) or duration_ms <= 0:
        raise DtmfArgumentError(f"duration_ms must be a positive int, not {duration_ms!r}")
    return f"Signal={DTMF_DIGITS[code]}\r\nDuration={duration_ms}\r\n".encode("ascii")
