"""SIP messages: parsing, serialization, framing (datagram and stream), validation, responses."""

from __future__ import annotations

import pytest

from sessioncore.errors import SipParseError
from sessioncore.sip.message import (
    SipRequest,
    SipResponse,
    StreamFramer,
    make_response,
    parse_message,
)
from sessioncore.sip.uri import SipUri

SDP = (
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def invite(body: bytes = SDP, *, cl: str | None = None, extra: str = "") -> bytes:
    length = str(len(body)) if cl is None else cl
    head = (
        "INVITE sip:service@127.0.0.1:5062 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-12345-1-0;rport\r\n"
        "From: sipp <sip:sipp@127.0.0.1:5061>;tag=12345SIPpTag001\r\n"
        "To: service <sip:service@127.0.0.1:5062>\r\n"
        "Call-ID: 1-12345@127.0.0.1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: sip:sipp@127.0.0.1:5061\r\n"
        "Max-Forwards: 70\r\n"
        "Subject: Performance Test\r\n"
        "Content-Type: application/sdp\r\n" + extra
    )
    if length != "-":
        head += f"Content-Length: {length}\r\n"
    return head.encode() + b"\r\n" + body


def request(method: str = "OPTIONS", headers: str = "", *, cseq: str | None = None) -> bytes:
    cseq = cseq if cseq is not None else f"1 {method}"
    base = (
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKabc\r\n"
        "From: <sip:alice@example.com>;tag=a\r\n"
        "To: <sip:bob@example.com>\r\n"
        "Call-ID: c1@host\r\n"
        f"CSeq: {cseq}\r\n"
    )
    return (base + headers + "Content-Length: 0\r\n\r\n").encode()


def replace_header(data: bytes, name: str, line: str | None) -> bytes:
    lines = data.split(b"\r\n")
    out = []
    for ln in lines:
        if ln.lower().startswith(name.lower().encode() + b":"):
            if line is not None:
                out.append(line.encode())
        else:
            out.append(ln)
    return b"\r\n".join(out)


# --- parsing and round trips -------------------------------------------------------------


def test_typical_invite() -> None:
    msg = parse_message(invite())
    assert isinstance(msg, SipRequest)
    assert (msg.method, msg.uri) == ("INVITE", "sip:service@127.0.0.1:5062")
    assert msg.call_id == "1-12345@127.0.0.1"
    assert (msg.cseq.seq, msg.cseq.method) == (1, "INVITE")
    assert msg.from_.tag == "12345SIPpTag001"
    assert msg.from_.display_name == "sipp"
    assert msg.to.tag is None
    assert msg.branch == "z9hG4bK-12345-1-0"
    assert msg.top_via.params["rport"] is None
    assert msg.max_forwards == 70
    assert msg.content_type == "application/sdp"
    assert msg.body == SDP
    ruri = msg.request_uri
    assert isinstance(ruri, SipUri)
    assert (ruri.user, ruri.host, ruri.port) == ("service", "127.0.0.1", 5062)
    [contact] = msg.contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.port == 5061


def test_request_round_trip() -> None:
    data = invite()
    msg = parse_message(data)
    assert bytes(msg) == data
    again = parse_message(bytes(msg))
    assert isinstance(again, SipRequest)
    assert list(again.headers.items()) == list(msg.headers.items())
    assert again.body == msg.body


def test_response_round_trip() -> None:
    data = (
        b"SIP/2.0 180 Ringing\r\n"
        b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: x\r\nCSeq: 5 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(data)
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (180, "Ringing")
    assert bytes(msg) == data
    assert repr(msg) == "<SipResponse 180 Ringing>"


def test_response_reason_phrases() -> None:
    data = request().replace(b"OPTIONS sip:bob@example.com SIP/2.0", b"SIP/2.0 486 Busy, really")
    msg = parse_message(data)
    assert isinstance(msg, SipResponse)
    assert msg.reason == "Busy, really"
    empty = parse_message(data.replace(b"486 Busy, really", b"486 "))
    assert isinstance(empty, SipResponse)
    assert empty.reason == ""
    assert SipResponse(404).reason == "Not Found"
    assert SipResponse(299).reason == "Unknown"


def test_unknown_headers_pass_through_byte_identical() -> None:
    extra = 'X-Weird:   ;;,,;; "odd" <value>\r\nP-Thing: a,b , c\r\nx-lower: Keep Case\r\n'
    data = invite(extra=extra)
    msg = parse_message(data)
    out = bytes(msg)
    assert b'X-Weird: ;;,,;; "odd" <value>\r\n' in out
    assert b"P-Thing: a,b , c\r\n" in out
    assert b"x-lower: Keep Case\r\n" in out
    assert msg.headers.get("x-weird") == ';;,,;; "odd" <value>'


def test_compact_forms() -> None:
    data = (
        b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
        b"v: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"f: <sip:a@h>;tag=1\r\nt: <sip:b@h>\r\ni: cid\r\nCSeq: 1 OPTIONS\r\n"
        b"m: <sip:a@10.0.0.1>\r\nk: timer\r\ns: hello\r\nc: text/plain\r\nl: 2\r\n\r\nhi"
    )
    msg = parse_message(data)
    assert msg.call_id == "cid"
    assert msg.headers.get("Supported") == "timer"
    assert msg.headers.get("Subject") == "hello"
    assert msg.content_type == "text/plain"
    assert msg.body == b"hi"
    assert len(msg.contacts) == 1
    out = bytes(msg)
    assert b"Call-ID: cid\r\n" in out and b"Via: SIP/2.0/UDP" in out
    assert out.endswith(b"Content-Length: 2\r\n\r\nhi")


def test_folding_is_unfolded() -> None:
    data = request(
        headers="Subject: first\r\n  second\r\n\tthird\r\n"
        "Route: <sip:p1@h;lr>,\r\n <sip:p2@h;lr>\r\n"
    )
    msg = parse_message(data)
    assert msg.headers.get("Subject") == "first second third"
    assert msg.headers.values("Route") == ["<sip:p1@h;lr>", "<sip:p2@h;lr>"]


def test_repeated_and_comma_separated_headers() -> None:
    data = request(
        headers="Via: SIP/2.0/UDP p1;branch=z9hG4bK2, SIP/2.0/TCP p2;branch=z9hG4bK3\r\n"
        'Contact: <sip:a@h1>, "X, Y" <sip:a@h2>\r\nContact: <sip:a@h3>;q=0.1\r\n'
        "Supported: timer, 100rel\r\nSupported: path\r\n"
    )
    msg = parse_message(data)
    assert [v.branch for v in msg.vias] == ["z9hG4bKabc", "z9hG4bK2", "z9hG4bK3"]
    assert [v.transport for v in msg.vias] == ["UDP", "UDP", "TCP"]
    assert [str(c.uri) for c in msg.contacts] == ["sip:a@h1", "sip:a@h2", "sip:a@h3"]
    assert msg.contacts[1].display_name == "X, Y"
    assert msg.headers.values("Supported") == ["timer", "100rel", "path"]
    assert msg.headers.count("Via") == 2


def test_contact_star() -> None:
    msg = parse_message(request("REGISTER", "Contact: *\r\nExpires: 0\r\n"))
    assert msg.contacts == []


def test_bare_lf_line_endings() -> None:
    head, _, body = invite().partition(b"\r\n\r\n")
    data = head.replace(b"\r\n", b"\n") + b"\n\n" + body
    msg = parse_message(data)
    assert msg.body == SDP
    assert isinstance(msg, SipRequest)
    assert msg.call_id == "1-12345@127.0.0.1"


def test_non_utf8_header_bytes_survive() -> None:
    data = request().replace(b"Content-Length", b"X-Bin: caf\xe9\r\nContent-Length")
    msg = parse_message(data)
    assert bytes(msg) == data


# --- datagram Content-Length framing --------------------------------------------------------


def test_datagram_without_content_length_takes_the_rest() -> None:
    msg = parse_message(invite(cl="-"))
    assert msg.body == SDP
    with pytest.raises(SipParseError):
        parse_message(invite(cl="-"), stream=True)


def test_datagram_content_length_too_large() -> None:
    with pytest.raises(SipParseError):
        parse_message(invite(cl=str(len(SDP) + 1)))


def test_datagram_extra_octets_are_ignored() -> None:
    msg = parse_message(invite() + b"garbage after the body")
    assert msg.body == SDP
    short = parse_message(invite(cl="3"))
    assert short.body == SDP[:3]
    assert parse_message(invite(cl="0")).body == b""


@pytest.mark.parametrize("cl", ["abc", "-1", "1.5", "\u00b2", "99999999999", "5, 6"])
def test_bad_content_length(cl: str) -> None:
    with pytest.raises(SipParseError):
        parse_message(invite(cl=cl))


def test_conflicting_and_equal_duplicate_content_length() -> None:
    same = invite(extra=f"Content-Length: {len(SDP)}\r\n")
    assert parse_message(same).body == SDP
    with pytest.raises(SipParseError):
        parse_message(invite(extra="l: 3\r\n"))


def test_no_blank_line() -> None:
    with pytest.raises(SipParseError):
        parse_message(b"OPTIONS sip:a@h SIP/2.0\r\nVia: x")
    # the whole datagram is headers when it ends in CRLF without a blank line
    data = request()[:-2]
    assert isinstance(parse_message(data), SipRequest)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"OPTIONS sip:a@h SIP/2.0 extra\r\n\r\n",
        b"OPTIONS  sip:a@h SIP/2.0\r\n\r\n",
        b"OPTIONS sip:a@h\r\n\r\n",
        b"OPT@ONS sip:a@h SIP/2.0\r\n\r\n",
        b"SIP/2.0\r\n\r\n",
        b"SIP/2.0 2000 OK\r\n\r\n",
        b"SIP/2.0 099 Low\r\n\r\n",
        b"SIP/2.0 1\xc2\xb200 OK\r\n\r\n",
        b"OPTIONS sip:a@h SIP/2.0\r\nNoColonHere\r\n\r\n",
        b"OPTIONS sip:a@h SIP/2.0\r\nBad Name: x\r\n\r\n",
        b"OPTIONS sip:a@h SIP/2.0\r\n: empty name\r\n\r\n",
    ],
)
def test_malformed_framing_raises(data: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_message(data, validate=False)


def test_version_errors_are_505() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(request().replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1))
    assert info.value.status == 505
    with pytest.raises(SipParseError) as info:
        parse_message(b"SIP/3.0 200 OK\r\n\r\n")
    assert info.value.status == 505


# --- StreamFramer ----------------------------------------------------------------------------


def test_framer_several_messages_in_one_chunk() -> None:
    a, b = invite(), request()
    framer = StreamFramer()
    assert framer.feed(a + b + a) == [a, b, a]
    assert framer.buffered == 0


def test_framer_byte_by_byte() -> None:
    data = invite() + request()
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
    assert out == [invite(), request()]
    assert framer.buffered == 0
    assert parse_message(out[0], stream=True).body == SDP


def test_framer_partial_body_waits() -> None:
    data = invite()
    framer = StreamFramer()
    assert framer.feed(data[:-5]) == []
    assert framer.buffered == len(data) - 5
    assert framer.feed(data[-5:]) == [data]


def test_framer_skips_crlf_keepalives() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.feed(b"\r\n" + request() + b"\r\n\r\n\r\n") == [request()]
    assert framer.buffered == 0


def test_framer_compact_content_length() -> None:
    data = request().replace(b"Content-Length: 0", b"l: 2") + b"hi"
    assert StreamFramer().feed(data) == [data]


@pytest.mark.parametrize(
    "data",
    [
        invite(cl="-"),
        invite(cl="x"),
        invite(cl="-5"),
        invite(cl="12345678901"),
    ],
)
def test_framer_missing_or_bad_content_length(data: bytes) -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(data)


def test_framer_oversize() -> None:
    with pytest.raises(SipParseError) as info:
        StreamFramer(max_size=200).feed(invite())
    assert info.value.status == 513
    with pytest.raises(SipParseError):
        StreamFramer(max_size=100).feed(b"X" * 150)  # headers never end
    with pytest.raises(SipParseError):
        StreamFramer(max_size=1000).feed(request().replace(b"Length: 0", b"Length: 5000"))


# --- make_response ---------------------------------------------------------------------------


def test_make_response_copies_and_tags() -> None:
    req = parse_message(request("INVITE", "Via: SIP/2.0/UDP p2;branch=z9hG4bK2\r\n"))
    assert isinstance(req, SipRequest)
    resp = make_response(req, 180, to_tag="xyz", headers=[("Contact", "<sip:bob@10.0.0.2>")])
    assert (resp.status, resp.reason) == (180, "Ringing")
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    for name in ("From", "Call-ID", "CSeq"):
        assert resp.headers.get(name) == req.headers.get(name)
    assert resp.to.tag == "xyz"
    assert resp.headers.get("To") == "<sip:bob@example.com>;tag=xyz"
    assert resp.headers.get("Contact") == "<sip:bob@10.0.0.2>"
    assert "Max-Forwards" not in resp.headers
    again = parse_message(bytes(resp))
    assert isinstance(again, SipResponse)
    assert again.to.tag == "xyz"


def test_make_response_no_tag_on_100_and_keeps_existing_tag() -> None:
    req = parse_message(request("INVITE"))
    assert isinstance(req, SipRequest)
    trying = make_response(req, 100, to_tag="xyz")
    assert trying.to.tag is None
    tagged = parse_message(
        request("BYE").replace(b"To: <sip:bob@example.com>", b"To: <sip:b@h>;tag=t1")
    )
    assert isinstance(tagged, SipRequest)
    assert make_response(tagged, 200, to_tag="new").to.tag == "t1"
    assert make_response(req, 200, "Fine", body=b"x").reason == "Fine"


# --- validate() --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_mandatory_header(name: str) -> None:
    data = replace_header(request(), name, None)
    assert isinstance(parse_message(data, validate=False), SipRequest)
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == 400


@pytest.mark.parametrize(
    "line",
    [
        "From: <sip:x@h>;tag=2",
        "To: <sip:x@h>",
        "Call-ID: other",
        "CSeq: 1 OPTIONS",
        "Max-Forwards: 1",
    ],
)
def test_duplicate_single_header(line: str) -> None:
    data = request(headers=line + "\r\nMax-Forwards: 70\r\n")
    with pytest.raises(SipParseError, match="more than one"):
        parse_message(data)


def test_cseq_method_mismatch_400_vs_501() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(request("OPTIONS", cseq="1 INVITE"))
    assert info.value.status == 400
    with pytest.raises(SipParseError) as info:
        parse_message(request("FOOBAR", cseq="1 INVITE"))
    assert info.value.status == 501
    assert isinstance(parse_message(request("FOOBAR")), SipRequest)  # unknown but consistent


@pytest.mark.parametrize("mf", ["256", "-1", "abc", "", "\u00b2", "9" * 5000])
def test_bad_max_forwards(mf: str) -> None:
    with pytest.raises(SipParseError):
        parse_message(request(headers=f"Max-Forwards: {mf}\r\n"))


def test_max_forwards_limits() -> None:
    assert parse_message(request(headers="Max-Forwards: 0\r\n")).max_forwards == 0
    assert parse_message(request(headers="Max-Forwards: 255\r\n")).max_forwards == 255
    assert parse_message(request()).max_forwards is None


def test_request_uri_with_headers_is_rejected() -> None:
    data = request().replace(b"sip:bob@example.com SIP/2.0", b"sip:bob@example.com?x=y SIP/2.0", 1)
    with pytest.raises(SipParseError):
        parse_message(data)
    assert isinstance(parse_message(data, validate=False), SipRequest)


@pytest.mark.parametrize(
    "replacement",
    [
        ("Call-ID: c1@host", "Call-ID:  "),
        ("CSeq: 1 OPTIONS", "CSeq: one OPTIONS"),
        ("From: <sip:alice@example.com>;tag=a", "From: <sip:alice@example.com"),
        ("To: <sip:bob@example.com>", "To: Bad@Name <sip:b@h>"),
        ("Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKabc", "Via: SIP/2.0/UDP"),
        ("Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKabc", "Via: a,,b"),
    ],
)
def test_bad_mandatory_values(replacement: tuple[str, str]) -> None:
    old, new = replacement
    with pytest.raises(SipParseError):
        parse_message(request().replace(old.encode(), new.encode()))


def test_date_route_contact_checked() -> None:
    good = (
        "Date: Sat, 13 Nov 2010 23:29:00 GMT\r\nRoute: <sip:p@h;lr>\r\nRecord-Route: <sip:q@h>\r\n"
    )
    assert isinstance(parse_message(request(headers=good)), SipRequest)
    for bad in [
        "Date: yesterday\r\n",
        "Route: sip:p@h?x=y\r\n",
        "Record-Route: <sip:q@h\r\n",
        "Contact: <sip:a@h>;;x\r\n",
    ]:
        with pytest.raises(SipParseError):
            parse_message(request(headers=bad))


def test_response_specific_checks() -> None:
    base = request().replace(b"OPTIONS sip:bob@example.com SIP/2.0", b"SIP/2.0 503 Busy")
    ok = base.replace(
        b"Content-Length",
        b'Retry-After: 18000;duration=3600\r\nWarning: 399 h "x"\r\nContent-Length',
    )
    assert isinstance(parse_message(ok), SipResponse)
    for hdr in [
        "Retry-After: soon",
        "Retry-After: 99999999999",
        'Warning: 39 h "x"',
        "Warning: abc",
    ]:
        with pytest.raises(SipParseError):
            parse_message(base.replace(b"Content-Length", hdr.encode() + b"\r\nContent-Length"))


def test_validate_on_built_message() -> None:
    req = parse_message(request(), validate=False)
    assert isinstance(req, SipRequest)
    req.validate()
    req.headers.remove("Call-ID")
    req.invalidate()
    with pytest.raises(SipParseError):
        req.validate()
    with pytest.raises(SipParseError):
        _ = req.call_id
