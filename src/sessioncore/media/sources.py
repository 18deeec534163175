"""Audio sources: where the media plane gets the PCM it encodes and sends.

Audio inside sessioncore is 16-bit signed little-endian mono PCM (``bytes``) at an explicit
sample rate. A source hands out exactly the number of samples asked for; the media driver calls
``read(160)`` every 20 ms for an 8 kHz codec, so every ``read`` here is a slice or two of a
precomputed buffer, never a per-sample Python loop:

* :class:`SilenceSource` - zeros, forever;
* :class:`ToneSource` - a sine from a precomputed table of whole periods, phase-continuous;
* :class:`WavFileSource` - a WAV file loaded (and resampled) once at open, played once or looped;
* :class:`QueueSource` - PCM pushed by the application (``session.send_audio``), silence when
  there is none;
* :class:`EchoBridge` - a source that is also a sink: what is written is read back;
* :class:`PcmFifo` - the bounded FIFO behind :class:`QueueSource` and :class:`EchoBridge`.

``audioop`` works in the host's byte order; like the rest of the media plane this module
assumes a little-endian host (every platform CPython ships wheels for).
"""

from __future__ import annotations

import math
import os
import re
import sys
import warnings
import wave
from abc import ABC, abstractmethod
from array import array
from fractions import Fraction
from types import TracebackType
from typing import Self

from sessioncore.errors import InvalidArgumentError
from sessioncore.media.sinks import AudioFileError, AudioSink, _check_pcm, _check_rate

with warnings.catch_warnings():  # 3.11-3.12 warn that audioop goes away (audioop-lts on 3.13+)
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = [
    "MAX_SINE_DBFS",
    "WAV_ACCEPTED",
    "AudioFileError",
    "AudioSource",
    "EchoBridge",
    "PcmFifo",
    "QueueSource",
    "SilenceSource",
    "ToneSource",
    "WavFileSource",
    "WavFormatError",
]

#: What :class:`WavFileSource` accepts, as quoted in :class:`WavFormatError` messages.
WAV_ACCEPTED = "mono 16-bit PCM WAV, 8000 or 16000 Hz (other rates are resampled, stereo is mixed)"

_FULL_SCALE = 32768.0
#: The RMS level of a full-scale sine, in dBFS (RMS relative to full scale): 20*log10(1/sqrt 2).
MAX_SINE_DBFS = 20.0 * math.log10(math.sqrt(0.5))
_MAX_TONE_TABLE_SECONDS = 10


class WavFormatError(AudioFileError):
    """A file is not a WAV file sessioncore can play (or analyse).

    The message names the file, what was found in it, and the format accepted.
    """


def _native_to_le(samples: array[int]) -> bytes:
    if sys.byteorder == "big":  # pragma: no cover - every supported platform is little-endian
        samples.byteswap()
    return samples.tobytes()


class AudioSource(ABC):
    """Where PCM16 mono audio comes from.

    ``read(samples)`` returns exactly ``samples`` samples (``2 * samples`` bytes) at
    :attr:`sample_rate`, or ``None`` once the source has ended (a file played once, a tone with a
    duration, any source after :meth:`close`). Implementations keep ``read`` cheap: it runs
    every 20 ms per call.
    """

    __slots__ = ()

    #: Samples per second of the PCM that :meth:`read` returns.
    sample_rate: int

    @abstractmethod
    def read(self, samples: int) -> bytes | None:
        """Return the next ``samples`` samples of PCM16, or ``None`` when the source has ended."""

    def close(self) -> None:  # noqa: B027 - a no-op default is the point
        """Release what the source holds; later reads return ``None``. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SilenceSource(AudioSource):
    """Digital silence, forever (until closed)."""

    __slots__ = ("_closed", "sample_rate")

    def __init__(self, sample_rate: int = 8000) -> None:
        self.sample_rate = _check_rate(sample_rate)
        self._closed = False

    def read(self, samples: int) -> bytes | None:
        """Return ``samples`` zero samples (``None`` once closed)."""
        if self._closed:
            return None
        return bytes(2 * samples)

    def close(self) -> None:
        """Stop the source; later reads return ``None``."""
        self._closed = True


class _Cycle:
    """Cyclic reader over a non-empty period of PCM: each ``take`` is one slice."""

    __slots__ = ("_buf", "_period", "_pos")

    def __init__(self, period: bytes) -> None:
        self._period = period
        self._buf = period
        self._pos = 0  # byte offset into the period

    def take(self, nbytes: int) -> bytes:
        end = self._pos + nbytes
        if end > len(self._buf):  # grow once to cover the largest read seen so far
            self._buf = self._period * -(-end // len(self._period))
        out = self._buf[self._pos : end]
        self._pos = end % len(self._period)
        return out


def _tone_cycle_length(frequency: float, sample_rate: int) -> tuple[int, float]:
    """The number of samples of a whole number of periods, and the frequency actually used.

    ``frequency`` is approximated by a fraction p/q (exact for integer and most decimal
    frequencies); ``N = q*rate / gcd(p, q*rate)`` samples then hold exactly ``p*N/(q*rate)``
    periods. The denominator is lowered until the table fits in a few seconds of audio.
    """
    limit_seconds = _MAX_TONE_TABLE_SECONDS
    for max_den in (1000, 100, 10, 1):
        f = Fraction(frequency).limit_denominator(max_den)
        if f <= 0:
            continue
        span = f.denominator * sample_rate
        n = span // math.gcd(f.numerator, span)
        if n <= limit_seconds * sample_rate:
            return n, float(f)
    return sample_rate, float(round(frequency))  # pragma: no cover - max_den=1 always fits


class ToneSource(AudioSource):
    """A sine tone at ``frequency`` Hz and ``level_dbfs`` (RMS level relative to full scale).

    The level is an RMS level, as :func:`sessioncore.media.analysis.rms_dbfs` measures it: a
    full-scale sine is -3.01 dBFS, the loudest level accepted. One table holding a whole number
    of periods is computed at construction (200 samples for 440 Hz at 8 kHz; at most a few
    seconds for awkward non-integer frequencies, which are rounded to a fraction with a small
    denominator, well under 0.01 Hz away); reads slice it cyclically, so the phase runs on
    across reads of any size. With ``duration`` (seconds) the source ends after that much
    audio; its last read is padded with silence.
    """

    __slots__ = ("_closed", "_cycle", "_remaining", "frequency", "level_dbfs", "sample_rate")

    def __init__(
        self,
        frequency: float = 440.0,
        level_dbfs: float = -12.0,
        sample_rate: int = 8000,
        duration: float | None = None,
    ) -> None:
        self.sample_rate = _check_rate(sample_rate)
        if not (isinstance(frequency, int | float) and 0 < frequency < sample_rate / 2):
            raise InvalidArgumentError(
                f"tone frequency must be above 0 and below {sample_rate / 2:g} Hz (half the "
                f"sample rate), not {frequency!r}"
            )
        if not (isinstance(level_dbfs, int | float) and level_dbfs <= MAX_SINE_DBFS + 1e-9):
            raise InvalidArgumentError(
                f"tone level must be at most {MAX_SINE_DBFS:.2f} dBFS (RMS of a full-scale sine), "
                f"not {level_dbfs!r}"
            )
        if duration is not None and not (
            isinstance(duration, int | float) and 0 <= duration < math.inf
        ):
            raise InvalidArgumentError(f"duration must be seconds >= 0 or None, not {duration!r}")
        n, exact = _tone_cycle_length(float(frequency), sample_rate)
        #: The frequency actually generated (``frequency`` up to a rounding well below 0.01 Hz).
        self.frequency = exact
        self.level_dbfs = float(level_dbfs)
        amplitude = _FULL_SCALE * math.sqrt(2.0) * 10.0 ** (self.level_dbfs / 20.0)
        step = 2.0 * math.pi * exact / sample_rate
        table = array(
            "h",
            (max(-32768, min(32767, round(amplitude * math.sin(step * i)))) for i in range(n)),
        )
        self._cycle = _Cycle(_native_to_le(table))
        self._remaining = None if duration is None else round(duration * sample_rate)
        self._closed = False

    def read(self, samples: int) -> bytes | None:
        """Return the next ``samples`` samples of the tone; ``None`` after ``duration`` or close."""
        if self._closed:
            return None
        remaining = self._remaining
        if remaining is None:
            return self._cycle.take(2 * samples)
        if remaining <= 0 and samples > 0:
            return None
        if samples <= remaining:
            self._remaining = remaining - samples
            return self._cycle.take(2 * samples)
        self._remaining = 0
        return self._cycle.take(2 * remaining) + bytes(2 * (samples - remaining))

    def close(self) -> None:
        """Stop the tone; later reads return ``None``."""
        self._closed = True


# --- WAV files ------------------------------------------------------------------------------

_WAVE_FORMAT_NAMES = {
    2: "MS ADPCM",
    3: "IEEE float",
    6: "A-law",
    7: "mu-law",
    0x11: "IMA ADPCM",
    0x31: "GSM 6.10",
    0x55: "MP3",
    0xFFFE: "WAVE_FORMAT_EXTENSIBLE",
}
_UNKNOWN_FORMAT = re.compile(r"unknown format: (\d+)")


def _describe_wave_error(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    match = _UNKNOWN_FORMAT.search(text)
    if match:
        tag = int(match.group(1))
        return f"compressed or non-PCM audio (format tag {tag}: {_WAVE_FORMAT_NAMES.get(tag, '?')})"
    if isinstance(exc, EOFError):
        return "a truncated WAV header"
    return f"not a PCM WAV file ({text})"


def load_wav(
    path: str | os.PathLike[str], *, allow_stereo: bool = True, accepted: str = WAV_ACCEPTED
) -> tuple[bytes, int]:
    """Read a 16-bit PCM WAV file into ``(pcm, sample_rate)``; mono PCM16 little-endian.

    Stereo is mixed down to mono (``audioop.tomono``) when ``allow_stereo``; anything else
    raises :class:`WavFormatError` naming the file, what it holds and ``accepted``. A file that
    cannot be opened raises :class:`AudioFileError`.
    """
    name = os.fspath(path)
    try:  # open the file here: wave.open(str) on 3.11 leaks a half-built object on OSError
        file = open(name, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise AudioFileError(f"cannot open audio file {name!r}: {exc.strerror or exc}") from exc
    with file:
        try:
            reader = wave.open(file, "rb")  # noqa: SIM115 - closed by the with below
        except (wave.Error, EOFError) as exc:
            raise WavFormatError(
                f"{name!r}: found {_describe_wave_error(exc)}; accepted: {accepted}"
            ) from exc
        except OSError as exc:
            raise AudioFileError(f"cannot read audio file {name!r}: {exc}") from exc
        with reader:
            width = reader.getsampwidth()
            channels = reader.getnchannels()
            rate = reader.getframerate()
            found = f"{8 * width}-bit PCM, {channels} channel(s), {rate} Hz"
            if width != 2 or channels < 1 or channels > (2 if allow_stereo else 1) or rate <= 0:
                raise WavFormatError(f"{name!r}: found {found}; accepted: {accepted}")
            try:
                data = reader.readframes(reader.getnframes())
            except (wave.Error, EOFError, OSError) as exc:  # pragma: no cover - wave reads short
                raise WavFormatError(f"{name!r}: unreadable audio data ({exc})") from exc
    frame = width * channels
    data = data[: len(data) - len(data) % frame]  # a truncated last frame is dropped
    if channels == 2:
        data = audioop.tomono(data, 2, 0.5, 0.5)
    return data, rate


class WavFileSource(AudioSource):
    """A 16-bit PCM WAV file, played once (then ``None``) or looped.

    The file is read, mixed to mono (if stereo) and resampled to ``sample_rate`` with
    ``audioop.ratecv`` once, at construction; reads are slices. ``audioop.ratecv`` interpolates
    linearly without an anti-aliasing filter, which is fine for speech and tones well below the
    new Nyquist frequency. When played once, the last read is padded with silence.
    """

    __slots__ = ("_closed", "_cycle", "_data", "_pos", "loop", "path", "sample_rate")

    def __init__(
        self, path: str | os.PathLike[str], *, sample_rate: int = 8000, loop: bool = False
    ) -> None:
        self.sample_rate = _check_rate(sample_rate)
        self.path = os.fspath(path)
        self.loop = loop
        data, rate = load_wav(path)
        if rate != sample_rate and data:
            data = audioop.ratecv(data, 2, 1, rate, sample_rate, None)[0]
        self._data = data
        self._cycle = _Cycle(data) if loop and data else None
        self._pos = 0
        self._closed = False

    @property
    def duration(self) -> float:
        """Seconds of audio in the file (after resampling)."""
        return len(self._data) / (2 * self.sample_rate)

    def read(self, samples: int) -> bytes | None:
        """Return the next ``samples`` samples; ``None`` at the end (played once) or once closed.

        A looped empty file reads as silence.
        """
        if self._closed:
            return None
        nbytes = 2 * samples
        if self._cycle is not None:
            return self._cycle.take(nbytes)
        if self.loop:
            return bytes(nbytes)
        pos = self._pos
        data = self._data
        if pos >= len(data) and samples > 0:
            return None
        end = pos + nbytes
        self._pos = end
        if end <= len(data):
            return data[pos:end]
        return data[pos:] + bytes(end - len(data))

    def close(self) -> None:
        """Drop the loaded audio; later reads return ``None``."""
        self._closed = True
        self._data = b""
        self._cycle = None


# --- application-fed audio ------------------------------------------------------------------


class PcmFifo:
    """A bounded FIFO of PCM16 samples that drops the oldest samples when full.

    :meth:`push` appends (O(len)), :meth:`pop` always returns exactly the samples asked for,
    padded with silence when the FIFO runs short. ``dropped_samples`` counts what overflow
    discarded.
    """

    __slots__ = ("_buf", "_max_bytes", "dropped_samples")

    def __init__(self, max_samples: int) -> None:
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
            raise InvalidArgumentError(f"max_samples must be an int >= 1, not {max_samples!r}")
        self._buf = bytearray()
        self._max_bytes = 2 * max_samples
        #: Samples discarded because the FIFO was full (the oldest ones go first).
        self.dropped_samples = 0

    @property
    def max_samples(self) -> int:
        """The capacity, in samples."""
        return self._max_bytes // 2

    def __len__(self) -> int:
        """The number of samples buffered."""
        return len(self._buf) // 2

    def push(self, pcm: bytes) -> None:
        """Append PCM16; when over capacity, drop the oldest samples (and count them)."""
        _check_pcm(pcm)
        buf = self._buf
        buf += pcm
        excess = len(buf) - self._max_bytes
        if excess > 0:
            del buf[:excess]  # bytearray drops its head in O(1)
            self.dropped_samples += excess // 2

    def pop(self, samples: int) -> bytes:
        """Remove and return ``samples`` samples, padded with silence if fewer are buffered."""
        nbytes = 2 * samples
        buf = self._buf
        if len(buf) >= nbytes:
            out = bytes(buf[:nbytes])
            del buf[:nbytes]
            return out
        out = bytes(buf) + bytes(nbytes - len(buf))
        buf.clear()
        return out

    def clear(self) -> None:
        """Discard every buffered sample (not counted as dropped)."""
        self._buf.clear()


class QueueSource(AudioSource):
    """Audio pushed by the application (``session.send_audio(pcm)``), read by the media driver.

    Reads return silence when nothing is queued (a short queue is padded with silence), and
    ``None`` only once closed. At most ``max_seconds`` of audio is buffered; pushing more drops
    the oldest samples and counts them in :attr:`dropped_samples`. Everything runs on the event
    loop; no locking.
    """

    __slots__ = ("_closed", "_fifo", "sample_rate")

    def __init__(self, sample_rate: int = 8000, max_seconds: float = 10.0) -> None:
        self.sample_rate = _check_rate(sample_rate)
        if not (isinstance(max_seconds, int | float) and 0 < max_seconds < math.inf):
            raise InvalidArgumentError(f"max_seconds must be > 0, not {max_seconds!r}")
        self._fifo = PcmFifo(max(1, round(max_seconds * sample_rate)))
        self._closed = False

    @property
    def buffered_samples(self) -> int:
        """Samples queued and not read yet."""
        return len(self._fifo)

    @property
    def dropped_samples(self) -> int:
        """Samples discarded because the queue was full."""
        return self._fifo.dropped_samples

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def push(self, pcm: bytes) -> None:
        """Queue PCM16 mono at :attr:`sample_rate`; ignored once closed.

        Raises :class:`InvalidArgumentError` for an odd number of bytes.
        """
        if self._closed:
            _check_pcm(pcm)
            return
        self._fifo.push(pcm)

    def read(self, samples: int) -> bytes | None:
        """Return the next ``samples`` queued samples, padded with silence; ``None`` if closed."""
        if self._closed:
            return None
        return self._fifo.pop(samples)

    def close(self) -> None:
        """Close the queue and discard what it holds; later reads return ``None``."""
        self._closed = True
        self._fifo.clear()


class EchoBridge(AudioSink, AudioSource):
    """A sink and a source at once: what is written is read back, oldest first.

    Used by ``uas --media echo``: the receive path writes decoded frames, the send path reads
    them. At most ``max_ms`` milliseconds are held (older audio is dropped and counted in
    :attr:`dropped_samples`), which bounds the echo delay; reads are padded with silence when
    the bridge runs short. Reads return ``None`` once closed.
    """

    __slots__ = ("_closed", "_fifo", "sample_rate")

    def __init__(self, sample_rate: int = 8000, max_ms: int = 200) -> None:
        self.sample_rate = _check_rate(sample_rate)
        if isinstance(max_ms, bool) or not isinstance(max_ms, int) or max_ms < 1:
            raise InvalidArgumentError(f"max_ms must be an int >= 1, not {max_ms!r}")
        self._fifo = PcmFifo(max(1, sample_rate * max_ms // 1000))
        self._closed = False

    @property
    def buffered_samples(self) -> int:
        """Samples written and not read back yet."""
        return len(self._fifo)

    @property
    def dropped_samples(self) -> int:
        """Samples discarded because the bridge was full."""
        return self._fifo.dropped_samples

    def write(self, pcm: bytes) -> None:
        """Queue ``pcm`` to be read back (ignored once closed)."""
        if not self._closed:
            self._fifo.push(pcm)

    def read(self, samples: int) -> bytes | None:
        """Return the oldest ``samples`` samples written (silence-padded); ``None`` if closed."""
        if self._closed:
            return None
        return self._fifo.pop(samples)

    def close(self) -> None:
        """Close both sides and discard what is buffered."""
        self._closed = True
        self._fifo.clear()
