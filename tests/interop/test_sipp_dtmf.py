"""DTMF interop with SIPp: RFC 4733 telephone-event (a pcap SIPp replays) and SIP INFO.

``sessioncore uas`` prints one line ``dtmf <session-id> <digit>`` per digit it receives, from
RTP telephone-event or from INFO ``application/dtmf-relay``, and ``dtmf received`` with the
digits in its summary.

- ``scenarios/uac_dtmf_pcap.xml`` offers PCMU + telephone-event on payload type 101 and replays
  SIPp's ``dtmf_2833_1.pcap`` (Debian package sip-tester): one RFC 4733 event, digit ``1``, in
  10 packets of payload type 101 (marker on the first, one RTP timestamp, the end packet three
  times). SIPp sends the pcap's RTP as it is, so the answer must keep payload type 101.
- ``scenarios/uac_dtmf_info.xml`` sends three INFOs, ``Signal=4``, ``2``, ``#`` (Duration=160),
  each answered 200.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import (
    SCENARIOS,
    TRANSPORTS,
    RunningUas,
    SippRun,
    Transport,
    peers_required,
    require_peer,
)

pytestmark = pytest.mark.interop

SippFactory = Callable[..., SippRun]
UasFactory = Callable[..., RunningUas]

#: the pcap uac_dtmf_pcap.xml replays (its path is in the scenario), and the digits it carries
DTMF_PCAP = Path("/usr/share/sip-tester/dtmf_2833_1.pcap")
PCAP_DIGITS = ["1"]
INFO_DIGITS = ["4", "2", "#"]

#: how long `uas --max-calls 1` gets to end by itself once SIPp is done
UAS_EXIT_TIMEOUT_S = 15

DTMF_LINE = re.compile(r"(?m)^dtmf (\S+) (\S+)\s*$")
SUMMARY_DIGITS = re.compile(r"(?im)dtmf received\b[^0-9A-D#*\n]*([0-9A-D#*]+)")


def dtmf_lines(output: str) -> list[tuple[str, str]]:
    """The ``(session id, digit)`` of every ``dtmf <session-id> <digit>`` line, in order."""
    return [(m.group(1), m.group(2)) for m in DTMF_LINE.finditer(output)]


def run_dtmf_call(
    sipp: SippFactory,
    sessioncore_uas: UasFactory,
    scenario: str,
    transport: Transport,
) -> tuple[str, str]:
    """One call of ``scenario`` against ``uas --max-calls 1``; returns (uas output, context).

    Asserts that SIPp's call succeeded and that the uas ended by itself with status 0.
    """
    require_peer("sipp")
    uas = sessioncore_uas("--media", "silence", "--max-calls", "1", transport=transport)
    result = sipp(
        SCENARIOS / scenario,
        name="uac",
        remote=uas.remote,
        transport=transport,
        calls=1,
        timeout_s=30,
    ).run()
    code = uas.proc.wait(timeout_s=UAS_EXIT_TIMEOUT_S)
    if code is None:
        uas.proc.stop()
    output = uas.proc.output
    context = result.describe() + "\n" + uas.proc.describe()

    assert result.returncode == 0, context
    assert (result.successful, result.failed) == (1, 0), context
    assert code == 0, f"uas --max-calls 1 did not end cleanly by itself\n{context}"
    return output, context


def assert_digits(output: str, expected: list[str], context: str) -> None:
    """The uas printed exactly ``expected``, in order, all for one session, and summed them up."""
    lines = dtmf_lines(output)
    assert [digit for _, digit in lines] == expected, f"dtmf lines {lines}\n{context}"
    assert len({sid for sid, _ in lines}) == 1, f"digits from several sessions\n{context}"
    summary = SUMMARY_DIGITS.search(output)
    assert summary is not None, f"no 'dtmf received' in the summary\n{context}"
    assert summary.group(1) == "".join(expected), f"summary {summary.group(0)!r}\n{context}"


def test_dtmf_rfc4733_pcap_against_sessioncore_uas(
    sipp: SippFactory, sessioncore_uas: UasFactory
) -> None:
    """The telephone-event of dtmf_2833_1.pcap (SIPp play_pcap_audio) is reported once: 1."""
    require_peer("sipp")
    if not DTMF_PCAP.is_file():
        reason = f"SIPp's DTMF pcap {DTMF_PCAP} is missing (Debian package sip-tester ships it)"
        if peers_required():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    output, context = run_dtmf_call(sipp, sessioncore_uas, "uac_dtmf_pcap.xml", "udp")
    assert_digits(output, PCAP_DIGITS, context)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_dtmf_sip_info_against_sessioncore_uas(
    sipp: SippFactory, sessioncore_uas: UasFactory, transport: Transport
) -> None:
    """Three INFO application/dtmf-relay (4, 2, #) are each answered 200 and reported in order."""
    output, context = run_dtmf_call(sipp, sessioncore_uas, "uac_dtmf_info.xml", transport)
    assert_digits(output, INFO_DIGITS, context)
