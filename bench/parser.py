#!/usr/bin/env python3
"""SIP parser micro-benchmark: messages per second for ``parse_message`` and ``bytes(msg)``.

Parses a typical SIPp-style INVITE with an SDP body (the shape the UAS sees per call) ``-n``
times, best of ``--repeat`` runs, and prints one row per case:

    invite (validate)   parse_message(data)                  what the endpoint runs per message
    invite (raw)        parse_message(data, validate=False)  framing and header splitting only
    200 OK (validate)   parse_message(response)
    BYE (validate)      parse_message(bye)
    bytes(invite)       serialization of a parsed INVITE

Stdlib only; not a test. Example: ``python bench/parser.py -n 200000`` or
``python bench/parser.py --profile`` for a cProfile top 15 of the validating INVITE parse.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Callable

from sessioncore.sip.message import parse_message

SDP = (
    b"v=0\r\n"
    b"o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)

INVITE = (
    b"INVITE sip:service@127.0.0.1:5062 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-12345-1-0;rport\r\n"
    b"From: sipp <sip:sipp@127.0.0.1:5061>;tag=12345SIPpTag001\r\n"
    b"To: service <sip:service@127.0.0.1:5062>\r\n"
    b"Call-ID: 1-12345@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: sip:sipp@127.0.0.1:5061\r\n"
    b"Max-Forwards: 70\r\n"
    b"Subject: Performance Test\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)

OK_200 = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-12345-1-0;rport=5061;received=127.0.0.1\r\n"
    b"From: sipp <sip:sipp@127.0.0.1:5061>;tag=12345SIPpTag001\r\n"
    b"To: service <sip:service@127.0.0.1:5062>;tag=as58f4201b\r\n"
    b"Call-ID: 1-12345@127.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:service@127.0.0.1:5062>\r\n"
    b"Server: sessioncore\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)

BYE = (
    b"BYE sip:service@127.0.0.1:5062 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-12345-1-7;rport\r\n"
    b"From: sipp <sip:sipp@127.0.0.1:5061>;tag=12345SIPpTag001\r\n"
    b"To: service <sip:service@127.0.0.1:5062>;tag=as58f4201b\r\n"
    b"Call-ID: 1-12345@127.0.0.1\r\n"
    b"CSeq: 2 BYE\r\n"
    b"Contact: sip:sipp@127.0.0.1:5061\r\n"
    b"Max-Forwards: 70\r\n"
    b"Subject: Performance Test\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def _best_of(fn: Callable[[], object], n: int, repeat: int) -> float:
    """Best (smallest) wall time in seconds of ``n`` calls of ``fn``, over ``repeat`` runs."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the process exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", "--number", type=int, default=200_000, help="messages per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (best is shown)")
    ap.add_argument(
        "--profile", action="store_true", help="print a cProfile top 15 of the validating parse"
    )
    args = ap.parse_args(argv)
    n: int = args.number

    msg = parse_message(INVITE)
    parse_message(OK_200)
    parse_message(BYE)
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            parse_message(INVITE)
        prof.disable()
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(15)
        return 0

    cases: list[tuple[str, Callable[[], object]]] = [
        ("invite (validate)", lambda: parse_message(INVITE)),
        ("invite (raw)", lambda: parse_message(INVITE, validate=False)),
        ("200 OK (validate)", lambda: parse_message(OK_200)),
        ("BYE (validate)", lambda: parse_message(BYE)),
        ("bytes(invite)", lambda: bytes(msg)),
    ]
    print(
        f"python {sys.version.split()[0]}, INVITE {len(INVITE)} bytes, n={n}, best of {args.repeat}"
    )
    print(f"{'case':<20} {'msg/s':>12} {'us/msg':>9}")
    for name, fn in cases:
        t = _best_of(fn, n, args.repeat)
        print(f"{name:<20} {n / t:>12,.0f} {t / n * 1e6:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
