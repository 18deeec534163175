"""Property tests: the parser only ever returns a message or raises SipParseError, and valid
messages survive a serialize/parse round trip."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sessioncore.errors import SipParseError
from sessioncore.sip.message import SipMessage, SipRequest, StreamFramer, parse_message

SDP = (
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
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
    b"Content-Length: 129\r\n"
    b"\r\n" + SDP
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _exercise(msg: SipMessage) -> None:
    """Touch every lazily parsed accessor: each may raise SipParseError, nothing else."""
    for attr in ("call_id", "cseq", "from_", "to", "vias", "contacts", "max_forwards"):
        with contextlib.suppress(SipParseError):
            getattr(msg, attr)
    if isinstance(msg, SipRequest):
        with contextlib.suppress(SipParseError):
            _ = msg.request_uri
    bytes(msg)


def _parse_both_ways(data: bytes) -> None:
    for validate in (True, False):
        for stream in (False, True):
            try:
                msg = parse_message(data, validate=validate, stream=stream)
            except SipParseError as exc:
                assert 400 <= exc.status < 600
                continue
            _exercise(msg)


@FUZZ
@given(st.binary(max_size=600))
@example(b"SIP/2.0 1\xc2\xb200 OK\r\n\r\n")
@example(INVITE.replace(b"Content-Length: 129", "Content-Length: \u00b2".encode()))
@example(INVITE.replace(b":5062 SIP", ":\u00b2 SIP".encode()))
def test_random_bytes(data: bytes) -> None:
    _parse_both_ways(data)
    with contextlib.suppress(SipParseError):
        StreamFramer(max_size=4096).feed(data)


_INSERTS = [b"\r", b"\n", b"\r\n", b"\x00", b'"', b",", b";", b"<", b">", b":", b" ", b"\t",
            b"@", b"%", b"[", b"]", b"=", b"?", b"\xff", "\u00b2".encode(), b"\r\n "]  # fmt: skip


@st.composite
def mutated_invite(draw: st.DrawFn) -> bytes:
    data = bytearray(INVITE)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "replace"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[pos:pos] = draw(st.sampled_from(_INSERTS))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[pos:]
        else:
            data[pos] = draw(st.integers(0, 255))
    return bytes(data)


@FUZZ
@given(mutated_invite())
def test_mutated_invite(data: bytes) -> None:
    _parse_both_ways(data)


# --- round trip of valid generated messages -------------------------------------------------

_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
_token = st.text(alphabet=_TOKEN_ALPHABET, min_size=1, max_size=10)
_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_host = st.one_of(
    st.lists(_word, min_size=1, max_size=3).map(".".join),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.just("[2001:db8::1]"),
)
_port = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
_uri_params = st.lists(st.tuples(_word, st.one_of(st.just(""), _word)), max_size=2).map(
    lambda ps: "".join(f";{n}={v}" if v else f";{n}" for n, v in ps)
)
_sip_uri = st.builds(
    lambda scheme, user, host, port, params: f"{scheme}:{user}{host}{port}{params}",
    st.sampled_from(["sip", "sips"]),
    st.one_of(st.just(""), _word.map(lambda u: u + "@")),
    _host,
    _port,
    _uri_params,
)
_display = st.one_of(
    st.just(""),
    _token.map(lambda t: t + " "),
    st.text(alphabet='abc ,;<>:@\\"', max_size=8).map(
        lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '" '
    ),
)
_name_addr = st.builds(lambda d, u: f"{d}<{u}>", _display, _sip_uri)
_unknown_value = st.text(alphabet="abcXYZ019 ;,=<>\"'/:@", max_size=20).map(str.strip)


@st.composite
def valid_request(draw: st.DrawFn) -> bytes:
    method = draw(st.one_of(st.sampled_from(["INVITE", "OPTIONS", "BYE", "REGISTER"]), _token))
    lines = [
        f"{method} {draw(_sip_uri)} SIP/2.0",
        f"Via: SIP/2.0/{draw(st.sampled_from(['UDP', 'TCP', 'TLS']))} {draw(_host)}{draw(_port)}"
        f";branch=z9hG4bK{draw(_word)}",
        f"From: {draw(_name_addr)};tag={draw(_word)}",
        f"To: {draw(_name_addr)}",
        f"Call-ID: {draw(_word)}@{draw(_word)}",
        f"CSeq: {draw(st.integers(0, 2**32 - 1))} {method}",
        f"Max-Forwards: {draw(st.integers(0, 255))}",
    ]
    for _ in range(draw(st.integers(0, 3))):
        lines.append(f"Contact: {draw(_name_addr)}")
    for _ in range(draw(st.integers(0, 3))):
        lines.append(f"X-{draw(_word)}: {draw(_unknown_value)}")
    body = draw(st.binary(max_size=40))
    lines.append(f"Content-Length: {len(body)}")
    order = draw(st.permutations(lines[1:]))
    return ("\r\n".join([lines[0], *order]) + "\r\n\r\n").encode() + body


def _without_cl(msg: SipMessage) -> list[tuple[str, str]]:
    return [(n, v) for n, v in msg.headers.items() if n != "Content-Length"]


@settings(max_examples=300, deadline=None)
@given(valid_request())
def test_round_trip_of_valid_messages(data: bytes) -> None:
    msg = parse_message(data)
    assert isinstance(msg, SipRequest)
    again = parse_message(bytes(msg))
    assert isinstance(again, SipRequest)
    assert (again.method, again.uri, again.body) == (msg.method, msg.uri, msg.body)
    # bytes() writes one Content-Length, computed, last; every other line keeps its order
    assert _without_cl(again) == _without_cl(msg)
    assert again.headers.get_all("Content-Length") == [str(len(msg.body))]
    assert again.request_uri == msg.request_uri
    assert (again.from_, again.to, again.cseq) == (msg.from_, msg.to, msg.cseq)
    assert again.vias == msg.vias
    assert again.contacts == msg.contacts
    assert bytes(again) == bytes(msg)
    # framed on a stream the same bytes come out whole
    assert StreamFramer().feed(bytes(msg)) == [bytes(msg)]
