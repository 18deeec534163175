"""RFC 4475 torture messages from ../shared/testdata/rfc4475 and what the RFC expects of them."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "rfc4475"

# file -> (verdict, what our endpoint answers: a status, or None for "dropped, no answer")
# Verdicts: "valid" must parse; "invalid" must raise SipParseError; "semantic" parses and the
# endpoint applies the rule. INVITEs reach a handler that rejects with 486.
EXPECTED: dict[str, tuple[str, int | None]] = {
    "wsinv": ("valid", 481),  # it carries a To tag: a request for an unknown dialog
    "intmeth": ("valid", 501),
    "esc01": ("valid", 486),
    "escnull": ("valid", 405),
    "esc02": ("valid", 501),
    "lwsdisp": ("valid", 200),
    "longreq": ("valid", 486),
    "dblreq": ("valid", 405),
    "semiuri": ("valid", 200),
    "transports": ("valid", 200),
    "mpart01": ("valid", 405),
    "unreason": ("valid", None),
    "noreason": ("valid", None),
    "badinv01": ("invalid", 400),
    "clerr": ("invalid", 400),
    "ncl": ("invalid", 400),
    "scalar02": ("invalid", 400),
    "scalarlg": ("invalid", None),
    "quotbal": ("invalid", 400),
    "ltgtruri": ("invalid", 400),
    "lwsruri": ("invalid", 400),
    "lwsstart": ("invalid", 400),
    "trws": ("invalid", 400),
    "escruri": ("invalid", 400),
    "baddate": ("invalid", 400),
    "regbadct": ("invalid", 400),
    "badaspec": ("invalid", 400),
    "baddn": ("invalid", 400),
    "badvers": ("invalid", 505),
    "mismatch01": ("invalid", 400),
    "mismatch02": ("invalid", 501),
    "bigcode": ("invalid", None),
    "badbranch": ("semantic", 200),
    "insuf": ("invalid", 400),
    "unkscm": ("semantic", 416),
    "novelsc": ("semantic", 416),
    "unksm2": ("semantic", 405),
    "bext01": ("semantic", 420),
    "invut": ("semantic", 415),
    "regaut01": ("semantic", 405),
    "multi01": ("invalid", 400),
    "mcl01": ("invalid", 400),
    "bcast": ("semantic", None),
    "zeromf": ("semantic", 200),
    "cparam01": ("semantic", 405),
    "cparam02": ("semantic", 405),
    "regescrt": ("semantic", 405),
    "sdp01": ("semantic", 406),
    "inv2543": ("valid", 486),
}


def load(name: str, *, loopback: bool = True) -> bytes:
    """The message's bytes; with ``loopback`` 192.0.2.x (TEST-NET) becomes 127.0.0.x.

    The rewrite keeps every length (so Content-Length still frames the body) and guarantees
    that nothing we send in reaction can leave this machine.
    """
    data = (DATA / f"{name}.dat").read_bytes()
    if name == "baddn":
        data += b"\r\n"  # the archive's copy lacks the blank line that ends the headers
    if loopback:
        data = data.replace(b"192.0.2.", b"127.0.0.").replace(b"255.255.255.255", b"127.0.0.255.1")
    return data
