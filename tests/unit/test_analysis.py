"""Audio analysis: dominant frequency (numpy and pure Python), levels, activity, WAV reading."""

from __future__ import annotations

import math
import random
import time
import wave
from array import array
from pathlib import Path

import pytest

from sessioncore.errors import InvalidArgumentError
from sessioncore.media import analysis
from sessioncore.media.analysis import active_seconds, dominant_frequency, read_wav, rms_dbfs
from sessioncore.media.sources import AudioFileError, ToneSource, WavFormatError

HAS_NUMPY = analysis._numpy is not None
ANALYSERS = [
    pytest.param(False, id="python"),
    pytest.param(
        True, id="numpy", marks=pytest.mark.skipif(not HAS_NUMPY, reason="numpy not installed")
    ),
]


def sine(frequency: float, rate: int, seconds: float, amplitude: float = 8000.0) -> bytes:
    step = 2 * math.pi * frequency / rate
    count = int(rate * seconds)
    return array("h", (round(amplitude * math.sin(step * i)) for i in range(count))).tobytes()


def tone(frequency: float, rate: int, seconds: float, level: float = -12.0) -> bytes:
    return ToneSource(frequency, level, rate).read(round(rate * seconds)) or b""


# --- dominant frequency -----------------------------------------------------------------------


@pytest.mark.parametrize("use_numpy", ANALYSERS)
@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("frequency", [100.0, 300.0, 440.0, 697.0, 1000.0, 2000.0, 3456.7])
def test_clean_sine(frequency: float, rate: int, use_numpy: bool) -> None:
    pcm = sine(frequency, rate, 0.5)
    assert dominant_frequency(pcm, rate, use_numpy=use_numpy) == pytest.approx(frequency, abs=2.0)


@pytest.mark.parametrize("use_numpy", ANALYSERS)
def test_single_frame(use_numpy: bool) -> None:
    pcm = sine(1000.0, 8000, 0.02)  # 160 samples
    assert dominant_frequency(pcm, 8000, use_numpy=use_numpy) == pytest.approx(1000.0, abs=5.0)


@pytest.mark.parametrize("use_numpy", ANALYSERS)
def test_tone_in_noise_with_gaps_and_dc(use_numpy: bool) -> None:
    rng = random.Random(7)
    pcm = bytearray(bytes(4000 * 2))  # 0.5 s of leading silence
    pcm += sine(852.0, 8000, 1.0)
    pcm += bytes(800 * 2)  # a 100 ms gap (lost packets)
    pcm += sine(852.0, 8000, 1.0)
    samples = array("h", bytes(pcm))
    noisy = array("h", (max(-32768, min(32767, s + 500 + rng.randint(-800, 800))) for s in samples))
    measured = dominant_frequency(noisy.tobytes(), 8000, use_numpy=use_numpy)
    assert measured == pytest.approx(852.0, abs=2.0)


@pytest.mark.parametrize("use_numpy", ANALYSERS)
def test_strongest_of_two_tones(use_numpy: bool) -> None:
    low = array("h", sine(697.0, 8000, 0.5, 3000))
    high = array("h", sine(1477.0, 8000, 0.5, 9000))
    mixed = array("h", (a + b for a, b in zip(low, high, strict=True))).tobytes()
    assert dominant_frequency(mixed, 8000, use_numpy=use_numpy) == pytest.approx(1477.0, abs=2.0)


@pytest.mark.parametrize("use_numpy", ANALYSERS)
def test_silence_and_empty(use_numpy: bool) -> None:
    assert dominant_frequency(bytes(1600), 8000, use_numpy=use_numpy) == 0.0
    assert dominant_frequency(b"", 8000, use_numpy=use_numpy) == 0.0


def test_fallback_is_fast_on_ten_seconds() -> None:
    pcm = tone(440.0, 8000, 10.0)
    start = time.perf_counter()
    measured = dominant_frequency(pcm, 8000, use_numpy=False)
    assert time.perf_counter() - start < 0.5
    assert measured == pytest.approx(440.0, abs=2.0)


def test_fallback_runs_when_numpy_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analysis, "_numpy", None)
    assert dominant_frequency(tone(1000.0, 8000, 1.0), 8000) == pytest.approx(1000.0, abs=2.0)
    with pytest.raises(InvalidArgumentError, match="numpy"):
        dominant_frequency(tone(1000.0, 8000, 1.0), 8000, use_numpy=True)


def test_dominant_frequency_rejects_bad_input() -> None:
    with pytest.raises(InvalidArgumentError):
        dominant_frequency(b"abc", 8000)
    with pytest.raises(InvalidArgumentError):
        dominant_frequency(bytes(320), 0)


# --- levels and activity ----------------------------------------------------------------------


def test_rms_dbfs() -> None:
    full_square = array("h", [32767, -32768] * 100).tobytes()
    assert rms_dbfs(full_square) == pytest.approx(0.0, abs=0.01)
    assert rms_dbfs(sine(1000.0, 8000, 1.0, 32767)) == pytest.approx(-3.01, abs=0.05)
    assert rms_dbfs(sine(1000.0, 8000, 1.0, 32767 / 10)) == pytest.approx(-23.01, abs=0.05)
    assert rms_dbfs(bytes(320)) == -math.inf
    assert rms_dbfs(b"") == -math.inf
    with pytest.raises(InvalidArgumentError):
        rms_dbfs(b"\x00")


def test_active_seconds() -> None:
    pcm = tone(440.0, 8000, 1.0) + bytes(16000) + tone(440.0, 8000, 0.5) + bytes(8000)
    assert active_seconds(pcm, 8000) == pytest.approx(1.5, abs=0.02)
    quiet = tone(440.0, 8000, 1.0, level=-50.0)
    assert active_seconds(quiet, 8000) == 0.0
    assert active_seconds(quiet, 8000, threshold_dbfs=-60.0) == pytest.approx(1.0)
    assert active_seconds(b"", 8000) == 0.0


def test_active_seconds_partial_last_window() -> None:
    pcm = tone(1000.0, 16000, 0.03)  # one 20 ms window and a 10 ms tail
    assert active_seconds(pcm, 16000) == pytest.approx(0.03)


# --- read_wav ---------------------------------------------------------------------------------


def write_wav(path: Path, pcm: bytes, rate: int, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def test_read_wav(tmp_path: Path) -> None:
    pcm = sine(440.0, 16000, 0.25)
    assert read_wav(write_wav(tmp_path / "a.wav", pcm, 16000)) == (pcm, 16000)
    assert read_wav(str(write_wav(tmp_path / "b.wav", pcm, 11025))) == (pcm, 11025)


def test_read_wav_rejects_non_mono_16_bit(tmp_path: Path) -> None:
    with pytest.raises(WavFormatError, match=r"st\.wav.*2 channel.*mono 16-bit"):
        read_wav(write_wav(tmp_path / "st.wav", bytes(400), 8000, channels=2))
    with pytest.raises(WavFormatError, match=r"u8\.wav.*8-bit"):
        read_wav(write_wav(tmp_path / "u8.wav", bytes(400), 8000, width=1))
    text = tmp_path / "readme.txt"
    text.write_text("hello")
    with pytest.raises(WavFormatError, match=r"readme\.txt"):
        read_wav(text)
    with pytest.raises(AudioFileError, match=r"gone\.wav"):
        read_wav(tmp_path / "gone.wav")
