"""A SIP server (UAS) that answers every call and echoes the caller's audio back.

    python examples/uas_server.py --port 5062                    # until Ctrl-C
    python examples/uas_server.py --port 5062 --auto-shutdown 30 # or stop after 30 s

Call it with ``examples/uac_client.py --target 127.0.0.1:5062`` or ``sessioncore call``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from sessioncore import (
    CallDecision,
    CallHandler,
    CallSession,
    IncomingCall,
    SessionManagerBuilder,
)
from sessioncore.media.sources import EchoBridge

log = logging.getLogger("uas_server")


class AnsweringHandler(CallHandler):
    """Answers every incoming call and logs what happens to it."""

    async def on_incoming_call(self, call: IncomingCall) -> CallDecision:
        log.info("incoming call %s from %s", call.sip_call_id, call.from_uri)
        return CallDecision.accept()

    async def on_call_established(
        self, session: CallSession, local_sdp: str | None, remote_sdp: str | None
    ) -> None:
        log.info("call %s established", session.sip_call_id)

    async def on_call_ended(self, session: CallSession, reason: str) -> None:
        q = session.media_stats
        if q is None:
            log.info("call %s ended: %s", session.sip_call_id, reason)
            return
        log.info(
            "call %s ended: %s; RTP sent %d, received %d, lost %d, jitter %.2f ms, MOS %.2f",
            session.sip_call_id, reason, q.packets_sent, q.packets_received, q.packets_lost,
            q.jitter_ms, q.mos,
        )  # fmt: skip


async def serve(host: str, port: int, auto_shutdown: float) -> None:
    """Answer calls on ``host:port`` until Ctrl-C / SIGTERM, or for ``auto_shutdown`` seconds."""
    bridges: dict[str, EchoBridge] = {}  # per call: what arrives is sent back
    coordinator = await (
        SessionManagerBuilder()
        .with_local_address(f"sip:server@{host}")
        .with_local_bind_addr(host, port)
        .with_media_ports(33000, 33999)
        .with_audio(
            source=lambda session: bridges.setdefault(session.id, EchoBridge()),
            sink=lambda session: bridges.pop(session.id, None),
        )
        .with_handler(AnsweringHandler())
        .build()
    )
    print(f"listening on {host}:{port}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), timeout=auto_shutdown or None)
    except TimeoutError:
        log.info("auto-shutdown after %s s", auto_shutdown)
    finally:
        await coordinator.stop()

    print("=== Server Statistics ===")
    for name, value in coordinator.get_stats().items():
        print(f"{name}: {value}")


def main() -> None:
    """Parse the command line and run the server."""
    parser = argparse.ArgumentParser(description="A SIP server that answers every call.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=5062, help="SIP port (UDP)")
    parser.add_argument(
        "--auto-shutdown",
        type=float,
        default=0,
        metavar="SECONDS",
        help="stop after this many seconds (0: run until Ctrl-C)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    asyncio.run(serve(args.host, args.port, args.auto_shutdown))


if __name__ == "__main__":
    main()
