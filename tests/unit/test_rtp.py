"""RTP wire object, RFC 5761 demux, and the wraparound arithmetic / RFC 3550 A.1 tracker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessioncore.errors import InvalidArgumentError, ProtocolError
from sessioncore.media.rtp import RtpError, RtpPacket, is_rtcp
from sessioncore.media.seqnum import (
    MAX_DROPOUT,
    SequenceTracker,
    clamp_packets_lost,
    seq_diff,
    seq_gt,
    ts_diff,
    ts_gt,
)

# --- RtpPacket -----------------------------------------------------------------------------


def test_parse_simple_packet() -> None:
    data = bytes.fromhex("80e0 1234 00000064 deadbeef") + b"payload"
    pkt = RtpPacket.parse(data)
    assert pkt == RtpPacket(
        payload_type=96,
        sequence_number=0x1234,
        timestamp=100,
        ssrc=0xDEADBEEF,
        payload=b"payload",
        marker=True,
    )
    assert bytes(pkt) == data


def test_parse_full_packet_csrc_extension_padding() -> None:
    data = (
        bytes.fromhex("b2 08 0001 00000002 00000003")  # V=2 P X CC=2, PT 8
        + bytes.fromhex("00000011 00000022")  # CSRCs
        + bytes.fromhex("bede 0001 10ff0000")  # one-word extension
        + b"abc"
        + bytes.fromhex("000003")  # 3 bytes of padding
    )
    pkt = RtpPacket.parse(data)
    assert pkt.payload_type == 8 and not pkt.marker
    assert pkt.csrc == (0x11, 0x22)
    assert pkt.extension_profile == 0xBEDE
    assert pkt.extension == bytes.fromhex("10ff0000")
    assert pkt.payload == b"abc"
    assert pkt.padding_size == 3
    assert bytes(pkt) == data


def test_empty_extension_and_empty_payload() -> None:
    pkt = RtpPacket(0, 1, 2, 3, extension_profile=0x1000)
    data = bytes(pkt)
    assert len(data) == 16
    assert RtpPacket.parse(data) == pkt


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "RTP packet too short: 0 bytes"),
        (bytes.fromhex("8000000100000002000000"), "too short: 11 bytes"),
        (bytes.fromhex("400000010000000200000003"), "RTP version must be 2, got 1"),
        (bytes.fromhex("000000010000000200000003"), "version must be 2, got 0"),
        (bytes.fromhex("830000010000000200000003") + bytes(8), "3 CSRC identifiers"),
        (bytes.fromhex("900000010000000200000003") + b"\xbe", "extension header"),
        (
            bytes.fromhex("900000010000000200000003") + bytes.fromhex("bede0002") + bytes(4),
            "extension of 2 words runs past the end",
        ),
        (bytes.fromhex("a00000010000000200000003") + b"ab\x00", "padding count is 0"),
        (bytes.fromhex("a00000010000000200000003") + b"ab\x04", "padding count 4 exceeds"),
        (bytes.fromhex("b00000010000000200000003") + bytes(4), "no room for padding"),
    ],
)
def test_parse_errors_are_precise(data: bytes, message: str) -> None:
    with pytest.raises(RtpError, match=message) as info:
        RtpPacket.parse(data)
    assert isinstance(info.value, ProtocolError)
    assert info.value.status == 400


def test_padding_may_fill_everything_after_header() -> None:
    data = bytes.fromhex("a00000010000000200000003") + b"\x00\x00\x03"
    pkt = RtpPacket.parse(data)
    assert pkt.payload == b"" and pkt.padding_size == 3


@pytest.mark.parametrize(
    "pkt",
    [
        RtpPacket(128, 0, 0, 0),
        RtpPacket(-1, 0, 0, 0),
        RtpPacket(0, 65536, 0, 0),
        RtpPacket(0, 0, 1 << 32, 0),
        RtpPacket(0, 0, 0, -1),
        RtpPacket(0, 0, 0, 0, csrc=tuple(range(16))),
        RtpPacket(0, 0, 0, 0, csrc=(1 << 32,)),
        RtpPacket(0, 0, 0, 0, extension_profile=1, extension=b"abc"),
        RtpPacket(0, 0, 0, 0, extension_profile=1 << 16),
        RtpPacket(0, 0, 0, 0, padding_size=256),
    ],
)
def test_serialising_out_of_range_fields_is_a_local_error(pkt: RtpPacket) -> None:
    with pytest.raises(InvalidArgumentError):
        bytes(pkt)


_u16 = st.integers(0, 0xFFFF)
_u32 = st.integers(0, 0xFFFFFFFF)
_packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=_u16,
    timestamp=_u32,
    ssrc=_u32,
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    csrc=st.lists(_u32, max_size=15).map(tuple),
    extension_profile=st.none() | _u16,
    extension=st.binary(max_size=12).map(lambda b: b[: len(b) // 4 * 4]),
    padding_size=st.integers(0, 255),
).map(lambda p: p if p.extension_profile is not None else _no_ext(p))


def _no_ext(p: RtpPacket) -> RtpPacket:
    p.extension = b""
    return p


@given(_packets)
def test_round_trip_property(pkt: RtpPacket) -> None:
    assert RtpPacket.parse(bytes(pkt)) == pkt


@given(st.binary(max_size=80))
def test_random_bytes_raise_only_rtp_error(data: bytes) -> None:
    try:
        pkt = RtpPacket.parse(data)
    except RtpError:
        return
    assert 0 <= pkt.payload_type <= 127


@given(st.binary(min_size=12, max_size=80))
def test_random_bytes_with_version_2(data: bytes) -> None:
    data = bytes((0x80 | (data[0] & 0x3F),)) + data[1:]
    try:
        pkt = RtpPacket.parse(data)
    except RtpError:
        return
    assert bytes(pkt) == data or pkt.padding_size  # padding bytes are not kept verbatim


def test_parse_accepts_memoryview_and_bytearray() -> None:
    data = bytes(RtpPacket(0, 1, 2, 3, b"xy"))
    assert RtpPacket.parse(bytearray(data)).payload == b"xy"
    assert RtpPacket.parse(memoryview(data)).payload == b"xy"


@pytest.mark.parametrize(
    ("second", "expected"),
    [(0, False), (96, False), (127, False), (128 + 63, False), (192, True), (200, True),
     (201, True), (223, True), (224, False)],
)  # fmt: skip
def test_is_rtcp_demux(second: int, expected: bool) -> None:
    assert is_rtcp(bytes((0x80, second)) + bytes(10)) is expected


def test_is_rtcp_short() -> None:
    assert not is_rtcp(b"")
    assert not is_rtcp(b"\x80")


# --- wraparound arithmetic -----------------------------------------------------------------


def test_seq_diff_wraps() -> None:
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(10, 5) == 5
    assert seq_diff(5, 10) == -5
    assert seq_diff(32767, 0) == 32767
    assert seq_diff(32768, 0) == -32768
    assert seq_gt(0, 65535)
    assert not seq_gt(65535, 0)
    assert not seq_gt(7, 7)


def test_ts_diff_wraps() -> None:
    assert ts_diff(0, 0xFFFFFFFF) == 1
    assert ts_diff(0xFFFFFFFF, 0) == -1
    assert ts_diff(160, 0xFFFFFF60) == 320
    assert ts_gt(5, 0xFFFFFFF0)


@given(st.integers(0, 0xFFFF), st.integers(-32768, 32767))
def test_seq_diff_inverse(a: int, d: int) -> None:
    assert seq_diff((a + d) & 0xFFFF, a) == d


def test_clamp_packets_lost() -> None:
    assert clamp_packets_lost(5) == 5
    assert clamp_packets_lost(-3) == -3
    assert clamp_packets_lost(1 << 30) == 0x7FFFFF
    assert clamp_packets_lost(-(1 << 30)) == -0x800000


# --- SequenceTracker ----------------------------------------------------------------------


def feed(tracker: SequenceTracker, seqs: list[int]) -> list[bool]:
    return [tracker.update(s) for s in seqs]


def test_probation_then_valid() -> None:
    t = SequenceTracker()
    assert feed(t, [100]) == [False]
    assert not t.valid and t.expected == 0 and t.lost == 0
    assert feed(t, [101, 102, 103]) == [True, True, True]
    assert t.valid
    assert t.base_seq == 101  # RFC A.1: the source restarts counting when probation ends
    assert t.received == 3 and t.expected == 3 and t.lost == 0


def test_probation_restarts_on_gap() -> None:
    t = SequenceTracker()
    assert feed(t, [10, 20, 30, 31]) == [False, False, False, True]
    assert t.base_seq == 31 and t.received == 1


def test_min_sequential_one_is_valid_at_once() -> None:
    t = SequenceTracker(min_sequential=1)
    assert t.update(7)
    assert t.valid and t.base_seq == 7 and t.received == 1 and t.expected == 1


def test_wraparound_65535_to_0() -> None:
    t = SequenceTracker(min_sequential=1)
    assert all(feed(t, [65533, 65534, 65535, 0, 1, 2]))
    assert t.cycles == 1
    assert t.max_seq == 2
    assert t.extended_max == 65536 + 2
    assert t.expected == 6 and t.received == 6 and t.lost == 0


def test_wraparound_during_probation() -> None:
    t = SequenceTracker()
    assert feed(t, [65535, 0, 1]) == [False, True, True]
    assert t.cycles == 0 and t.base_seq == 0 and t.expected == 2


def test_loss_and_fraction() -> None:
    t = SequenceTracker(min_sequential=1)
    feed(t, [0, 1, 2, 3])
    assert t.fraction_lost_since_last() == 0
    feed(t, [5, 6, 8, 9])  # 4 and 7 lost: 2 of 6 expected in the interval
    assert t.lost == 2
    assert t.fraction_lost_since_last() == (2 << 8) // 6  # 85
    assert t.fraction_lost_since_last() == 0  # empty interval
    feed(t, [10, 11])
    assert t.fraction_lost_since_last() == 0
    assert t.lost == 2


def test_fraction_lost_across_wrap() -> None:
    t = SequenceTracker(min_sequential=1)
    feed(t, [65530])
    t.fraction_lost_since_last()
    feed(t, [65532, 65534, 0, 2])  # every other one lost: 4 of 8
    assert t.fraction_lost_since_last() == 128
    assert t.lost == 4


def test_reordering_counts_once() -> None:
    t = SequenceTracker(min_sequential=1)
    assert all(feed(t, [1, 2, 4, 3, 5]))
    assert t.max_seq == 5 and t.lost == 0 and t.received == 5


def test_reordering_across_wrap_does_not_count_a_cycle() -> None:
    t = SequenceTracker(min_sequential=1)
    assert all(feed(t, [65534, 0, 65535, 1]))
    assert t.cycles == 1 and t.extended_max == 65537 and t.lost == 0


def test_duplicates_make_lost_negative() -> None:
    t = SequenceTracker(min_sequential=1)
    assert all(feed(t, [1, 2, 2, 2, 3]))
    assert t.received == 5 and t.expected == 3
    assert t.lost == -2
    assert t.fraction_lost_since_last() == 0


def test_large_jump_held_back_then_resync() -> None:
    t = SequenceTracker(min_sequential=1)
    feed(t, [100, 101])
    far = 101 + MAX_DROPOUT + 10
    assert not t.update(far)  # held back
    assert t.max_seq == 101
    assert t.update(far + 1)  # confirmed: the sender restarted, start over
    assert t.base_seq == far + 1 and t.received == 1 and t.lost == 0


def test_large_jump_not_confirmed_is_ignored() -> None:
    t = SequenceTracker(min_sequential=1)
    feed(t, [100, 101])
    assert not t.update(40000)
    assert t.update(102)  # the stream simply continues
    assert t.max_seq == 102 and t.received == 3 and t.lost == 0


def test_gap_just_below_max_dropout_is_loss() -> None:
    t = SequenceTracker(min_sequential=1)
    t.update(0)
    assert t.update(MAX_DROPOUT - 1)
    assert t.lost == MAX_DROPOUT - 2


def test_old_packet_beyond_misorder_is_a_jump() -> None:
    t = SequenceTracker(min_sequential=1)
    feed(t, [1000, 1001])
    assert not t.update(900)  # 101 behind: a large jump, held back
    assert t.update(902)  # 99 behind: a late packet
    assert t.max_seq == 1001 and t.received == 3
