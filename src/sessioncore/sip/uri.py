"""SIP and other URIs (RFC 3261 §19.1, §25.1).

:class:`SipUri` is a parsed ``sip:``/``sips:`` URI that serializes back to what it was given
(escapes are kept as they appeared; nothing is unescaped behind the caller's back).
:class:`AbsoluteUri` holds any other scheme (``tel:``, ``mailto:`` ...) opaquely.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from sessioncore.errors import HeaderInjectionError, SipParseError

__all__ = [
    "AbsoluteUri",
    "SipUri",
    "Uri",
    "format_host",
    "parse_host_port",
    "parse_uri",
]

# Characters that may appear in a hostname (RFC 3261 hostname/IPv4address).
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
_HEX = frozenset("0123456789abcdefABCDEF")
# user-unreserved + unreserved + escaped, and the few others the grammar allows in userinfo
_USER_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,;?/%"
)
# param-unreserved + unreserved + escaped
_PARAM_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()[]/:&+$%"
)
_FORBIDDEN = frozenset(' \t\r\n<>"')
# The common simple shape ``sip:user[:password]@host[:port][;name[=value]]...`` (no escapes in
# the user part, no headers, no IPv6 reference) takes the fast path of parse_uri(). Each
# character class excludes the delimiter that ends it and every quantifier is possessive, so
# matching is linear and never backtracks. The classes are subsets of what the full grammar
# check accepts (_USER_CHARS without ':' '@' '%', _HOST_CHARS, _PARAM_CHARS). The patterns are
# shared with headers.py, whose name-addr and addr-spec patterns embed them (six groups:
# scheme, user, password, host, port, params; see _simple_sip_uri()).
_URI_USER = r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]"
_URI_PCHAR = r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]"
_URI_HOSTPORT = r"([A-Za-z0-9.\-_]++)(?::([0-9]{1,5}+))?"
SIMPLE_SIP_URI_PATTERN = (
    rf"(sips?):(?:({_URI_USER}++)(?::({_URI_USER}*+))?@)?{_URI_HOSTPORT}"
    rf"((?:;{_URI_PCHAR}++(?:={_URI_PCHAR}++)?)*+)"
)
# An addr-spec URI (outside <>): what follows the first ';' are header parameters, and '?' is
# not allowed, so the user part may hold neither. The params group is always empty.
_ADDR_USER = r"[A-Za-z0-9\-_.!~*'()&=+$,/]"
SIMPLE_ADDR_SPEC_URI_PATTERN = (
    rf"(sips?):(?:({_ADDR_USER}++)(?::({_ADDR_USER}*+))?@)?{_URI_HOSTPORT}()"
)
_SIMPLE_SIP_URI = re.compile(SIMPLE_SIP_URI_PATTERN).fullmatch


def _simple_sip_uri(
    scheme: str,
    user: str | None,
    password: str | None,
    host: str,
    port_text: str | None,
    param_text: str,
) -> SipUri | None:
    """Build a SipUri from the groups of SIMPLE_SIP_URI_PATTERN (None: port out of range)."""
    port: int | None = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            return None
    params: dict[str, str | None] = {}
    if param_text:
        for part in param_text[1:].split(";"):
            name, eq, value = part.partition("=")
            params[name] = value if eq else None
    return SipUri(host, user, port, scheme, password, params, {})


def _is_digits(text: str) -> bool:
    """True if ``text`` is a non-empty run of ASCII digits (``str.isdigit`` alone accepts ``²``)."""
    return text.isdigit() and text.isascii()


def _check_escapes(text: str, what: str) -> None:
    i = text.find("%")
    n = len(text)
    while i != -1:
        if i + 2 >= n or text[i + 1] not in _HEX or text[i + 2] not in _HEX:
            raise SipParseError(f"bad %-escape in {what}: {text!r}")
        i = text.find("%", i + 3)


def parse_host_port(text: str, what: str = "host") -> tuple[str, int | None]:
    """Split ``host[:port]`` (host may be ``[IPv6]``). Returns the host without brackets.

    Raises :class:`SipParseError` for an empty or malformed host, a bad IPv6 reference, or a
    port that is not 1-5 ASCII digits up to 65535.
    """
    if not text:
        raise SipParseError(f"empty {what}")
    if text[0] == "[":
        end = text.find("]")
        if end == -1:
            raise SipParseError(f"unterminated IPv6 reference in {what}: {text!r}")
        host = text[1:end]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise SipParseError(f"bad IPv6 address in {what}: {text!r}") from None
        rest = text[end + 1 :]
        if not rest:
            return host, None
        if rest[0] != ":":
            raise SipParseError(f"unexpected text after IPv6 reference in {what}: {text!r}")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.partition(":")
        if not host or not _HOST_CHARS.issuperset(host):
            raise SipParseError(f"bad {what}: {text!r}")
        if not sep:
            return host, None
    if not _is_digits(port_text) or len(port_text) > 5:
        raise SipParseError(f"bad port in {what}: {text!r}")
    port = int(port_text)
    if port > 65535:
        raise SipParseError(f"bad port in {what}: {text!r}")
    return host, port


def format_host(host: str) -> str:
    """Bracket an IPv6 literal for use in a URI or Via."""
    return f"[{host}]" if ":" in host else host


def _parse_params(text: str, what: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if not name or not _PARAM_CHARS.issuperset(name) or (eq and not value):
            raise SipParseError(f"bad URI parameter {part!r} in {what}")
        if value and not _PARAM_CHARS.issuperset(value):
            raise SipParseError(f"bad URI parameter value {part!r} in {what}")
        params[name] = value if eq else None
    return params


@dataclass(slots=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI.

    ``host`` never carries IPv6 brackets; ``params`` keeps the parameters in order (value ``None``
    for a parameter without ``=``); ``headers`` keeps the ``?name=value`` part.
    """

    host: str
    user: str | None = None
    port: int | None = None
    scheme: str = "sip"
    password: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a SIP or SIPS URI; raise :class:`SipParseError` on anything malformed."""
        uri = parse_uri(text)
        if not isinstance(uri, SipUri):
            raise SipParseError(f"not a SIP URI: {text!r}", status=416)
        return uri

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lower-cased, if any."""
        t = self.params.get("transport")
        return t.lower() if t else None

    @property
    def host_port(self) -> str:
        """``host[:port]`` with IPv6 brackets."""
        h = format_host(self.host)
        return h if self.port is None else f"{h}:{self.port}"

    def copy(self) -> SipUri:
        """A copy whose params and headers can be changed independently."""
        return SipUri(
            self.host,
            self.user,
            self.port,
            self.scheme,
            self.password,
            dict(self.params),
            dict(self.headers),
        )

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts += (":", self.password)
            parts.append("@")
        parts.append(self.host_port)
        for name, value in self.params.items():
            parts += (";", name) if value is None else (";", name, "=", value)
        if self.headers:
            parts.append("?")
            parts.append("&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(parts)


@dataclass(slots=True, frozen=True)
class AbsoluteUri:
    """A URI of a scheme other than sip/sips, kept as text (``tel:``, ``mailto:``, ``urn:``)."""

    scheme: str
    text: str

    def __str__(self) -> str:
        return self.text


Uri = SipUri | AbsoluteUri

_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")


def parse_uri(text: str) -> SipUri | AbsoluteUri:
    """Parse any URI: SIP/SIPS into :class:`SipUri`, everything else into :class:`AbsoluteUri`.

    Raises :class:`SipParseError` on anything malformed. The common simple shape
    (``sip:user@host:port;param=value``, no escapes, headers or IPv6) takes a fast path; all
    else, and every error, goes through the full grammar check.
    """
    m = _SIMPLE_SIP_URI(text)
    if m is not None:
        uri = _simple_sip_uri(*m.groups())
        if uri is not None:
            return uri
    return _parse_uri_full(text)


def _parse_uri_full(text: str) -> SipUri | AbsoluteUri:
    """The complete URI grammar check behind :func:`parse_uri` (every shape, every error)."""
    if not text:
        raise SipParseError("empty URI")
    if not _FORBIDDEN.isdisjoint(text):
        raise SipParseError(f"URI contains whitespace, quotes or angle brackets: {text!r}")
    scheme, colon, rest = text.partition(":")
    if not colon or not scheme or not scheme[0].isalpha() or not _SCHEME_CHARS.issuperset(scheme):
        raise SipParseError(f"URI has no valid scheme: {text!r}")
    lscheme = scheme.lower()
    if lscheme not in ("sip", "sips"):
        if not rest:
            raise SipParseError(f"URI has nothing after the scheme: {text!r}")
        return AbsoluteUri(lscheme, text)
    # '@' cannot appear in params or headers, so it alone ends the userinfo, which may itself
    # hold ';', '?' and ',' (RFC 4475 §3.1.1.2).
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at != -1:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        if not userinfo or not _USER_CHARS.issuperset(userinfo.replace(":", "")):
            raise SipParseError(f"bad user part in URI {text!r}")
        user, pcolon, pw = userinfo.partition(":")
        password = pw if pcolon else None
        if not user:
            raise SipParseError(f"empty user in URI {text!r}")
        if "%" in userinfo:
            _check_escapes(userinfo, "URI user part")
    headers: dict[str, str] = {}
    rest, qmark, hdr_text = rest.partition("?")
    if qmark:
        for item in hdr_text.split("&"):
            hname, eq, hvalue = item.partition("=")
            if not hname or not eq:
                raise SipParseError(f"bad URI header {item!r} in {text!r}")
            headers[hname] = hvalue
    hostport, semi, param_text = rest.partition(";")
    host, port = parse_host_port(hostport, f"URI {text!r}")
    params = _parse_params(param_text, text) if semi else {}
    return SipUri(host, user, port, lscheme, password, params, headers)


def check_header_value(value: str, what: str = "header value") -> str:
    """Return ``value`` if it is safe to put in a header; raise :class:`HeaderInjectionError`.

    Use this on every piece of user-supplied text that ends up in a SIP header.
    """
    if "\r" in value or "\n" in value or "\x00" in value:
        raise HeaderInjectionError(f"{what} must not contain CR, LF or NUL: {value!r}")
    return value
