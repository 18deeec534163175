"""SIP and other URIs (RFC 3261 §19.1, §25.1).

:class:`SipUri` is a parsed ``sip:``/``sips:`` URI that serializes back to what it was given
(escapes are kept as they appeared; nothing is unescaped behind the caller's back).
:class:`AbsoluteUri` holds any other scheme (``tel:``, ``mailto:`` ...) opaquely.
"""

from __future__ import annotations

import ipaddress
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
# The characters of the common simple shape ``sip:user@host:port;name=value``: no escapes, no
# headers, no IPv6 reference, no whitespace. Such URIs take the fast path of parse_uri().
_SIMPLE_URI_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()+$@:;="
)


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
    if text[:4] == "sip:":
        scheme = "sip"
        rest = text[4:]
    elif text[:5] == "sips:":
        scheme = "sips"
        rest = text[5:]
    else:
        return _parse_uri_full(text)
    if not _SIMPLE_URI_CHARS.issuperset(rest):
        return _parse_uri_full(text)
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at != -1:
        user, pcolon, pw = rest[:at].partition(":")
        if not user:
            return _parse_uri_full(text)
        if pcolon:
            password = pw
        rest = rest[at + 1 :]
    hostport, semi, param_text = rest.partition(";")
    host, colon, port_text = hostport.partition(":")
    if not host or not _HOST_CHARS.issuperset(host):
        return _parse_uri_full(text)
    port: int | None = None
    if colon:
        if not port_text.isdigit() or len(port_text) > 5:  # ASCII: checked by the charset
            return _parse_uri_full(text)
        port = int(port_text)
        if port > 65535:
            return _parse_uri_full(text)
    params: dict[str, str | None] = {}
    if semi:
        if "@" in param_text:
            return _parse_uri_full(text)
        for part in param_text.split(";"):
            name, eq, value = part.partition("=")
            if not name or (eq and (not value or "=" in value)):
                return _parse_uri_full(text)
            params[name] = value if eq else None
    return SipUri(host, user, port, scheme, password, params, {})


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
