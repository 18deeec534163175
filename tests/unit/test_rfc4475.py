"""Every RFC 4475 torture message: valid ones parse to the right values, invalid ones raise."""

from __future__ import annotations

import pytest

from sessioncore.errors import SipParseError
from sessioncore.sip.message import SipRequest, SipResponse, parse_message
from sessioncore.sip.uri import AbsoluteUri, SipUri
from tests.rfc4475 import DATA, EXPECTED, load


def test_every_file_is_covered() -> None:
    files = {p.stem for p in DATA.glob("*.dat")}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(n for n, (v, _) in EXPECTED.items() if v != "invalid"))
def test_parses(name: str) -> None:
    parse_message(load(name, loopback=False))


@pytest.mark.parametrize("name", sorted(n for n, (v, _) in EXPECTED.items() if v == "invalid"))
def test_invalid_raises_typed_error(name: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load(name, loopback=False))
    assert 400 <= info.value.status < 600
    assert str(info.value)


def test_wsinv_values() -> None:
    msg = parse_message(load("wsinv", loopback=False))
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE"
    assert msg.to.tag == "1918181833n"
    assert msg.from_.tag == "98asjd8"
    assert msg.from_.display_name == 'J Rosenberg \\"'
    assert msg.max_forwards == 68
    assert (msg.cseq.seq, msg.cseq.method) == (9, "INVITE")
    assert msg.call_id == "wsinv.ndaksdj@192.0.2.1"
    vias = msg.vias
    assert [v.transport for v in vias] == ["UDP", "TCP", "UDP"]
    assert [v.branch for v in vias] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert vias[1].host == "spindle.example.com"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("Subject") == ""
    contact = msg.contacts[0]
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(msg.body) == 150
    assert msg.content_type == "application/sdp"


def test_intmeth_values() -> None:
    msg = parse_message(load("intmeth", loopback=False))
    assert isinstance(msg, SipRequest)
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    ruri = msg.request_uri
    assert isinstance(ruri, SipUri)
    assert ruri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert ruri.host == "example.com"


def test_escaping_is_not_undone() -> None:
    msg = parse_message(load("esc01", loopback=False))
    assert isinstance(msg, SipRequest)
    ruri = msg.request_uri
    assert isinstance(ruri, SipUri)
    assert ruri.user == "sips%3Auser%40example.com"
    msg2 = parse_message(load("esc02", loopback=False))
    assert isinstance(msg2, SipRequest)
    assert msg2.method == "RE%47IST%45R"
    assert len(msg2.contacts) == 2
    assert msg2.from_.display_name == "%Z%45"


def test_escnull_keeps_both_contacts() -> None:
    msg = parse_message(load("escnull", loopback=False))
    users = [c.uri.user for c in msg.contacts if isinstance(c.uri, SipUri)]
    assert users == ["%00", "%00%00"]


def test_semiuri_user_part() -> None:
    msg = parse_message(load("semiuri", loopback=False))
    assert isinstance(msg, SipRequest)
    ruri = msg.request_uri
    assert isinstance(ruri, SipUri)
    assert ruri.user == "user;par=u%40example.net"
    assert ruri.host == "example.com"


def test_dblreq_ignores_trailing_octets() -> None:
    msg = parse_message(load("dblreq", loopback=False))
    assert isinstance(msg, SipRequest)
    assert msg.method == "REGISTER"
    assert msg.body == b""


def test_mpart01_binary_body_framed_by_content_length() -> None:
    data = load("mpart01", loopback=False)
    msg = parse_message(data)
    assert len(msg.body) == int(msg.headers.get("Content-Length") or 0)
    assert b"\x00" in msg.body


def test_responses() -> None:
    unreason = parse_message(load("unreason", loopback=False))
    assert isinstance(unreason, SipResponse)
    assert unreason.status == 200
    assert "простое" in unreason.reason
    noreason = parse_message(load("noreason", loopback=False))
    assert isinstance(noreason, SipResponse)
    assert (noreason.status, noreason.reason) == (100, "")


def test_unknown_schemes_parse() -> None:
    msg = parse_message(load("unksm2", loopback=False))
    assert isinstance(msg.to.uri, AbsoluteUri)
    assert msg.to.uri.scheme == "isbn"
    assert isinstance(msg.from_.uri, AbsoluteUri)
    novel = parse_message(load("novelsc", loopback=False))
    assert isinstance(novel, SipRequest)
    assert isinstance(novel.request_uri, AbsoluteUri)


def test_inv2543_legacy() -> None:
    msg = parse_message(load("inv2543", loopback=False))
    assert msg.from_.tag is None
    assert msg.branch is None
    assert msg.max_forwards is None
    assert msg.body.startswith(b"v=0")


def test_specific_statuses() -> None:
    for name, status in (("badvers", 505), ("mismatch02", 501), ("mismatch01", 400)):
        with pytest.raises(SipParseError) as info:
            parse_message(load(name, loopback=False))
        assert info.value.status == status, name


def test_loopback_rewrite_keeps_framing() -> None:
    for name, (verdict, _) in EXPECTED.items():
        if verdict == "invalid":
            continue
        original = parse_message(load(name, loopback=False))
        rewritten = parse_message(load(name))
        assert len(original.body) == len(rewritten.body), name
