"""Audio sinks: null, WAV recorder, frame queue, tee, echo bridge."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import pytest

from sessioncore.errors import InvalidArgumentError
from sessioncore.media import sinks, sources
from sessioncore.media.analysis import dominant_frequency
from sessioncore.media.sinks import AudioSink, NullSink, QueueSink, TeeSink, WavRecorder
from sessioncore.media.sources import (
    AudioFileError,
    AudioSource,
    EchoBridge,
    ToneSource,
    WavFileSource,
)


def frame(value: int, samples: int = 160) -> bytes:
    return value.to_bytes(2, "little", signed=True) * samples


def test_shared_error_type() -> None:
    assert sources.AudioFileError is sinks.AudioFileError
    assert issubclass(sources.WavFormatError, sinks.AudioFileError)


def test_null_sink_counts() -> None:
    sink = NullSink(16000)
    assert isinstance(sink, AudioSink)
    assert sink.sample_rate == 16000
    sink.write(frame(1))
    sink.write(frame(1, 20))
    assert sink.samples_written == 180
    sink.close()


# --- WAV recorder -----------------------------------------------------------------------------


def test_recorder_writes_a_valid_wav(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    tone = ToneSource(1000, sample_rate=16000)
    frames = [tone.read(320) or b"" for _ in range(50)]  # 1 s
    recorder = WavRecorder(path, sample_rate=16000)
    for f in frames:
        recorder.write(f)
    assert recorder.samples_written == 16000
    recorder.close()
    assert recorder.closed
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert w.getnframes() == 16000
        assert w.readframes(16000) == b"".join(frames)


def test_recording_plays_back(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    with WavRecorder(path) as recorder:
        recorder.write(ToneSource(440).read(8000) or b"")
    pcm = WavFileSource(path).read(8000) or b""
    assert dominant_frequency(pcm, 8000, use_numpy=False) == pytest.approx(440, abs=2.0)


def test_recorder_close_is_idempotent_and_late_writes_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "r.wav"
    recorder = WavRecorder(path)
    recorder.write(frame(5))
    recorder.close()
    recorder.close()
    recorder.write(frame(5))  # ignored
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == 160


def test_recorder_empty_file_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    WavRecorder(path).close()
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == 0


def test_recorder_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match=r"missing-dir") as info:
        WavRecorder(tmp_path / "missing-dir" / "r.wav")
    assert isinstance(info.value, InvalidArgumentError)
    with pytest.raises(AudioFileError):
        WavRecorder(tmp_path)  # a directory


def test_recorder_rejects_odd_bytes(tmp_path: Path) -> None:
    with WavRecorder(tmp_path / "r.wav") as recorder, pytest.raises(InvalidArgumentError):
        recorder.write(b"abc")


# --- frame queue ------------------------------------------------------------------------------


def test_queue_sink_get_nowait_and_bounds() -> None:
    sink = QueueSink(max_frames=3)
    assert sink.get_nowait() is None
    for value in range(5):
        sink.write(frame(value))
    assert len(sink) == 3
    assert sink.dropped_frames == 2
    assert [sink.get_nowait() for _ in range(4)] == [frame(2), frame(3), frame(4), None]


def test_queue_sink_rejects_bad_bound() -> None:
    with pytest.raises(InvalidArgumentError):
        QueueSink(max_frames=0)


async def test_frames_yields_as_written_and_ends_on_close() -> None:
    sink = QueueSink()
    sink.write(frame(1))
    received: list[bytes] = []

    async def consume() -> None:
        async for f in sink.frames():
            received.append(f)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    assert received == [frame(1)]
    sink.write(frame(2))
    sink.write(frame(3))
    await asyncio.sleep(0)
    assert received == [frame(1), frame(2), frame(3)]
    assert not task.done()
    sink.write(frame(4))
    sink.close()
    await asyncio.wait_for(task, 1.0)
    assert received == [frame(1), frame(2), frame(3), frame(4)]  # drained before ending
    sink.write(frame(5))  # ignored once closed
    assert sink.get_nowait() is None


async def test_frames_on_closed_empty_sink_ends_at_once() -> None:
    sink = QueueSink()
    sink.close()
    assert sink.closed
    assert [f async for f in sink.frames()] == []


# --- tee --------------------------------------------------------------------------------------


def test_tee_writes_to_every_sink(tmp_path: Path) -> None:
    queue = QueueSink()
    null = NullSink()
    recorder = WavRecorder(tmp_path / "t.wav")
    tee = TeeSink(queue, null, recorder)
    assert tee.sample_rate == 8000
    tee.write(frame(7))
    tee.close()
    assert queue.get_nowait() == frame(7)
    assert null.samples_written == 160
    assert queue.closed and recorder.closed


def test_tee_rejects_mixed_rates() -> None:
    with pytest.raises(InvalidArgumentError, match="8000, 16000"):
        TeeSink(NullSink(8000), NullSink(16000))
    assert TeeSink(sample_rate=16000).sample_rate == 16000
    assert TeeSink().sample_rate == 8000


def test_tee_closes_all_even_when_one_fails() -> None:
    class Broken(NullSink):
        def close(self) -> None:
            raise RuntimeError("boom")

    queue = QueueSink()
    with pytest.raises(RuntimeError, match="boom"):
        TeeSink(Broken(), queue).close()
    assert queue.closed


# --- echo bridge ------------------------------------------------------------------------------


def test_echo_bridge_round_trip() -> None:
    bridge = EchoBridge()
    assert isinstance(bridge, AudioSink) and isinstance(bridge, AudioSource)
    assert bridge.read(160) == bytes(320)  # silence when empty
    tone = ToneSource(440)
    sent = [tone.read(160) or b"" for _ in range(5)]
    for f in sent[:2]:
        bridge.write(f)
    assert bridge.read(160) == sent[0]
    bridge.write(sent[2])
    assert bridge.read(160) == sent[1]
    assert bridge.read(160) == sent[2]
    assert bridge.read(160) == bytes(320)


def test_echo_bridge_is_bounded() -> None:
    bridge = EchoBridge(sample_rate=8000, max_ms=200)  # 1600 samples, 10 frames
    for value in range(15):
        bridge.write(frame(value))
    assert bridge.buffered_samples == 1600
    assert bridge.dropped_samples == 5 * 160
    assert bridge.read(160) == frame(5)  # the oldest five frames went


def test_echo_bridge_close() -> None:
    bridge = EchoBridge(16000)
    bridge.write(frame(1, 320))
    bridge.close()
    assert bridge.read(320) is None
    bridge.write(frame(1, 320))  # ignored
    assert bridge.buffered_samples == 0
    with pytest.raises(InvalidArgumentError):
        EchoBridge(max_ms=0)
