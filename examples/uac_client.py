"""A SIP client (UAC) that places calls one after another.

    python examples/uac_client.py --target 127.0.0.1:5062 --calls 3 --duration 2

Each call is answered by the server (see ``examples/uas_server.py``), sends a 440 Hz tone for
``--duration`` seconds and is hung up; the RTP statistics of each call are printed at the end.
The exit status is 0 only when every call connected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from sessioncore import (
    CallFailed,
    CallHandler,
    CallSession,
    MediaQuality,
    SessionError,
    SessionManagerBuilder,
)
from sessioncore.media.sources import ToneSource

log = logging.getLogger("uac_client")


class ClientHandler(CallHandler):
    """Logs when our calls are established and when they end; keeps their RTP statistics."""

    def __init__(self) -> None:
        self.rtp: list[tuple[str, MediaQuality]] = []

    async def on_call_established(
        self, session: CallSession, local_sdp: str | None, remote_sdp: str | None
    ) -> None:
        log.info("call %s established", session.sip_call_id)

    async def on_call_ended(self, session: CallSession, reason: str) -> None:
        log.info("call %s ended: %s", session.sip_call_id, reason)
        if session.media_stats is not None:
            self.rtp.append((session.sip_call_id or session.id, session.media_stats))


async def run(port: int, target: str, calls: int, duration: float, delay: float) -> bool:
    """Place ``calls`` calls to ``target``; return True when every one connected."""
    handler = ClientHandler()
    coordinator = await (
        SessionManagerBuilder()
        .with_local_address("sip:client@127.0.0.1")
        .with_local_bind_addr("127.0.0.1", port)
        .with_media_ports(32000, 32999)
        .with_audio(source=lambda session: ToneSource(440))
        .with_handler(handler)
        .build()
    )
    initiated = connected = failed = 0
    try:
        for number in range(1, calls + 1):
            if number > 1:
                await asyncio.sleep(delay)
            initiated += 1
            session = await coordinator.make_call(f"sip:server@{target}")
            log.info("call %d: calling %s", number, session.to_uri)
            try:
                await coordinator.wait_for_answer(session.id, timeout=10)
            except (CallFailed, TimeoutError) as exc:
                failed += 1
                log.warning("call %d failed: %s", number, str(exc) or "no answer")
                if isinstance(exc, TimeoutError):
                    with contextlib.suppress(SessionError):
                        await coordinator.terminate_session(session.id)  # sends CANCEL
                continue
            connected += 1
            await asyncio.sleep(duration)
            try:
                await coordinator.terminate_session(session.id)  # sends BYE
            except SessionError as exc:  # e.g. the server hung up first
                log.info("call %d: hangup: %s", number, exc)
    finally:
        await coordinator.stop()

    for call_id, q in handler.rtp:
        print(f"=== RTP Statistics ({call_id}) ===")
        print(f"  Packets sent: {q.packets_sent}")
        print(f"  Packets received: {q.packets_received}")
        print(f"  Packets lost: {q.packets_lost}")
        print(f"  Jitter: {q.jitter_ms:.2f} ms")
        print(f"  Estimated MOS: {q.mos:.2f}")
    print("=== Final Statistics ===")
    print(f"Calls initiated: {initiated}")
    print(f"Calls connected: {connected}")
    print(f"Calls failed: {failed}")
    return connected == calls


def main() -> None:
    """Parse the command line, place the calls, exit 0 only if all connected."""
    parser = argparse.ArgumentParser(description="Place SIP calls one after another.")
    parser.add_argument("--port", type=int, default=5061, help="local SIP port (UDP)")
    parser.add_argument("--target", default="127.0.0.1:5062", help="server HOST:PORT")
    parser.add_argument("--calls", type=int, default=1, help="number of calls")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds each call lasts")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds between calls")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ok = asyncio.run(run(args.port, args.target, args.calls, args.duration, args.delay))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
