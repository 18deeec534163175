"""Adaptive jitter buffer: synthetic timings with literal clock values, no sleeping."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessioncore.errors import InvalidArgumentError
from sessioncore.media.jitter import JitterBuffer, JitterFrame, conceal

FRAME = 0.02  # 20 ms frames at 8000 Hz, 160 samples


def _steady(count: int, start: int = 0) -> dict[int, float]:
    """Packet index -> arrival time of a jitter-free stream (packet i sent at i * 20 ms)."""
    return {i: round(i * FRAME, 6) for i in range(start, count)}


def _run(
    arrivals: dict[int, float],
    ticks: int,
    *,
    jb: JitterBuffer | None = None,
    seq0: int = 0,
    ts0: int = 0,
    duplicate: bool = False,
    markers: frozenset[int] = frozenset(),
    first_tick: int = 0,
) -> tuple[JitterBuffer, list[tuple[float, JitterFrame, float]]]:
    """Deliver packets by arrival time and call get() every 20 ms; (now, frame, delay) each."""
    jb = jb or JitterBuffer()
    queue = sorted((a, i) for i, a in arrivals.items())
    out = []
    j = 0
    for k in range(first_tick, first_tick + ticks):
        now = round(k * FRAME, 6)
        while j < len(queue) and queue[j][0] <= now + 1e-9:
            arrival, i = queue[j]
            j += 1
            for _ in range(2 if duplicate else 1):
                jb.put(
                    (seq0 + i) & 0xFFFF,
                    (ts0 + 160 * i) & 0xFFFF_FFFF,
                    b"p%d" % i,
                    arrival,
                    marker=i in markers,
                )
        frame = jb.get(now)
        out.append((now, frame, jb.stats.current_delay_ms))
    return jb, out


def _played(out: list[tuple[float, JitterFrame, float]]) -> list[bytes | None]:
    return [f.payload for _, f, _ in out if f.kind == "audio"]


def _kinds(out: list[tuple[float, JitterFrame, float]]) -> str:
    return "".join({"audio": "a", "concealed": "c", "empty": "."}[f.kind] for _, f, _ in out)


def test_steady_stream_plays_everything_with_constant_delay() -> None:
    jb, out = _run(_steady(100), 102)
    assert _kinds(out) == ".." + "a" * 100  # waits the initial 40 ms, then one frame per tick
    assert _played(out) == [b"p%d" % i for i in range(100)]
    assert [f.seq for _, f, _ in out[2:]] == list(range(100))
    assert [f.timestamp for _, f, _ in out[2:5]] == [0, 160, 320]
    delays = {round(d, 6) for _, f, d in out if f.kind == "audio"}
    assert delays == {40.0}
    s = jb.stats
    assert (s.received, s.played, s.lost, s.late, s.concealed, s.duplicates, s.reordered) == (
        100,
        100,
        0,
        0,
        0,
        0,
        0,
    )
    assert s.discarded == 0 and s.buffered == 0
    assert s.current_delay_ms == pytest.approx(40) and s.max_delay_ms == pytest.approx(40)
    assert s.target_delay_ms == pytest.approx(20)  # no jitter: one frame, the minimum
    assert s.jitter_ms == pytest.approx(0, abs=1e-6)


def test_reordered_pairs_are_played_in_order() -> None:
    arrivals = _steady(60)
    for i in range(10, 50, 10):  # packet i arrives 25 ms late, after packet i + 1
        arrivals[i] = round(arrivals[i] + 0.025, 6)
    jb, out = _run(arrivals, 62)
    assert _played(out) == [b"p%d" % i for i in range(60)]
    assert "c" not in _kinds(out)
    assert jb.stats.reordered == 4
    assert (jb.stats.lost, jb.stats.late) == (0, 0)


def test_duplicates_are_dropped_and_counted() -> None:
    jb, out = _run(_steady(50), 52, duplicate=True)
    assert _played(out) == [b"p%d" % i for i in range(50)]
    # a duplicate of a packet already played is a duplicate, not a late packet
    jb.put(10, 1600, b"p10", 5.0)
    assert (jb.stats.received, jb.stats.duplicates, jb.stats.played, jb.stats.late) == (
        101,
        51,
        50,
        0,
    )


def test_lost_packet_is_concealed_once_and_counted_lost() -> None:
    arrivals = _steady(40)
    del arrivals[20]
    jb, out = _run(arrivals, 42)
    frames = [f for _, f, _ in out]
    assert _kinds(out) == ".." + "a" * 20 + "c" + "a" * 19
    assert frames[22].concealment == 1 and frames[22].payload is None
    assert frames[23].seq == 21
    assert (jb.stats.lost, jb.stats.concealed, jb.stats.late, jb.stats.played) == (1, 1, 0, 39)


def test_late_packet_is_dropped_and_counted() -> None:
    arrivals = _steady(40)
    arrivals[20] = 0.5  # due at 0.44 (sent 0.40 + 40 ms): too late
    jb, out = _run(arrivals, 42)
    assert b"p20" not in _played(out)
    assert (jb.stats.lost, jb.stats.late) == (1, 1)
    assert _played(out)[:20] == [b"p%d" % i for i in range(20)]


def test_jitter_burst_raises_the_delay_then_it_decays() -> None:
    arrivals = _steady(700)
    for i in range(100, 105):  # a 100 ms stall: five packets arrive together at 2.1 s
        arrivals[i] = 2.1
    jb, out = _run(arrivals, 702)
    by_time = {now: (f, d) for now, f, d in out}
    assert by_time[2.0][1] == pytest.approx(40)
    # the buffer ran dry: faded out for 3 frames, then waited until packet 100 was due
    assert _kinds(out)[101:107] == "accc.a"
    assert by_time[2.12][0].seq == 100
    assert by_time[2.12][1] == pytest.approx(120)  # target = 100 ms jitter + one frame
    assert jb.stats.max_delay_ms == pytest.approx(120)
    # then the delay decays one dropped frame at a time, back to the steady-state delay
    assert by_time[3.0][1] < 120
    assert by_time[10.0][1] == pytest.approx(40)
    assert jb.stats.target_delay_ms < 25
    assert jb.stats.lost == 0 and jb.stats.late == 0
    played = [int(p[1:]) for p in _played(out) if p]
    assert played == sorted(played)
    assert jb.stats.discarded == 700 - len(played)


def test_late_spike_without_underrun_raises_the_delay_by_inserting() -> None:
    arrivals = _steady(150)
    arrivals[80] = 1.7  # 100 ms late, while later packets keep the buffer filled
    jb, out = _run(arrivals, 152)
    assert (jb.stats.lost, jb.stats.late) == (1, 1)
    delays = [d for now, f, d in out if f.kind == "audio" and now > 1.7]
    rising = [round(d, 6) for d in delays[:10]]
    assert rising == sorted(rising) and rising[0] > 40  # one inserted frame after another
    assert max(delays) == pytest.approx(100)  # 100 ms jitter + one frame, minus the hysteresis
    # inserts are spread out: never two concealed frames in a row
    assert "cc" not in _kinds(out)


def test_sequence_wraparound_mid_stream() -> None:
    arrivals = _steady(40)
    arrivals[10], arrivals[11] = arrivals[11], arrivals[10]  # swapped across 65535 -> 0
    jb, out = _run(arrivals, 42, seq0=65525, ts0=0xFFFF_FFFF - 1000)
    seqs = [f.seq for _, f, _ in out if f.kind == "audio"]
    assert seqs == [(65525 + i) & 0xFFFF for i in range(40)]
    assert seqs[9:12] == [65534, 65535, 0]
    assert _played(out) == [b"p%d" % i for i in range(40)]
    assert jb.stats.reordered == 1
    assert (jb.stats.lost, jb.stats.late, jb.stats.duplicates) == (0, 0, 0)


@pytest.mark.parametrize("ts_jump", [8000, 0])
def test_talkspurt_after_silence_rebuffers_with_the_target_delay(ts_jump: int) -> None:
    jb, out = _run(_steady(60), 70)  # packets 0-59, then the sender goes silent
    assert _kinds(out)[61:] == "accc....."  # last audio, a 3-frame fade, then silence
    # a new talkspurt 1 s later: sequence numbers continue, timestamps jump by 1 s (DTX), or
    # (ts_jump=0) a sender that did not advance its clock over the pause
    later = {i: round(1.0 + i * FRAME, 6) for i in range(60, 80)}
    _, out2 = _run(later, 25, jb=jb, ts0=ts_jump, markers=frozenset({60}), first_tick=110)
    assert _kinds(out2) == ".a" + "a" * 19 + "ccc."  # waits for the 20 ms target first
    assert _played(out2) == [b"p%d" % i for i in range(60, 80)]
    assert (jb.stats.lost, jb.stats.late) == (0, 0)
    assert jb.stats.current_delay_ms == pytest.approx(20)


def test_talkspurt_start_while_playing_keeps_the_silence_gap() -> None:
    jb = JitterBuffer(initial_delay_ms=100)
    # packets 0-4, one 20 ms frame of silence (DTX: no packet 5), then 6-20 with the marker on 6;
    # sequence numbers continue without a gap, timestamps jump by one frame
    arrivals = {i: round(i * FRAME, 6) for i in [*range(5), *range(6, 21)]}
    kinds = []
    for k in range(30):
        now = round(k * FRAME, 6)
        for i, a in arrivals.items():
            if a == now:
                jb.put(i if i < 5 else i - 1, 160 * i, b"p%d" % i, a, marker=i == 6)
        kinds.append(jb.get(now).kind[0])
    # the buffer never ran dry, yet packet 6 waits its due time: the 20 ms gap is kept
    assert "".join(kinds) == "eeeee" + "aaaaa" + "e" + "a" * 15 + "ccce"
    assert jb.stats.lost == 0 and jb.stats.concealed == 3
    assert jb.stats.current_delay_ms == pytest.approx(100)


def test_bounded_size_and_sequence_jump() -> None:
    jb = JitterBuffer(max_delay_ms=100)  # capacity 2 * 5 + 4 = 14 packets
    for i in range(40):
        jb.put(i, 160 * i, b"x", 0.0)
    assert jb.stats.buffered == 14
    assert jb.stats.discarded == 26
    frame = jb.get(1.0)
    assert frame.kind == "audio" and frame.seq == 26
    # a forward jump of more than 3000 is a restarted sender: a new stream
    jb.put(20000, 999_999, b"new", 1.01)
    assert jb.stats.buffered == 1
    frames = [jb.get(1.02 + k * FRAME) for k in range(4)]
    assert [f.seq for f in frames if f.kind == "audio"] == [20000]


def test_conceal_fades_6_db_per_repeat_then_silence() -> None:
    pcm = struct.pack("<4h", 16000, -16000, 1000, 0)
    assert struct.unpack("<4h", conceal(pcm, 1)) == (8000, -8000, 500, 0)
    assert struct.unpack("<4h", conceal(pcm, 2)) == (4000, -4000, 250, 0)
    assert struct.unpack("<4h", conceal(pcm, 3)) == (2000, -2000, 125, 0)
    assert conceal(pcm, 4) == bytes(8)
    assert conceal(pcm, 100) == bytes(8)
    assert conceal(b"", 1) == b""
    for bad_pcm, bad_count in ((b"\x00", 1), (pcm, 0), ("ab", 1)):
        with pytest.raises(InvalidArgumentError):
            conceal(bad_pcm, bad_count)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clock_rate": 0},
        {"frame_samples": -160},
        {"min_delay_ms": 50, "initial_delay_ms": 40},
        {"initial_delay_ms": 300},
        {"max_delay_ms": -1},
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidArgumentError):
        JitterBuffer(**kwargs)


def test_put_rejects_out_of_range_numbers() -> None:
    jb = JitterBuffer()
    with pytest.raises(InvalidArgumentError):
        jb.put(65536, 0, b"", 0.0)
    with pytest.raises(InvalidArgumentError):
        jb.put(0, 2**32, b"", 0.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 0.15), min_size=80, max_size=80),
    st.integers(0, 65535),
    st.sets(st.integers(0, 79), max_size=10),
)
def test_any_arrival_pattern_keeps_order_and_accounts_for_every_packet(
    extra_delays: list[float], seq0: int, dropped: set[int]
) -> None:
    arrivals = {i: round(i * FRAME + d, 6) for i, d in enumerate(extra_delays) if i not in dropped}
    jb, out = _run(arrivals, 120, seq0=seq0)
    played = [int(p[1:]) for p in _played(out) if p]
    assert played == sorted(set(played))  # in order, each once
    s = jb.stats
    assert s.received == len(arrivals)
    assert s.played + s.late + s.discarded + s.buffered == len(arrivals)
    assert s.lost >= len(dropped & set(range(min(played, default=0), max(played, default=0))))
    assert 0 <= s.current_delay_ms <= 200 + 20 + 1e-6 or s.played == 0
