"""Dialog core (sans-I/O): creation from both sides, in-dialog requests, transitions."""

from __future__ import annotations

import pytest

from sessioncore.sip.dialog import (
    DIALOG_TRANSITIONS,
    Dialog,
    DialogState,
    DialogStateError,
    new_branch,
    new_tag,
)
from sessioncore.sip.message import SipRequest, SipResponse, make_response, parse_message

INVITE = (
    b"INVITE sip:bob@127.0.0.1:5070 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@127.0.0.1>;tag=a1\r\n'
    b"To: <sip:bob@127.0.0.1:5070>\r\n"
    b"Call-ID: c1@127.0.0.1\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Contact: <sip:alice@127.0.0.1:5060>\r\n"
    b"Record-Route: <sip:p1@127.0.0.2;lr>, <sip:p2@127.0.0.3;lr>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def _invite() -> SipRequest:
    msg = parse_message(INVITE)
    assert isinstance(msg, SipRequest)
    return msg


def _ok(req: SipRequest, tag: str = "b1") -> SipResponse:
    resp = make_response(
        req,
        200,
        to_tag=tag,
        headers=[
            ("Contact", "<sip:bob@127.0.0.9:5070>"),
            ("Record-Route", "<sip:p1@127.0.0.2;lr>, <sip:p2@127.0.0.3;lr>"),
        ],
    )
    parsed = parse_message(bytes(resp))
    assert isinstance(parsed, SipResponse)
    return parsed


def test_uac_dialog_from_2xx() -> None:
    req = _invite()
    d = Dialog.from_uac(req, _ok(req), "<sip:alice@127.0.0.1:5060>")
    assert d.state is DialogState.CONFIRMED
    assert d.key == ("c1@127.0.0.1", "a1", "b1")
    assert d.remote_target == "sip:bob@127.0.0.9:5070"
    # the UAC reverses the Record-Route set
    assert d.route_set == ["<sip:p2@127.0.0.3;lr>", "<sip:p1@127.0.0.2;lr>"]
    bye = d.create_request("BYE", via="SIP/2.0/UDP 127.0.0.1:5060;branch=" + new_branch())
    assert bye.cseq.seq == 8 and bye.cseq.method == "BYE"
    assert bye.uri == "sip:bob@127.0.0.9:5070"
    assert bye.headers.get_all("Route") == d.route_set
    assert bye.from_.tag == "a1" and bye.to.tag == "b1"
    assert d.next_hop_uri() == "sip:p2@127.0.0.3;lr"
    ack = d.create_request("ACK", via="SIP/2.0/UDP 127.0.0.1:5060;branch=x", cseq=7)
    assert ack.cseq.seq == 7 and d.local_seq == 8  # ACK does not advance CSeq
    assert parse_message(bytes(bye)).call_id == "c1@127.0.0.1"


def test_uas_dialog_and_remote_cseq_rules() -> None:
    req = _invite()
    tag = new_tag()
    d = Dialog.from_uas(req, tag, "<sip:bob@127.0.0.1:5070>")
    assert d.state is DialogState.EARLY
    assert d.key == ("c1@127.0.0.1", tag, "a1")
    assert d.remote_target == "sip:alice@127.0.0.1:5060"
    assert d.route_set == ["<sip:p1@127.0.0.2;lr>", "<sip:p2@127.0.0.3;lr>"]
    d.transition("2xx")
    assert d.state is DialogState.CONFIRMED
    bye = d.create_request("BYE", via="SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKq")
    assert bye.cseq.seq == 1  # our own CSeq space starts fresh
    later = parse_message(INVITE.replace(b"CSeq: 7", b"CSeq: 9"))
    earlier = parse_message(INVITE.replace(b"CSeq: 7", b"CSeq: 3"))
    assert isinstance(later, SipRequest) and isinstance(earlier, SipRequest)
    assert d.check_remote_cseq(later)
    assert not d.check_remote_cseq(earlier)  # lower than the last one: 500


def test_strict_route_puts_target_last() -> None:
    req = _invite()
    d = Dialog.from_uac(req, _ok(req), "<sip:alice@127.0.0.1:5060>")
    d.route_set = ["<sip:strict@127.0.0.5>", "<sip:p1@127.0.0.2;lr>"]
    bye = d.create_request("BYE", via="SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKs")
    assert bye.uri == "sip:strict@127.0.0.5"
    assert bye.headers.get_all("Route") == ["<sip:p1@127.0.0.2;lr>", "<sip:bob@127.0.0.9:5070>"]


def test_target_refresh() -> None:
    req = _invite()
    d = Dialog.from_uac(req, _ok(req), "<sip:alice@127.0.0.1:5060>")
    reinvite = parse_message(
        INVITE.replace(b"Contact: <sip:alice@127.0.0.1:5060>", b"Contact: <sip:moved@127.0.0.7>")
    )
    assert isinstance(reinvite, SipRequest)
    d.refresh_target(reinvite)
    assert d.remote_target == "sip:moved@127.0.0.7"


def test_impossible_transition_raises() -> None:
    req = _invite()
    d = Dialog.from_uas(req, "t", "<sip:bob@127.0.0.1>")
    d.transition("bye")
    assert d.state is DialogState.TERMINATED
    with pytest.raises(DialogStateError):
        d.transition("2xx")
    assert (DialogState.TERMINATED, "2xx") not in DIALOG_TRANSITIONS


def test_tags_and_branches_are_unique() -> None:
    tags = {new_tag() for _ in range(1000)}
    branches = {new_branch() for _ in range(1000)}
    assert len(tags) == 1000 and len(branches) == 1000
    assert all(b.startswith("z9hG4bK") for b in branches)
