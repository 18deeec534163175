"""Header values (NameAddr, Via, CSeq, parameters, lists) and the Headers collection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessioncore.errors import SipParseError
from sessioncore.sip.headers import (
    CSeq,
    Headers,
    NameAddr,
    Via,
    canonical_name,
    header_key,
    is_token,
    parse_params,
    split_header_list,
)
from sessioncore.sip.uri import AbsoluteUri, SipUri

# --- NameAddr ------------------------------------------------------------------------------


def test_quoted_display_name_with_escapes() -> None:
    na = NameAddr.parse(r'"J Rosenberg \\\"" <sip:jdrosen@example.com>;tag=98asjd8')
    assert na.display_name == 'J Rosenberg \\"'
    assert na.tag == "98asjd8"
    assert isinstance(na.uri, SipUri)
    assert na.uri.user == "jdrosen"


def test_quoted_display_name_with_specials_and_lws_before_bracket() -> None:
    na = NameAddr.parse('"Bob, <the> builder;x"   <sip:bob@h>')
    assert na.display_name == "Bob, <the> builder;x"
    assert na.params == {}
    assert str(na) == '"Bob, <the> builder;x" <sip:bob@h>'


def test_unquoted_token_display_names() -> None:
    assert NameAddr.parse("sipp <sip:sipp@127.0.0.1:5061>").display_name == "sipp"
    na = NameAddr.parse("Alice   Smith <sip:a@h>")
    assert na.display_name == "Alice Smith"
    assert str(na) == "Alice Smith <sip:a@h>"
    assert NameAddr.parse("<sip:a@h>").display_name is None


def test_name_addr_params_are_header_params_and_uri_params_stay_in_uri() -> None:
    na = NameAddr.parse("<sip:a@h;transport=tcp;lr>;tag=x;Expires=60;+sip.instance")
    assert isinstance(na.uri, SipUri)
    assert na.uri.params == {"transport": "tcp", "lr": None}
    assert na.params == {"tag": "x", "expires": "60", "+sip.instance": None}


def test_addr_spec_params_belong_to_the_header() -> None:
    na = NameAddr.parse("sip:alice@example.com;tag=abc;q=0.5")
    assert isinstance(na.uri, SipUri)
    assert na.uri.params == {}
    assert na.uri.user == "alice"
    assert na.params == {"tag": "abc", "q": "0.5"}
    assert na.tag == "abc"


def test_addr_spec_with_uri_headers_is_rejected() -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse("sip:a@h?subject=x")
    assert isinstance(NameAddr.parse("<sip:a@h?subject=x>").uri, SipUri)


def test_name_addr_with_other_scheme_and_ipv6() -> None:
    na = NameAddr.parse("<tel:+15550100>;tag=1")
    assert isinstance(na.uri, AbsoluteUri)
    assert na.tag == "1"
    v6 = NameAddr.parse("<sip:[::1]:5070>")
    assert isinstance(v6.uri, SipUri)
    assert (v6.uri.host, v6.uri.port) == ("::1", 5070)


def test_lws_around_params() -> None:
    na = NameAddr.parse("<sip:a@h> ; tag = x ; lr")
    assert na.params == {"tag": "x", "lr": None}


def test_quoted_param_value() -> None:
    na = NameAddr.parse('<sip:a@h>;x="a b;c"')
    assert na.params == {"x": '"a b;c"'}


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "Bad@Name <sip:a@h>",
        '"unterminated <sip:a@h>',
        '"name" sip:a@h',
        "<sip:a@h",
        "<sip:a@h> junk",
        "<sip:a@h>;",
        "<sip:a@h>;;tag=1",
        "<sip:a@h>;tag=",
        "<sip:a@h>;t@g=1",
        "<sip:a b@h>",
        "<>",
        "sip:a@h;tag",
        "a <b> <c>",
    ],
)
def test_bad_name_addrs(value: str) -> None:
    if value == "sip:a@h;tag":
        assert NameAddr.parse(value).params == {"tag": None}
        return
    with pytest.raises(SipParseError):
        NameAddr.parse(value)


def test_name_addr_str_round_trip() -> None:
    for text in ["<sip:a@h>;tag=x", "Bob <sip:b@h:5062;lr>", '"A \\"B\\"" <sip:c@h>']:
        assert str(NameAddr.parse(str(NameAddr.parse(text)))) == str(NameAddr.parse(text))


# --- Via -----------------------------------------------------------------------------------


def test_via_basic() -> None:
    via = Via.parse("SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport")
    assert (via.transport, via.host, via.port) == ("UDP", "127.0.0.1", 5061)
    assert via.branch == "z9hG4bK-1"
    assert via.params == {"branch": "z9hG4bK-1", "rport": None}
    assert str(via) == "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport"


def test_via_with_lws_and_lower_case() -> None:
    via = Via.parse(
        "sip / 2.0 / tcp   spindle.example.com ; branch = z9hG4bK9ikj8 ; received=10.0.0.1"
    )
    assert (via.transport, via.host, via.port) == ("TCP", "spindle.example.com", None)
    assert via.params == {"branch": "z9hG4bK9ikj8", "received": "10.0.0.1"}


def test_via_ipv6_sent_by_and_received() -> None:
    via = Via.parse(
        "SIP/2.0/UDP [2001:db8::9]:5060;received=[2001:db8::9];rport=5060;branch=z9hG4bKx"
    )
    assert via.host == "2001:db8::9"
    assert via.port == 5060
    assert via.sent_by == "[2001:db8::9]:5060"
    assert via.params["received"] == "[2001:db8::9]"
    assert via.params["rport"] == "5060"


def test_via_param_names_lowercased_values_kept() -> None:
    via = Via.parse("SIP/2.0/TLS h;Branch=z9hG4bKAbC;RPORT")
    assert via.params == {"branch": "z9hG4bKAbC", "rport": None}
    assert via.branch == "z9hG4bKAbC"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0/ h",
        "SIP/2.0/UDP h:99999",
        "SIP/2.0/UDP h:x",
        "SIP/3.0/UDP h",
        "XIP/2.0/UDP h",
        "SIP/2.0/UDP h extra",
        "SIP/2.0/U@P h",
        "SIP/2.0/UDP h;branch=",
        "SIP/2.0/UDP h;;branch=1",
        "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP ho$t",
        "SIP/2.0/UDP h:\u00b2",
    ],
)
def test_bad_vias(value: str) -> None:
    with pytest.raises(SipParseError):
        Via.parse(value)


# --- CSeq ----------------------------------------------------------------------------------


def test_cseq() -> None:
    assert CSeq.parse("1 INVITE") == CSeq(1, "INVITE")
    assert CSeq.parse("  4294967295\tBYE ") == CSeq(0xFFFFFFFF, "BYE")
    assert str(CSeq(7, "ACK")) == "7 ACK"


@pytest.mark.parametrize(
    "value",
    ["", "1", "INVITE", "4294967296 INVITE", "-1 INVITE", "1 INV ITE", "x INVITE", "1 IN@VITE",
     "\u00b2 INVITE", "9" * 5000 + " INVITE"],
)  # fmt: skip
def test_bad_cseq(value: str) -> None:
    with pytest.raises(SipParseError):
        CSeq.parse(value)


# --- parameters, lists, names --------------------------------------------------------------


def test_parse_params() -> None:
    assert parse_params("a=1;B=Two;flag", "t") == {"a": "1", "b": "Two", "flag": None}
    assert parse_params(" a = 1 ; b ", "t") == {"a": "1", "b": None}
    assert parse_params('q="x;y"', "t") == {"q": '"x;y"'}
    assert parse_params("received=[::1]", "t") == {"received": "[::1]"}
    for bad in ["", ";", "a;;b", "a=", "=1", "a=b=c", "a b=1", 'q="x', 'q="x"y', "a=<b>"]:
        with pytest.raises(SipParseError):
            parse_params(bad, "t")


def test_split_header_list() -> None:
    assert split_header_list("a, b ,c") == ["a", "b", "c"]
    assert split_header_list("single") == ["single"]
    assert split_header_list("  ") == []
    assert split_header_list('"Doe, John" <sip:j@h>, <sip:k@h;x=a,b>') == [
        '"Doe, John" <sip:j@h>',
        "<sip:k@h;x=a,b>",
    ]
    assert split_header_list(r'"a \" , b" <sip:x@h>, c') == [r'"a \" , b" <sip:x@h>', "c"]
    for bad in ["a,,b", "a,", ",a", '"open, x']:
        with pytest.raises(SipParseError):
            split_header_list(bad)


def test_names() -> None:
    assert canonical_name("v") == "Via"
    assert canonical_name("CALL-id") == "Call-ID"
    assert canonical_name("X-Custom") == "X-Custom"
    assert header_key("i") == "call-id"
    assert header_key("X-Custom") == "x-custom"
    assert is_token("INVITE")
    assert is_token("!interesting-Method0123456789_*+`.%indeed'~")
    assert not is_token("")
    assert not is_token("a b")
    assert not is_token("a:b")


# --- Headers ---------------------------------------------------------------------------------


def make() -> Headers:
    return Headers(
        [
            ("v", "SIP/2.0/UDP a;branch=z9hG4bK1"),
            ("Via", "SIP/2.0/UDP b;branch=z9hG4bK2, SIP/2.0/UDP c;branch=z9hG4bK3"),
            ("f", "<sip:a@h>;tag=1"),
            ("X-Thing", "one"),
            ("x-thing", "two"),
            ("Contact", '"Doe, J" <sip:j@h>, <sip:k@h>'),
            ("Subject", "a, b"),
        ]
    )


def test_get_is_case_insensitive_and_expands_compact_names() -> None:
    h = make()
    assert h.get("via") == "SIP/2.0/UDP a;branch=z9hG4bK1"
    assert h.get("V") == h.get("Via")
    assert h.get("From") == "<sip:a@h>;tag=1"
    assert h.get("X-THING") == "one"
    assert h.get("Missing") is None
    assert h.get("Missing", "d") == "d"
    assert "FROM" in h and "f" in h and "To" not in h
    assert 3 not in h


def test_get_all_values_count() -> None:
    h = make()
    assert h.get_all("x-thing") == ["one", "two"]
    assert h.count("Via") == 2
    assert h.count("v") == 2
    assert len(h.values("Via")) == 3
    assert h.values("Contact") == ['"Doe, J" <sip:j@h>', "<sip:k@h>"]
    assert h.values("Subject") == ["a, b"]  # not a list header: never split
    assert h.values("Nothing") == []


def test_canonical_spelling_on_the_way_in() -> None:
    h = make()
    names = [n for n, _ in h.items()]
    assert names[:3] == ["Via", "Via", "From"]
    assert names[3:5] == ["X-Thing", "x-thing"]  # unknown names kept as given


def test_set_replaces_all_at_first_place() -> None:
    h = make()
    h.set("x-thing", "three")
    assert h.get_all("X-Thing") == ["three"]
    assert list(h.items())[3] == ("x-thing", "three")  # written as given to set()
    h.set("To", "<sip:b@h>")
    assert list(h.items())[-1] == ("To", "<sip:b@h>")


def test_remove_prepend_remove_first_copy() -> None:
    h = make()
    c = h.copy()
    h.prepend("v", "SIP/2.0/TCP z;branch=z9hG4bK0")
    assert next(iter(h.items())) == ("Via", "SIP/2.0/TCP z;branch=z9hG4bK0")
    h.remove_first("Via")
    assert h.get("Via") == "SIP/2.0/UDP a;branch=z9hG4bK1"
    h.remove("VIA")
    assert h.count("via") == 0
    assert "Via" not in h
    assert c.count("Via") == 2  # the copy is independent
    assert len(c) == 7


def test_raw_items_layout() -> None:
    h = Headers([("i", "x@h")])
    assert h._items == [("call-id", "Call-ID", "x@h")]
    h2 = Headers._from_raw([("call-id", "Call-ID", "y")])
    assert h2.get("Call-ID") == "y"
    assert "Call-ID" in repr(h2)


# --- fast paths agree with the full parsers --------------------------------------------------

_ALPHABET = 'ab1 <>"\\;=:@.[],?%-' + "\t"


def _outcome(fn: object, value: str) -> object:
    try:
        return fn(value)  # type: ignore[operator]
    except SipParseError:
        return SipParseError


@given(st.text(alphabet=_ALPHABET, max_size=30))
def test_name_addr_fast_path_agrees_with_full_path(tail: str) -> None:
    for value in ("a <sip:" + tail, "<sip:a@h>" + tail, "sip:" + tail, tail):
        fast = _outcome(NameAddr.parse, value)
        v = value.strip()
        if not v:
            continue
        full = _outcome(NameAddr._parse_full, v) if ("<" in v or v[0] == '"') else fast
        assert fast == full


@given(st.text(alphabet="SIP/2.0UDh1:;=[] \tbx", max_size=40))
def test_via_parse_never_raises_anything_else(value: str) -> None:
    try:
        via = Via.parse(value)
    except SipParseError:
        return
    assert Via.parse(str(via)) == via
