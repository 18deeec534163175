"""``make demo``: real SIP calls with real audio over loopback, explained.

Starts a UAS (a coordinator whose handler auto-answers and echoes back the audio it receives)
and a UAC in this process, on free UDP ports of 127.0.0.1, and places three 4-second calls.
Each call sends a sine tone (440, 880, 1000 Hz) as G.711 RTP; the UAS echoes it; the UAC
records what comes back to ``recordings/demo-call-N.wav``. For each call the demo prints its
Call-ID, the state transitions with their times, the setup time, how long it was up, why it
ended, the negotiated codec, the RTP statistics and the frequency measured in the recording.

Exits 0 when every call was answered, ended cleanly on both sides and echoed its own tone back
(measured within 5 Hz), 1 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from sessioncore import (
    AutoAnswerHandler,
    CallFailed,
    CallHandler,
    CallSession,
    CallState,
    SessionCoordinator,
    SessionError,
    SessionId,
    SessionManagerBuilder,
)
from sessioncore.media.analysis import dominant_frequency, read_wav
from sessioncore.media.sinks import AudioSink, WavRecorder
from sessioncore.media.sources import AudioSource, EchoBridge, ToneSource

CALLS = 3
CALL_SECONDS = 4.0
STAGGER_SECONDS = 0.25  # between the starts of the calls
ANSWER_TIMEOUT = 10.0
END_TIMEOUT = 10.0
UAS_MEDIA_PORTS = (30000, 30999)
UAC_MEDIA_PORTS = (31000, 31999)
TONES = (440.0, 880.0, 1000.0)
RECORDINGS = Path(__file__).resolve().parents[1] / "recordings"

console = Console(highlight=False)


@dataclass
class CallRecord:
    """Everything the demo learns about one outgoing call."""

    number: int
    started: float  # loop time of make_call
    session: CallSession | None = None
    answered: float | None = None
    ended: float | None = None
    end_reason: str | None = None
    failure: str | None = None
    local_sdp: str | None = None
    remote_sdp: str | None = None
    transitions: list[tuple[float, CallState, CallState, str | None]] = field(default_factory=list)
    tone: float = 0.0
    recording: Path | None = None
    measured: float | None = None
    recorded_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Answered, ended with a reason, and its tone came back."""
        echoed = self.measured is not None and abs(self.measured - self.tone) <= 5.0
        return (
            self.failure is None
            and self.answered is not None
            and self.end_reason is not None
            and echoed
        )


class RecordingHandler(CallHandler):
    """The UAC's handler: records state transitions and SDP for each session."""

    def __init__(self) -> None:
        self.transitions: dict[SessionId, list[tuple[float, CallState, CallState, str | None]]]
        self.transitions = {}
        self.sdp: dict[SessionId, tuple[str | None, str | None]] = {}

    async def on_call_state_changed(
        self, session_id: SessionId, old: CallState, new: CallState, reason: str | None
    ) -> None:
        now = asyncio.get_running_loop().time()
        self.transitions.setdefault(session_id, []).append((now, old, new, reason))

    async def on_call_established(
        self, session: CallSession, local_sdp: str | None, remote_sdp: str | None
    ) -> None:
        self.sdp[session.id] = (local_sdp, remote_sdp)


class CountingAnswerer(AutoAnswerHandler):
    """The UAS's handler: answers every call (AutoAnswerHandler) and counts what happens."""

    def __init__(self) -> None:
        super().__init__()
        self.established = 0
        self.ended: list[str] = []

    async def on_call_established(
        self, session: CallSession, local_sdp: str | None, remote_sdp: str | None
    ) -> None:
        await super().on_call_established(session, local_sdp, remote_sdp)
        self.established += 1

    async def on_call_ended(self, session: CallSession, reason: str) -> None:
        await super().on_call_ended(session, reason)
        self.ended.append(reason)


def free_udp_port() -> int:
    """A UDP port of 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start(
    user: str,
    port: int,
    media_ports: tuple[int, int],
    handler: CallHandler,
    source: Callable[[CallSession], AudioSource | None],
    sink: Callable[[CallSession], AudioSink | None],
) -> SessionCoordinator:
    """A started coordinator for ``sip:user@127.0.0.1`` on UDP ``port``.

    Each side gets its own RTP port range: both live in this process, on the same address.
    """
    return await (
        SessionManagerBuilder()
        .with_local_address(f"sip:{user}@127.0.0.1")
        .with_local_bind_addr("127.0.0.1", port)
        .with_media_ports(*media_ports)
        .with_transport("udp")
        .with_user_agent("sessioncore-demo")
        .with_handler(handler)
        .with_audio(source, sink)
        .build()
    )


async def place_call(
    uac: SessionCoordinator, target: str, record: CallRecord, loop: asyncio.AbstractEventLoop
) -> None:
    """One call: dial, wait for the answer, stay up CALL_SECONDS, hang up, wait for the end."""
    try:
        session = await uac.make_call(target)
    except SessionError as exc:
        record.failure = f"make_call: {exc}"
        return
    record.session = session
    end = asyncio.ensure_future(uac.wait_for_end(session.id, timeout=None))
    try:
        try:
            await uac.wait_for_answer(session.id, timeout=ANSWER_TIMEOUT)
        except CallFailed as exc:
            record.failure = f"rejected: {exc.status} {exc.reason or ''}".strip()
            return
        except TimeoutError:
            record.failure = f"no answer in {ANSWER_TIMEOUT:g} s"
            with contextlib.suppress(SessionError):
                await uac.terminate_session(session.id)  # CANCEL
            return
        record.answered = loop.time()
        done, _ = await asyncio.wait({end}, timeout=CALL_SECONDS)
        if not done:
            await uac.terminate_session(session.id)
        try:
            record.end_reason = await asyncio.wait_for(asyncio.shield(end), END_TIMEOUT)
        except TimeoutError:
            record.failure = f"no end in {END_TIMEOUT:g} s after hangup"
            return
        record.ended = loop.time()
    except SessionError as exc:
        record.failure = f"{type(exc).__name__}: {exc}"
    finally:
        if not end.done():
            end.cancel()
        await asyncio.gather(end, return_exceptions=True)


def describe_media(record: CallRecord) -> list[str]:
    """Lines about the call's media: codec, RTP statistics, what the recording holds."""
    lines = []
    codec = "-"
    for line in (record.remote_sdp or "").splitlines():
        if line.startswith("a=rtpmap:") and "telephone-event" not in line:
            codec = line.split(" ", 1)[1]
            break
    lines.append(f"codec: {codec}, sent a {record.tone:g} Hz tone")
    q = record.session.media_stats if record.session else None
    if q is not None:
        expected = q.packets_received + q.packets_lost
        loss = 100.0 * q.packets_lost / expected if expected else 0.0
        rtt = f"{q.rtt_ms:.1f} ms" if q.rtt_ms is not None else "n/a (call shorter than RTCP)"
        lines.append(
            f"RTP: {q.packets_sent} packets sent, {q.packets_received} received, "
            f"loss {loss:.1f}%, jitter {q.jitter_ms:.2f} ms, RTT {rtt}, MOS {q.mos:.2f}"
        )
    if record.recording is not None:
        measured = f"{record.measured:.1f} Hz" if record.measured is not None else "nothing"
        lines.append(
            f"echo recorded: {record.recorded_seconds:.2f} s in {record.recording}, "
            f"dominant frequency {measured}"
        )
    return lines


def report(record: CallRecord) -> None:
    """Print one call's story."""
    call_id = record.session.sip_call_id if record.session else "-"
    mark = "[green]ok[/]" if record.ok else "[red]FAILED[/]"
    console.print(f"[bold]Call {record.number}[/]  Call-ID {call_id}  {mark}")
    for when, old, new, reason in record.transitions:
        note = f"  ({reason})" if reason else ""
        offset_ms = (when - record.started) * 1000.0
        console.print(f"  +{offset_ms:8.1f} ms  {old.name} -> {new.name}{note}")
    if record.answered is not None:
        console.print(f"  setup time: {(record.answered - record.started) * 1000.0:.1f} ms")
    if record.answered is not None and record.ended is not None:
        console.print(f"  duration:   {record.ended - record.answered:.2f} s")
    if record.end_reason is not None:
        console.print(f"  end reason: {record.end_reason}")
    if record.failure is not None:
        console.print(f"  [red]failure:    {record.failure}[/]")
    for line in describe_media(record):
        console.print(f"  {line}")
    console.print()


async def demo() -> int:
    """Run the demo; return the exit status."""
    loop = asyncio.get_running_loop()
    uas_port, uac_port = free_udp_port(), free_udp_port()
    answerer, recorder = CountingAnswerer(), RecordingHandler()
    bridges: dict[SessionId, EchoBridge] = {}

    def echo_source(session: CallSession) -> AudioSource:
        bridge = bridges[session.id] = EchoBridge()
        return bridge

    def echo_sink(session: CallSession) -> AudioSink | None:
        return bridges.pop(session.id, None)

    RECORDINGS.mkdir(exist_ok=True)
    tones = list(TONES)
    paths: dict[SessionId, Path] = {}

    def tone_source(session: CallSession) -> AudioSource:
        return ToneSource(tones[(len(paths)) % len(tones)])

    def recorder_sink(session: CallSession) -> AudioSink:
        path = RECORDINGS / f"demo-call-{len(paths) + 1}.wav"
        paths[session.id] = path
        return WavRecorder(path)

    uas = await start("demo-uas", uas_port, UAS_MEDIA_PORTS, answerer, echo_source, echo_sink)
    try:
        uac = await start(
            "demo-uac", uac_port, UAC_MEDIA_PORTS, recorder, tone_source, recorder_sink
        )
    except BaseException:
        await uas.stop()
        raise
    target = f"sip:demo-uas@127.0.0.1:{uas_port}"
    console.print(f"UAS (auto-answer) on udp:127.0.0.1:{uas_port}")
    console.print(f"UAC on udp:127.0.0.1:{uac_port}, calling {target}")
    console.print(f"placing {CALLS} calls of {CALL_SECONDS:g} s ...\n")

    records: list[CallRecord] = []
    try:
        tasks = []
        for number in range(1, CALLS + 1):
            if number > 1:
                await asyncio.sleep(STAGGER_SECONDS)
            record = CallRecord(number=number, started=loop.time())
            records.append(record)
            tasks.append(asyncio.ensure_future(place_call(uac, target, record, loop)))
        await asyncio.gather(*tasks)
        # Let the UAS see the last BYEs and the handlers' callbacks run.
        for _ in range(50):
            if len(answerer.ended) >= CALLS:
                break
            await asyncio.sleep(0.1)
        uac_stats, uas_stats = uac.get_stats(), uas.get_stats()
    finally:
        await uac.stop()
        await uas.stop()

    for record in records:
        record.tone = TONES[(record.number - 1) % len(TONES)]
        if record.session is not None:
            record.transitions = recorder.transitions.get(record.session.id, [])
            record.local_sdp, record.remote_sdp = recorder.sdp.get(record.session.id, (None, None))
            record.recording = paths.get(record.session.id)
        if record.recording is not None and record.recording.exists():
            pcm, rate = read_wav(record.recording)
            record.recorded_seconds = len(pcm) / 2 / rate
            if record.recorded_seconds >= 0.2:
                record.measured = dominant_frequency(pcm, rate)
        report(record)

    answered = sum(r.answered is not None for r in records)
    ended = sum(r.ok for r in records)
    setups = [(r.answered - r.started) * 1000.0 for r in records if r.answered is not None]
    console.print("[bold]Totals[/]")
    console.print(f"  calls placed:   {len(records)}")
    console.print(f"  answered:       {answered}")
    console.print(f"  ended cleanly:  {ended}")
    if setups:
        console.print(f"  setup time:     avg {sum(setups) / len(setups):.1f} ms")
    console.print(f"  UAS answered {answerer.established}, saw {len(answerer.ended)} end(s)")
    for side, stats in (("UAC", uac_stats), ("UAS", uas_stats)):
        console.print(
            f"  {side} messages in/out {stats.get('messages_received', 0)}/"
            f"{stats.get('messages_sent', 0)}, retransmissions "
            f"{stats.get('retransmissions', 0)}, parse errors {stats.get('parse_errors', 0)}"
        )

    ok = ended == CALLS and answerer.established == CALLS and len(answerer.ended) == CALLS
    console.print("[green]demo OK[/]" if ok else "[red]demo FAILED[/]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(demo()))
