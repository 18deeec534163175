"""RFC 4733 telephone-event sender/receiver and SIP INFO DTMF bodies."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessioncore.errors import InvalidArgumentError, ProtocolError
from sessioncore.media.dtmf import (
    DTMF_DIGITS,
    DtmfArgumentError,
    DtmfDigit,
    DtmfError,
    DtmfEvent,
    DtmfPacket,
    DtmfParseError,
    DtmfReceiver,
    DtmfSender,
    digit_to_event,
    event_to_digit,
    format_dtmf_relay,
    parse_dtmf_body,
    parse_dtmf_info,
    parse_dtmf_relay,
)

# --- wire object and digits -----------------------------------------------------------------


def test_event_wire_format() -> None:
    ev = DtmfEvent(event=11, end=True, volume=10, duration=1280)
    assert bytes(ev) == b"\x0b\x8a\x05\x00"
    assert DtmfEvent.parse(b"\x0b\x8a\x05\x00") == ev
    assert ev.digit == "#"
    assert DtmfEvent.parse(b"\x10\x7f\xff\xff") == DtmfEvent(16, False, 63, 65535, reserved=True)
    assert DtmfEvent.parse(b"\x10\x00\x00\x00").digit is None


@given(st.integers(0, 255), st.booleans(), st.booleans(), st.integers(0, 63), st.integers(0, 65535))
def test_event_round_trip(event: int, end: bool, reserved: bool, volume: int, dur: int) -> None:
    ev = DtmfEvent(event, end, volume, dur, reserved)
    assert DtmfEvent.parse(bytes(ev)) == ev
    assert len(bytes(ev)) == 4


@pytest.mark.parametrize("data", [b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"])
def test_event_parse_rejects_bad_length(data: bytes) -> None:
    with pytest.raises(DtmfParseError, match="4 bytes") as info:
        DtmfEvent.parse(data)
    assert isinstance(info.value, ProtocolError) and info.value.status == 400


@pytest.mark.parametrize(
    "kwargs",
    [{"event": 256}, {"event": -1}, {"event": 1, "volume": 64}, {"event": 1, "duration": 65536}],
)
def test_event_rejects_out_of_range_fields(kwargs: dict[str, Any]) -> None:
    with pytest.raises(DtmfArgumentError):
        DtmfEvent(**kwargs)


def test_digit_mapping() -> None:
    assert [digit_to_event(d) for d in DTMF_DIGITS] == list(range(16))
    assert [event_to_digit(i) for i in range(16)] == list(DTMF_DIGITS)
    assert digit_to_event("*") == 10 and digit_to_event("#") == 11 and digit_to_event("d") == 15
    for bad in ("E", "", "12", " 1", 5):
        with pytest.raises(DtmfError):
            digit_to_event(bad)  # type: ignore[arg-type]
    with pytest.raises(DtmfError) as info:
        event_to_digit(16)
    assert isinstance(info.value, InvalidArgumentError)


# --- sender ---------------------------------------------------------------------------------


def _drain(sender: DtmfSender, ticks: int) -> list[DtmfPacket | None]:
    return [sender.next_packet() for _ in range(ticks)]


def test_sender_one_digit_packet_sequence() -> None:
    sender = DtmfSender(clock_rate=8000, ptime_ms=20)
    assert sender.next_packet() is None and not sender.busy
    sender.start("5", duration_ms=160, volume=10)
    assert sender.busy
    packets = _drain(sender, 10)
    assert all(p is not None for p in packets)
    events = [DtmfEvent.parse(p.payload) for p in packets if p]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 960, 1120, 1280, 1280, 1280]
    assert [e.end for e in events] == [False] * 7 + [True] * 3
    assert {(e.event, e.volume) for e in events} == {(5, 10)}
    assert [p.marker for p in packets if p] == [True] + [False] * 9
    assert [p.event_start for p in packets if p] == [True] + [False] * 9
    assert [p.end for p in packets if p] == [False] * 7 + [True] * 3
    assert packets[7] is not None and packets[9] is not None
    assert packets[7].payload == packets[8].payload == packets[9].payload  # three identical ends
    assert [p.end_of_digit for p in packets if p] == [False] * 9 + [True]
    assert _drain(sender, 5) == [None] * 5
    assert not sender.busy


def test_sender_two_queued_digits_are_two_events_with_a_gap() -> None:
    sender = DtmfSender()
    sender.start_digits("12", duration_ms=100)
    out = _drain(sender, 20)
    # simulate the driver: media timestamp advances 160 per tick, latched at event_start
    media_ts = 1000
    event_ts: list[int] = []
    sent: list[tuple[int, DtmfPacket]] = []
    for p in out:
        if p is not None:
            if p.event_start:
                event_ts.append(media_ts)
            sent.append((event_ts[-1], p))
        media_ts += 160
    assert len(event_ts) == 2 and event_ts[0] != event_ts[1]
    first = [DtmfEvent.parse(p.payload) for ts, p in sent if ts == event_ts[0]]
    second = [DtmfEvent.parse(p.payload) for ts, p in sent if ts == event_ts[1]]
    assert [e.duration for e in first] == [160, 320, 480, 640, 800, 800, 800]  # 100 ms = 800
    assert {e.event for e in first} == {1} and {e.event for e in second} == {2}
    # 7 packets of digit 1, then 2 idle ticks (40 ms gap), then digit 2
    assert out[7] is None and out[8] is None and out[9] is not None and out[9].marker
    assert event_ts[1] - event_ts[0] == 9 * 160


def test_sender_short_digit_and_cap_and_clear() -> None:
    sender = DtmfSender()
    sender.start("#", duration_ms=10)  # shorter than one ptime: straight to the end packets
    packets = _drain(sender, 3)
    assert all(p is not None and p.end for p in packets)
    assert packets[0] is not None and packets[0].marker and packets[0].event_start
    assert DtmfEvent.parse(packets[0].payload).duration == 80
    long = DtmfSender()
    long.start("0", duration_ms=20_000)  # capped at 65535 units
    durations = []
    while (p := long.next_packet()) is not None:
        durations.append(DtmfEvent.parse(p.payload).duration)
    assert durations[-1] == 65535 and max(durations) == 65535
    queued = DtmfSender()
    queued.start_digits("123")
    assert queued.next_packet() is not None
    queued.clear()
    rest = _drain(queued, 30)
    assert {DtmfEvent.parse(p.payload).event for p in rest if p} == {1}


def test_sender_rejects_bad_arguments() -> None:
    sender = DtmfSender()
    for call in (
        lambda: sender.start("X"),
        lambda: sender.start("1", duration_ms=0),
        lambda: sender.start("1", volume=64),
        lambda: sender.start_digits("12x"),
        lambda: sender.start_digits(""),
        lambda: DtmfSender(ptime_ms=0),
        lambda: DtmfSender(gap_ms=-1),
        lambda: DtmfSender(end_repeats=0),
    ):
        with pytest.raises(DtmfArgumentError):
            call()
    assert not sender.busy  # start_digits("12x") queued nothing


# --- receiver -------------------------------------------------------------------------------


def _pkt(event: int, duration: int, end: bool = False, volume: int = 10) -> bytes:
    return bytes(DtmfEvent(event, end, volume, duration))


def test_receiver_reports_once_on_first_end_packet() -> None:
    rx = DtmfReceiver()
    assert rx.receive(_pkt(7, 160), 5000, True, 0.00) is None
    assert rx.receive(_pkt(7, 320), 5000, False, 0.02) is None
    assert rx.receive(_pkt(7, 320), 5000, False, 0.021) is None  # duplicate
    digit = rx.receive(_pkt(7, 480, end=True, volume=12), 5000, False, 0.04)
    assert digit == DtmfDigit("7", 60, 12, 5000, ended=True)
    for t in (0.06, 0.08):
        assert rx.receive(_pkt(7, 480, end=True), 5000, False, t) is None
    assert rx.receive(_pkt(7, 320), 5000, False, 0.09) is None  # late reordered update
    assert rx.flush(10.0) == []
    assert rx.next_deadline() is None


def test_receiver_reordered_packets_and_lost_first_packet() -> None:
    rx = DtmfReceiver()
    # first packet (with marker) lost, updates reordered
    assert rx.receive(_pkt(1, 480), 100, False, 0.06) is None
    assert rx.receive(_pkt(1, 320), 100, False, 0.061) is None
    assert rx.receive(_pkt(1, 800, end=True), 100, False, 0.1) == DtmfDigit("1", 100, 10, 100)
    # an end packet of the old event arriving after the next event began is ignored
    assert rx.receive(_pkt(2, 160), 2000, True, 0.3) is None
    assert rx.receive(_pkt(1, 800, end=True), 100, False, 0.31) is None
    assert rx.receive(_pkt(2, 320, end=True), 2000, False, 0.32) == DtmfDigit("2", 40, 10, 2000)


def test_receiver_all_end_packets_lost_new_event_reports_it() -> None:
    rx = DtmfReceiver()
    rx.receive(_pkt(3, 160), 100, True, 0.0)
    rx.receive(_pkt(3, 320), 100, False, 0.02)
    digit = rx.receive(_pkt(4, 160), 1700, True, 0.2)
    assert digit == DtmfDigit("3", 40, 10, 100, ended=False)
    assert rx.receive(_pkt(4, 320, end=True), 1700, False, 0.22) == DtmfDigit("4", 40, 10, 1700)


def test_receiver_all_end_packets_lost_flush_reports_stale() -> None:
    rx = DtmfReceiver()
    rx.receive(_pkt(9, 160), 100, True, 1.0)
    rx.receive(_pkt(9, 320), 100, False, 1.02)
    assert rx.next_deadline() == pytest.approx(1.22)
    assert rx.flush(1.1) == []
    assert rx.flush(1.22) == [DtmfDigit("9", 40, 10, 100, ended=False)]
    assert rx.flush(2.0) == []
    assert rx.receive(_pkt(9, 480, end=True), 100, False, 2.1) is None  # too late: once only


def test_receiver_two_digits_in_one_packet_keeps_the_second() -> None:
    rx = DtmfReceiver()
    rx.receive(_pkt(5, 160), 100, True, 0.0)
    # every packet of the next event but one end packet lost
    assert rx.receive(_pkt(6, 800, end=True), 2000, False, 0.3) == DtmfDigit(
        "5", 20, 10, 100, ended=False
    )
    assert rx.next_deadline() == float("-inf")
    assert rx.flush(0.3) == [DtmfDigit("6", 100, 10, 2000)]


def test_receiver_ignores_non_digit_events_and_handles_wrap_and_reset() -> None:
    rx = DtmfReceiver()
    assert rx.receive(_pkt(16, 800, end=True), 0xFFFF_FF00, True, 0.0) is None  # flash
    # timestamp wrapped past 2**32: still a newer event
    assert rx.receive(_pkt(0, 800, end=True), 0x100, True, 0.5) == DtmfDigit("0", 100, 10, 0x100)
    # a timestamp far in the past: a new stream, taken as a new event
    assert rx.receive(_pkt(8, 800, end=True), 0x7000_0000, True, 1.0) is not None
    rx.reset()
    assert rx.receive(_pkt(8, 800, end=True), 0x7000_0000, True, 1.5) is not None
    with pytest.raises(DtmfParseError):
        rx.receive(b"\x01", 1, False, 2.0)
    with pytest.raises(DtmfArgumentError):
        DtmfReceiver(clock_rate=0)


def test_round_trip_sender_to_receiver_with_duplicates() -> None:
    sender = DtmfSender()
    receiver = DtmfReceiver()
    sender.start_digits("123#*A", duration_ms=120, volume=7)
    got: list[DtmfDigit] = []
    media_ts = 0x1234_5678
    event_ts = 0
    now = 0.0
    for _ in range(200):
        p = sender.next_packet()
        if p is not None:
            if p.event_start:
                event_ts = media_ts
            for _copy in range(2):  # every packet delivered twice
                d = receiver.receive(p.payload, event_ts, p.marker, now)
                if d is not None:
                    got.append(d)
        got.extend(receiver.flush(now))
        media_ts = (media_ts + 160) & 0xFFFF_FFFF
        now += 0.02
    assert [d.digit for d in got] == list("123#*A")
    assert {(d.duration_ms, d.volume, d.ended) for d in got} == {(120, 7, True)}
    assert len({d.timestamp for d in got}) == 6
    assert not sender.busy


# --- SIP INFO bodies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"Signal=5\r\nDuration=160\r\n", ("5", 160)),
        (b"signal = *\nduration= 250\n", ("*", 250)),
        (b"  SIGNAL=#\r\n\r\nDURATION=100", ("#", 100)),
        (b"Signal=a\r\nDuration=40\r\nVolume=10\r\n", ("A", 40)),
        (b"Signal=11\r\nDuration=100\r\n", ("#", 100)),
        (b"Signal=1\r\n", ("1", 160)),
    ],
)
def test_parse_dtmf_relay(body: bytes, expected: tuple[str, int]) -> None:
    assert parse_dtmf_relay(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"hello",
        b"Duration=160\r\n",
        b"Signal=X\r\nDuration=160",
        b"Signal=1\r\nDuration=abc",
        b"Signal=1\r\nDuration=-5",
        b"Signal=16\r\n",
        b"=5\r\n",
        b"Signal=\xff\r\n",
    ],
)
def test_parse_dtmf_relay_rejects_garbage(body: bytes) -> None:
    with pytest.raises(DtmfParseError) as info:
        parse_dtmf_relay(body)
    assert info.value.status == 400


def test_application_dtmf_and_dispatch() -> None:
    assert parse_dtmf_body(b"7\r\n") == "7"
    assert parse_dtmf_body(b" 10 ") == "*"
    with pytest.raises(DtmfParseError):
        parse_dtmf_body(b"77")
    assert parse_dtmf_info("application/dtmf-relay", b"Signal=3\r\nDuration=90") == ("3", 90)
    assert parse_dtmf_info("Application/DTMF; charset=x", b"#") == ("#", 160)
    with pytest.raises(DtmfParseError) as info:
        parse_dtmf_info("text/plain", b"1")
    assert info.value.status == 415


def test_format_dtmf_relay_round_trips() -> None:
    assert format_dtmf_relay("5", 160) == b"Signal=5\r\nDuration=160\r\n"
    for digit in DTMF_DIGITS + "abcd":
        assert parse_dtmf_relay(format_dtmf_relay(digit, 250)) == (digit.upper(), 250)
    with pytest.raises(DtmfArgumentError):
        format_dtmf_relay("Z", 100)
    with pytest.raises(DtmfArgumentError):
        format_dtmf_relay("1", 0)
