"""SIP header fields: the ordered header collection and the structured values routing needs.

:class:`Headers` keeps every header line in order, exactly as received (unknown headers pass
through untouched). Names are matched case-insensitively and compact forms (``v``, ``i``, ``m``
...) are expanded on the way in. Structured values (:class:`NameAddr`, :class:`Via`,
:class:`CSeq`) are parsed on demand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sessioncore.errors import SipParseError
from sessioncore.sip.uri import (
    SIMPLE_ADDR_SPEC_URI_PATTERN,
    SIMPLE_SIP_URI_PATTERN,
    AbsoluteUri,
    SipUri,
    _simple_sip_uri,
    format_host,
    parse_host_port,
    parse_uri,
)

__all__ = [
    "CSeq",
    "Headers",
    "NameAddr",
    "Via",
    "canonical_name",
    "parse_params",
    "split_header_list",
]

COMPACT_FORMS = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
    "n": "Identity-Info",
}

_KNOWN = [
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
    "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "In-Reply-To",
    "Max-Forwards", "Min-Expires", "MIME-Version", "Organization", "Priority",
    "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
    "Record-Route", "Refer-To", "Referred-By", "Reply-To", "Require", "Retry-After", "Route",
    "RSeq", "Server", "Session-Expires", "Subject", "Subscription-State", "Supported",
    "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
    "Min-SE", "Path", "Service-Route", "Replaces", "P-Asserted-Identity", "Privacy",
]  # fmt: skip
_CANON: dict[str, str] = {name.lower(): name for name in _KNOWN}
_CANON.update({k: v for k, v in COMPACT_FORMS.items()})

# Headers whose value is a comma-separated list (RFC 3261 §7.3.1). Others never get split.
LIST_HEADERS = frozenset(
    {
        "via", "contact", "route", "record-route", "allow", "supported", "require",
        "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
        "allow-events", "content-encoding", "content-language", "in-reply-to", "path",
        "service-route", "warning", "error-info", "call-info", "alert-info",
    }
)  # fmt: skip

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name (compact forms expanded).

    Unknown names are returned as given: they pass through untouched.
    """
    return _CANON.get(name.lower(), name)


_KEYS: dict[str, str] = {}


def header_key(name: str) -> str:
    """The lower-cased canonical name used to match header lines (cached)."""
    key = _KEYS.get(name)
    if key is None:
        key = canonical_name(name).lower()
        if len(_KEYS) < 4096:
            _KEYS[name] = key
    return key


def is_token(text: str) -> bool:
    """True if ``text`` is a non-empty RFC 3261 token."""
    return bool(text) and _TOKEN_CHARS.issuperset(text)


def split_header_list(value: str) -> list[str]:
    """Split a comma-separated header value, honouring quoted strings and ``<...>``.

    Raises :class:`SipParseError` on an empty element (``a,,b``) or an unterminated quote.
    """
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    out: list[str] = []
    start = 0
    in_quote = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            item = value[start:i].strip()
            if not item:
                raise SipParseError(f"empty element in header list {value!r}")
            out.append(item)
            start = i + 1
        i += 1
    if in_quote:
        raise SipParseError(f"unterminated quoted string in {value!r}")
    item = value[start:].strip()
    if not item:
        raise SipParseError(f"empty element in header list {value!r}")
    out.append(item)
    return out


def _unquote(text: str) -> str:
    """Remove the quotes of a quoted-string and resolve quoted-pairs."""
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    out = []
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\" and i + 1 < len(inner):
            i += 1
            ch = inner[i]
        out.append(ch)
        i += 1
    return "".join(out)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _find_quote_end(text: str, start: int) -> int:
    """Index of the closing quote of the quoted-string opening at ``start``."""
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i
        i += 1
    raise SipParseError(f"unterminated quoted string in {text!r}")


def parse_params(text: str, what: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` header parameters (text starts after the first ``;``).

    Names are lower-cased for lookup; values keep their case. LWS around ``=`` and ``;`` is
    allowed, empty parameters (``;;``) are an error.
    """
    if _SIMPLE_PARAM_CHARS.issuperset(text):
        # Fast path: tokens, '=' and ';' only (no LWS, quotes or IPv6 references).
        fast: dict[str, str | None] = {}
        for part in text.split(";"):
            name, eq, value = part.partition("=")
            if not name or (eq and (not value or "=" in value)):
                break  # let the full path below raise the precise error
            fast[name.lower()] = value if eq else None
        else:
            return fast
    params: dict[str, str | None] = {}
    parts = _split_quoted(text, ";") if '"' in text else text.split(";")
    for part in parts:
        name, eq, value = part.partition("=")
        name = name.strip()
        if not is_token(name):
            raise SipParseError(f"bad parameter {part.strip()!r} in {what}")
        if eq:
            value = value.strip()
            if not value:
                raise SipParseError(f"parameter {name!r} has an empty value in {what}")
            if value[0] == '"':
                if _find_quote_end(value, 0) != len(value) - 1:
                    raise SipParseError(f"bad quoted parameter {name!r} in {what}")
            elif not _PARAM_VALUE_CHARS.issuperset(value):
                raise SipParseError(f"bad value for parameter {name!r} in {what}")
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


_PARAM_VALUE_CHARS = _TOKEN_CHARS | frozenset("[]:")
_SIMPLE_PARAM_CHARS = _TOKEN_CHARS | frozenset("=;")

# Fast paths for the common simple shapes. Every character class excludes the delimiter that
# ends it and every quantifier is possessive, so matching is linear and never backtracks; a
# value that does not match goes through the full (careful) parser, which also raises the errors.
_T = r"[A-Za-z0-9\-.!%*_+`'~]"  # token character (same set as _TOKEN_CHARS)
_SIMPLE_PARAMS = rf"((?:;{_T}++(?:={_T}++)?)*+)"
# ``token <sip-uri>;params`` / ``<sip-uri>;params``: groups display, 6 URI groups, params
_SIMPLE_NAME_ADDR = re.compile(
    rf"({_T}*+)[ \t]*+<{SIMPLE_SIP_URI_PATTERN}>{_SIMPLE_PARAMS}"
).fullmatch
# ``sip-uri;params`` (addr-spec): 6 URI groups, params
_SIMPLE_ADDR_SPEC = re.compile(rf"{SIMPLE_ADDR_SPEC_URI_PATTERN}{_SIMPLE_PARAMS}").fullmatch
# ``SIP/2.0/UDP host[:port];params`` (hostname or IPv4; IPv6 references take the full path)
_SIMPLE_VIA = re.compile(
    rf"SIP/2\.0/({_T}++) ([A-Za-z0-9.\-_]++)(?::([0-9]{{1,5}}+))?{_SIMPLE_PARAMS}"
).fullmatch


def _simple_params(text: str) -> dict[str, str | None]:
    """Parameters matched by ``_SIMPLE_PARAMS`` (``text`` is empty or starts with ``;``)."""
    params: dict[str, str | None] = {}
    if text:
        for part in text[1:].split(";"):
            name, eq, value = part.partition("=")
            params[name.lower()] = value if eq else None
    return params


def _split_quoted(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            i = _find_quote_end(text, i) + 1
            continue
        if ch == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def format_params(params: dict[str, str | None]) -> str:
    """Serialize parameters as ``;name=value;flag``."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass(slots=True)
class NameAddr:
    """A From/To/Contact/Route value: optional display name, URI, header parameters.

    ``params`` are the header parameters (``tag``, ``expires``, ``q`` ...), not URI parameters.
    """

    uri: SipUri | AbsoluteUri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        """Parse ``"Name" <uri>;params``, ``Name <uri>;params`` or ``uri;params``.

        Raises :class:`SipParseError` on anything malformed (including the URI).
        """
        value = value.strip()
        if not value:
            raise SipParseError("empty address")
        if "<" in value:
            m = _SIMPLE_NAME_ADDR(value)
            if m is not None:
                g = m.groups()
                uri = _simple_sip_uri(*g[1:7])
                if uri is not None:
                    return cls(uri, g[0] or None, _simple_params(g[7]))
            return cls._parse_full(value)
        m = _SIMPLE_ADDR_SPEC(value)
        if m is not None:
            g = m.groups()
            uri = _simple_sip_uri(*g[:6])
            if uri is not None:
                return cls(uri, None, _simple_params(g[6]))
        if value[0] == '"':
            return cls._parse_full(value)
        # addr-spec: the URI ends at the first ';' (what follows are header params), and it
        # may not carry '?headers' without brackets (RFC 3261 §20.10).
        uri_text, semi, ptext = value.partition(";")
        uri_text = uri_text.rstrip()
        if "?" in uri_text:
            raise SipParseError(f"URI with headers must be enclosed in <> in {value!r}")
        params = parse_params(ptext, "address parameters") if semi else {}
        return cls(parse_uri(uri_text), None, params)

    @classmethod
    def _parse_full(cls, value: str) -> NameAddr:
        """``name-addr`` with a quoted or multi-word display name, or anything unusual.

        ``value`` is stripped and holds a ``"`` first or a ``<`` somewhere.
        """
        display: str | None = None
        rest: str
        if value[0] == '"':
            end = _find_quote_end(value, 0)
            display = _unquote(value[: end + 1])
            rest = value[end + 1 :].lstrip()
            if not rest.startswith("<"):
                raise SipParseError(f"quoted display name not followed by <URI> in {value!r}")
        else:
            lt = value.find("<")
            if lt == -1:
                raise SipParseError(f"missing '<' in {value!r}")
            name = value[:lt].strip()
            if name:
                if not all(is_token(word) for word in name.split()):
                    raise SipParseError(f"display name {name!r} has characters that need quotes")
                display = " ".join(name.split())
            rest = value[lt:]
        gt = rest.find(">")
        if gt == -1:
            raise SipParseError(f"missing '>' in {value!r}")
        tail = rest[gt + 1 :].strip()
        uri = parse_uri(rest[1:gt])
        params: dict[str, str | None] = {}
        if tail:
            if tail[0] != ";":
                raise SipParseError(f"unexpected text after address: {tail!r}")
            params = parse_params(tail[1:], "address parameters")
        return cls(uri, display, params)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter, if any."""
        return self.params.get("tag")

    def __str__(self) -> str:
        if self.display_name:
            head = (
                self.display_name
                if all(is_token(w) for w in self.display_name.split())
                else _quote(self.display_name)
            )
            s = f"{head} <{self.uri}>"
        else:
            s = f"<{self.uri}>"
        return s + format_params(self.params) if self.params else s


@dataclass(slots=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;rport;received=...``."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> Via:
        """Parse one Via value (LWS around ``/`` and ``;`` allowed).

        Raises :class:`SipParseError` on anything malformed.
        """
        m = _SIMPLE_VIA(value)
        if m is not None:
            transport, host, port_text, ptext = m.groups()
            port = None if port_text is None else int(port_text)
            if port is None or port <= 65535:
                return cls(transport.upper(), host, port, _simple_params(ptext))
        head, semi, ptext = value.partition(";")
        proto, sep, sent_by = head.rpartition("/")
        if not sep:
            raise SipParseError(f"bad Via {value!r}")
        parts = proto.split("/")
        if len(parts) != 2 or parts[0].strip().upper() != "SIP" or parts[1].strip() != "2.0":
            raise SipParseError(f"bad Via protocol in {value!r}")
        tp_host = sent_by.split()
        if len(tp_host) != 2 or not is_token(tp_host[0]):
            raise SipParseError(f"bad Via sent-by in {value!r}")
        host, port = parse_host_port(tp_host[1], "Via sent-by")
        params = parse_params(ptext, "Via") if semi else {}
        return cls(tp_host[0].upper(), host, port, params)

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter."""
        return self.params.get("branch")

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as it would appear in the header."""
        h = format_host(self.host)
        return h if self.port is None else f"{h}:{self.port}"

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{format_params(self.params)}"


@dataclass(slots=True, frozen=True)
class CSeq:
    """A CSeq value: sequence number (0 .. 2**32-1) and method."""

    seq: int
    method: str

    @classmethod
    def parse(cls, value: str) -> CSeq:
        """Parse ``"<number> <METHOD>"``."""
        parts = value.split()
        if (
            len(parts) != 2
            or not parts[0].isdigit()
            or not parts[0].isascii()
            or len(parts[0]) > 10
            or not _TOKEN_CHARS.issuperset(parts[1])
        ):
            raise SipParseError(f"bad CSeq {value!r}")
        seq = int(parts[0])
        if seq > 0xFFFFFFFF:
            raise SipParseError(f"CSeq number {parts[0]} is larger than 2**32-1")
        return cls(seq, parts[1])

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


class Headers:
    """The ordered header fields of a message.

    Each entry is ``(key, name, value)`` where ``key`` is the lower-cased canonical name used for
    matching, ``name`` the spelling to write, and ``value`` the raw (unfolded) value. Lookups scan
    the list: a message has a dozen or two headers, and a scan beats building a dict per message.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_raw(cls, items: list[tuple[str, str, str]]) -> Headers:
        h = cls.__new__(cls)
        h._items = items
        return h

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the first header called ``name``, or ``default``."""
        key = _KEYS.get(name) or header_key(name)
        for k, _, v in self._items:
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """The values of every header line called ``name``, unsplit."""
        key = header_key(name)
        return [v for k, _, v in self._items if k == key]

    def values(self, name: str) -> list[str]:
        """Every value of ``name``, comma-separated lists split (for list headers only)."""
        key = header_key(name)
        raw = [v for k, _, v in self._items if k == key]
        if key not in LIST_HEADERS:
            return raw
        out: list[str] = []
        for v in raw:
            out.extend(split_header_list(v))
        return out

    def count(self, name: str) -> int:
        """How many header lines are called ``name``."""
        key = header_key(name)
        return sum(1 for k, _, _ in self._items if k == key)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = header_key(name)
        return any(k == key for k, _, _ in self._items)

    def add(self, name: str, value: str) -> None:
        """Append a header line."""
        canon = canonical_name(name)
        self._items.append((canon.lower(), canon, value))

    def prepend(self, name: str, value: str) -> None:
        """Insert a header line before every other (for Via)."""
        canon = canonical_name(name)
        self._items.insert(0, (canon.lower(), canon, value))

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` line by one line with ``value`` (at the first one's place)."""
        canon = canonical_name(name)
        key = canon.lower()
        for i, (k, _, _) in enumerate(self._items):
            if k == key:
                self._items[i] = (key, canon, value)
                self._items[i + 1 :] = [e for e in self._items[i + 1 :] if e[0] != key]
                return
        self._items.append((key, canon, value))

    def remove(self, name: str) -> None:
        """Remove every ``name`` line."""
        key = header_key(name)
        self._items = [e for e in self._items if e[0] != key]

    def remove_first(self, name: str) -> None:
        """Remove the first ``name`` line."""
        key = header_key(name)
        for i, (k, _, _) in enumerate(self._items):
            if k == key:
                del self._items[i]
                return

    def items(self) -> Iterator[tuple[str, str]]:
        """``(name, value)`` pairs in order."""
        for _, n, v in self._items:
            yield n, v

    def copy(self) -> Headers:
        """A shallow copy."""
        return Headers._from_raw(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({[(n, v) for _, n, v in self._items]!r})"
