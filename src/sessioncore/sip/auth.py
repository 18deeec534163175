"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760), sans-I/O.

Three parts, none of which touches a socket or a clock (``now`` is always passed in):

* parsing: :func:`parse_challenge` reads one ``WWW-Authenticate`` / ``Proxy-Authenticate`` value
  into a :class:`Challenge`, :func:`parse_credentials` one ``Authorization`` /
  ``Proxy-Authorization`` value into :class:`Credentials`. Malformed input raises
  :class:`AuthError` (a :class:`~sessioncore.errors.ProtocolError`) with a precise message.
* the client side, :class:`DigestClient`: answers challenges (strongest algorithm offered per
  realm, qop ``auth`` preferred over ``auth-int``), keeps per-realm nonce state to authorize
  later requests pre-emptively, and decides whether another 401/407 is worth retrying
  (:meth:`DigestClient.should_retry`), so a wrong password never turns into a retry storm.
* the server side, :class:`DigestServer`: issues stateless nonces (a timestamp and a salt signed
  with HMAC), and verifies credentials: realm, algorithm, qop, nonce authenticity and age (an
  expired nonce gives ``stale=True``), nonce-count replay, Request-URI and the response itself
  (compared in constant time, unknown users checked against a dummy password).

Algorithms: ``MD5``, ``SHA-256`` and ``SHA-512-256`` (SHA-512/256, where the local OpenSSL has it),
each with its ``-sess`` variant. :attr:`Challenge.algorithm` and :attr:`Credentials.algorithm`
hold the canonical upper-case name (``"SHA-256-SESS"``); headers we write use the RFC spelling
(``SHA-256-sess``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import secrets
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import unquote

from sessioncore.errors import HeaderInjectionError, InvalidArgumentError, ProtocolError

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "AuthError",
    "AuthResult",
    "Challenge",
    "Credentials",
    "DigestClient",
    "DigestServer",
    "MissingCredentialsError",
    "UnsupportedChallengeError",
    "digest_response",
    "is_algorithm_supported",
    "parse_challenge",
    "parse_challenges",
    "parse_credentials",
]


# --- errors -----------------------------------------------------------------------------------


class AuthError(ProtocolError):
    """An authentication header is malformed, or a challenge cannot be answered."""


class UnsupportedChallengeError(AuthError):
    """None of the challenges offered can be answered (unknown algorithm, non-Digest scheme ...).

    ``offered`` describes each challenge that was offered and why it was not usable.
    """

    def __init__(self, message: str, offered: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.offered = offered


class MissingCredentialsError(AuthError):
    """A challenge could be answered, but no username/password is known for its realm.

    ``realms`` names the realms that were asked for.
    """

    def __init__(self, message: str, realms: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.realms = realms


# --- algorithms -------------------------------------------------------------------------------

# base algorithm (canonical upper case) -> hashlib name, strongest first
_HASHLIB_NAMES: dict[str, str] = {"SHA-512-256": "sha512_256", "SHA-256": "sha256", "MD5": "md5"}
_STRENGTH: dict[str, int] = {"SHA-512-256": 3, "SHA-256": 2, "MD5": 1}
_WIRE_NAMES: dict[str, str] = {}
for _base in _HASHLIB_NAMES:
    _WIRE_NAMES[_base] = _base
    _WIRE_NAMES[_base + "-SESS"] = _base + "-sess"


def _hashlib_available(name: str) -> bool:
    try:
        hashlib.new(name, b"", usedforsecurity=False)
    except ValueError:
        return False
    return True


_AVAILABLE_BASES = frozenset(b for b, n in _HASHLIB_NAMES.items() if _hashlib_available(n))

SUPPORTED_ALGORITHMS: tuple[str, ...] = tuple(
    alg for base in _HASHLIB_NAMES if base in _AVAILABLE_BASES for alg in (base, base + "-SESS")
)
"""Algorithms this installation can compute, strongest first (canonical upper-case names)."""


def _base_algorithm(algorithm: str) -> str:
    return algorithm[:-5] if algorithm.endswith("-SESS") else algorithm


def is_algorithm_supported(algorithm: str) -> bool:
    """True if ``algorithm`` (any case, ``-sess`` variants included) can be computed here.

    ``SHA-512-256`` depends on the OpenSSL that Python was built with (``sha512_256``).
    """
    return algorithm.upper() in SUPPORTED_ALGORITHMS


def _hash(algorithm: str, data: bytes) -> str:
    base = _base_algorithm(algorithm)
    name = _HASHLIB_NAMES.get(base)
    if name is None:
        raise AuthError(f"unknown digest algorithm {algorithm!r}")
    if base not in _AVAILABLE_BASES:
        raise AuthError(
            f"digest algorithm {algorithm!r} needs hashlib {name!r}, which this Python/OpenSSL "
            "build does not provide"
        )
    return hashlib.new(name, data, usedforsecurity=False).hexdigest()


def _h(algorithm: str, *parts: str) -> str:
    """H(part1:part2:...) as lower-case hex, text encoded as UTF-8."""
    return _hash(algorithm, ":".join(parts).encode("utf-8", "surrogatepass"))


def _ha1(
    algorithm: str, username: str, realm: str, password: str, nonce: str, cnonce: str | None
) -> str:
    ha1 = _h(algorithm, username, realm, password)
    if algorithm.endswith("-SESS"):
        if not cnonce:
            raise AuthError(f"algorithm {_WIRE_NAMES.get(algorithm, algorithm)} needs a cnonce")
        ha1 = _h(algorithm, ha1, nonce, cnonce)
    return ha1


def digest_response(
    algorithm: str,
    *,
    username: str,
    realm: str,
    password: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: int | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value of RFC 7616 §3.4.1 (lower-case hex).

    ``HA1 = H(username:realm:password)``, or for ``-sess`` algorithms
    ``H(H(username:realm:password):nonce:cnonce)``; ``HA2 = H(method:uri)``, or for qop
    ``auth-int`` ``H(method:uri:H(body))``. With a qop the response is
    ``H(HA1:nonce:nc:cnonce:qop:HA2)`` (``nc`` as 8 hex digits), without one (RFC 2069)
    ``H(HA1:nonce:HA2)``.

    Raises :class:`AuthError` for an unknown or unavailable algorithm, a qop other than
    ``auth``/``auth-int``, or a qop / ``-sess`` algorithm without ``nc`` and ``cnonce``.
    """
    alg = algorithm.upper()
    ha1 = _ha1(alg, username, realm, password, nonce, cnonce)
    return _response_from_ha1(alg, ha1, nonce, method, uri, qop, nc, cnonce, body)


def _response_from_ha1(
    algorithm: str,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: int | None,
    cnonce: str | None,
    body: bytes,
) -> str:
    if qop is None:
        return _h(algorithm, ha1, nonce, _h(algorithm, method, uri))
    if qop == "auth":
        ha2 = _h(algorithm, method, uri)
    elif qop == "auth-int":
        ha2 = _h(algorithm, method, uri, _hash(algorithm, body))
    else:
        raise AuthError(f"unsupported qop {qop!r}")
    if nc is None or cnonce is None:
        raise AuthError(f"qop={qop} needs both nc and cnonce")
    if not 0 <= nc <= 0xFFFFFFFF:
        raise AuthError(f"nonce count {nc} does not fit in 8 hex digits")
    return _h(algorithm, ha1, nonce, f"{nc:08x}", cnonce, qop, ha2)


# --- parsing ----------------------------------------------------------------------------------

# RFC 3261 token characters plus the RFC 7230 tchar extras (``#$&^|``)
_NAME_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~#$&^|"
)
# characters allowed in an unquoted parameter value: visible ASCII but '"' and ','
_BARE_VALUE_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - frozenset('",')
_HEX = frozenset("0123456789abcdefABCDEF")
_WS = " \t"


def _split_scheme(value: str, what: str) -> tuple[str, str]:
    text = value.strip(_WS)
    if not text:
        raise AuthError(f"empty {what}")
    i = 0
    n = len(text)
    while i < n and text[i] not in _WS:
        i += 1
    scheme = text[:i]
    if not _NAME_CHARS.issuperset(scheme):
        raise AuthError(f"bad authentication scheme {scheme!r} in {what}")
    return scheme, text[i:].lstrip(_WS)


def _read_quoted(text: str, start: int, name: str, what: str) -> tuple[str, int]:
    """Read the quoted-string opening at ``text[start]``; return its value and the next index."""
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\\":
            i += 1
            if i >= n:
                break
            ch = text[i]
        if ch in "\r\n\x00":
            raise AuthError(f"control character {ch!r} in quoted value of {name!r} in {what}")
        out.append(ch)
        i += 1
    raise AuthError(f"unterminated quoted value of {name!r} in {what}")


def _parse_auth_params(text: str, what: str) -> dict[str, str]:
    """Parse ``name=value, name="quoted \\" value", ...`` (names lower-cased, values unquoted).

    Empty list elements (``a=1,,b=2``) are skipped (RFC 7230 §7); a parameter may appear only
    once (RFC 7235 §2.1).
    """
    params: dict[str, str] = {}
    i = 0
    n = len(text)
    while True:
        while i < n and (text[i] in _WS or text[i] == ","):
            i += 1
        if i >= n:
            return params
        start = i
        while i < n and text[i] in _NAME_CHARS:
            i += 1
        name = text[start:i]
        if not name:
            raise AuthError(f"expected a parameter name at {text[start : start + 20]!r} in {what}")
        while i < n and text[i] in _WS:
            i += 1
        if i >= n or text[i] != "=":
            raise AuthError(f"parameter {name!r} has no '=value' in {what}")
        i += 1
        while i < n and text[i] in _WS:
            i += 1
        if i < n and text[i] == '"':
            value, i = _read_quoted(text, i, name, what)
        else:
            start = i
            while i < n and text[i] in _BARE_VALUE_CHARS:
                i += 1
            value = text[start:i]
            if not value:
                raise AuthError(f"parameter {name!r} has an empty value in {what}")
        while i < n and text[i] in _WS:
            i += 1
        if i < n and text[i] != ",":
            raise AuthError(f"unexpected {text[i]!r} after parameter {name!r} in {what}")
        key = name.lower()
        if key in params:
            raise AuthError(f"parameter {name!r} appears twice in {what}")
        params[key] = value


def _empty_params() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` / ``Proxy-Authenticate`` challenge.

    ``scheme`` is ``"Digest"`` for Digest challenges (whatever the case on the wire); other
    schemes keep their spelling and only ``params`` is filled in (best effort), so that callers
    can skip them. ``algorithm`` is the canonical upper-case name (default ``"MD5"``), possibly
    one we do not support; ``qop`` the lower-cased options offered (empty: RFC 2069 mode);
    ``domain`` the URIs of the protection space; ``params`` every parameter as received (names
    lower-cased, values unquoted), unknown ones included.
    """

    scheme: str
    realm: str = ""
    nonce: str = ""
    opaque: str | None = None
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    stale: bool = False
    domain: tuple[str, ...] = ()
    userhash: bool = False
    params: Mapping[str, str] = field(default_factory=_empty_params, hash=False)

    @property
    def is_digest(self) -> bool:
        """True for a Digest challenge."""
        return self.scheme == "Digest"


def parse_challenge(value: str) -> Challenge:
    """Parse one ``WWW-Authenticate`` or ``Proxy-Authenticate`` header value.

    Raises :class:`AuthError` when the value is malformed, or when a Digest challenge lacks
    ``realm`` or ``nonce``. A non-Digest challenge is returned with only ``scheme`` and
    (best-effort) ``params`` set.
    """
    what = "challenge"
    scheme, rest = _split_scheme(value, what)
    if scheme.lower() != "digest":
        try:
            params = _parse_auth_params(rest, what)
        except AuthError:
            params = {}  # token68 or something else we do not read: the caller skips it anyway
        return Challenge(scheme=scheme, realm=params.get("realm", ""), params=_frozen(params))
    params = _parse_auth_params(rest, what)
    realm = params.get("realm")
    if realm is None:
        raise AuthError("Digest challenge without realm")
    nonce = params.get("nonce")
    if nonce is None:
        raise AuthError("Digest challenge without nonce")
    qop: tuple[str, ...] = ()
    if "qop" in params:
        qop = tuple(q.strip(_WS).lower() for q in params["qop"].split(",") if q.strip(_WS))
        if not qop:
            raise AuthError("Digest challenge with an empty qop")
    return Challenge(
        scheme="Digest",
        realm=realm,
        nonce=nonce,
        opaque=params.get("opaque"),
        algorithm=params.get("algorithm", "MD5").upper(),
        qop=qop,
        stale=params.get("stale", "").lower() == "true",
        domain=tuple(params.get("domain", "").split()),
        userhash=params.get("userhash", "").lower() == "true",
        params=_frozen(params),
    )


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Parse several header values (one challenge each, as SIP sends them)."""
    return [parse_challenge(v) for v in values]


def _frozen(params: dict[str, str]) -> Mapping[str, str]:
    return MappingProxyType(params)


@dataclass(frozen=True, slots=True)
class Credentials:
    """One ``Authorization`` / ``Proxy-Authorization`` value.

    For Digest, ``username`` is the name as sent (a hash when ``userhash`` is true; decoded
    from ``username*`` when that form was used), ``nc`` the nonce count as a number, ``qop``
    the single qop chosen (``None``: RFC 2069 mode), ``algorithm`` canonical upper case. Other
    schemes keep their spelling and fill in ``params`` only (best effort).
    """

    scheme: str
    username: str = ""
    realm: str = ""
    nonce: str = ""
    uri: str = ""
    response: str = ""
    algorithm: str = "MD5"
    cnonce: str | None = None
    nc: int | None = None
    qop: str | None = None
    opaque: str | None = None
    userhash: bool = False
    params: Mapping[str, str] = field(default_factory=_empty_params, hash=False)

    @property
    def is_digest(self) -> bool:
        """True for Digest credentials."""
        return self.scheme == "Digest"


def _decode_ext_value(text: str) -> str:
    """Decode an RFC 8187 ext-value (``UTF-8''J%C3%A4s%C3%B8n``)."""
    charset, sep1, rest = text.partition("'")
    _lang, sep2, encoded = rest.partition("'")
    if not sep1 or not sep2:
        raise AuthError(f"bad username* value {text!r}")
    if charset.lower() != "utf-8":
        raise AuthError(f"unsupported charset {charset!r} in username*")
    try:
        return unquote(encoded, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise AuthError(f"username* is not valid UTF-8: {text!r}") from exc


def parse_credentials(value: str) -> Credentials:
    """Parse one ``Authorization`` or ``Proxy-Authorization`` header value.

    Raises :class:`AuthError` when the value is malformed or a Digest credential lacks one of
    ``username`` (or ``username*``), ``realm``, ``nonce``, ``uri``, ``response``; when
    ``response`` is not hexadecimal; when ``nc`` is not 8 hex digits; or when a ``qop`` comes
    without ``cnonce`` and ``nc``.
    """
    what = "credentials"
    scheme, rest = _split_scheme(value, what)
    if scheme.lower() != "digest":
        try:
            params = _parse_auth_params(rest, what)
        except AuthError:
            params = {}
        return Credentials(scheme=scheme, params=_frozen(params))
    params = _parse_auth_params(rest, what)
    if "username" in params and "username*" in params:
        raise AuthError("Digest credentials with both username and username*")
    if "username*" in params:
        username = _decode_ext_value(params["username*"])
    else:
        username = _required(params, "username")
    response = _required(params, "response")
    if not _HEX.issuperset(response):
        raise AuthError(f"Digest response {response!r} is not hexadecimal")
    nc: int | None = None
    if "nc" in params:
        nc_text = params["nc"]
        if len(nc_text) != 8 or not _HEX.issuperset(nc_text):
            raise AuthError(f"nonce count {nc_text!r} is not 8 hex digits")
        nc = int(nc_text, 16)
    qop = params.get("qop")
    if qop is not None:
        qop = qop.lower()
        if "cnonce" not in params or nc is None:
            raise AuthError(f"Digest credentials with qop={qop} but without cnonce and nc")
    return Credentials(
        scheme="Digest",
        username=username,
        realm=_required(params, "realm"),
        nonce=_required(params, "nonce"),
        uri=_required(params, "uri"),
        response=response.lower(),
        algorithm=params.get("algorithm", "MD5").upper(),
        cnonce=params.get("cnonce"),
        nc=nc,
        qop=qop,
        opaque=params.get("opaque"),
        userhash=params.get("userhash", "").lower() == "true",
        params=_frozen(params),
    )


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if value is None:
        raise AuthError(f"Digest credentials without {name}")
    return value


# --- formatting -------------------------------------------------------------------------------


def _check_text(text: str, what: str) -> str:
    if "\r" in text or "\n" in text or "\x00" in text:
        raise HeaderInjectionError(f"{what} contains CR, LF or NUL: {text!r}")
    return text


def _quote(text: str, what: str) -> str:
    _check_text(text, what)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_method(method: str) -> str:
    if not method or not _NAME_CHARS.issuperset(method):
        raise InvalidArgumentError(f"bad SIP method {method!r}")
    return method


# --- client -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _RealmState:
    """What the client remembers about one realm (mutable, private)."""

    realm: str
    username: str
    password: str
    algorithm: str
    nonce: str
    opaque: str | None
    qop: str | None
    userhash: bool
    nc: int = 0
    cnonce: str = ""  # fixed per nonce for -sess algorithms
    attempts: int = 0  # answers to challenges since the last success()
    stale_retry_used: bool = False


def _default_cnonce() -> str:
    return secrets.token_hex(16)


def _describe(challenge: Challenge, why: str) -> str:
    if not challenge.is_digest:
        return f"{challenge.scheme} ({why})"
    return f"Digest realm={challenge.realm!r} algorithm={challenge.algorithm} ({why})"


def _unusable_reason(challenge: Challenge) -> str | None:
    """Why ``challenge`` cannot be answered, or ``None`` if it can."""
    if not challenge.is_digest:
        return "scheme not supported"
    if challenge.algorithm not in SUPPORTED_ALGORITHMS:
        return "unsupported algorithm"
    if challenge.qop:
        if "auth" not in challenge.qop and "auth-int" not in challenge.qop:
            return f"unsupported qop {','.join(challenge.qop)}"
    elif challenge.algorithm.endswith("-SESS"):
        return "-sess algorithm without qop"
    return None


def _choose_qop(challenge: Challenge) -> str | None:
    if not challenge.qop:
        return None
    return "auth" if "auth" in challenge.qop else "auth-int"


class DigestClient:
    """The client side of Digest authentication: answers challenges and reuses credentials.

    Credentials are ``(username, password)`` pairs, per realm (``realms``) and/or one default
    pair used for any other realm (``username``/``password``). Usernames and passwords with CR,
    LF or NUL are refused with :class:`~sessioncore.errors.HeaderInjectionError`.

    State is kept per realm and per header kind (``proxy=False`` for
    ``WWW-Authenticate``/``Authorization``, ``proxy=True`` for
    ``Proxy-Authenticate``/``Proxy-Authorization``): the nonce, nonce count, algorithm, qop
    and opaque of the last challenge answered, so that :meth:`authorize` can send credentials
    pre-emptively on later requests.

    Typical use on a 401/407 response::

        challenges = parse_challenges(response.headers.get_all("WWW-Authenticate"))
        if not client.should_retry(challenges):
            fail()                      # wrong password (or nothing we can answer): stop
        for value in client.answer(challenges, "REGISTER", "sip:example.com"):
            request.headers.add("Authorization", value)
        ...
        client.success()                # on any final response other than 401/407

    ``cnonce_factory`` makes the client cnonce (default: 128 random bits from :mod:`secrets`);
    tests pass a fixed one.
    """

    def __init__(
        self,
        username: str | None = None,
        password: str | None = None,
        *,
        realms: Mapping[str, tuple[str, str]] | None = None,
        cnonce_factory: Callable[[], str] | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise InvalidArgumentError("give both a username and a password, or neither")
        self._default: tuple[str, str] | None = None
        self._realm_creds: dict[str, tuple[str, str]] = {}
        self._states: dict[tuple[bool, str], _RealmState] = {}
        self._cnonce = cnonce_factory or _default_cnonce
        if username is not None and password is not None:
            self.set_credentials(username, password)
        for realm, (user, pw) in (realms or {}).items():
            self.set_credentials(user, pw, realm=realm)

    def set_credentials(self, username: str, password: str, realm: str | None = None) -> None:
        """Set the credentials for ``realm`` (``None``: the default for every other realm).

        Resets the retry bookkeeping of the realms concerned, so that :meth:`should_retry`
        allows a fresh attempt with the new password.
        """
        _check_text(username, "username")
        _check_text(password, "password")
        if realm is None:
            self._default = (username, password)
        else:
            self._realm_creds[_check_text(realm, "realm")] = (username, password)
        for (_, r), state in self._states.items():
            if realm is None or r == realm:
                state.attempts = 0
                state.stale_retry_used = False

    def _credentials_for(self, realm: str) -> tuple[str, str] | None:
        return self._realm_creds.get(realm, self._default)

    def answer(
        self,
        challenges: Iterable[Challenge],
        method: str,
        uri: str,
        body: bytes = b"",
        *,
        proxy: bool = False,
    ) -> list[str]:
        """Answer a set of challenges: one header value per realm, to send with the retry.

        Per realm, the strongest supported algorithm offered wins (SHA-512-256 > SHA-256 >
        MD5; a ``-sess`` variant ranks with its hash, ties go to the server's order), qop
        ``auth`` is preferred over ``auth-int`` (which hashes ``body``) unless only
        ``auth-int`` is offered. Non-Digest and unusable challenges are skipped; so are realms
        with no credentials, as long as at least one realm can be answered.

        ``proxy`` selects the state kept for ``Proxy-Authenticate`` (True) or
        ``WWW-Authenticate`` (False) challenges. The values go in ``Proxy-Authorization`` or
        ``Authorization`` headers respectively.

        Raises :class:`UnsupportedChallengeError` (naming what was offered) when no challenge
        is usable, :class:`MissingCredentialsError` when usable challenges exist but no
        password is known for any of their realms, and
        :class:`~sessioncore.errors.HeaderInjectionError` when ``uri`` or a value to echo
        contains CR, LF or NUL.
        """
        _check_method(method)
        _check_text(uri, "request URI")
        groups: dict[str, list[Challenge]] = {}
        offered: list[str] = []
        for ch in challenges:
            why = _unusable_reason(ch)
            if why is not None:
                offered.append(_describe(ch, why))
                continue
            offered.append(_describe(ch, "usable"))
            groups.setdefault(ch.realm, []).append(ch)
        if not groups:
            listed = "; ".join(offered) if offered else "nothing"
            raise UnsupportedChallengeError(
                f"no usable authentication challenge: offered {listed}", tuple(offered)
            )
        values: list[str] = []
        missing: list[str] = []
        for realm, group in groups.items():
            creds = self._credentials_for(realm)
            if creds is None:
                missing.append(realm)
                continue
            best = max(
                enumerate(group),
                key=lambda ic: (_STRENGTH[_base_algorithm(ic[1].algorithm)], -ic[0]),
            )[1]
            values.append(self._answer_one(best, creds, method, uri, body, proxy))
        if not values:
            raise MissingCredentialsError(
                "no credentials for realm " + ", ".join(repr(r) for r in missing), tuple(missing)
            )
        return values

    def _answer_one(
        self,
        challenge: Challenge,
        creds: tuple[str, str],
        method: str,
        uri: str,
        body: bytes,
        proxy: bool,
    ) -> str:
        key = (proxy, challenge.realm)
        prev = self._states.get(key)
        state = _RealmState(
            realm=challenge.realm,
            username=creds[0],
            password=creds[1],
            algorithm=challenge.algorithm,
            nonce=challenge.nonce,
            opaque=challenge.opaque,
            qop=_choose_qop(challenge),
            userhash=challenge.userhash,
        )
        if prev is not None:
            if prev.nonce == state.nonce and prev.algorithm == state.algorithm:
                state.nc = prev.nc
                state.cnonce = prev.cnonce
            state.attempts = prev.attempts
            state.stale_retry_used = prev.stale_retry_used
            if prev.attempts > 0 and challenge.stale:
                state.stale_retry_used = True
        state.attempts += 1
        if not state.cnonce:
            state.cnonce = self._cnonce()
        value = self._header(state, method, uri, body)
        if value is None:  # nonce count exhausted: cannot happen with a fresh nonce
            raise AuthError(f"nonce count exhausted for realm {challenge.realm!r}")
        self._states[key] = state  # only once the header could be built
        return value

    def authorize(
        self, method: str, uri: str, body: bytes = b"", *, proxy: bool = False
    ) -> list[str]:
        """Pre-emptive credentials for a new request, one per realm already challenged.

        Reuses each realm's last nonce with the next nonce count; a realm answered with qop
        ``auth-int`` hashes ``body``. Returns an empty list when no realm of this kind
        (``proxy``) has been challenged yet. Pre-emptive attempts do not count as retries in
        :meth:`should_retry` (the server may have forgotten the nonce).
        """
        _check_method(method)
        _check_text(uri, "request URI")
        values: list[str] = []
        for (is_proxy, _), state in self._states.items():
            if is_proxy != proxy:
                continue
            value = self._header(state, method, uri, body)
            if value is not None:
                values.append(value)
        return values

    def _header(self, state: _RealmState, method: str, uri: str, body: bytes) -> str | None:
        """Build one header value, advancing the nonce count; ``None`` if it is exhausted."""
        alg = state.algorithm
        username = state.username
        if state.userhash:
            username = _h(alg, state.username, state.realm)
        parts = [
            f"username={_quote(username, 'username')}",
            f"realm={_quote(state.realm, 'realm')}",
            f"nonce={_quote(state.nonce, 'nonce')}",
            f"uri={_quote(uri, 'request URI')}",
        ]
        if state.qop is None:
            response = digest_response(
                alg,
                username=state.username,
                realm=state.realm,
                password=state.password,
                nonce=state.nonce,
                method=method,
                uri=uri,
            )
            parts.append(f'response="{response}"')
            parts.append(f"algorithm={_WIRE_NAMES[alg]}")
        else:
            if state.nc >= 0xFFFFFFFF:
                return None
            state.nc += 1
            cnonce = state.cnonce if alg.endswith("-SESS") else self._cnonce()
            response = digest_response(
                alg,
                username=state.username,
                realm=state.realm,
                password=state.password,
                nonce=state.nonce,
                method=method,
                uri=uri,
                qop=state.qop,
                nc=state.nc,
                cnonce=cnonce,
                body=body,
            )
            parts.append(f'response="{response}"')
            parts.append(f"algorithm={_WIRE_NAMES[alg]}")
            parts.append(f"cnonce={_quote(cnonce, 'cnonce')}")
            parts.append(f"qop={state.qop}")
            parts.append(f"nc={state.nc:08x}")
        if state.opaque is not None:
            parts.append(f"opaque={_quote(state.opaque, 'opaque')}")
        if state.userhash:
            parts.append("userhash=true")
        return "Digest " + ", ".join(parts)

    def should_retry(self, challenges: Iterable[Challenge], *, proxy: bool = False) -> bool:
        """Whether to answer this 401/407 (call it before :meth:`answer`).

        The rule, per realm of the Digest challenges received:

        * a realm not answered since the last :meth:`success` (first challenge, or a challenge
          to pre-emptive credentials): retry;
        * a realm already answered, challenged again with ``stale=true``: the password was
          right but the nonce had expired: retry once, silently, with the new nonce;
        * a realm already answered, challenged again without ``stale=true`` (or stale a second
          time): the credentials are wrong: do not retry (no retry storm; ask the user).

        Returns ``False`` if any realm falls in the last case, or if there is no Digest
        challenge at all. :meth:`success` (after any final response but 401/407) and
        :meth:`set_credentials` reset the count.
        """
        stale_by_realm: dict[str, bool] = {}
        for ch in challenges:
            if ch.is_digest:
                stale_by_realm[ch.realm] = stale_by_realm.get(ch.realm, False) or ch.stale
        if not stale_by_realm:
            return False
        for realm, stale in stale_by_realm.items():
            state = self._states.get((proxy, realm))
            if state is None or state.attempts == 0:
                continue
            if stale and not state.stale_retry_used:
                continue
            return False
        return True

    def success(self) -> None:
        """The last request got through (a final response other than 401/407).

        Resets the per-realm retry bookkeeping of :meth:`should_retry`; nonces are kept for
        :meth:`authorize`.
        """
        for state in self._states.values():
            state.attempts = 0
            state.stale_retry_used = False

    def forget(self, realm: str | None = None) -> None:
        """Drop the nonce state of ``realm`` (``None``: every realm); credentials stay."""
        for key in [k for k in self._states if realm is None or k[1] == realm]:
            del self._states[key]

    @property
    def realms(self) -> tuple[str, ...]:
        """The realms challenged so far (both header kinds), in order."""
        return tuple(dict.fromkeys(r for _, r in self._states))


# --- server -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The outcome of :meth:`DigestServer.verify`.

    ``ok``: the request is authenticated as ``username``. ``stale``: the credentials were right
    but the nonce had expired (or its count was replayed): challenge again with ``stale=True``
    so the client retries without asking the user. ``reason`` says why verification failed
    (the same text for an unknown user and a wrong password).
    """

    ok: bool
    stale: bool = False
    username: str | None = None
    reason: str = ""


_NONCE_TS = struct.Struct(">d")
_NONCE_SALT = 8
_NONCE_MAC = 16
_NONCE_LEN = _NONCE_TS.size + _NONCE_SALT + _NONCE_MAC
_BAD_CREDENTIALS = "invalid username or password"


class DigestServer:
    """The server side of Digest authentication for one realm.

    ``users`` maps usernames to passwords; it is read at each verification, so a live mapping
    works. ``algorithms`` are offered in the order given (most preferred first, RFC 8760
    §2.4), one challenge each; ``qop`` the qop options offered (``()`` offers none: RFC 2069
    mode, with no nonce-count replay protection). Nonces are stateless: a timestamp and a
    random salt signed with HMAC-SHA-256 under ``secret`` (random when not given; pass one to
    share nonces between instances or across restarts), valid for ``nonce_lifetime`` seconds.
    ``userhash=True`` offers RFC 7616 username hashing (verifying hashed usernames costs one
    hash per user). ``max_nonces`` bounds the nonce-count memory used for replay protection.

    Raises :class:`~sessioncore.errors.InvalidArgumentError` for an unknown or unavailable
    algorithm, an unknown qop, a non-positive lifetime, or a realm with CR, LF or NUL.
    """

    def __init__(
        self,
        realm: str,
        users: Mapping[str, str],
        *,
        algorithms: Iterable[str] = ("SHA-256", "MD5"),
        qop: Iterable[str] = ("auth",),
        nonce_lifetime: float = 300.0,
        secret: bytes | None = None,
        userhash: bool = False,
        max_nonces: int = 10_000,
    ) -> None:
        try:
            _check_text(realm, "realm")
        except HeaderInjectionError as exc:
            raise InvalidArgumentError(str(exc)) from exc
        algs = tuple(dict.fromkeys(a.upper() for a in algorithms))
        if not algs:
            raise InvalidArgumentError("DigestServer needs at least one algorithm")
        for alg in algs:
            if alg not in _WIRE_NAMES:
                raise InvalidArgumentError(f"unknown digest algorithm {alg!r}")
            if alg not in SUPPORTED_ALGORITHMS:
                raise InvalidArgumentError(
                    f"digest algorithm {alg!r} is not available in this Python/OpenSSL build"
                )
        qops = tuple(dict.fromkeys(q.lower() for q in qop))
        for q in qops:
            if q not in ("auth", "auth-int"):
                raise InvalidArgumentError(f"unknown qop {q!r}")
        if not qops and any(a.endswith("-SESS") for a in algs):
            raise InvalidArgumentError("-sess algorithms need a qop")
        if not (nonce_lifetime > 0 and math.isfinite(nonce_lifetime)):
            raise InvalidArgumentError(f"nonce_lifetime must be positive, not {nonce_lifetime}")
        if max_nonces < 1:
            raise InvalidArgumentError(f"max_nonces must be positive, not {max_nonces}")
        self.realm = realm
        self.users = users
        self.algorithms = algs
        self.qop = qops
        self.nonce_lifetime = float(nonce_lifetime)
        self.userhash = userhash
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._max_nonces = max_nonces
        self._opaque = base64.b64encode(
            hmac.digest(self._secret, b"opaque\x00" + realm.encode(), "sha256")[:18]
        ).decode("ascii")
        self._dummy_password = secrets.token_hex(16)
        # nonce -> (issue time, highest nonce count accepted)
        self._counts: dict[str, tuple[float, int]] = {}
        # nonces issued at or before this time may have been evicted from _counts
        self._evicted_until = -math.inf
        self._last_prune = -math.inf

    # nonces

    def _mac(self, stamp_and_salt: bytes) -> bytes:
        msg = b"nonce\x00" + stamp_and_salt + self.realm.encode("utf-8", "surrogatepass")
        return hmac.digest(self._secret, msg, "sha256")[:_NONCE_MAC]

    def make_nonce(self, now: float) -> str:
        """A new nonce issued at ``now``: base64(timestamp + salt + HMAC(secret, ...))."""
        head = _NONCE_TS.pack(now) + secrets.token_bytes(_NONCE_SALT)
        return base64.b64encode(head + self._mac(head)).decode("ascii")

    def _nonce_time(self, nonce: str) -> float | None:
        """The issue time of a nonce we made, or ``None`` if we did not make it."""
        try:
            raw = base64.b64decode(nonce.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            return None
        if len(raw) != _NONCE_LEN:
            return None
        head, mac = raw[:-_NONCE_MAC], raw[-_NONCE_MAC:]
        if not hmac.compare_digest(mac, self._mac(head)):
            return None
        (stamp,) = _NONCE_TS.unpack_from(head)
        return stamp if math.isfinite(stamp) else None

    def challenge(self, now: float, stale: bool = False) -> list[str]:
        """``WWW-Authenticate`` (or ``Proxy-Authenticate``) values: one per algorithm.

        All share one fresh nonce. ``stale=True`` (after a :class:`AuthResult` with ``stale``)
        tells the client to retry with the new nonce without asking the user.
        """
        nonce = self.make_nonce(now)
        values = []
        for alg in self.algorithms:
            parts = [
                f"realm={_quote(self.realm, 'realm')}",
                f'nonce="{nonce}"',
                f'opaque="{self._opaque}"',
                f"algorithm={_WIRE_NAMES[alg]}",
            ]
            if self.qop:
                parts.append(f'qop="{",".join(self.qop)}"')
            if stale:
                parts.append("stale=TRUE")
            if self.userhash:
                parts.append("userhash=true")
            values.append("Digest " + ", ".join(parts))
        return values

    # verification

    def verify(
        self,
        header_value: str,
        method: str,
        uri: str | None,
        now: float,
        body: bytes = b"",
    ) -> AuthResult:
        """Check one ``Authorization`` / ``Proxy-Authorization`` value of a request.

        Checks, in order: syntax and scheme, realm, algorithm (one we offer), qop (one we
        offer; none when we offer none), opaque, that we issued the nonce (HMAC), that the
        credential's ``uri`` equals ``uri`` (the request's Request-URI, compared as a string;
        ``None`` skips the check), the response (constant-time comparison; an unknown user is
        checked against a dummy password so timing does not tell which users exist), then the
        nonce's age and its count. A correct response with an expired nonce or a nonce count
        not above the highest seen for that nonce gives ``stale=True``. Never raises on
        malformed input: the result says why it failed.
        """
        try:
            creds = parse_credentials(header_value)
        except AuthError as exc:
            return AuthResult(False, reason=f"malformed credentials: {exc}")
        if not creds.is_digest:
            return AuthResult(False, reason=f"unsupported scheme {creds.scheme!r}")
        if creds.realm != self.realm:
            return AuthResult(False, reason=f"wrong realm {creds.realm!r}")
        alg = creds.algorithm
        if alg not in self.algorithms:
            return AuthResult(False, reason=f"algorithm {alg!r} not offered")
        if self.qop:
            if creds.qop is None:
                return AuthResult(False, reason="qop missing (RFC 2069 credentials)")
            if creds.qop not in self.qop:
                return AuthResult(False, reason=f"qop {creds.qop!r} not offered")
        elif creds.qop is not None:
            return AuthResult(False, reason=f"qop {creds.qop!r} not offered")
        if creds.opaque != self._opaque:
            return AuthResult(False, reason="opaque does not match")
        issued = self._nonce_time(creds.nonce)
        if issued is None:
            return AuthResult(False, reason="nonce not issued by this server")
        if uri is not None and creds.uri != uri:
            return AuthResult(False, reason="uri does not match the Request-URI")
        if creds.userhash and not self.userhash:
            return AuthResult(False, reason="userhash not offered")

        username = self._lookup_user(creds)
        password = self.users.get(username) if username is not None else None
        try:
            expected = digest_response(
                alg,
                username=username if username is not None else creds.username,
                realm=self.realm,
                password=password if password is not None else self._dummy_password,
                nonce=creds.nonce,
                method=method,
                uri=creds.uri,
                qop=creds.qop,
                nc=creds.nc,
                cnonce=creds.cnonce,
                body=body,
            )
        except AuthError as exc:
            return AuthResult(False, reason=str(exc))
        matched = hmac.compare_digest(expected.encode(), creds.response.encode())
        if not matched or password is None:
            return AuthResult(False, reason=_BAD_CREDENTIALS)

        if now - issued > self.nonce_lifetime:
            return AuthResult(False, stale=True, username=username, reason="nonce expired")
        if (
            creds.qop is not None
            and creds.nc is not None
            and not self._accept_count(creds.nonce, issued, creds.nc, now)
        ):
            return AuthResult(False, stale=True, username=username, reason="nonce count replayed")
        return AuthResult(True, username=username, reason="ok")

    def _lookup_user(self, creds: Credentials) -> str | None:
        if not creds.userhash:
            return creds.username
        found: str | None = None
        wanted = creds.username.lower()
        for name in self.users:
            if hmac.compare_digest(_h(creds.algorithm, name, self.realm), wanted):
                found = name
        return found

    def _accept_count(self, nonce: str, issued: float, nc: int, now: float) -> bool:
        """Record ``nc`` for ``nonce`` if it is above every count seen for it."""
        entry = self._counts.get(nonce)
        if entry is None:
            if issued <= self._evicted_until:
                return False  # its history may have been evicted: make the client renew
            self._prune(now)
        elif nc <= entry[1]:
            return False
        self._counts[nonce] = (issued, nc)
        return True

    def _prune(self, now: float) -> None:
        """Forget expired nonces; past ``max_nonces``, evict the oldest half."""
        if len(self._counts) < self._max_nonces and now - self._last_prune < self.nonce_lifetime:
            return
        self._last_prune = now
        horizon = now - self.nonce_lifetime
        self._counts = {n: e for n, e in self._counts.items() if e[0] >= horizon}
        if len(self._counts) >= self._max_nonces:
            ordered = sorted(self._counts.items(), key=lambda item: item[1][0])
            cut = max(1, len(ordered) // 2)
            self._evicted_until = max(self._evicted_until, ordered[cut - 1][1][0])
            self._counts = dict(ordered[cut:])
