"""RTCP wire objects, compound packets and NTP helpers."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessioncore.errors import InvalidArgumentError, ProtocolError
from sessioncore.media.rtcp import (
    NTP_EPOCH_OFFSET,
    SDES_CNAME,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    RtcpPacket,
    SenderReport,
    SourceDescription,
    UnknownRtcpPacket,
    ntp_from_unix,
    ntp_middle32,
    ntp_short_from_seconds,
    parse_compound,
    seconds_from_ntp_short,
    serialize_compound,
    unix_from_ntp,
)

BLOCK = ReportBlock(
    ssrc=0x11223344,
    fraction_lost=64,
    packets_lost=-5,
    highest_seq=0x0001_0005,
    jitter=123,
    lsr=0xABCD1234,
    dlsr=0x00018000,
)


def one(data: bytes) -> RtcpPacket:
    packets = parse_compound(data)
    assert len(packets) == 1
    return packets[0]


# --- round trips ----------------------------------------------------------------------------


def test_report_block_bytes() -> None:
    data = bytes(BLOCK)
    assert data.hex() == "1122334440fffffb000100050000007babcd123400018000"
    assert ReportBlock.parse(data) == BLOCK


def test_report_block_parse_short() -> None:
    with pytest.raises(RtcpError, match="report block truncated: 23 bytes"):
        ReportBlock.parse(bytes(23))


@pytest.mark.parametrize(
    "block",
    [
        ReportBlock(1, fraction_lost=256),
        ReportBlock(1, packets_lost=0x800000),
        ReportBlock(1, packets_lost=-0x800001),
        ReportBlock(1 << 32),
        ReportBlock(1, jitter=-1),
    ],
)
def test_report_block_out_of_range(block: ReportBlock) -> None:
    with pytest.raises(InvalidArgumentError):
        bytes(block)


def test_sender_report_round_trip() -> None:
    sr = SenderReport(
        ssrc=0xCAFEBABE,
        ntp_timestamp=0xE5A1_0000_8000_0000,
        rtp_timestamp=160000,
        packet_count=1000,
        octet_count=160000,
        reports=[BLOCK],
    )
    data = bytes(sr)
    assert data[:4] == bytes.fromhex("81c8000c")  # RC=1, PT=200, 13 words
    assert len(data) == 52
    assert one(data) == sr


def test_sender_report_without_blocks_and_with_extension() -> None:
    sr = SenderReport(1, 2, 3, 4, 5, extension=b"ext!")
    data = bytes(sr)
    assert len(data) == 32
    assert one(data) == sr


def test_receiver_report_round_trip() -> None:
    rr = ReceiverReport(ssrc=7, reports=[BLOCK, ReportBlock(9)])
    data = bytes(rr)
    assert data[:4] == bytes.fromhex("82c9000d")
    assert one(data) == rr
    empty = ReceiverReport(8)
    assert bytes(empty) == bytes.fromhex("80c90001 00000008")
    assert one(bytes(empty)) == empty


def test_sdes_round_trip_and_alignment() -> None:
    sdes = SourceDescription(
        [
            (0x01020304, [(SDES_CNAME, b"alice@example.com")]),  # 4+2+17 = 23 -> 1 null
            (5, [(SDES_CNAME, b"ab"), (2, b"Bob")]),  # 4+4+5 = 13 -> 3 nulls
            (6, [(SDES_CNAME, b"xy")]),  # 4+4 = 8 -> 4 nulls (a whole word)
        ]
    )
    data = bytes(sdes)
    assert len(data) % 4 == 0
    assert data[:4] == bytes.fromhex("83ca000d")
    parsed = one(data)
    assert parsed == sdes
    assert isinstance(parsed, SourceDescription)
    assert parsed.cname(0x01020304) == "alice@example.com"
    assert parsed.cname(5) == "ab"
    assert parsed.cname(99) is None


def test_sdes_literal_bytes() -> None:
    data = bytes.fromhex("81ca0003 00000001 0103616263 000000")
    # chunk: ssrc 1, CNAME "abc", null + pad -> 4 + 5 + 3 = 12 bytes, 3 words after header
    assert one(data) == SourceDescription([(1, [(SDES_CNAME, b"abc")])])


def test_bye_round_trip() -> None:
    for bye, size in [
        (Bye([1]), 8),
        (Bye([1, 2], "shutdown"), 12 + 12),  # 1 + 8 bytes -> 12 with padding
        (Bye([3], ""), 12),
        (Bye([], None), 4),
    ]:
        data = bytes(bye)
        assert len(data) == size
        assert one(data) == bye


def test_unknown_kept_opaque() -> None:
    app = UnknownRtcpPacket(204, 3, b"\x00\x00\x00\x01name" + b"data")
    fb = UnknownRtcpPacket(205, 1, bytes(8))
    data = serialize_compound([app, fb])
    assert parse_compound(data) == [app, fb]


def test_compound_round_trip() -> None:
    packets: list[RtcpPacket] = [
        SenderReport(1, ntp_from_unix(1_700_000_000.25), 3, 4, 5, [BLOCK]),
        SourceDescription([(1, [(SDES_CNAME, b"me@host")])]),
        Bye([1], "bye"),
    ]
    data = serialize_compound(packets)
    assert parse_compound(data) == packets


def test_padding_on_last_packet() -> None:
    rr = bytes(ReceiverReport(5))
    padded = bytes((rr[0] | 0x20, rr[1])) + (2).to_bytes(2, "big") + rr[4:] + b"\x00\x00\x00\x04"
    assert one(padded) == ReceiverReport(5)


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty RTCP packet"),
        (b"\x80\xc9\x00", "packet 1 truncated: 3 bytes left at offset 0"),
        (bytes.fromhex("40c90001 00000001"), "packet 1: version must be 2, got 1"),
        (bytes.fromhex("80c90002 00000001"), "length field says 12 bytes, only 8 remain"),
        (
            bytes.fromhex("80c90001 00000001") + bytes.fromhex("00c90001 00000001"),
            "packet 2: version must be 2, got 0",
        ),
        (bytes.fromhex("80c90001 00000001 80c9"), "packet 2 truncated: 2 bytes left"),
        (bytes.fromhex("a0c90001 00000000"), "invalid padding count 0"),
        (bytes.fromhex("a0c90001 00000005"), "invalid padding count 5 for a 4-byte body"),
        (bytes.fromhex("80c80001 00000001"), r"packet 1 \(SR\): SR too short: 8 bytes"),
        (bytes.fromhex("80c90000"), r"\(RR\): RR too short: 4 bytes, need at least 8"),
        (
            bytes.fromhex("82c90001 00000001"),
            r"\(RR\): RR with 2 report blocks needs 56 bytes, its length gives 8",
        ),
        (
            bytes.fromhex("81c80006") + bytes(24),
            r"\(SR\): SR with 1 report blocks needs 52 bytes",
        ),
        (bytes.fromhex("81ca0000"), r"\(SDES\): SDES chunk 1 of 1 is truncated"),
        (bytes.fromhex("81ca0002 00000001 01036162"), "SDES item of type 1 in chunk 1 runs past"),
        (bytes.fromhex("81ca0002 00000001 01026162"), "chunk 1 has no end-of-items null octet"),
        (bytes.fromhex("82ca0003 00000001 01016100 00000002"), "chunk 2 has no end-of-items"),
        (bytes.fromhex("82ca0003 00000001 01016100"), "packet 1 .* length field says 16"),
        (bytes.fromhex("82cb0001 00000001"), r"\(BYE\): BYE with 2 sources needs 12 bytes"),
        (bytes.fromhex("81cb0002 00000001 05616263"), "BYE reason of 5 bytes runs past"),
    ],
)
def test_parse_errors_are_precise(data: bytes, message: str) -> None:
    with pytest.raises(RtcpError, match=message) as info:
        parse_compound(data)
    assert isinstance(info.value, ProtocolError)


@pytest.mark.parametrize(
    "packet",
    [
        ReceiverReport(1, [ReportBlock(i) for i in range(32)]),
        ReceiverReport(1, extension=b"abc"),
        SenderReport(1, 1 << 64, 0, 0, 0),
        SenderReport(1, 0, 0, 0, 0, extension=b"x"),
        ReceiverReport(-1),
        SourceDescription([(1, [(SDES_CNAME, bytes(256))])]),
        SourceDescription([(1, [(0, b"x")])]),
        SourceDescription([(1 << 32, [])]),
        Bye([1], "x" * 256),
        Bye([1 << 32]),
        Bye(list(range(32))),
        UnknownRtcpPacket(204, 32),
        UnknownRtcpPacket(256),
        UnknownRtcpPacket(204, 0, b"abc"),
    ],
)
def test_serialising_bad_fields_is_a_local_error(packet: RtcpPacket) -> None:
    with pytest.raises(InvalidArgumentError):
        bytes(packet)


@given(st.binary(max_size=120))
def test_random_bytes_raise_only_rtcp_error(data: bytes) -> None:
    with contextlib.suppress(RtcpError):
        parse_compound(data)


@given(st.binary(min_size=4, max_size=120))
def test_random_bytes_with_valid_header_raise_only_rtcp_error(data: bytes) -> None:
    # version 2 and a length that matches the datagram: exercises the per-type parsers
    words = (len(data) + 3) // 4
    body = data[4:].ljust(4 * words - 4, b"\x00")
    packet = bytes((0x80 | (data[0] & 0x3F), 200 + data[1] % 5)) + (words - 1).to_bytes(2, "big")
    with contextlib.suppress(RtcpError):
        parse_compound(packet + body)


_u32 = st.integers(0, 0xFFFFFFFF)
_blocks = st.lists(
    st.builds(
        ReportBlock,
        ssrc=_u32,
        fraction_lost=st.integers(0, 255),
        packets_lost=st.integers(-0x800000, 0x7FFFFF),
        highest_seq=_u32,
        jitter=_u32,
        lsr=_u32,
        dlsr=_u32,
    ),
    max_size=3,
)
_packets = st.one_of(
    st.builds(SenderReport, _u32, st.integers(0, (1 << 64) - 1), _u32, _u32, _u32, _blocks),
    st.builds(ReceiverReport, _u32, _blocks),
    st.builds(
        SourceDescription,
        st.lists(
            st.tuples(
                _u32, st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=20)), max_size=3)
            ),
            max_size=3,
        ),
    ),
    st.builds(Bye, st.lists(_u32, max_size=3), st.none() | st.text(max_size=20)),
)


@given(st.lists(_packets, min_size=1, max_size=4))
def test_compound_round_trip_property(packets: list[RtcpPacket]) -> None:
    assert parse_compound(serialize_compound(packets)) == packets


# --- NTP ------------------------------------------------------------------------------------


def test_ntp_from_unix() -> None:
    assert ntp_from_unix(0.0) == NTP_EPOCH_OFFSET << 32
    assert ntp_from_unix(1.5) == ((NTP_EPOCH_OFFSET + 1) << 32) | 0x80000000
    t = 1_700_000_000.123456
    assert abs(unix_from_ntp(ntp_from_unix(t)) - t) < 1e-6


def test_ntp_middle32_and_short() -> None:
    ntp = 0x1122_3344_5566_7788
    assert ntp_middle32(ntp) == 0x3344_5566
    assert ntp_short_from_seconds(1.5) == 0x00018000
    assert seconds_from_ntp_short(0x00018000) == 1.5
    assert ntp_short_from_seconds(-1.0) == 0
    assert ntp_short_from_seconds(1e9) == 0xFFFFFFFF


def test_ntp_fraction_carry() -> None:
    # a fraction that rounds up to a whole second must carry into the seconds
    assert ntp_from_unix(0.9999999999999) == (NTP_EPOCH_OFFSET + 1) << 32
