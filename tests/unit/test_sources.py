"""Audio sources: silence, tones, WAV files, the application queue."""

from __future__ import annotations

import math
import time
import wave
from array import array
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessioncore.errors import InvalidArgumentError, SessionError
from sessioncore.media import analysis
from sessioncore.media.analysis import dominant_frequency, rms_dbfs
from sessioncore.media.sources import (
    MAX_SINE_DBFS,
    AudioFileError,
    AudioSource,
    PcmFifo,
    QueueSource,
    SilenceSource,
    ToneSource,
    WavFileSource,
    WavFormatError,
)

HAS_NUMPY = analysis._numpy is not None
ANALYSERS = [
    pytest.param(False, id="python"),
    pytest.param(
        True, id="numpy", marks=pytest.mark.skipif(not HAS_NUMPY, reason="numpy not installed")
    ),
]


def sine(frequency: float, rate: int, seconds: float, amplitude: float = 8000.0) -> bytes:
    """Reference PCM built independently of ToneSource."""
    step = 2 * math.pi * frequency / rate
    count = int(rate * seconds)
    return array("h", (round(amplitude * math.sin(step * i)) for i in range(count))).tobytes()


def write_wav(path: Path, pcm: bytes, rate: int, *, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


# --- silence ----------------------------------------------------------------------------------


def test_silence_source() -> None:
    source = SilenceSource(16000)
    assert isinstance(source, AudioSource)
    assert source.sample_rate == 16000
    assert source.read(160) == bytes(320)
    assert source.read(0) == b""
    source.close()
    assert source.read(160) is None


@pytest.mark.parametrize("rate", [0, -8000, 8000.0, True])
def test_bad_sample_rate(rate: object) -> None:
    with pytest.raises(InvalidArgumentError):
        SilenceSource(rate)  # type: ignore[arg-type]


# --- tones ------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_numpy", ANALYSERS)
@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("frequency", [300, 440, 1000, 2000])
def test_tone_frequency(frequency: int, rate: int, use_numpy: bool) -> None:
    source = ToneSource(frequency, sample_rate=rate)
    pcm = b"".join(source.read(160) or b"" for _ in range(50))  # 1 s in 20 ms frames at 8 kHz
    measured = dominant_frequency(pcm, rate, use_numpy=use_numpy)
    assert measured == pytest.approx(frequency, abs=2.0)


@pytest.mark.parametrize("frequency", [697.0, 852.5, 1336.25, 3300.7])
def test_tone_non_integer_frequency(frequency: float) -> None:
    source = ToneSource(frequency, sample_rate=8000)
    assert source.frequency == pytest.approx(frequency, abs=0.01)
    pcm = source.read(8000) or b""
    assert dominant_frequency(pcm, 8000, use_numpy=False) == pytest.approx(frequency, abs=2.0)


@pytest.mark.parametrize("level", [-3.0103, -6.0, -12.0, -20.0, -40.0])
def test_tone_level(level: float) -> None:
    pcm = ToneSource(1000, level_dbfs=level).read(8000) or b""
    assert rms_dbfs(pcm) == pytest.approx(level, abs=1.0)


def test_tone_table_is_small_for_integer_frequencies() -> None:
    source = ToneSource(440, sample_rate=8000)
    assert len(source._cycle._period) == 2 * 200  # 11 periods of 440 Hz in 200 samples


@given(st.lists(st.integers(min_value=0, max_value=1000), max_size=40))
def test_tone_continuity_across_reads(sizes: list[int]) -> None:
    reader = ToneSource(1336.25, level_dbfs=-6.0)
    pieces = [reader.read(n) for n in sizes]
    assert all(p is not None and len(p) == 2 * n for p, n in zip(pieces, sizes, strict=True))
    whole = ToneSource(1336.25, level_dbfs=-6.0).read(sum(sizes))
    assert b"".join(p or b"" for p in pieces) == whole


def test_tone_continuity_odd_sizes_and_wraparound() -> None:
    sizes = [1, 7, 159, 161, 199, 201, 3333, 13]
    reader = ToneSource(440)
    joined = b"".join(reader.read(n) or b"" for n in sizes)
    assert joined == ToneSource(440).read(sum(sizes))


def test_tone_duration_pads_then_ends() -> None:
    source = ToneSource(1000, duration=0.05)  # 400 samples
    first = source.read(160)
    second = source.read(160)
    last = source.read(160)
    assert first is not None and second is not None and last is not None
    assert len(last) == 320
    assert last[160:] == bytes(160)  # 80 samples of tone, 80 of padding
    assert last[:160] != bytes(160)
    assert source.read(160) is None


def test_tone_duration_zero_and_close() -> None:
    assert ToneSource(duration=0).read(160) is None
    source = ToneSource()
    source.close()
    assert source.read(160) is None


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"frequency": 0}, "frequency"),
        ({"frequency": 4000}, "4000"),
        ({"frequency": -5}, "frequency"),
        ({"level_dbfs": 0.0}, "-3.01"),
        ({"level_dbfs": math.nan}, "level"),
        ({"duration": -1}, "duration"),
        ({"duration": math.inf}, "duration"),
    ],
)
def test_tone_rejects_bad_arguments(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidArgumentError, match=needle):
        ToneSource(**kwargs)


def test_full_scale_sine_does_not_wrap() -> None:
    pcm = ToneSource(1000, level_dbfs=MAX_SINE_DBFS).read(8000) or b""
    samples = array("h", pcm)
    assert max(samples) <= 32767 and min(samples) >= -32768
    assert max(samples) > 32000


def test_tone_read_is_cheap() -> None:
    source = ToneSource(440)
    start = time.perf_counter()
    for _ in range(20_000):  # 400 s of audio in 20 ms frames
        source.read(160)
    assert time.perf_counter() - start < 1.0


# --- WAV files --------------------------------------------------------------------------------


def test_wav_16k_read_at_8k(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "tone16k.wav", sine(1000, 16000, 1.0), 16000)
    source = WavFileSource(path, sample_rate=8000)
    assert source.sample_rate == 8000
    assert source.duration == pytest.approx(1.0, abs=0.001)
    pcm = source.read(8000)
    assert pcm is not None and len(pcm) == 16000
    assert dominant_frequency(pcm, 8000, use_numpy=False) == pytest.approx(1000, abs=2.0)
    assert source.read(160) is None  # played once: ended


def test_wav_same_rate_is_bit_exact(tmp_path: Path) -> None:
    original = sine(440, 8000, 0.5)
    source = WavFileSource(write_wav(tmp_path / "a.wav", original, 8000))
    assert source.read(4000) == original


def test_wav_8k_read_at_16k(tmp_path: Path) -> None:
    source = WavFileSource(
        write_wav(tmp_path / "a.wav", sine(440, 8000, 1.0), 8000), sample_rate=16000
    )
    assert source.duration == pytest.approx(1.0, abs=0.001)
    pcm = source.read(16000) or b""
    assert dominant_frequency(pcm, 16000, use_numpy=False) == pytest.approx(440, abs=2.0)


def test_wav_once_pads_last_read(tmp_path: Path) -> None:
    original = sine(440, 8000, 0.025)  # 200 samples
    source = WavFileSource(write_wav(tmp_path / "a.wav", original, 8000))
    first, second = source.read(160), source.read(160)
    assert first == original[:320]
    assert second == original[320:] + bytes(240)
    assert source.read(160) is None
    assert source.read(160) is None


def test_wav_loop(tmp_path: Path) -> None:
    original = sine(440, 8000, 0.025)  # 200 samples
    source = WavFileSource(write_wav(tmp_path / "a.wav", original, 8000), loop=True)
    joined = b"".join(source.read(n) or b"" for n in (160, 160, 160, 7, 113))
    assert joined == (original * 3)[:1200]
    source.close()
    assert source.read(160) is None


def test_wav_empty_file(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "empty.wav", b"", 8000)
    assert WavFileSource(path).read(160) is None
    assert WavFileSource(path, loop=True).read(160) == bytes(320)


def test_wav_stereo_16bit_is_mixed_down(tmp_path: Path) -> None:
    left = array("h", [1000, -2000, 3000, 400])
    right = array("h", [3000, 2000, -1000, 0])
    frames = array("h", [v for pair in zip(left, right, strict=True) for v in pair]).tobytes()
    source = WavFileSource(write_wav(tmp_path / "s.wav", frames, 8000, channels=2))
    assert array("h", source.read(4) or b"").tolist() == [2000, 0, 1000, 200]


@pytest.mark.parametrize(
    ("channels", "width", "found"),
    [(1, 1, "8-bit"), (2, 3, "24-bit"), (1, 4, "32-bit"), (3, 2, "3 channel")],
)
def test_wav_bad_pcm_formats(tmp_path: Path, channels: int, width: int, found: str) -> None:
    pcm = bytes(channels * width * 100)
    path = write_wav(tmp_path / "bad.wav", pcm, 16000, channels=channels, width=width)
    with pytest.raises(WavFormatError) as info:
        WavFileSource(path)
    message = str(info.value)
    assert "bad.wav" in message and found in message
    assert "mono 16-bit PCM WAV, 8000 or 16000 Hz" in message
    assert isinstance(info.value, InvalidArgumentError)
    assert isinstance(info.value, SessionError)


def test_wav_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not audio, just some text long enough for a header\n")
    with pytest.raises(WavFormatError, match=r"notes\.txt.*RIFF.*accepted: mono 16-bit"):
        WavFileSource(path)


def test_wav_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    path.write_bytes(b"RIFF")
    with pytest.raises(WavFormatError, match=r"short\.wav"):
        WavFileSource(path)


def test_wav_float_format_is_named(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "f.wav", bytes(400), 8000)
    data = bytearray(path.read_bytes())
    fmt = data.index(b"fmt ") + 8
    data[fmt : fmt + 2] = (3).to_bytes(2, "little")  # WAVE_FORMAT_IEEE_FLOAT
    path.write_bytes(bytes(data))
    with pytest.raises(WavFormatError, match=r"f\.wav.*IEEE float"):
        WavFileSource(path)


def test_wav_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match=r"nope\.wav") as info:
        WavFileSource(tmp_path / "nope.wav")
    assert not isinstance(info.value, WavFormatError)


# --- application queue ------------------------------------------------------------------------


def test_queue_source_silence_when_empty_and_padding() -> None:
    source = QueueSource()
    assert source.read(160) == bytes(320)
    source.push(b"\x01\x00" * 100)
    assert source.buffered_samples == 100
    assert source.read(160) == b"\x01\x00" * 100 + bytes(120)
    assert source.read(160) == bytes(320)


def test_queue_source_fifo_order() -> None:
    source = QueueSource()
    source.push(b"\x01\x00" * 100)
    source.push(b"\x02\x00" * 100)
    assert source.read(150) == b"\x01\x00" * 100 + b"\x02\x00" * 50
    assert source.read(50) == b"\x02\x00" * 50


def test_queue_source_bounded_drops_oldest() -> None:
    source = QueueSource(sample_rate=8000, max_seconds=0.02)  # 160 samples
    source.push(b"\x01\x00" * 100)
    source.push(b"\x02\x00" * 100)
    assert source.buffered_samples == 160
    assert source.dropped_samples == 40
    assert source.read(160) == b"\x01\x00" * 60 + b"\x02\x00" * 100
    source.push(b"\x03\x00" * 1000)
    assert source.dropped_samples == 40 + 840
    assert source.read(160) == b"\x03\x00" * 160


def test_queue_source_close() -> None:
    source = QueueSource()
    source.push(bytes(320))
    source.close()
    assert source.closed
    assert source.read(160) is None
    source.push(bytes(320))  # ignored
    assert source.buffered_samples == 0


def test_queue_source_rejects_odd_bytes_and_bad_bounds() -> None:
    with pytest.raises(InvalidArgumentError, match="3 bytes"):
        QueueSource().push(b"abc")
    with pytest.raises(InvalidArgumentError):
        QueueSource(max_seconds=0)
    with pytest.raises(InvalidArgumentError):
        PcmFifo(0)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 300)), max_size=60))
def test_pcm_fifo_matches_a_model(ops: list[tuple[bool, int]]) -> None:
    fifo = PcmFifo(500)
    model: list[int] = []
    dropped = 0
    counter = 0
    for is_push, n in ops:
        if is_push:
            values = [(counter + i) % 30000 for i in range(n)]
            counter += n
            fifo.push(array("h", values).tobytes())
            model.extend(values)
            if len(model) > 500:
                dropped += len(model) - 500
                del model[: len(model) - 500]
        else:
            got = array("h", fifo.pop(n)).tolist()
            expected = model[:n] + [0] * max(0, n - len(model))
            del model[:n]
            assert got == expected
        assert len(fifo) == len(model)
        assert fifo.dropped_samples == dropped
