"""RtpSession: sending, receiving, jitter, RTCP scheduling, SR/RR, RTT, BYE, statistics.

Two sessions pass bytes to each other in memory and time is stepped with literal numbers.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from sessioncore.errors import InvalidArgumentError
from sessioncore.media.rtcp import (
    SDES_CNAME,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    SenderReport,
    SourceDescription,
    ntp_from_unix,
    ntp_middle32,
    parse_compound,
    serialize_compound,
)
from sessioncore.media.rtp import RtpPacket
from sessioncore.media.rtpsession import RtpSession, RtpStats

WALL = 1_700_000_000.0  # any wall clock; the sessions only use it for NTP timestamps


def make(name: str = "a", seed: int = 1, **kwargs: Any) -> RtpSession:
    args: dict[str, object] = {
        "clock_rate": 8000,
        "payload_type": 0,
        "cname": f"{name}@example.com",
        "rng": random.Random(seed),
    }
    args.update(kwargs)
    return RtpSession(**args)  # type: ignore[arg-type]


def pkt(seq: int, ts: int, ssrc: int = 0x1234, payload: bytes = b"x" * 160) -> RtpPacket:
    return RtpPacket(0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, payload)


# --- construction ---------------------------------------------------------------------------


def test_seeded_rng_is_deterministic() -> None:
    a, b = make(seed=42), make(seed=42)
    assert a.ssrc == b.ssrc
    assert a.next_sequence_number == b.next_sequence_number
    assert a.next_timestamp == b.next_timestamp
    assert make(seed=43).ssrc != a.ssrc
    assert 0 <= a.next_sequence_number < 0x8000


def test_explicit_ssrc_and_initial_values() -> None:
    s = make(ssrc=5, initial_sequence=65535, initial_timestamp=0xFFFFFFFF)
    assert (s.ssrc, s.next_sequence_number, s.next_timestamp) == (5, 65535, 0xFFFFFFFF)


def test_default_rng_works() -> None:
    s = RtpSession(clock_rate=8000, payload_type=0, cname="x")
    assert 0 <= s.ssrc <= 0xFFFFFFFF


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clock_rate": 0},
        {"payload_type": 128},
        {"ssrc": 1 << 32},
        {"cname": ""},
        {"cname": "x" * 256},
        {"rtcp_interval": 0.0},
    ],
)
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        make(**kwargs)


# --- sending --------------------------------------------------------------------------------


def test_build_packet_sequence_and_timestamp() -> None:
    s = make(ssrc=0xAABBCCDD, initial_sequence=100, initial_timestamp=1000)
    p1 = RtpPacket.parse(s.build_packet(b"abc", 160))
    p2 = RtpPacket.parse(s.build_packet(b"defg", 160))
    assert (p1.sequence_number, p1.timestamp, p1.ssrc, p1.payload) == (
        100,
        1000,
        0xAABBCCDD,
        b"abc",
    )
    assert (p2.sequence_number, p2.timestamp) == (101, 1160)
    assert p1.payload_type == 0 and not p1.marker
    st = s.stats()
    assert (st.packets_sent, st.octets_sent) == (2, 7)


def test_sequence_and_timestamp_wrap() -> None:
    s = make(initial_sequence=65534, initial_timestamp=0xFFFFFFA0)
    seqs, stamps = [], []
    for _ in range(3):
        p = RtpPacket.parse(s.build_packet(b"", 160))
        seqs.append(p.sequence_number)
        stamps.append(p.timestamp)
    assert seqs == [65534, 65535, 0]
    assert stamps == [0xFFFFFFA0, 0x40, 0xE0]


def test_explicit_timestamp_payload_type_and_skip() -> None:
    s = make(initial_sequence=0, initial_timestamp=8000)
    start = s.next_timestamp
    events = [
        RtpPacket.parse(s.build_packet(b"ev", 0, marker=i == 0, payload_type=101, timestamp=start))
        for i in range(3)
    ]
    assert [e.timestamp for e in events] == [start] * 3
    assert [e.sequence_number for e in events] == [0, 1, 2]
    assert [e.marker for e in events] == [True, False, False]
    assert all(e.payload_type == 101 for e in events)
    assert s.next_timestamp == start  # an explicit timestamp does not advance the clock
    s.skip(480)
    p = RtpPacket.parse(s.build_packet(b"audio", 160))
    assert (p.payload_type, p.timestamp, p.sequence_number) == (0, start + 480, 3)


def test_set_marker_next_applies_once() -> None:
    s = make()
    s.set_marker_next()
    assert RtpPacket.parse(s.build_packet(b"", 160)).marker
    assert not RtpPacket.parse(s.build_packet(b"", 160)).marker


def test_payload_type_switch_and_bad_values() -> None:
    s = make()
    s.payload_type = 8
    assert RtpPacket.parse(s.build_packet(b"", 160)).payload_type == 8
    with pytest.raises(InvalidArgumentError):
        s.build_packet(b"", 160, payload_type=200)
    with pytest.raises(InvalidArgumentError):
        s.build_packet(b"", -1)
    with pytest.raises(InvalidArgumentError):
        s.skip(-1)


# --- receiving RTP --------------------------------------------------------------------------


def test_receive_counts_and_remote_ssrc() -> None:
    s = make()
    for i in range(5):
        assert s.receive_rtp(pkt(10 + i, 160 * i), now=i * 0.02)
    st = s.stats()
    assert st.remote_ssrc == 0x1234
    assert (st.packets_received, st.octets_received) == (5, 800)
    assert st.packets_lost == 0 and st.ssrc_changes == 0


def test_large_jump_is_dropped_until_confirmed() -> None:
    s = make(min_sequential=1)
    assert s.receive_rtp(pkt(1, 0), 0.0)
    assert s.receive_rtp(pkt(2, 160), 0.02)
    assert not s.receive_rtp(pkt(20000, 320), 0.04)
    assert s.receive_rtp(pkt(20001, 480), 0.06)  # confirmed: resynchronised
    assert s.stats().packets_received == 3


def test_ssrc_change_resets_receiver_state() -> None:
    s = make(min_sequential=1)
    for seq in (1, 2, 4):  # one lost
        s.receive_rtp(pkt(seq, seq * 160), seq * 0.02)
    assert s.stats().packets_lost == 1
    assert s.receive_rtp(pkt(5000, 0, ssrc=0x9999), 1.0)
    st = s.stats()
    assert st.remote_ssrc == 0x9999
    assert st.ssrc_changes == 1
    assert st.packets_lost == 1  # the old source's loss is kept
    assert st.jitter_ms == 0.0
    s.receive_rtp(pkt(5002, 320, ssrc=0x9999), 1.04)
    assert s.stats().packets_lost == 2


def test_loss_and_fraction_in_stats_after_report() -> None:
    s = make(min_sequential=1)
    for seq in range(10):
        if seq not in (3, 6):
            s.receive_rtp(pkt(seq, seq * 160), seq * 0.02)
    assert s.stats().fraction_lost == 0.0  # no interval closed yet
    rr = parse_compound(s.build_rtcp(1.0, WALL))[0]
    assert isinstance(rr, ReceiverReport)
    (block,) = rr.reports
    assert block.ssrc == 0x1234
    assert block.fraction_lost == (2 << 8) // 10
    assert block.packets_lost == 2
    assert block.highest_seq == 9
    st = s.stats()
    assert st.packets_lost == 2
    assert st.fraction_lost == pytest.approx(51 / 256)


def test_report_block_extended_highest_seq_after_wrap() -> None:
    s = make(min_sequential=1)
    for i, seq in enumerate((65534, 65535, 0, 1)):
        s.receive_rtp(pkt(seq, i * 160), i * 0.02)
    (block,) = parse_compound(s.build_rtcp(1.0, WALL))[0].reports  # type: ignore[union-attr]
    assert block.highest_seq == 0x10001
    assert block.packets_lost == 0


# --- jitter (RFC 3550 A.8) ------------------------------------------------------------------


def test_jitter_constant_transit_is_zero() -> None:
    s = make()
    for i in range(50):
        s.receive_rtp(pkt(i, 1000 + 160 * i), now=5.0 + 0.02 * i)
    assert s.stats().jitter_ms == pytest.approx(0.0, abs=1e-9)


def test_jitter_alternating_10ms_hand_computed() -> None:
    # arrivals alternate 10 ms early / 10 ms late: |D| = 20 ms = 160 units at 8 kHz every time
    s = make()
    expected = 0.0
    s.receive_rtp(pkt(0, 0), now=1.0 + 0.010)
    for i in range(1, 200):
        offset = 0.010 if i % 2 == 0 else -0.010
        s.receive_rtp(pkt(i, 160 * i), now=1.0 + 0.02 * i + offset)
        expected += (160 - expected) / 16  # J = J + (|D| - J) / 16
        if i == 1:
            assert s.stats().jitter_ms == pytest.approx(10 * 1000 / 8000)  # 160/16 = 10 units
        if i == 2:
            assert s.stats().jitter_ms == pytest.approx(19.375 * 1000 / 8000)
    assert s.stats().jitter_ms == pytest.approx(expected * 1000 / 8000)
    assert s.stats().jitter_ms == pytest.approx(20.0, rel=1e-3)  # converges to |D|


def test_jitter_across_timestamp_wrap() -> None:
    s = make()
    base = 0xFFFFFFFF - 400
    for i in range(20):
        s.receive_rtp(pkt(i, base + 160 * i), now=0.02 * i)
    assert s.stats().jitter_ms == pytest.approx(0.0, abs=1e-9)


def test_jitter_ignores_repeated_timestamps() -> None:
    s = make()
    s.receive_rtp(pkt(0, 0), 0.0)
    for i in range(1, 4):  # an RFC 4733 event: updates every 50 ms with the same timestamp
        s.receive_rtp(pkt(i, 160), 0.02 + 0.05 * (i - 1))
    assert s.stats().jitter_ms == pytest.approx(0.0, abs=1e-9)


# --- RTCP scheduling ------------------------------------------------------------------------


def test_rtcp_interval_randomisation_bounds() -> None:
    s = make(seed=7, rtcp_interval=5.0)
    assert s.next_rtcp_time is None
    assert not s.rtcp_due(100.0)  # starts the schedule
    first = s.next_rtcp_time
    assert first is not None and 100.0 + 1.25 <= first <= 100.0 + 3.75
    assert not s.rtcp_due(first - 1e-6)
    assert s.rtcp_due(first)
    intervals = []
    now = first
    for _ in range(200):
        s.build_rtcp(now, WALL)
        nxt = s.next_rtcp_time
        assert nxt is not None
        intervals.append(nxt - now)
        now = nxt
    assert all(2.5 <= i <= 7.5 for i in intervals)
    assert min(intervals) < 3.0 and max(intervals) > 7.0  # really spread over the range
    assert sum(intervals) / len(intervals) == pytest.approx(5.0, rel=0.1)


def test_rtcp_schedule_is_deterministic_with_seed() -> None:
    times = []
    for _ in range(2):
        s = make(seed=3, rtcp_interval=1.0)
        s.start(0.0)
        s.start(50.0)  # a second start does not move the schedule
        times.append(s.next_rtcp_time)
    assert times[0] == times[1]
    assert times[0] is not None and 0.25 <= times[0] <= 0.75


# --- SR / RR --------------------------------------------------------------------------------


def test_sr_vs_rr_selection() -> None:
    s = make(ssrc=1, initial_timestamp=0)
    first = parse_compound(s.build_rtcp(1.0, WALL))
    assert isinstance(first[0], ReceiverReport)
    assert first[0].reports == []  # nothing received: no report block
    assert isinstance(first[1], SourceDescription)
    assert first[1].cname(1) == "a@example.com"
    for _ in range(3):
        s.build_packet(b"p" * 10, 160)
    second = parse_compound(s.build_rtcp(6.0, WALL + 5))
    sr = second[0]
    assert isinstance(sr, SenderReport)
    assert (sr.ssrc, sr.packet_count, sr.octet_count) == (1, 3, 30)
    assert sr.ntp_timestamp == ntp_from_unix(WALL + 5)
    assert sr.rtp_timestamp == 480  # the running timestamp when nothing better is known
    assert isinstance(second[1], SourceDescription)
    third = parse_compound(s.build_rtcp(11.0, WALL + 10))
    assert isinstance(third[0], ReceiverReport)  # nothing sent since the last report


def test_sr_rtp_timestamp_extrapolated_from_now() -> None:
    s = make(initial_timestamp=1000)
    s.build_packet(b"", 160, now=10.0)
    sr = parse_compound(s.build_rtcp(10.5, WALL))[0]
    assert isinstance(sr, SenderReport)
    assert sr.rtp_timestamp == 1000 + 4000


def two_parties() -> tuple[RtpSession, RtpSession]:
    return make("a", seed=1, min_sequential=1), make("b", seed=2, min_sequential=1)


def test_rtt_from_sr_rr_exchange() -> None:
    a, b = two_parties()
    # a sends RTP to b, 20 ms frames, 50 ms one-way delay
    for i in range(10):
        data = a.build_packet(b"x" * 160, 160)
        b.receive_rtp(RtpPacket.parse(data), now=0.02 * i + 0.05)
    sr_bytes = a.build_rtcp(now=10.0, wallclock=WALL)
    assert isinstance(parse_compound(sr_bytes)[0], SenderReport)
    b.receive_rtcp(sr_bytes, now=10.05)  # 50 ms later
    rr_bytes = b.build_rtcp(now=10.55, wallclock=WALL + 0.5)  # b holds it for 500 ms
    rr = parse_compound(rr_bytes)[0]
    assert isinstance(rr, ReceiverReport)
    (block,) = rr.reports
    assert block.ssrc == a.ssrc
    assert block.lsr == ntp_middle32(ntp_from_unix(WALL))
    assert block.dlsr == 0x8000  # 0.5 s in 16.16
    assert a.stats().rtt_ms is None
    a.receive_rtcp(rr_bytes, now=10.60)  # 50 ms back
    st = a.stats()
    assert st.rtt_ms == pytest.approx(100.0, abs=0.05)
    assert st.remote_fraction_lost == 0.0
    assert st.remote_packets_lost == 0
    assert st.remote_jitter_ms == pytest.approx(0.0, abs=0.2)
    assert b.remote_cname == "a@example.com"
    assert a.remote_cname == "b@example.com"
    assert b.stats().rtt_ms is None  # b sent no SR


def test_rtt_both_ways_when_both_send() -> None:
    a, b = two_parties()
    for i in range(5):
        b.receive_rtp(RtpPacket.parse(a.build_packet(b"x", 160)), now=0.02 * i + 0.03)
        a.receive_rtp(RtpPacket.parse(b.build_packet(b"y", 160)), now=0.02 * i + 0.03)
    a_sr = a.build_rtcp(now=5.0, wallclock=WALL)
    b.receive_rtcp(a_sr, now=5.03)
    b_sr = b.build_rtcp(now=5.2, wallclock=WALL + 0.2)
    assert isinstance(parse_compound(b_sr)[0], SenderReport)
    a.receive_rtcp(b_sr, now=5.23)
    assert a.stats().rtt_ms == pytest.approx(60.0, abs=0.05)
    a_sr2 = a.build_rtcp(now=6.0, wallclock=WALL + 1.0)  # a sent nothing new: an RR
    assert isinstance(parse_compound(a_sr2)[0], ReceiverReport)
    b.receive_rtcp(a_sr2, now=6.03)
    # b's SR left at 5.2, a held it 0.77 s: RTT = 6.03 - 5.2 - 0.77 = 60 ms
    assert b.stats().rtt_ms == pytest.approx(60.0, abs=0.05)


def test_rtt_with_wallclock_for_unknown_lsr() -> None:
    a = make(ssrc=1)
    lsr = ntp_middle32(ntp_from_unix(WALL))
    rr = ReceiverReport(2, [ReportBlock(1, lsr=lsr, dlsr=0x4000)])  # held 250 ms
    data = serialize_compound([rr])
    a.receive_rtcp(data, now=3.0)  # no wall clock, no SR of ours with that LSR: unknown
    assert a.stats().rtt_ms is None
    a.receive_rtcp(data, now=3.0, wallclock=WALL + 0.4)
    assert a.stats().rtt_ms == pytest.approx(150.0, abs=0.05)
    # an LSR from the future (clock trouble) is ignored instead of giving a huge RTT
    a.receive_rtcp(data, now=3.0, wallclock=WALL - 1.0)
    assert a.stats().rtt_ms == pytest.approx(150.0, abs=0.05)


def test_report_blocks_about_other_sources_are_ignored() -> None:
    a = make(ssrc=1)
    rr = ReceiverReport(2, [ReportBlock(99, fraction_lost=128, jitter=800)])
    a.receive_rtcp(serialize_compound([rr]), now=1.0)
    st = a.stats()
    assert st.remote_fraction_lost is None and st.remote_jitter_ms is None


def test_remote_view_of_our_stream() -> None:
    a = make(ssrc=1)
    rr = ReceiverReport(2, [ReportBlock(1, fraction_lost=64, packets_lost=7, jitter=80)])
    a.receive_rtcp(serialize_compound([rr]), now=1.0)
    st = a.stats()
    assert st.remote_fraction_lost == 0.25
    assert st.remote_packets_lost == 7
    assert st.remote_jitter_ms == pytest.approx(10.0)


def test_bye() -> None:
    a, b = two_parties()
    b.receive_rtp(RtpPacket.parse(a.build_packet(b"x", 160)), 0.0)
    data = a.build_bye(1.0, WALL, reason="hangup")
    packets = parse_compound(data)
    assert isinstance(packets[0], SenderReport)
    assert isinstance(packets[1], SourceDescription)
    assert packets[-1] == Bye([a.ssrc], "hangup")
    assert not b.remote_bye
    b.receive_rtcp(data, 1.05)
    assert b.remote_bye
    # our own BYE looped back does not count as the peer's
    a.receive_rtcp(data, 1.1)
    assert not a.remote_bye


def test_receive_rtcp_returns_packets_and_raises_on_garbage() -> None:
    a = make()
    sdes = SourceDescription([(5, [(SDES_CNAME, b"peer")])])
    assert a.receive_rtcp(bytes(sdes), 0.0) == [sdes]
    assert a.remote_cname == "peer"
    with pytest.raises(RtcpError):
        a.receive_rtcp(b"\x00\x01", 0.0)


def test_dlsr_only_for_the_remote_source() -> None:
    a, b = two_parties()
    for i in range(3):
        b.receive_rtp(RtpPacket.parse(a.build_packet(b"x", 160)), 0.02 * i)
    other = SenderReport(0x5555, ntp_from_unix(WALL), 0, 0, 0)  # an SR from someone else
    b.receive_rtcp(bytes(other), 1.0)
    (block,) = parse_compound(b.build_rtcp(2.0, WALL + 1))[0].reports  # type: ignore[union-attr]
    assert block.lsr == 0 and block.dlsr == 0


def test_stats_is_a_frozen_snapshot() -> None:
    s = make()
    st = s.stats()
    assert isinstance(st, RtpStats)
    assert st.local_ssrc == s.ssrc and st.remote_ssrc is None and st.rtt_ms is None
    with pytest.raises(AttributeError):
        st.packets_sent = 3  # type: ignore[misc]
    s.build_packet(b"abc", 160)
    assert st.packets_sent == 0 and s.stats().packets_sent == 1


def test_probation_packets_are_accepted_but_not_counted_as_expected() -> None:
    s = make()  # RFC default: 2 sequential packets before the source is valid
    assert s.receive_rtp(pkt(100, 0), 0.0)
    rr = parse_compound(s.build_rtcp(0.5, WALL))[0]
    assert isinstance(rr, ReceiverReport) and rr.reports == []  # not valid yet
    assert s.receive_rtp(pkt(101, 160), 0.02)
    rr = parse_compound(s.build_rtcp(1.0, WALL))[0]
    assert isinstance(rr, ReceiverReport) and len(rr.reports) == 1
    assert s.stats().packets_received == 2
