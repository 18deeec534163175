"""Measurements on PCM16 audio, for tests, the demo and the CLI call summary.

* :func:`dominant_frequency` - the frequency of the strongest spectral peak, in Hz;
* :func:`rms_dbfs` - the RMS level relative to full scale;
* :func:`active_seconds` - how long a signal is above a level, in 20 ms windows;
* :func:`read_wav` - a mono 16-bit WAV file as ``(pcm, sample_rate)``.

numpy is optional. :func:`dominant_frequency` uses its FFT over the whole signal when it is
importable, and otherwise a small pure-Python FFT over the loudest window of the signal
(8192 samples at most); both interpolate the peak, which puts a clean tone within a fraction
of a hertz (well within +-2 Hz) and takes well under a second for 10 s of 8 kHz audio.

Levels are RMS relative to a full-scale square wave (32768): a full-scale sine is -3.01 dBFS.
"""

from __future__ import annotations

import cmath
import importlib
import math
import os
import sys
import warnings
from array import array
from functools import lru_cache
from types import ModuleType

from sessioncore.errors import InvalidArgumentError
from sessioncore.media.sources import load_wav

with warnings.catch_warnings():  # 3.11-3.12 warn that audioop goes away (audioop-lts on 3.13+)
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["active_seconds", "dominant_frequency", "read_wav", "rms_dbfs"]

_FULL_SCALE = 32768.0
_MAX_FALLBACK_WINDOW = 8192  # samples analysed by the pure-Python FFT
_MIN_FFT = 4096  # short inputs are zero-padded to this many points (finer peak interpolation)
_MIN_HZ = 20.0  # peaks below this are DC and window leakage, not a tone


def _load_numpy() -> ModuleType | None:
    try:
        return importlib.import_module("numpy")
    except ImportError:
        return None


_numpy: ModuleType | None = _load_numpy()


def _check_pcm(pcm: bytes) -> None:
    if len(pcm) & 1:
        raise InvalidArgumentError(
            f"PCM16 must hold a whole number of 2-byte samples, got {len(pcm)} bytes"
        )


def _check_rate(sample_rate: int) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise InvalidArgumentError(f"sample_rate must be a positive int, not {sample_rate!r}")


def rms_dbfs(pcm: bytes) -> float:
    """The RMS level of PCM16 in dBFS (``20*log10(rms/32768)``); ``-inf`` for silence or empty.

    A full-scale square wave is 0 dBFS, a full-scale sine -3.01 dBFS.
    """
    _check_pcm(pcm)
    rms = audioop.rms(pcm, 2)
    return 20.0 * math.log10(rms / _FULL_SCALE) if rms else -math.inf


def active_seconds(pcm: bytes, sample_rate: int, threshold_dbfs: float = -40.0) -> float:
    """Seconds of ``pcm`` whose level is at or above ``threshold_dbfs``, in 20 ms windows.

    Each 20 ms window (the last one may be shorter) counts fully when its RMS level reaches the
    threshold, not at all otherwise.
    """
    _check_pcm(pcm)
    _check_rate(sample_rate)
    window = 2 * max(1, sample_rate // 50)
    threshold = _FULL_SCALE * 10.0 ** (threshold_dbfs / 20.0)
    rms = audioop.rms
    active_bytes = 0
    for start in range(0, len(pcm), window):
        chunk = pcm[start : start + window]
        if rms(chunk, 2) >= threshold:
            active_bytes += len(chunk)
    return active_bytes / (2 * sample_rate)


def read_wav(path: str | os.PathLike[str]) -> tuple[bytes, int]:
    """Read a mono 16-bit PCM WAV file as ``(pcm, sample_rate)``, at the file's own rate.

    Anything else raises :class:`sessioncore.media.sources.WavFormatError` naming the file; an
    unreadable path raises :class:`sessioncore.media.sources.AudioFileError`.
    """
    return load_wav(path, allow_stereo=False, accepted="mono 16-bit PCM WAV (any sample rate)")


# --- dominant frequency ---------------------------------------------------------------------


def dominant_frequency(pcm: bytes, sample_rate: int, *, use_numpy: bool | None = None) -> float:
    """The frequency in Hz of the strongest spectral peak of ``pcm`` (0.0 for silence).

    The signal's mean is removed and a Hann window applied; the peak bin is refined by
    parabolic interpolation of the log magnitudes (exact for a Gaussian peak, within a few
    hundredths of a bin for a Hann-windowed sine). Peaks below 20 Hz are ignored.

    ``use_numpy``: ``None`` uses numpy when it is installed, ``False`` forces the pure-Python
    FFT (over the loudest 8192-sample window; accurate to well under 1 Hz for a clean tone),
    ``True`` requires numpy.
    """
    _check_pcm(pcm)
    _check_rate(sample_rate)
    np = _numpy
    if use_numpy and np is None:
        raise InvalidArgumentError("dominant_frequency(use_numpy=True) needs numpy installed")
    if len(pcm) < 8 or not audioop.rms(pcm, 2):
        return 0.0
    if np is not None and use_numpy is not False:
        return _dominant_numpy(np, pcm, sample_rate)
    return _dominant_python(pcm, sample_rate)


def _interpolate_peak(left: float, peak: float, right: float) -> float:
    """The fractional bin offset (-0.5..0.5) of the true peak (Gaussian fit of 3 magnitudes)."""
    a, b, c = (math.log(float(m) + 1e-12) for m in (left, peak, right))
    denom = a - 2.0 * b + c
    if denom >= 0.0:
        return 0.0
    return max(-0.5, min(0.5, 0.5 * (a - c) / denom))


def _dominant_numpy(np: ModuleType, pcm: bytes, sample_rate: int) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    x -= x.mean()
    x *= np.hanning(len(x))
    n = max(_MIN_FFT, 1 << (len(x) - 1).bit_length())
    mags = np.abs(np.fft.rfft(x, n))
    lo = max(1, math.ceil(_MIN_HZ * n / sample_rate))
    if lo >= len(mags) - 1:
        return 0.0
    k = lo + int(np.argmax(mags[lo:-1]))
    return float((k + _interpolate_peak(mags[k - 1], mags[k], mags[k + 1])) * sample_rate / n)


def _loudest_window(pcm: bytes, samples: int) -> bytes:
    """The ``samples``-long stretch of ``pcm`` with the most energy (half-window steps)."""
    nbytes = 2 * samples
    if len(pcm) <= nbytes:
        return pcm
    step = nbytes // 2
    starts = list(range(0, len(pcm) - nbytes + 1, step))
    if starts[-1] != len(pcm) - nbytes:
        starts.append(len(pcm) - nbytes)
    rms = audioop.rms
    best = max(starts, key=lambda s: rms(pcm[s : s + nbytes], 2))
    return pcm[best : best + nbytes]


@lru_cache(maxsize=8)
def _hann(n: int) -> tuple[float, ...]:
    if n == 1:
        return (1.0,)
    scale = 2.0 * math.pi / (n - 1)
    return tuple(0.5 - 0.5 * math.cos(scale * i) for i in range(n))


@lru_cache(maxsize=4)
def _fft_plan(n: int) -> tuple[tuple[int, ...], tuple[complex, ...]]:
    """Bit-reversal permutation and twiddle factors of an ``n``-point radix-2 FFT."""
    bits = n.bit_length() - 1
    rev = tuple(int(format(i, f"0{bits}b")[::-1], 2) if bits else 0 for i in range(n))
    twiddles = tuple(cmath.exp(-2j * math.pi * k / n) for k in range(n // 2))
    return rev, twiddles


def _fft(values: list[float]) -> list[complex]:
    """An iterative radix-2 FFT; ``len(values)`` is a power of two."""
    n = len(values)
    rev, twiddles = _fft_plan(n)
    data: list[complex] = [complex(values[i]) for i in rev]
    size = 2
    while size <= n:
        half = size // 2
        stride = n // size
        tw = twiddles[::stride][:half]
        for start in range(0, n, size):
            for j in range(half):
                i = start + j
                t = tw[j] * data[i + half]
                u = data[i]
                data[i] = u + t
                data[i + half] = u - t
        size *= 2
    return data


def _dominant_python(pcm: bytes, sample_rate: int) -> float:
    chunk = _loudest_window(pcm, _MAX_FALLBACK_WINDOW)
    samples = array("h", chunk)
    if sys.byteorder == "big":  # pragma: no cover - PCM16 here is little-endian
        samples.byteswap()
    count = len(samples)
    mean = sum(samples) / count
    window = _hann(count)
    n = max(_MIN_FFT, 1 << (count - 1).bit_length())
    values = [(s - mean) * w for s, w in zip(samples, window, strict=True)]
    values.extend([0.0] * (n - count))
    spectrum = _fft(values)
    mags = [abs(z) for z in spectrum[: n // 2 + 1]]
    lo = max(1, math.ceil(_MIN_HZ * n / sample_rate))
    if lo >= len(mags) - 1:
        return 0.0
    k = max(range(lo, len(mags) - 1), key=mags.__getitem__)
    return (k + _interpolate_peak(mags[k - 1], mags[k], mags[k + 1])) * sample_rate / n
