"""A SIP server (UAS) that answers every call.

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
        log.info("call %s ended: %s", session.sip_call_id, reason)


async def serve(host: str, port: int, auto_shutdown: float) -> None:
    """Answer calls on ``host:port`` until Ctrl-C / SIGTERM, or for ``auto_shutdown`` seconds."""
    coordinator = await (
        SessionManagerBuilder()
        .with_local_address(f"sip:server@{host}")
        .with_local_bind_addr(host, port)
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
