"""Audio sinks: where the media plane delivers the PCM it receives and decodes.

A sink takes PCM16 mono little-endian ``bytes`` at its :attr:`AudioSink.sample_rate`, one frame
(typically 20 ms) per :meth:`AudioSink.write`, on the event loop:

* :class:`NullSink` - discards (and counts);
* :class:`WavRecorder` - a mono 16-bit WAV file written incrementally, finalized by ``close``;
* :class:`QueueSink` - a bounded queue of frames behind ``session.audio_frames()``;
* :class:`TeeSink` - the same frames to several sinks.

``sources.EchoBridge`` is a sink that is also a source (what is written is read back). This
module imports nothing from ``sources``; ``sources`` builds on it.
"""

from __future__ import annotations

import asyncio
import os
import wave
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import BinaryIO, Self

from sessioncore.errors import InvalidArgumentError

__all__ = ["AudioFileError", "AudioSink", "NullSink", "QueueSink", "TeeSink", "WavRecorder"]


class AudioFileError(InvalidArgumentError):
    """An audio file given by the caller cannot be opened, read or written.

    (Defined here, below ``sources``, which re-exports it with ``WavFormatError``.)
    """


def _check_rate(sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise InvalidArgumentError(f"sample_rate must be a positive int, not {sample_rate!r}")
    return sample_rate


def _check_pcm(pcm: bytes) -> None:
    if len(pcm) & 1:
        raise InvalidArgumentError(
            f"PCM16 must hold a whole number of 2-byte samples, got {len(pcm)} bytes"
        )


class AudioSink(ABC):
    """Where PCM16 mono audio goes.

    ``write(pcm)`` takes a whole number of samples at :attr:`sample_rate`; it runs every 20 ms
    per call, so it must be cheap. Writing to a closed sink is ignored (the media driver may
    deliver a last frame while a call is torn down). ``close()`` is idempotent.
    """

    __slots__ = ()

    #: Samples per second of the PCM that :meth:`write` expects.
    sample_rate: int

    @abstractmethod
    def write(self, pcm: bytes) -> None:
        """Consume one chunk (normally one frame) of PCM16."""

    def close(self) -> None:  # noqa: B027 - a no-op default is the point
        """Flush and release what the sink holds. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class NullSink(AudioSink):
    """Discards everything; counts the samples it was given in :attr:`samples_written`."""

    __slots__ = ("sample_rate", "samples_written")

    def __init__(self, sample_rate: int = 8000) -> None:
        self.sample_rate = _check_rate(sample_rate)
        #: Samples written so far.
        self.samples_written = 0

    def write(self, pcm: bytes) -> None:
        """Count and drop ``pcm``."""
        self.samples_written += len(pcm) >> 1


class WavRecorder(AudioSink):
    """Records to a mono 16-bit PCM WAV file at ``sample_rate``.

    The file is created at construction (its directory must exist: creating it is the caller's
    job) and frames are appended as they are written; :meth:`close` writes the final lengths
    into the header. A path that cannot be written raises :class:`AudioFileError` naming it.
    """

    __slots__ = ("_file", "_writer", "path", "sample_rate", "samples_written")

    def __init__(self, path: str | os.PathLike[str], sample_rate: int = 8000) -> None:
        self.sample_rate = _check_rate(sample_rate)
        self.path = os.fspath(path)
        try:  # open the file here: wave.open(str) on 3.11 leaks a half-built object on OSError
            file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise AudioFileError(
                f"cannot write recording {self.path!r}: {exc.strerror or exc}"
            ) from exc
        writer = wave.open(file, "wb")  # noqa: SIM115 - closed by close()
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        self._file: BinaryIO | None = file
        self._writer: wave.Wave_write | None = writer
        #: Samples written so far.
        self.samples_written = 0

    @property
    def closed(self) -> bool:
        """Whether the file has been finalized."""
        return self._writer is None

    def write(self, pcm: bytes) -> None:
        """Append PCM16 to the file (ignored once closed).

        Raises :class:`InvalidArgumentError` for an odd number of bytes and
        :class:`AudioFileError` when the disk refuses the write.
        """
        writer = self._writer
        if writer is None:
            return
        _check_pcm(pcm)
        try:
            writer.writeframesraw(pcm)
        except OSError as exc:
            raise AudioFileError(f"cannot write recording {self.path!r}: {exc}") from exc
        self.samples_written += len(pcm) >> 1

    def close(self) -> None:
        """Finalize the WAV header and close the file. Idempotent."""
        writer, self._writer = self._writer, None
        file, self._file = self._file, None
        if writer is None or file is None:
            return
        try:
            with file:
                writer.close()  # patches the header; the file object is ours to close
        except OSError as exc:
            raise AudioFileError(f"cannot finish recording {self.path!r}: {exc}") from exc


class QueueSink(AudioSink):
    """A bounded queue of received frames, for ``async for frame in session.audio_frames()``.

    Holds at most ``max_frames`` frames; writing to a full queue drops the oldest frame and
    counts it in :attr:`dropped_frames`. :meth:`frames` yields frames as they arrive and ends
    once the sink is closed and drained. Everything runs on the event loop; no locking.
    """

    __slots__ = ("_closed", "_frames", "_wakeup", "dropped_frames", "max_frames", "sample_rate")

    def __init__(self, max_frames: int = 500, sample_rate: int = 8000) -> None:
        if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
            raise InvalidArgumentError(f"max_frames must be an int >= 1, not {max_frames!r}")
        self.sample_rate = _check_rate(sample_rate)
        self.max_frames = max_frames
        self._frames: deque[bytes] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        #: Frames discarded because the queue was full (the oldest ones go first).
        self.dropped_frames = 0

    def __len__(self) -> int:
        """The number of frames waiting."""
        return len(self._frames)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def write(self, pcm: bytes) -> None:
        """Queue one frame (ignored once closed), dropping the oldest when full."""
        if self._closed:
            return
        frames = self._frames
        if len(frames) >= self.max_frames:
            frames.popleft()
            self.dropped_frames += 1
        frames.append(bytes(pcm))
        self._wakeup.set()

    def get_nowait(self) -> bytes | None:
        """Return the oldest queued frame, or ``None`` when there is none."""
        frames = self._frames
        return frames.popleft() if frames else None

    async def frames(self) -> AsyncIterator[bytes]:
        """Yield frames as they are written; end when the sink is closed and drained."""
        frames = self._frames
        while True:
            if frames:
                yield frames.popleft()
            elif self._closed:
                return
            else:
                self._wakeup.clear()
                await self._wakeup.wait()

    def close(self) -> None:
        """Stop accepting frames; :meth:`frames` iterators end after the queued ones."""
        self._closed = True
        self._wakeup.set()


class TeeSink(AudioSink):
    """Writes every frame to each of ``sinks`` in order (e.g. a recorder and a queue).

    All sinks must share one sample rate; with no sinks, ``sample_rate`` (default 8000) is used.
    :meth:`close` closes every sink, even when one of them fails, then re-raises the first error.
    """

    __slots__ = ("sample_rate", "sinks")

    def __init__(self, *sinks: AudioSink, sample_rate: int | None = None) -> None:
        rates = {sink.sample_rate for sink in sinks}
        if sample_rate is not None:
            rates.add(_check_rate(sample_rate))
        if len(rates) > 1:
            raise InvalidArgumentError(
                f"TeeSink sinks must share one sample rate, got {sorted(rates)}"
            )
        self.sample_rate = rates.pop() if rates else 8000
        self.sinks: tuple[AudioSink, ...] = sinks

    def write(self, pcm: bytes) -> None:
        """Write ``pcm`` to every sink."""
        for sink in self.sinks:
            sink.write(pcm)

    def close(self) -> None:
        """Close every sink; re-raise the first failure after trying them all."""
        first: Exception | None = None
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                if first is None:
                    first = exc
        if first is not None:
            raise first
