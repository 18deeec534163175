"""Digest authentication: parsing, RFC test vectors, client <-> server round trips, retry rules."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessioncore.errors import HeaderInjectionError, InvalidArgumentError, ProtocolError
from sessioncore.sip.auth import (
    SUPPORTED_ALGORITHMS,
    AuthError,
    AuthResult,
    Challenge,
    DigestClient,
    DigestServer,
    MissingCredentialsError,
    UnsupportedChallengeError,
    digest_response,
    is_algorithm_supported,
    parse_challenge,
    parse_challenges,
    parse_credentials,
)

# --- RFC test vectors --------------------------------------------------------------------------

RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_REALM = "http-auth@example.org"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_vectors(algorithm: str, expected: str) -> None:
    got = digest_response(
        algorithm,
        username="Mufasa",
        realm=RFC7616_REALM,
        password="Circle of Life",
        nonce=RFC7616_NONCE,
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc=1,
        cnonce=RFC7616_CNONCE,
    )
    assert got == expected


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_client_reproduces_the_authorization_header(algorithm: str, expected: str) -> None:
    challenge = parse_challenge(
        f'Digest realm="{RFC7616_REALM}", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
    )
    client = DigestClient("Mufasa", "Circle of Life", cnonce_factory=lambda: RFC7616_CNONCE)
    [value] = client.answer([challenge], "GET", "/dir/index.html")
    assert value == (
        f'Digest username="Mufasa", realm="{RFC7616_REALM}", nonce="{RFC7616_NONCE}", '
        f'uri="/dir/index.html", response="{expected}", algorithm={algorithm}, '
        f'cnonce="{RFC7616_CNONCE}", qop=auth, nc=00000001, opaque="{RFC7616_OPAQUE}"'
    )
    creds = parse_credentials(value)
    assert creds.response == expected
    assert creds.nc == 1
    assert creds.qop == "auth"


def test_rfc2617_section_3_5_example() -> None:
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert challenge.algorithm == "MD5"
    assert challenge.qop == ("auth", "auth-int")
    client = DigestClient("Mufasa", "Circle Of Life", cnonce_factory=lambda: "0a4f113b")
    [value] = client.answer([challenge], "GET", "/dir/index.html")
    creds = parse_credentials(value)
    assert creds.response == "6629fae49393a05397450978507c4ef1"
    assert creds.cnonce == "0a4f113b"
    assert creds.opaque == "5ccc069c403ebaf9f0171e9517f40e41"


def test_rfc2069_mode_without_qop() -> None:
    # no qop: response = H(HA1:nonce:HA2), no cnonce/nc sent
    challenge = parse_challenge('Digest realm="r", nonce="abc"')
    client = DigestClient("u", "p")
    [value] = client.answer([challenge], "INVITE", "sip:bob@example.com")
    creds = parse_credentials(value)
    assert creds.qop is None and creds.nc is None and creds.cnonce is None
    assert "cnonce" not in value and "nc=" not in value
    assert creds.response == digest_response(
        "MD5",
        username="u",
        realm="r",
        password="p",
        nonce="abc",
        method="INVITE",
        uri="sip:bob@example.com",
    )


def test_digest_response_argument_errors() -> None:
    kw: dict[str, Any] = {
        "username": "u",
        "realm": "r",
        "password": "p",
        "nonce": "n",
        "method": "M",
        "uri": "u",
    }
    with pytest.raises(AuthError, match="unknown digest algorithm"):
        digest_response("SHA-1", **kw)
    with pytest.raises(AuthError, match="needs both nc and cnonce"):
        digest_response("MD5", qop="auth", **kw)
    with pytest.raises(AuthError, match="unsupported qop"):
        digest_response("MD5", qop="auth-conf", nc=1, cnonce="c", **kw)
    with pytest.raises(AuthError, match="needs a cnonce"):
        digest_response("MD5-sess", **kw)
    with pytest.raises(AuthError, match="8 hex digits"):
        digest_response("MD5", qop="auth", nc=2**32, cnonce="c", **kw)


def test_supported_algorithms() -> None:
    assert SUPPORTED_ALGORITHMS[-2:] == ("MD5", "MD5-SESS")
    assert "SHA-256-SESS" in SUPPORTED_ALGORITHMS
    assert is_algorithm_supported("sha-256-sess")
    assert not is_algorithm_supported("SHA-1")


# --- challenge parsing -------------------------------------------------------------------------


def test_parse_challenge_full() -> None:
    ch = parse_challenge(
        'dIgEsT realm="atlanta.com", domain="sip:ss1.carrier.com sip:ss2.carrier.com", '
        'qop="auth, auth-int", nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", '
        "stale=TRUE, algorithm=sha-256-sess, userhash=true, x-extension=token-value, "
        'charset=UTF-8, x-quoted="a\\"b\\\\c"'
    )
    assert ch.scheme == "Digest" and ch.is_digest
    assert ch.realm == "atlanta.com"
    assert ch.nonce == "f84f1cec41e6cbe5aea9c8e88d359"
    assert ch.opaque == ""
    assert ch.algorithm == "SHA-256-SESS"
    assert ch.qop == ("auth", "auth-int")
    assert ch.stale is True
    assert ch.userhash is True
    assert ch.domain == ("sip:ss1.carrier.com", "sip:ss2.carrier.com")
    assert ch.params["x-extension"] == "token-value"
    assert ch.params["x-quoted"] == 'a"b\\c'
    assert ch.params["charset"] == "UTF-8"


def test_parse_challenge_defaults_and_leniency() -> None:
    ch = parse_challenge(' Digest   realm = "r" ,, nonce=abc/def==,stale=false, qop=auth ')
    assert ch.realm == "r"
    assert ch.nonce == "abc/def=="
    assert ch.algorithm == "MD5"
    assert ch.stale is False
    assert ch.qop == ("auth",)
    assert ch.opaque is None
    assert ch.domain == ()
    assert parse_challenge('Digest realm="r", nonce="n", stale=yes').stale is False
    assert parse_challenge('Digest realm="a,b", nonce="n"').realm == "a,b"
    assert parse_challenge('Digest realm="caf\u00e9", nonce="n"').realm == "caf\u00e9"


def test_parse_challenges_and_equality() -> None:
    values = ['Digest realm="r", nonce="n"', 'Digest realm="r", nonce="n", algorithm=SHA-256']
    a, b = parse_challenges(values)
    assert a == parse_challenge(values[0])
    assert a != b
    assert hash(a) == hash(parse_challenge(values[0]))
    with pytest.raises(TypeError):
        a.params["x"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(
    ("value", "scheme"),
    [
        ('Basic realm="WallyWorld"', "Basic"),
        ("Bearer", "Bearer"),
        ("Negotiate abc/def+ghi==", "Negotiate"),
        ('NTLM weird "stuff', "NTLM"),
    ],
)
def test_non_digest_challenges_are_returned_not_raised(value: str, scheme: str) -> None:
    ch = parse_challenge(value)
    assert ch.scheme == scheme
    assert not ch.is_digest
    if scheme == "Basic":
        assert ch.realm == "WallyWorld"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty challenge"),
        ("   ", "empty challenge"),
        ("Digest", "without realm"),
        ('Digest realm="r"', "without nonce"),
        ('Digest nonce="n"', "without realm"),
        ('Digest realm="r, nonce=n', "unterminated quoted value of 'realm'"),
        ('Digest realm="r", nonce', "parameter 'nonce' has no '=value'"),
        ('Digest realm="r", nonce=', "parameter 'nonce' has an empty value"),
        ('Digest realm=, nonce="n"', "parameter 'realm' has an empty value"),
        ('Digest realm="r", realm="s", nonce="n"', "parameter 'realm' appears twice"),
        ('Digest realm="r" nonce="n"', "unexpected 'n' after parameter 'realm'"),
        ('Digest realm="r"x, nonce="n"', "unexpected 'x' after parameter 'realm'"),
        ('Digest realm="a\rb", nonce="n"', "control character"),
        ('Digest realm="a\\\nb", nonce="n"', "control character"),
        ('Digest realm="r", nonce="n", ="x"', "expected a parameter name"),
        ('Digest realm="r", nonce="n", qop=""', "empty qop"),
        ('Digest realm="r", nonce=caf\u00e9', "unexpected"),
        ('Dig"est realm="r"', "bad authentication scheme"),
        ('Digest realm="r\\', "unterminated"),
    ],
)
def test_malformed_challenges(value: str, message: str) -> None:
    with pytest.raises(AuthError, match=message) as info:
        parse_challenge(value)
    assert isinstance(info.value, ProtocolError)
    assert info.value.status == 400


# --- credentials parsing -----------------------------------------------------------------------


def test_parse_credentials_full() -> None:
    creds = parse_credentials(
        'Digest username="bob", realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        'uri="sip:bob@biloxi.com", qop=auth, nc=0000000A, cnonce="0a4f113b", '
        'response="6629FAE49393a05397450978507c4ef1", opaque="5ccc", algorithm=md5-sess, '
        "x-new=1"
    )
    assert creds.is_digest
    assert creds.username == "bob"
    assert creds.realm == "biloxi.com"
    assert creds.uri == "sip:bob@biloxi.com"
    assert creds.nc == 10
    assert creds.qop == "auth"
    assert creds.cnonce == "0a4f113b"
    assert creds.response == "6629fae49393a05397450978507c4ef1"
    assert creds.algorithm == "MD5-SESS"
    assert creds.opaque == "5ccc"
    assert creds.userhash is False
    assert creds.params["x-new"] == "1"


def test_parse_credentials_username_star() -> None:
    creds = parse_credentials(
        'Digest username*=UTF-8\'\'J%C3%A4s%C3%B8n%20Doe, realm="r", nonce="n", uri="/", '
        'response="00"'
    )
    assert creds.username == "J\u00e4s\u00f8n Doe"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('Digest realm="r", nonce="n", uri="/", response="00"', "without username"),
        ('Digest username="u", nonce="n", uri="/", response="00"', "without realm"),
        ('Digest username="u", realm="r", uri="/", response="00"', "without nonce"),
        ('Digest username="u", realm="r", nonce="n", response="00"', "without uri"),
        ('Digest username="u", realm="r", nonce="n", uri="/"', "without response"),
        ('Digest username="u", realm="r", nonce="n", uri="/", response="xyz"', "hexadecimal"),
        (
            'Digest username="u", realm="r", nonce="n", uri="/", response="00", nc=1',
            "8 hex digits",
        ),
        (
            'Digest username="u", realm="r", nonce="n", uri="/", response="00", qop=auth',
            "without cnonce and nc",
        ),
        (
            'Digest username="u", username*=UTF-8\'\'u, realm="r", nonce="n", uri="/", '
            'response="00"',
            "both username and username\\*",
        ),
        (
            'Digest username*=latin1\'\'u, realm="r", nonce="n", uri="/", response="00"',
            "unsupported charset",
        ),
        (
            'Digest username*=UTF-8\'\'%FF, realm="r", nonce="n", uri="/", response="00"',
            "not valid UTF-8",
        ),
        ('Digest username*=u, realm="r", nonce="n", uri="/", response="00"', "bad username\\*"),
        ("", "empty credentials"),
    ],
)
def test_malformed_credentials(value: str, message: str) -> None:
    with pytest.raises(AuthError, match=message):
        parse_credentials(value)


def test_non_digest_credentials() -> None:
    creds = parse_credentials("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    assert creds.scheme == "Basic"
    assert not creds.is_digest


# --- client <-> server round trips -------------------------------------------------------------

USERS = {"alice": "secret", "bob": 'p"a\\ss w:rd'}
ALL_ALGORITHMS = [a for a in SUPPORTED_ALGORITHMS]


def make_server(**kw: Any) -> DigestServer:
    kw.setdefault("secret", b"k" * 32)
    return DigestServer("example.com", USERS, **kw)


@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
@pytest.mark.parametrize("qop", ["auth", "auth-int"])
def test_round_trip_every_algorithm_and_qop(algorithm: str, qop: str) -> None:
    server = make_server(algorithms=(algorithm,), qop=(qop,))
    challenges = parse_challenges(server.challenge(now=100.0))
    assert [c.algorithm for c in challenges] == [algorithm]
    client = DigestClient("alice", "secret")
    body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    [value] = client.answer(challenges, "INVITE", "sip:bob@example.com", body)
    creds = parse_credentials(value)
    assert creds.algorithm == algorithm
    assert creds.qop == qop
    result = server.verify(value, "INVITE", "sip:bob@example.com", now=101.0, body=body)
    assert result == AuthResult(True, stale=False, username="alice", reason="ok")
    # later requests: pre-emptive credentials with the next nonce count
    for n in range(2, 5):
        [again] = client.authorize("INVITE", "sip:bob@example.com", body)
        assert parse_credentials(again).nc == n
        assert server.verify(again, "INVITE", "sip:bob@example.com", now=102.0, body=body).ok
    if qop == "auth-int":
        [tampered] = client.authorize("INVITE", "sip:bob@example.com", body)
        bad = server.verify(tampered, "INVITE", "sip:bob@example.com", now=103.0, body=b"other")
        assert not bad.ok and not bad.stale


@pytest.mark.parametrize("algorithm", [a for a in ALL_ALGORITHMS if not a.endswith("-SESS")])
def test_round_trip_without_qop(algorithm: str) -> None:
    server = make_server(algorithms=(algorithm,), qop=())
    [value] = DigestClient("bob", USERS["bob"]).answer(
        parse_challenges(server.challenge(0.0)), "REGISTER", "sip:example.com"
    )
    assert "qop" not in value
    assert server.verify(value, "REGISTER", "sip:example.com", now=1.0).ok


def test_wire_spelling_of_sess_algorithms() -> None:
    server = make_server(algorithms=("sha-256-sess",))
    [challenge] = server.challenge(0.0)
    assert "algorithm=SHA-256-sess" in challenge
    [value] = DigestClient("alice", "secret").answer([parse_challenge(challenge)], "M", "sip:x")
    assert "algorithm=SHA-256-sess" in value


def test_sess_keeps_one_cnonce_per_nonce_and_plain_algorithms_do_not() -> None:
    counter = itertools.count()
    for algorithm, distinct in (("MD5-sess", 1), ("MD5", 3)):
        server = make_server(algorithms=(algorithm,))
        client = DigestClient("alice", "secret", cnonce_factory=lambda: f"c{next(counter)}")
        values = client.answer(parse_challenges(server.challenge(0.0)), "M", "sip:x")
        values += client.authorize("M", "sip:x") + client.authorize("M", "sip:x")
        assert len({parse_credentials(v).cnonce for v in values}) == distinct
        assert all(server.verify(v, "M", "sip:x", now=1.0).ok for v in values)


def test_rfc8760_picks_the_strongest_algorithm_offered() -> None:
    server = make_server(algorithms=("MD5", "SHA-256", "SHA-512-256"))
    challenges = parse_challenges(server.challenge(0.0))
    assert [c.algorithm for c in challenges] == ["MD5", "SHA-256", "SHA-512-256"]
    [value] = DigestClient("alice", "secret").answer(challenges, "INVITE", "sip:b@x")
    assert parse_credentials(value).algorithm == "SHA-512-256"
    assert server.verify(value, "INVITE", "sip:b@x", now=0.0).ok


def test_default_server_offers_sha256_then_md5() -> None:
    server = DigestServer("r", USERS)
    assert [c.algorithm for c in parse_challenges(server.challenge(0.0))] == ["SHA-256", "MD5"]


def test_unsupported_algorithm_skipped_when_another_is_offered() -> None:
    challenges = [
        parse_challenge('Digest realm="r", nonce="n1", algorithm=SHA-1024, qop="auth"'),
        parse_challenge('Basic realm="r"'),
        parse_challenge('Digest realm="r", nonce="n2", algorithm=MD5, qop="auth"'),
    ]
    [value] = DigestClient("u", "p").answer(challenges, "M", "sip:x")
    creds = parse_credentials(value)
    assert creds.algorithm == "MD5" and creds.nonce == "n2"


def test_strength_ties_go_to_the_servers_order() -> None:
    challenges = [
        parse_challenge('Digest realm="r", nonce="n1", algorithm=SHA-256-sess, qop="auth"'),
        parse_challenge('Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"'),
    ]
    [value] = DigestClient("u", "p").answer(challenges, "M", "sip:x")
    assert parse_credentials(value).algorithm == "SHA-256-SESS"


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [('"auth-int,auth"', "auth"), ('"auth,auth-int"', "auth"), ('"auth-int"', "auth-int")],
)
def test_qop_preference(offered: str, chosen: str) -> None:
    ch = parse_challenge(f'Digest realm="r", nonce="n", qop={offered}')
    [value] = DigestClient("u", "p").answer([ch], "M", "sip:x", b"body")
    creds = parse_credentials(value)
    assert creds.qop == chosen
    assert creds.response == digest_response(
        "MD5",
        username="u",
        realm="r",
        password="p",
        nonce="n",
        method="M",
        uri="sip:x",
        qop=chosen,
        nc=1,
        cnonce=creds.cnonce,
        body=b"body",
    )


def test_several_realms_give_several_headers() -> None:
    proxy1 = DigestServer("atlanta.com", {"alice": "one"}, secret=b"1")
    proxy2 = DigestServer("biloxi.com", {"alice": "two"}, secret=b"2", algorithms=("MD5",))
    challenges = parse_challenges(proxy1.challenge(0.0) + proxy2.challenge(0.0))
    client = DigestClient(realms={"atlanta.com": ("alice", "one"), "biloxi.com": ("alice", "two")})
    values = client.answer(challenges, "INVITE", "sip:bob@biloxi.com", proxy=True)
    assert len(values) == 2
    by_realm = {parse_credentials(v).realm: v for v in values}
    assert parse_credentials(by_realm["atlanta.com"]).algorithm == "SHA-256"
    assert proxy1.verify(by_realm["atlanta.com"], "INVITE", "sip:bob@biloxi.com", 1.0).ok
    assert proxy2.verify(by_realm["biloxi.com"], "INVITE", "sip:bob@biloxi.com", 1.0).ok
    assert client.realms == ("atlanta.com", "biloxi.com")
    # the proxy state is separate from the WWW-Authenticate state
    assert client.authorize("BYE", "sip:bob@biloxi.com") == []
    assert len(client.authorize("BYE", "sip:bob@biloxi.com", proxy=True)) == 2


def test_default_credentials_answer_every_realm() -> None:
    challenges = [
        parse_challenge('Digest realm="a", nonce="n"'),
        parse_challenge('Digest realm="b", nonce="n"'),
    ]
    values = DigestClient("u", "p").answer(challenges, "M", "sip:x")
    assert [parse_credentials(v).realm for v in values] == ["a", "b"]


def test_realm_credentials_override_the_default() -> None:
    client = DigestClient("default", "pw", realms={"special": ("sp", "sppw")})
    [value] = client.answer([parse_challenge('Digest realm="special", nonce="n"')], "M", "u")
    assert parse_credentials(value).username == "sp"


def test_quotes_and_backslashes_are_escaped() -> None:
    server = DigestServer('r\\"ealm', {'we"ird\\user': 'p"w'}, secret=b"s")
    [value] = DigestClient('we"ird\\user', 'p"w').answer(
        parse_challenges(server.challenge(0.0)), "M", 'sip:"x"'
    )
    assert 'username="we\\"ird\\\\user"' in value
    creds = parse_credentials(value)
    assert creds.username == 'we"ird\\user'
    assert creds.realm == 'r\\"ealm'
    assert creds.uri == 'sip:"x"'
    assert server.verify(value, "M", 'sip:"x"', now=0.0).ok


def test_userhash_round_trip() -> None:
    server = make_server(userhash=True, algorithms=("SHA-256",))
    [challenge] = parse_challenges(server.challenge(0.0))
    assert challenge.userhash
    [value] = DigestClient("alice", "secret").answer([challenge], "M", "sip:x")
    creds = parse_credentials(value)
    assert creds.userhash
    assert creds.username != "alice" and len(creds.username) == 64
    assert server.verify(value, "M", "sip:x", 0.0) == AuthResult(True, False, "alice", "ok")
    assert not make_server().verify(value, "M", "sip:x", 0.0).ok  # not offered there


# --- failures and retry rules ------------------------------------------------------------------


def test_unknown_algorithm_only_raises_unsupported() -> None:
    challenges = [
        parse_challenge('Digest realm="r", nonce="n", algorithm=SHA-1'),
        parse_challenge('Basic realm="r"'),
    ]
    with pytest.raises(UnsupportedChallengeError) as info:
        DigestClient("u", "p").answer(challenges, "M", "sip:x")
    assert "algorithm=SHA-1 (unsupported algorithm)" in str(info.value)
    assert "Basic (scheme not supported)" in str(info.value)
    assert len(info.value.offered) == 2
    assert isinstance(info.value, AuthError)


@pytest.mark.parametrize(
    "value",
    [
        'Digest realm="r", nonce="n", qop="auth-conf"',
        'Digest realm="r", nonce="n", algorithm=MD5-sess',  # -sess needs a cnonce, so a qop
        'Bearer realm="r"',
    ],
)
def test_other_unusable_challenges(value: str) -> None:
    with pytest.raises(UnsupportedChallengeError):
        DigestClient("u", "p").answer([parse_challenge(value)], "M", "sip:x")


def test_no_challenge_at_all() -> None:
    with pytest.raises(UnsupportedChallengeError, match="offered nothing"):
        DigestClient("u", "p").answer([], "M", "sip:x")


def test_missing_credentials() -> None:
    ch = parse_challenge('Digest realm="r", nonce="n"')
    with pytest.raises(MissingCredentialsError) as info:
        DigestClient().answer([ch], "M", "sip:x")
    assert info.value.realms == ("r",)
    with pytest.raises(MissingCredentialsError):
        DigestClient(realms={"other": ("u", "p")}).answer([ch], "M", "sip:x")
    # a realm we can answer is answered; one we cannot is left out
    ch2 = parse_challenge('Digest realm="other", nonce="n"')
    values = DigestClient(realms={"other": ("u", "p")}).answer([ch, ch2], "M", "sip:x")
    assert [parse_credentials(v).realm for v in values] == ["other"]


@pytest.mark.parametrize("bad", ["ali\rce", "ali\nce", "ali\x00ce"])
def test_cr_lf_in_credentials_rejected(bad: str) -> None:
    with pytest.raises(HeaderInjectionError):
        DigestClient(bad, "p")
    with pytest.raises(HeaderInjectionError):
        DigestClient("u", bad)
    client = DigestClient()
    with pytest.raises(HeaderInjectionError):
        client.set_credentials(bad, "p", realm="r")
    with pytest.raises(HeaderInjectionError):
        DigestClient(realms={"r": (bad, "p")})
    ch = parse_challenge('Digest realm="r", nonce="n"')
    with pytest.raises(HeaderInjectionError):
        DigestClient("u", "p").answer([ch], "M", f"sip:{bad}")
    # a hand-made challenge with CR/LF in a value to echo
    with pytest.raises(HeaderInjectionError):
        DigestClient("u", "p").answer([Challenge("Digest", "r", f"n{bad}")], "M", "sip:x")


def test_client_argument_errors() -> None:
    with pytest.raises(InvalidArgumentError):
        DigestClient("u")
    ch = parse_challenge('Digest realm="r", nonce="n"')
    with pytest.raises(InvalidArgumentError):
        DigestClient("u", "p").answer([ch], "BAD METHOD", "sip:x")


def test_stale_nonce_allows_one_silent_retry() -> None:
    server = make_server(nonce_lifetime=30.0)
    client = DigestClient("alice", "secret")
    challenges = parse_challenges(server.challenge(now=0.0))
    assert client.should_retry(challenges)
    [first] = client.answer(challenges, "INVITE", "sip:b@x")
    assert server.verify(first, "INVITE", "sip:b@x", now=1.0).ok
    client.success()
    # later request with the old nonce: expired -> stale (no user prompt)
    [pre] = client.authorize("INVITE", "sip:b@x")
    result = server.verify(pre, "INVITE", "sip:b@x", now=100.0)
    assert result == AuthResult(False, stale=True, username="alice", reason="nonce expired")
    challenges = parse_challenges(server.challenge(now=100.0, stale=result.stale))
    assert all(c.stale for c in challenges)
    assert client.should_retry(challenges)
    [retry] = client.answer(challenges, "INVITE", "sip:b@x")
    assert parse_credentials(retry).nc == 1  # new nonce, count restarts
    assert server.verify(retry, "INVITE", "sip:b@x", now=101.0).ok


def test_stale_after_an_answer_retries_once_only() -> None:
    server = make_server(nonce_lifetime=10.0)
    client = DigestClient("alice", "secret")
    challenges = parse_challenges(server.challenge(now=0.0))
    [value] = client.answer(challenges, "M", "sip:x")
    result = server.verify(value, "M", "sip:x", now=50.0)  # delayed past the lifetime
    assert result.stale
    stale = parse_challenges(server.challenge(now=50.0, stale=True))
    assert client.should_retry(stale)
    client.answer(stale, "M", "sip:x")
    # stale again: no more silent retries
    assert not client.should_retry(parse_challenges(server.challenge(now=99.0, stale=True)))
    client.success()
    assert client.should_retry(parse_challenges(server.challenge(now=99.0, stale=True)))


def test_wrong_password_stops_after_one_attempt() -> None:
    server = make_server()
    client = DigestClient("alice", "wrong")
    challenges = parse_challenges(server.challenge(now=0.0))
    assert client.should_retry(challenges)
    [value] = client.answer(challenges, "REGISTER", "sip:example.com")
    result = server.verify(value, "REGISTER", "sip:example.com", now=1.0)
    assert result == AuthResult(False, stale=False, username=None, reason=result.reason)
    assert not result.stale
    again = parse_challenges(server.challenge(now=1.0, stale=result.stale))
    assert not client.should_retry(again)
    # new password: one more attempt is allowed
    client.set_credentials("alice", "secret")
    assert client.should_retry(again)
    [value] = client.answer(again, "REGISTER", "sip:example.com")
    assert server.verify(value, "REGISTER", "sip:example.com", now=2.0).ok


def test_should_retry_needs_a_digest_challenge() -> None:
    assert not DigestClient("u", "p").should_retry([parse_challenge('Basic realm="r"')])
    assert not DigestClient("u", "p").should_retry([])


def test_should_retry_any_failed_realm_stops() -> None:
    client = DigestClient("u", "p")
    a = parse_challenge('Digest realm="a", nonce="n"')
    b = parse_challenge('Digest realm="b", nonce="n"')
    client.answer([a], "M", "sip:x")
    assert client.should_retry([b])
    assert not client.should_retry([a, b])


def test_preemptive_failure_gets_one_retry() -> None:
    # the server forgot our nonce (restart with a new secret): not a wrong password
    old = make_server(secret=b"old")
    new = make_server(secret=b"new")
    client = DigestClient("alice", "secret")
    client.answer(parse_challenges(old.challenge(0.0)), "M", "sip:x")
    client.success()
    [pre] = client.authorize("M", "sip:x")
    result = new.verify(pre, "M", "sip:x", now=1.0)
    assert not result.ok and not result.stale
    challenges = parse_challenges(new.challenge(1.0))
    assert client.should_retry(challenges)
    [value] = client.answer(challenges, "M", "sip:x")
    assert new.verify(value, "M", "sip:x", now=2.0).ok


def test_forget_drops_nonce_state() -> None:
    client = DigestClient("u", "p")
    client.answer([parse_challenge('Digest realm="a", nonce="n"')], "M", "sip:x")
    assert client.authorize("M", "sip:x")
    client.forget("a")
    assert client.authorize("M", "sip:x") == []


def test_replayed_nonce_count_rejected() -> None:
    server = make_server()
    client = DigestClient("alice", "secret")
    [value] = client.answer(parse_challenges(server.challenge(0.0)), "M", "sip:x")
    assert server.verify(value, "M", "sip:x", now=1.0).ok
    replay = server.verify(value, "M", "sip:x", now=2.0)
    assert not replay.ok
    assert replay.reason == "nonce count replayed"
    # out of order: nc 3 then nc 2
    [two] = client.authorize("M", "sip:x")
    [three] = client.authorize("M", "sip:x")
    assert server.verify(three, "M", "sip:x", now=3.0).ok
    assert not server.verify(two, "M", "sip:x", now=3.0).ok


def test_two_clients_challenged_at_the_same_instant_get_distinct_nonces() -> None:
    server = make_server()
    a = DigestClient("alice", "secret")
    b = DigestClient("bob", USERS["bob"])
    [va] = a.answer(parse_challenges(server.challenge(5.0)), "M", "sip:x")
    [vb] = b.answer(parse_challenges(server.challenge(5.0)), "M", "sip:x")
    assert server.verify(va, "M", "sip:x", now=5.0).ok
    assert server.verify(vb, "M", "sip:x", now=5.0).ok


def test_expired_nonce_is_stale_only_with_the_right_password() -> None:
    server = make_server(nonce_lifetime=60.0)
    challenges = parse_challenges(server.challenge(0.0))
    [good] = DigestClient("alice", "secret").answer(challenges, "M", "sip:x")
    [bad] = DigestClient("alice", "nope").answer(challenges, "M", "sip:x")
    assert server.verify(good, "M", "sip:x", now=60.0).ok  # the boundary is still valid
    late = server.verify(good, "M", "sip:x", now=61.0)
    assert late.stale and not late.ok
    wrong = server.verify(bad, "M", "sip:x", now=61.0)
    assert not wrong.stale and not wrong.ok


def test_tampered_nonce_rejected() -> None:
    server = make_server()
    [value] = DigestClient("alice", "secret").answer(
        parse_challenges(server.challenge(0.0)), "M", "sip:x"
    )
    nonce = parse_credentials(value).nonce
    flipped = ("A" if nonce[0] != "A" else "B") + nonce[1:]
    for bad_nonce in (flipped, "garbage!", nonce[:-4], "", "\u00e9"):
        tampered = value.replace(nonce, bad_nonce)
        result = server.verify(tampered, "M", "sip:x", now=1.0)
        assert result.reason in ("nonce not issued by this server",) or result.reason.startswith(
            "malformed"
        )
        assert not result.ok and not result.stale
    # a nonce from another server (another secret) with a correct response for it
    other = make_server(secret=b"z" * 32)
    [foreign] = DigestClient("alice", "secret").answer(
        parse_challenges(other.challenge(0.0)), "M", "sip:x"
    )
    foreign = foreign.replace(parse_credentials(foreign).opaque or "", server._opaque)
    assert server.verify(foreign, "M", "sip:x", now=1.0).reason == "nonce not issued by this server"


def test_unknown_user_and_wrong_password_look_the_same() -> None:
    server = make_server()
    challenges = parse_challenges(server.challenge(0.0))
    [unknown] = DigestClient("mallory", "secret").answer(challenges, "M", "sip:x")
    [wrong] = DigestClient("alice", "guess").answer(challenges, "M", "sip:x")
    r1 = server.verify(unknown, "M", "sip:x", now=1.0)
    r2 = server.verify(wrong, "M", "sip:x", now=1.0)
    assert r1 == r2 == AuthResult(False, False, None, "invalid username or password")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda v: v.replace('realm="example.com"', 'realm="evil.com"'), "wrong realm"),
        (lambda v: v.replace("algorithm=SHA-256", "algorithm=SHA-512-256"), "not offered"),
        (lambda v: v.replace("qop=auth", "qop=auth-int"), "qop 'auth-int' not offered"),
        (lambda v: v.replace('opaque="', 'opaque="x'), "opaque does not match"),
        (lambda v: v.replace("Digest ", "Basic "), "unsupported scheme 'Basic'"),
        (lambda v: v[:-3], "malformed credentials"),
        (lambda v: v.replace('response="', 'response="0'), "invalid username or password"),
    ],
)
def test_verify_failures(mutate: Callable[[str], str], reason: str) -> None:
    server = make_server()
    [value] = DigestClient("alice", "secret").answer(
        parse_challenges(server.challenge(0.0)), "M", "sip:x"
    )
    result = server.verify(mutate(value), "M", "sip:x", now=1.0)
    assert not result.ok and not result.stale
    assert reason in result.reason


def test_verify_checks_the_request_uri_and_method() -> None:
    server = make_server()
    [value] = DigestClient("alice", "secret").answer(
        parse_challenges(server.challenge(0.0)), "INVITE", "sip:bob@example.com"
    )
    assert server.verify(value, "INVITE", None, now=1.0).ok  # None: uri not checked
    result = server.verify(value, "INVITE", "sip:carol@example.com", now=1.0)
    assert result.reason == "uri does not match the Request-URI"
    assert not server.verify(value, "BYE", "sip:bob@example.com", now=1.0).ok


def test_verify_rejects_missing_qop_when_offered() -> None:
    server = make_server(algorithms=("MD5",))
    [ch] = parse_challenges(server.challenge(0.0))
    legacy = Challenge("Digest", ch.realm, ch.nonce, ch.opaque, "MD5")  # qop dropped
    [value] = DigestClient("alice", "secret").answer([legacy], "M", "sip:x")
    assert server.verify(value, "M", "sip:x", now=1.0).reason.startswith("qop missing")


def test_nonce_count_memory_is_bounded() -> None:
    server = make_server(max_nonces=8, nonce_lifetime=1000.0)
    values = []
    for i in range(20):
        [v] = DigestClient("alice", "secret").answer(
            parse_challenges(server.challenge(float(i))), "M", "sip:x"
        )
        values.append(v)
        assert server.verify(v, "M", "sip:x", now=float(i)).ok
        assert len(server._counts) <= 8
    # an evicted nonce can no longer be replayed: stale (fresh nonce needed)
    replay = server.verify(values[0], "M", "sip:x", now=20.0)
    assert not replay.ok and replay.stale
    # expired entries are pruned as time passes
    [v] = DigestClient("alice", "secret").answer(
        parse_challenges(server.challenge(5000.0)), "M", "sip:x"
    )
    assert server.verify(v, "M", "sip:x", now=5000.0).ok
    assert len(server._counts) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"algorithms": ("SHA-1",)}, "unknown digest algorithm"),
        ({"algorithms": ()}, "at least one algorithm"),
        ({"qop": ("auth-conf",)}, "unknown qop"),
        ({"qop": (), "algorithms": ("MD5-sess",)}, "need a qop"),
        ({"nonce_lifetime": 0}, "nonce_lifetime"),
        ({"nonce_lifetime": float("nan")}, "nonce_lifetime"),
        ({"max_nonces": 0}, "max_nonces"),
    ],
)
def test_server_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        DigestServer("r", {}, **kwargs)
    with pytest.raises(InvalidArgumentError):
        DigestServer("r\r\n", {})


def test_server_challenge_format() -> None:
    server = make_server(qop=("auth", "auth-int"))
    first, second = server.challenge(0.0, stale=True)
    assert first.startswith('Digest realm="example.com", nonce="')
    assert 'qop="auth,auth-int"' in first and "stale=TRUE" in first
    assert parse_challenge(first).nonce == parse_challenge(second).nonce


# --- properties --------------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from(
    [
        "Digest ", "digest", "Basic ", " ", "\t", ",", "=", '"', "\\", "realm", "nonce", "qop",
        "algorithm", "stale", "username*", "UTF-8''", "%", "%FF", "auth", "MD5", "SHA-256",
        "true", "nc", "00000001", "response", "abc", "\r", "\n", "\x00", "\u00e9", "\ud800",
    ]
)  # fmt: skip
_NOISY_TEXT = st.one_of(st.text(), st.lists(_FRAGMENTS, max_size=30).map("".join))


@given(_NOISY_TEXT)
@settings(max_examples=500)
def test_parsers_raise_only_auth_error(text: str) -> None:
    for parse in (parse_challenge, parse_credentials):
        with contextlib.suppress(AuthError):
            parse(text)


_SERVER = DigestServer("r", {"u": "p"}, secret=b"s")


@given(_NOISY_TEXT)
@settings(max_examples=300)
def test_verify_never_raises(text: str) -> None:
    result = _SERVER.verify(text, "M", "sip:x", now=0.0)
    assert not result.ok


_SAFE_TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00"), max_size=20
)


@given(username=_SAFE_TEXT, password=_SAFE_TEXT, realm=_SAFE_TEXT, uri=_SAFE_TEXT)
@settings(max_examples=200)
def test_round_trip_with_arbitrary_text(username: str, password: str, realm: str, uri: str) -> None:
    server = DigestServer(realm, {username: password}, secret=b"s")
    [value] = DigestClient(username, password).answer(
        parse_challenges(server.challenge(0.0)), "M", uri
    )
    creds = parse_credentials(value)
    assert (creds.username, creds.realm, creds.uri) == (username, realm, uri)
    assert server.verify(value, "M", uri, now=0.0).ok
