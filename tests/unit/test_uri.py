"""SIP and absolute URIs: parsing, serialization, errors, and the fast path's agreement."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessioncore.errors import HeaderInjectionError, InvalidArgumentError, SipParseError
from sessioncore.sip.uri import (
    AbsoluteUri,
    SipUri,
    _parse_uri_full,
    check_header_value,
    format_host,
    parse_host_port,
    parse_uri,
)


def sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


@pytest.mark.parametrize(
    ("text", "scheme", "user", "password", "host", "port"),
    [
        ("sip:alice@example.com", "sip", "alice", None, "example.com", None),
        ("sips:alice@example.com:5061", "sips", "alice", None, "example.com", 5061),
        ("sip:example.com", "sip", None, None, "example.com", None),
        ("sip:127.0.0.1:5060", "sip", None, None, "127.0.0.1", 5060),
        ("sip:alice:secret@host", "sip", "alice", "secret", "host", None),
        ("sip:alice:@host", "sip", "alice", "", "host", None),
        ("sip:alice:a:b@host", "sip", "alice", "a:b", "host", None),
        ("SIP:Bob@Host.Example", "sip", "Bob", None, "Host.Example", None),
        (
            "sip:+1-555-0100;phone-context=x@gw",
            "sip",
            "+1-555-0100;phone-context=x",
            None,
            "gw",
            None,
        ),
        ("sip:[::1]:5060", "sip", None, None, "::1", 5060),
        ("sip:bob@[2001:db8::10]", "sip", "bob", None, "2001:db8::10", None),
        ("sip:h:0", "sip", None, None, "h", 0),
        ("sip:h:65535", "sip", None, None, "h", 65535),
    ],
)
def test_parts(
    text: str, scheme: str, user: str | None, password: str | None, host: str, port: int | None
) -> None:
    uri = sip(text)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        scheme,
        user,
        password,
        host,
        port,
    )


def test_params_with_and_without_values_keep_order() -> None:
    uri = sip("sip:alice@example.com;transport=TCP;lr;maddr=10.0.0.1;ttl=5")
    assert uri.params == {"transport": "TCP", "lr": None, "maddr": "10.0.0.1", "ttl": "5"}
    assert list(uri.params) == ["transport", "lr", "maddr", "ttl"]
    assert uri.transport == "tcp"
    assert str(uri) == "sip:alice@example.com;transport=TCP;lr;maddr=10.0.0.1;ttl=5"


def test_headers() -> None:
    uri = sip("sip:bob@example.com;lr?subject=hi&priority=urgent")
    assert uri.headers == {"subject": "hi", "priority": "urgent"}
    assert uri.params == {"lr": None}
    assert str(uri) == "sip:bob@example.com;lr?subject=hi&priority=urgent"


def test_escapes_kept_verbatim() -> None:
    uri = sip("sip:sips%3Auser%40example.com@example.net;p=a%20b")
    assert uri.user == "sips%3Auser%40example.com"
    assert uri.params == {"p": "a%20b"}
    assert str(uri) == "sip:sips%3Auser%40example.com@example.net;p=a%20b"


def test_ipv6_round_trip_and_host_port() -> None:
    uri = sip("sip:[2001:db8::1]:5070;transport=udp")
    assert uri.host == "2001:db8::1"
    assert uri.host_port == "[2001:db8::1]:5070"
    assert str(uri) == "sip:[2001:db8::1]:5070;transport=udp"


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@example.com",
        "sips:a:b@h:1;x;y=z",
        "sip:+1;isub=2@gw;user=phone",
        "sip:[::1];lr",
        "sip:h?a=b&c=d",
        "sip:u%41@h",
    ],
)
def test_str_round_trip(text: str) -> None:
    assert str(parse_uri(text)) == text


def test_copy_is_independent() -> None:
    uri = sip("sip:a@h;x=1?h=v")
    c = uri.copy()
    c.params["y"] = None
    c.headers["k"] = "v"
    assert uri.params == {"x": "1"}
    assert uri.headers == {"h": "v"}
    assert c == SipUri("h", "a", None, "sip", None, {"x": "1", "y": None}, {"h": "v", "k": "v"})


def test_sipuri_parse_rejects_other_schemes_with_416() -> None:
    with pytest.raises(SipParseError) as info:
        SipUri.parse("tel:+15550100")
    assert info.value.status == 416


@pytest.mark.parametrize(
    ("text", "scheme"),
    [
        ("tel:+1-555-0100;phone-context=example.com", "tel"),
        ("urn:service:sos", "urn"),
        ("mailto:bob@example.com", "mailto"),
        ("TEL:+1", "tel"),
    ],
)
def test_absolute_uris(text: str, scheme: str) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, AbsoluteUri)
    assert uri.scheme == scheme
    assert str(uri) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "example.com",
        ":foo",
        "1sip:a@h",
        "tel:",
        "sip:",
        "sip:@h",
        "sip::pw@h",
        "sip:a@",
        "sip:a@h:",
        "sip:a@h:65536",
        "sip:a@h:123456",
        "sip:a@h:5x",
        "sip:a@h:\u00b2",  # a non-ASCII digit
        "sip:a@h:\u0661",  # ARABIC-INDIC DIGIT ONE
        "sip:a b@h",
        "sip:a@h\t",
        "sip:a@h>",
        'sip:"a"@h',
        "sip:a@h;",
        "sip:a@h;=x",
        "sip:a@h;x=",
        "sip:a@h;x=a=b",
        "sip:a@h;x=@",
        "sip:a@h?x",
        "sip:a@h?=y",
        "sip:a%4@h",
        "sip:a%zz@h",
        "sip:a%@h",
        "sip:a@ho$t",
        "sip:a@[::1",
        "sip:a@[nonsense]",
        "sip:a@[::1]x",
        "sip:a@[::1]:99999",
        "sip:a\r\n@h",
    ],
)
def test_bad_uris_raise(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com", ("example.com", None)),
        ("example.com:5060", ("example.com", 5060)),
        ("[::1]", ("::1", None)),
        ("[::1]:5061", ("::1", 5061)),
        ("10.0.0.1:1", ("10.0.0.1", 1)),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", ":5060", "h:", "h:-1", "h:70000", "h:1:2", "h p", "[::1", "[zz]", "[::1]5", "h:\u00b2"],
)
def test_parse_host_port_errors(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_host_port(text, "test")


def test_format_host() -> None:
    assert format_host("::1") == "[::1]"
    assert format_host("example.com") == "example.com"


def test_check_header_value() -> None:
    assert check_header_value("Alice Smith") == "Alice Smith"
    for bad in ("a\rb", "a\nb", "a\x00b", "\r\nVia: evil"):
        with pytest.raises(HeaderInjectionError):
            check_header_value(bad, "display name")
    # callers may catch it as a plain argument error too
    with pytest.raises(InvalidArgumentError):
        check_header_value("x\n")


# --- the fast path must agree with the full grammar check -----------------------------------

_URI_ALPHABET = "ab1:@;=?&%[]<>. -_!~*'()+$,/\"\t" + "\u00b2"


def _full(text: str) -> object:
    try:
        return _parse_uri_full(text)
    except SipParseError:
        return SipParseError


def _fast(text: str) -> object:
    try:
        return parse_uri(text)
    except SipParseError:
        return SipParseError


@given(st.text(alphabet=_URI_ALPHABET, max_size=30))
def test_fast_path_agrees_with_full_path_on_any_text(body: str) -> None:
    for text in ("sip:" + body, "sips:" + body, body):
        assert _fast(text) == _full(text)


_user = st.text(alphabet="az09-_.!~*'()&=+$,;?/:%", min_size=0, max_size=8)
_host = st.sampled_from(["h", "example.com", "10.0.0.1", "[::1]", "a_b-c.d", ""])
_port = st.sampled_from(["", ":5060", ":0", ":65535", ":65536", ":123456", ":", ":x"])
_params = st.lists(
    st.tuples(
        st.text(alphabet="az09-[]:%=@", max_size=4), st.text(alphabet="az09-:=@", max_size=4)
    ),
    max_size=3,
)


@given(st.sampled_from(["sip", "sips"]), _user, _host, _port, _params)
def test_fast_path_agrees_with_full_path_on_uri_shapes(
    scheme: str, user: str, host: str, port: str, params: list[tuple[str, str]]
) -> None:
    text = f"{scheme}:" + (f"{user}@" if user else "") + host + port
    text += "".join(f";{n}={v}" if v else f";{n}" for n, v in params)
    assert _fast(text) == _full(text)
