"""Media interop with baresip 1.0.0 (see ``baresip.py`` for what it can do headless and how).

Three groups:
- harness self-checks, baresip calling baresip: tones both ways, recording lengths, DTMF and
  hold/resume. They need only baresip and prove the harness (and the audio analysis) right, so
  a failure in the other groups points at sessioncore.
- the CLI against baresip: ``sessioncore uas --record`` hears baresip's ausine tone; baresip
  hears ``sessioncore call --tone/--play``; DTMF both ways.
- hold/resume both ways through the Python API (the CLI has no hold).

Tones are compared by their dominant frequency (a Hann-windowed FFT with interpolation, written
here in pure Python: numpy is not a dependency), ± ``FREQ_TOLERANCE_HZ``.
"""

from __future__ import annotations

import asyncio
import cmath
import math
import re
import struct
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from .baresip import Baresip
from .conftest import HOST, RunningUas, free_port, run_sessioncore, summary_count

pytestmark = pytest.mark.interop

BaresipFactory = Callable[..., Baresip]
UasFactory = Callable[..., RunningUas]

#: our RTP ports in these tests (baresip's are 10000 and up, see the ``baresip`` fixture)
MEDIA_PORTS = (20000, 20999)
MEDIA_PORTS_ARG = f"{MEDIA_PORTS[0]}-{MEDIA_PORTS[1]}"
FREQ_TOLERANCE_HZ = 5.0
#: how long a media call stays up
CALL_S = 3.0


# --------------------------------------------------------------------------- audio analysis


@dataclass(frozen=True)
class Wav:
    path: Path
    rate: int
    channels: int
    sample_width: int
    samples: list[int]  # mono (first channel), 16-bit signed

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate if self.rate else 0.0

    def describe(self) -> str:
        return (
            f"{self.path.name}: {self.rate} Hz, {self.channels} ch, {8 * self.sample_width}-bit, "
            f"{self.duration:.2f} s"
        )


def read_wav(path: Path) -> Wav:
    """A 16-bit PCM WAV's first channel, with its rate from the header."""
    with wave.open(str(path), "rb") as wav:
        rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        frames = wav.readframes(wav.getnframes())
    if width != 2:
        raise AssertionError(f"{path}: {8 * width}-bit samples, expected 16-bit PCM")
    count = len(frames) // 2
    samples = list(struct.unpack(f"<{count}h", frames[: count * 2]))[::channels]
    return Wav(path, rate, channels, width, samples)


def write_tone_wav(path: Path, hz: float, seconds: float, rate: int = 8000) -> Path:
    """A mono 16-bit sine WAV at half scale."""
    n = int(seconds * rate)
    data = struct.pack(
        f"<{n}h", *(int(16000 * math.sin(2 * math.pi * hz * i / rate)) for i in range(n))
    )
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(data)
    return path


def _fft(values: list[complex]) -> list[complex]:
    """In-place iterative radix-2 FFT (len must be a power of two)."""
    n = len(values)
    j = 0
    for i in range(1, n):
        bit = n >> 1
        while j & bit:
            j ^= bit
            bit >>= 1
        j |= bit
        if i < j:
            values[i], values[j] = values[j], values[i]
    size = 2
    while size <= n:
        step = cmath.exp(-2j * math.pi / size)
        half = size // 2
        for start in range(0, n, size):
            w = 1 + 0j
            for k in range(start, start + half):
                t = w * values[k + half]
                values[k + half] = values[k] - t
                values[k] = values[k] + t
                w *= step
        size *= 2
    return values


def active_span(samples: Sequence[int], rate: int, threshold: float = 0.1) -> tuple[int, int]:
    """First and last sample of the part louder than ``threshold`` x the loudest 20 ms."""
    frame = max(1, rate // 50)
    rms = [
        math.sqrt(sum(s * s for s in samples[i : i + frame]) / frame)
        for i in range(0, len(samples) - frame + 1, frame)
    ]
    if not rms or max(rms) == 0:
        return 0, 0
    floor = threshold * max(rms)
    loud = [i for i, r in enumerate(rms) if r >= floor]
    return loud[0] * frame, (loud[-1] + 1) * frame


def dominant_frequency(samples: Sequence[int], rate: int) -> float | None:
    """The strongest frequency (Hz) in the loud part of ``samples``; None if too little signal.

    Up to 2**14 samples from the middle of the loud part, Hann window, FFT, and a Gaussian
    interpolation around the peak bin (accurate to well under 1 Hz for a clean tone).
    """
    start, end = active_span(samples, rate)
    length = end - start
    if length < 1024:
        return None
    n = 1 << min(14, length.bit_length() - 1)
    first = start + (length - n) // 2
    chunk = samples[first : first + n]
    mean = sum(chunk) / n
    windowed: list[complex] = [
        complex((s - mean) * (0.5 - 0.5 * math.cos(2 * math.pi * i / (n - 1))))
        for i, s in enumerate(chunk)
    ]
    spectrum = [abs(c) for c in _fft(windowed)[: n // 2]]
    peak = max(range(1, n // 2 - 1), key=spectrum.__getitem__)
    left, mid, right = (math.log(max(spectrum[peak + d], 1e-9)) for d in (-1, 0, 1))
    denom = left - 2 * mid + right
    delta = 0.5 * (left - right) / denom if denom else 0.0
    return (peak + delta) * rate / n


def tone_of(path: Path) -> tuple[float | None, Wav]:
    wav = read_wav(path)
    return dominant_frequency(wav.samples, wav.rate), wav


def assert_tone(path: Path, expected_hz: float, context: str) -> Wav:
    freq, wav = tone_of(path)
    assert freq is not None, f"no signal in {wav.describe()}\n{context}"
    assert abs(freq - expected_hz) <= FREQ_TOLERANCE_HZ, (
        f"{wav.describe()}: dominant frequency {freq:.1f} Hz, expected {expected_hz} Hz\n{context}"
    )
    return wav


def test_analysis_finds_synthetic_tones(tmp_path: Path) -> None:
    """The helper itself: known tones at 8 and 48 kHz, with silence around them."""
    for hz, rate in ((440, 8000), (1000, 8000), (600, 48000), (3000, 8000)):
        path = write_tone_wav(tmp_path / f"{hz}-{rate}.wav", hz, 1.0, rate)
        wav = read_wav(path)
        padded = [0] * rate + wav.samples + [0] * rate
        freq = dominant_frequency(padded, rate)
        assert freq is not None and abs(freq - hz) < 1.0, (hz, rate, freq)
    assert dominant_frequency([0] * 8000, 8000) is None


# --------------------------------------------------------------------------- helpers


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(interval_s)
    return True


def assert_no_traceback(output: str, context: str) -> None:
    """A crash inside sessioncore's media or signaling tasks is logged, not always fatal."""
    crashed = "Traceback (most recent call last)" in output
    assert not crashed, f"sessioncore logged a crash\n{context}"


def only_recording(peer: Baresip, kind: str, context: str) -> Path:
    files = peer.recordings(kind)
    assert len(files) == 1, f"{peer.name}: expected one -{kind}.wav, have {files}\n{context}"
    return files[0]


def call_between(caller: Baresip, callee: Baresip) -> None:
    caller.dial(callee.uri)
    ok = caller.wait_established(10) and callee.wait_established(5)
    assert ok, f"call not established\n{caller.describe()}\n{callee.describe()}"


# --------------------------------------------------------------------------- harness self-checks


def test_harness_baresip_pair_tones(baresip: BaresipFactory) -> None:
    """A (440 Hz, auto-answer) called by B (1000 Hz): A hears 1000 Hz, B hears 440 Hz."""
    a = baresip("a", tone_hz=440).start()
    b = baresip("b", tone_hz=1000).start()
    call_between(b, a)
    started = time.monotonic()
    time.sleep(CALL_S)
    b.hangup()
    call_s = time.monotonic() - started
    assert b.wait_terminated(5) and a.wait_terminated(5), f"{b.describe()}\n{a.describe()}"
    b.stop()
    a.stop()
    context = f"{a.describe()}\n{b.describe()}"

    for peer, heard_hz, sent_hz in ((a, 1000, 440), (b, 440, 1000)):
        heard = assert_tone(only_recording(peer, "dec", context), heard_hz, context)
        assert_tone(only_recording(peer, "enc", context), sent_hz, context)
        assert heard.rate == 8000, heard.describe()
        # the recording starts with the first decoded packet: at most a few 100 ms short
        assert call_s - 1.0 <= heard.duration <= call_s + 0.5, (heard.describe(), call_s)


def test_harness_baresip_pair_dtmf(baresip: BaresipFactory) -> None:
    """Key presses send RFC 4733 digits; the peer logs each as ``received event: 'D' (end=1)``."""
    a = baresip("a").start()
    b = baresip("b", tone_hz=1000).start()
    call_between(b, a)
    time.sleep(0.5)
    b.send_dtmf("123#")
    a.wait_for(r"received event: '.' \(end=1\)", 5, count=4)
    a.send_dtmf("9*")
    b.wait_for(r"received event: '.' \(end=1\)", 5, count=2)
    context = f"{a.describe()}\n{b.describe()}"
    assert b.sent_dtmf() == "123#", context
    assert a.received_dtmf() == "123#", context
    assert b.received_dtmf() == "9*", context


def test_harness_baresip_pair_hold_resume(baresip: BaresipFactory) -> None:
    """``/hold`` re-INVITEs with sendonly (answered recvonly), ``/resume`` with sendrecv; RTP
    resumes (RTCP ``rcvd`` grows again) and the call stays up."""
    a = baresip("a").start()
    b = baresip("b", tone_hz=1000).start()
    call_between(b, a)
    time.sleep(1.0)
    b.hold()
    assert a.wait_for(r"call: got re-INVITE", 5), f"{a.describe()}\n{b.describe()}"
    time.sleep(1.0)
    b.audio_debug()
    b.resume()
    assert a.wait_for(r"call: got re-INVITE", 5, count=2), f"{a.describe()}\n{b.describe()}"
    time.sleep(1.5)
    b.audio_debug()
    assert b.wait_for(r"rcvd=\d+", 3, count=2), b.describe()
    context = f"{a.describe()}\n{b.describe()}"

    assert "call: hold" in b.log and "call: resume" in b.log, context
    assert [m.direction for m in a.received("INVITE") if m.is_request] == [
        "sendrecv",
        "sendonly",
        "sendrecv",
    ], context
    answers = [m.direction for m in a.sent("INVITE") if m.status == 200]
    assert answers == ["sendrecv", "recvonly", "sendrecv"], context
    on_hold, resumed = b.rtcp_received_packets()[-2:]
    assert resumed >= on_hold + 40, f"B received {on_hold} then {resumed} packets\n{context}"
    assert "terminated" not in a.log and "terminated" not in b.log, context


# --------------------------------------------------------------------------- CLI vs baresip


def test_baresip_calls_uas_recording(
    tmp_path: Path, baresip: BaresipFactory, sessioncore_uas: UasFactory
) -> None:
    """baresip (ausine 440 Hz) calls ``sessioncore uas --record DIR --media silence`` for ~3 s:
    one WAV in DIR, 440 Hz, 2-4 s long."""
    record_dir = tmp_path / "recorded"
    record_dir.mkdir()
    peer = baresip("caller", tone_hz=440).start()
    uas = sessioncore_uas(
        "--media", "silence",
        "--record", str(record_dir),
        "--media-ports", MEDIA_PORTS_ARG,
        "--max-calls", "1",
    )  # fmt: skip
    peer.dial(f"sip:test@{HOST}:{uas.port}")
    established = peer.wait_established(10)
    if established:
        time.sleep(CALL_S)
        peer.hangup()
        peer.wait_terminated(5)
    code = uas.proc.wait(10)
    if code is None:
        code = uas.proc.stop()
    peer.stop()
    context = f"{uas.proc.describe()}\n{peer.describe()}"

    assert established, f"baresip's call was not answered\n{context}"
    assert code == 0, f"uas --max-calls 1 did not end cleanly\n{context}"
    assert_no_traceback(uas.proc.output, context)
    wavs = sorted(record_dir.glob("*.wav"))
    assert len(wavs) == 1, f"expected one WAV in {record_dir}, have {wavs}\n{context}"
    wav = assert_tone(wavs[0], 440, context)
    assert (wav.rate, wav.channels) == (8000, 1), wav.describe()
    assert 2.0 <= wav.duration <= 4.0, f"{wav.describe()}\n{context}"


@pytest.mark.parametrize("source", ["tone", "play"])
def test_sessioncore_call_to_baresip_media(
    tmp_path: Path, baresip: BaresipFactory, sessioncore_cli: str, source: str
) -> None:
    """``sessioncore call --tone 1000`` / ``--play 600Hz.wav`` to baresip (auto-answer, ausine
    440 Hz): baresip hears the tone, we hear (``--record``) 440 Hz, and the summary counts the
    packets baresip sent."""
    peer = baresip("callee", tone_hz=440).start()
    heard_path = tmp_path / "heard.wav"
    args = [
        "call", peer.uri,
        "--listen", f"{HOST}:{free_port()}",
        "--duration", str(CALL_S),
        "--media-ports", MEDIA_PORTS_ARG,
        "--record", str(heard_path),
    ]  # fmt: skip
    if source == "tone":
        expected_hz = 1000
        args += ["--tone", str(expected_hz)]
    else:
        expected_hz = 600
        args += ["--play", str(write_tone_wav(tmp_path / "600hz.wav", expected_hz, 6.0))]
    cli = run_sessioncore(tmp_path / "call", args, timeout_s=25)
    peer.wait_terminated(5)
    peer.stop()
    context = f"{cli.describe()}\n{peer.describe()}"

    assert cli.returncode == 0, context
    assert_no_traceback(cli.output, context)
    assert "Call established" in peer.log, context
    heard = assert_tone(only_recording(peer, "dec", context), expected_hz, context)
    assert CALL_S - 1.0 <= heard.duration <= CALL_S + 1.0, f"{heard.describe()}\n{context}"
    received = summary_count(cli.output, "packets received")
    sent = summary_count(cli.output, "packets sent")
    assert received is not None and received > 0, f"packets received: {received}\n{context}"
    assert sent is not None and sent > 0, f"packets sent: {sent}\n{context}"
    assert heard_path.exists(), f"no --record file {heard_path}\n{context}"
    assert_tone(heard_path, 440, context)


def test_sessioncore_call_dtmf_to_baresip(
    tmp_path: Path, baresip: BaresipFactory, sessioncore_cli: str
) -> None:
    """``sessioncore call --dtmf 123#``: baresip logs each digit (``received event: 'D'
    (end=1)``, RFC 4733), once, in order."""
    peer = baresip("callee").start()
    cli = run_sessioncore(
        tmp_path / "call",
        [
            "call", peer.uri,
            "--listen", f"{HOST}:{free_port()}",
            "--dtmf", "123#",
            "--duration", str(CALL_S),
            "--media-ports", MEDIA_PORTS_ARG,
        ],
        timeout_s=25,
    )  # fmt: skip
    peer.wait_for(r"received event: '.' \(end=1\)", 3, count=4)
    peer.stop()
    context = f"{cli.describe()}\n{peer.describe()}"

    assert cli.returncode == 0, context
    assert_no_traceback(cli.output, context)
    assert "Call established" in peer.log, context
    assert peer.received_dtmf() == "123#", context


def test_baresip_dtmf_to_uas(baresip: BaresipFactory, sessioncore_uas: UasFactory) -> None:
    """baresip key presses (RFC 4733) reach ``sessioncore uas``: one ``dtmf <call> <digit>``
    line per digit, in order, all for the same call."""
    peer = baresip("caller").start()
    uas = sessioncore_uas("--media", "silence", "--media-ports", MEDIA_PORTS_ARG)
    peer.dial(f"sip:test@{HOST}:{uas.port}")
    established = peer.wait_established(10)
    lines: list[tuple[str, str]] = []
    if established:
        time.sleep(0.5)
        peer.send_dtmf("159#")

        def got_all() -> bool:
            lines[:] = re.findall(r"(?m)^dtmf\s+(\S+)\s+(\S)\s*$", uas.proc.output)
            return len(lines) >= 4

        wait_until(got_all, 5)
        peer.hangup()
        peer.wait_terminated(5)
    uas.proc.stop()
    peer.stop()
    context = f"{uas.proc.describe()}\n{peer.describe()}"

    assert established, f"baresip's call was not answered\n{context}"
    assert_no_traceback(uas.proc.output, context)
    assert peer.sent_dtmf() == "159#", context
    assert "".join(digit for _, digit in lines) == "159#", f"dtmf lines: {lines}\n{context}"
    assert len({call for call, _ in lines}) == 1, f"dtmf lines: {lines}\n{context}"


# --------------------------------------------------------------------------- hold (Python API)


async def _in_thread(func: Callable[..., bool], *args: object) -> bool:
    """Run a blocking harness wait without stalling the event loop our coordinator runs on."""
    return await asyncio.to_thread(func, *args)


async def test_api_holds_and_resumes_baresip(baresip: BaresipFactory) -> None:
    """We call baresip, hold (re-INVITE sendonly) and resume (sendrecv): baresip answers
    recvonly then sendrecv, the call stays up, and audio flows to us again after resume."""
    from sessioncore import CallState, SessionManagerBuilder

    peer = baresip("callee", tone_hz=440).start()
    coordinator = await (
        SessionManagerBuilder()
        .with_local_address(f"sip:sessioncore@{HOST}")
        .with_local_bind_addr(HOST, free_port())
        .with_media_ports(*MEDIA_PORTS)
        .build()
    )
    try:
        session = await coordinator.make_call(peer.uri)
        sid = session.id
        await coordinator.wait_for_answer(sid, timeout=10)
        await asyncio.sleep(1.0)

        await asyncio.wait_for(coordinator.hold_session(sid), 10)
        held = coordinator.get_session(sid)
        assert held is not None and held.state is CallState.ON_HOLD, peer.describe()
        assert await _in_thread(peer.wait_for, r"call: got re-INVITE", 5), peer.describe()
        await asyncio.sleep(1.0)

        at_resume = coordinator.get_media_stats(sid).packets_received
        await asyncio.wait_for(coordinator.resume_session(sid), 10)
        resumed = coordinator.get_session(sid)
        assert resumed is not None and resumed.state is CallState.ACTIVE, peer.describe()
        assert await _in_thread(peer.wait_for, r"call: got re-INVITE", 5, 2), peer.describe()
        await asyncio.sleep(1.5)
        after_resume = coordinator.get_media_stats(sid).packets_received

        context = peer.describe()
        offers = [m.direction for m in peer.received("INVITE") if m.is_request]
        assert offers[-2:] == ["sendonly", "sendrecv"], f"offers {offers}\n{context}"
        answers = [m.direction for m in peer.sent("INVITE") if m.status == 200]
        assert answers[-2:] == ["recvonly", "sendrecv"], f"answers {answers}\n{context}"
        assert "terminated" not in peer.log, f"baresip ended the call\n{context}"
        # 1.5 s of 20 ms packets is 75: after resume, baresip's tone reaches us again
        assert after_resume >= at_resume + 40, (
            f"packets received {at_resume} at resume, {after_resume} 1.5 s later\n{context}"
        )

        await coordinator.terminate_session(sid)
        await coordinator.wait_for_end(sid, timeout=5)
        assert await _in_thread(peer.wait_terminated, 5), peer.describe()
    finally:
        await coordinator.stop()
        peer.stop()


async def test_baresip_holds_and_resumes_api(baresip: BaresipFactory) -> None:
    """baresip calls us, then ``/hold`` and ``/resume``: we answer recvonly then sendrecv, our
    session goes ON_HOLD and back to ACTIVE, and baresip's audio reaches us again after resume."""
    from sessioncore import AutoAnswerHandler, CallState, SessionManagerBuilder

    port = free_port()
    peer = baresip("caller", tone_hz=440).start()
    coordinator = await (
        SessionManagerBuilder()
        .with_local_address(f"sip:sessioncore@{HOST}")
        .with_local_bind_addr(HOST, port)
        .with_media_ports(*MEDIA_PORTS)
        .with_handler(AutoAnswerHandler())
        .build()
    )

    async def state_is(state: CallState, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            sessions = coordinator.list_active_sessions()
            if sessions and sessions[0].state is state:
                return True
            await asyncio.sleep(0.05)
        return False

    try:
        peer.dial(f"sip:sessioncore@{HOST}:{port}")
        assert await state_is(CallState.ACTIVE, 10), peer.describe()
        assert await _in_thread(peer.wait_established, 5), peer.describe()
        sid = coordinator.list_active_sessions()[0].id
        await asyncio.sleep(1.0)

        peer.hold()
        assert await state_is(CallState.ON_HOLD), f"not ON_HOLD\n{peer.describe()}"
        await asyncio.sleep(1.0)
        at_resume = coordinator.get_media_stats(sid).packets_received
        peer.resume()
        assert await state_is(CallState.ACTIVE), f"not ACTIVE again\n{peer.describe()}"
        await asyncio.sleep(1.5)
        after_resume = coordinator.get_media_stats(sid).packets_received

        context = peer.describe()
        offers = [m.direction for m in peer.sent("INVITE") if m.is_request]
        assert offers == ["sendrecv", "sendonly", "sendrecv"], f"offers {offers}\n{context}"
        answers = [m.direction for m in peer.received("INVITE") if m.status == 200]
        assert answers == ["sendrecv", "recvonly", "sendrecv"], f"answers {answers}\n{context}"
        assert "terminated" not in peer.log, f"the call ended\n{context}"
        assert after_resume >= at_resume + 40, (
            f"packets received {at_resume} at resume, {after_resume} 1.5 s later\n{context}"
        )

        peer.hangup()
        await coordinator.wait_for_end(sid, timeout=5)
    finally:
        await coordinator.stop()
        peer.stop()
