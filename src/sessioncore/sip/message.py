"""SIP messages as wire objects (RFC 3261 §7, §20, §25).

``parse_message(data)`` turns one datagram (or one framed stream message) into a
:class:`SipRequest` or :class:`SipResponse`; ``bytes(message)`` turns it back. Parsing splits the
start line and the header lines eagerly (cheap) and parses structured values (From, To, Via,
CSeq ...) on first use, caching them. :meth:`SipMessage.validate` checks everything an endpoint
relies on and raises :class:`~sessioncore.errors.SipParseError` with the status to answer.

:class:`StreamFramer` cuts a TCP byte stream into messages by Content-Length.
"""

from __future__ import annotations

import re
from typing import Any

from sessioncore.errors import SipParseError
from sessioncore.sip.headers import (
    CSeq,
    Headers,
    NameAddr,
    Via,
    canonical_name,
    is_token,
    split_header_list,
)
from sessioncore.sip.uri import AbsoluteUri, SipUri, parse_uri

__all__ = [
    "KNOWN_METHODS",
    "REASON_PHRASES",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "StreamFramer",
    "make_response",
    "parse_message",
]

SIP_VERSION = "SIP/2.0"

KNOWN_METHODS = frozenset(
    {
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
        "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
    }
)  # fmt: skip

REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK", 202: "Accepted",
    204: "No Notification", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip

_FOLD_RE = re.compile(r"\r?\n[ \t]+")
_CANON_CACHE: dict[str, tuple[str, str]] = {}
# Header kinds that validate() looks at: the five single-valued ones first (their order is the
# order of the missing/duplicate checks), then list-valued and checked-in-order ones.
_SINGLE_NAMES = ("Call-ID", "From", "To", "CSeq", "Max-Forwards")
_K_MAX_FORWARDS = 4
_K_VIA = 5
_K_CONTACT = 6
_K_DATE = 7
_K_ROUTE = 8
_VALIDATE_KINDS: dict[str, int] = {
    "call-id": 0,
    "from": 1,
    "to": 2,
    "cseq": 3,
    "max-forwards": _K_MAX_FORWARDS,
    "via": _K_VIA,
    "contact": _K_CONTACT,
    "date": _K_DATE,
    "route": _K_ROUTE,
    "record-route": _K_ROUTE,
}


def _is_digits(text: str) -> bool:
    """True if ``text`` is a non-empty run of ASCII digits (``str.isdigit`` alone accepts ``²``)."""
    return text.isdigit() and text.isascii()


_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT"
)


def _canon(name: str) -> tuple[str, str]:
    """``(key, canonical name)`` for a raw header name as received (before stripping).

    Raises :class:`SipParseError` if the name is not a token. Only valid names are cached, so a
    cache hit needs no further check.
    """
    hit = _CANON_CACHE.get(name)
    if hit is None:
        stripped = name.rstrip(" \t")
        if not is_token(stripped):
            raise SipParseError(f"bad header name {stripped[:60]!r}")
        canon = canonical_name(stripped)
        hit = (canon.lower(), canon)
        if len(_CANON_CACHE) < 4096:  # bounded: header names come from the network
            _CANON_CACHE[name] = hit
    return hit


class SipMessage:
    """Common part of requests and responses: headers, body and parsed-value accessors."""

    __slots__ = ("_cache", "body", "headers")

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self._cache: dict[str, Any] = {}

    # --- structured accessors (parsed on first use, then cached) ---------------------------

    def _single(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    def invalidate(self) -> None:
        """Forget cached parsed values after changing ``headers`` directly."""
        self._cache.clear()

    @property
    def call_id(self) -> str:
        """The Call-ID value."""
        return self._single("Call-ID")

    @property
    def cseq(self) -> CSeq:
        """The parsed CSeq."""
        c = self._cache.get("cseq")
        if c is None:
            c = self._cache["cseq"] = CSeq.parse(self._single("CSeq"))
        return c

    @property
    def from_(self) -> NameAddr:
        """The parsed From header."""
        c = self._cache.get("from")
        if c is None:
            c = self._cache["from"] = NameAddr.parse(self._single("From"))
        return c

    @property
    def to(self) -> NameAddr:
        """The parsed To header."""
        c = self._cache.get("to")
        if c is None:
            c = self._cache["to"] = NameAddr.parse(self._single("To"))
        return c

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first."""
        c = self._cache.get("vias")
        if c is None:
            c = self._cache["vias"] = [Via.parse(v) for v in self.headers.values("Via")]
        return c

    @property
    def top_via(self) -> Via:
        """The topmost Via (raises if there is none)."""
        vias = self.vias
        if not vias:
            raise SipParseError("missing Via header")
        return vias[0]

    @property
    def branch(self) -> str | None:
        """The top Via's branch parameter."""
        return self.top_via.branch

    @property
    def contacts(self) -> list[NameAddr]:
        """The parsed Contact values (``*`` is not included)."""
        c = self._cache.get("contacts")
        if c is None:
            c = self._cache["contacts"] = [
                NameAddr.parse(v) for v in self.headers.values("Contact") if v.strip() != "*"
            ]
        return c

    @property
    def content_type(self) -> str | None:
        """The media type of the body, lower-cased, without parameters."""
        ct = self.headers.get("Content-Type")
        if ct is None:
            return None
        return ct.partition(";")[0].strip().lower()

    @property
    def max_forwards(self) -> int | None:
        """The Max-Forwards value, if present."""
        v = self.headers.get("Max-Forwards")
        if v is None:
            return None
        v = v.strip()
        if not _is_digits(v) or len(v) > 10:
            raise SipParseError(f"bad Max-Forwards {v!r}")
        return int(v)

    def validate(self) -> None:
        """Check the headers an endpoint relies on; raise :class:`SipParseError`."""
        self._validate_common()

    def _validate_common(self) -> None:
        # One pass over the header lines collects everything the checks below need; the checks
        # then run in a fixed order (duplicates/missing, Call-ID, CSeq, From, To, Via,
        # Max-Forwards, Date/Route/Record-Route in header order, Contact).
        firsts: list[str | None] = [None, None, None, None, None]
        counts = [0, 0, 0, 0, 0]
        vias: list[str] = []
        contacts: list[str] = []
        late: list[tuple[int, str]] = []
        kinds = _VALIDATE_KINDS
        for key, _, value in self.headers._items:
            kind = kinds.get(key)
            if kind is None:
                continue
            if kind < 5:
                if not counts[kind]:
                    firsts[kind] = value
                counts[kind] += 1
            elif kind == _K_VIA:
                vias.append(value)
            elif kind == _K_CONTACT:
                contacts.append(value)
            else:
                late.append((kind, value))
        if counts[0] != 1 or counts[1] != 1 or counts[2] != 1 or counts[3] != 1 or counts[4] > 1:
            for i, n in enumerate(counts):
                if n > 1:
                    raise SipParseError(f"more than one {_SINGLE_NAMES[i]} header")
                if n == 0 and i != _K_MAX_FORWARDS:
                    raise SipParseError(f"missing {_SINGLE_NAMES[i]} header")
        call_id, from_v, to_v, cseq_v, mf_v = firsts
        assert call_id is not None and from_v is not None and to_v is not None
        assert cseq_v is not None
        if not call_id.strip():
            raise SipParseError("empty Call-ID")
        cache = self._cache
        if "cseq" not in cache:
            cache["cseq"] = CSeq.parse(cseq_v)
        if "from" not in cache:
            cache["from"] = NameAddr.parse(from_v)
        if "to" not in cache:
            cache["to"] = NameAddr.parse(to_v)
        parsed_vias = cache.get("vias")
        if parsed_vias is None:
            parsed_vias = []
            for v in vias:
                if "," in v:
                    parsed_vias.extend(Via.parse(item) for item in split_header_list(v))
                else:
                    v = v.strip()
                    if v:
                        parsed_vias.append(Via.parse(v))
            cache["vias"] = parsed_vias
        if not parsed_vias:
            raise SipParseError("missing Via header")
        if mf_v is not None:
            mf = mf_v.strip()
            if not _is_digits(mf) or len(mf) > 10:
                raise SipParseError(f"bad Max-Forwards {mf!r}")
            if int(mf) > 255:
                raise SipParseError(f"Max-Forwards {int(mf)} is larger than 255")
        for kind, value in late:
            if kind == _K_DATE:
                if not _DATE_RE.fullmatch(value):
                    raise SipParseError(f"bad Date {value!r} (RFC 1123 date in GMT expected)")
            else:
                for v in split_header_list(value):
                    NameAddr.parse(v)
        if "contacts" not in cache:
            parsed: list[NameAddr] = []
            for v in contacts:
                for item in split_header_list(v) if "," in v else [v.strip()]:
                    if item and item != "*":
                        parsed.append(NameAddr.parse(item))
            cache["contacts"] = parsed

    def __bytes__(self) -> bytes:
        """The message on the wire (requests and responses supply their start line)."""
        raise NotImplementedError

    def _serialize(self, start_line: str) -> bytes:
        body = self.body
        parts = [start_line]
        for key, name, value in self.headers._items:
            if key != "content-length":
                parts.append(f"{name}: {value}")
        parts.append(f"Content-Length: {len(body)}")
        parts.append("\r\n")
        head = "\r\n".join(parts).encode("utf-8", "surrogateescape")
        return head + body if body else head


class SipRequest(SipMessage):
    """A SIP request. ``uri`` is the Request-URI text; :attr:`request_uri` parses it."""

    __slots__ = ("method", "uri")

    def __init__(
        self, method: str, uri: str, headers: Headers | None = None, body: bytes = b""
    ) -> None:
        # SipMessage.__init__ inlined: one call less per parsed message
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self._cache = {}
        self.method = method
        self.uri = uri

    @property
    def request_uri(self) -> SipUri | AbsoluteUri:
        """The parsed Request-URI."""
        c = self._cache.get("ruri")
        if c is None:
            c = self._cache["ruri"] = parse_uri(self.uri)
        return c

    def validate(self) -> None:
        """Check what an endpoint relies on; raise :class:`SipParseError` with the status to use."""
        self._validate_common()
        ruri = self.request_uri
        if isinstance(ruri, SipUri) and ruri.headers:
            raise SipParseError("Request-URI must not carry headers")
        cseq = self.cseq
        if cseq.method != self.method:
            status = 400 if self.method in KNOWN_METHODS else 501
            raise SipParseError(
                f"CSeq method {cseq.method} does not match request method {self.method}",
                status=status,
            )

    def __bytes__(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri} {SIP_VERSION}")

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri}>"


class SipResponse(SipMessage):
    """A SIP response."""

    __slots__ = ("reason", "status")

    def __init__(
        self, status: int, reason: str | None = None, headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:  # fmt: skip
        # SipMessage.__init__ inlined: one call less per parsed message
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self._cache = {}
        self.status = status
        self.reason = REASON_PHRASES.get(status, "Unknown") if reason is None else reason

    def validate(self) -> None:
        """Check the headers a UAC relies on; raise :class:`SipParseError` (drop the response)."""
        self._validate_common()
        for w in self.headers.values("Warning"):
            code = w.split(None, 1)[0] if w.strip() else ""
            if len(code) != 3 or not _is_digits(code):
                raise SipParseError(f"bad Warning {w!r}")
        ra = self.headers.get("Retry-After")
        if ra is not None:
            num = ra.partition("(")[0].partition(";")[0].strip()
            if not _is_digits(num) or len(num) > 10 or int(num) > 0xFFFFFFFF:
                raise SipParseError(f"bad Retry-After {ra!r}")

    def __bytes__(self) -> bytes:
        return self._serialize(f"{SIP_VERSION} {self.status} {self.reason}")

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


def _parse_content_length(values: list[str]) -> int | None:
    if not values:
        return None
    first = values[0].strip()
    for v in values[1:]:
        if v.strip() != first:
            raise SipParseError("conflicting Content-Length headers")
    if not _is_digits(first) or len(first) > 10:
        raise SipParseError(f"bad Content-Length {first!r}")
    return int(first)


def parse_message(data: bytes, *, stream: bool = False, validate: bool = True) -> SipMessage:
    """Parse one SIP message.

    ``stream=False`` (a datagram): without Content-Length the body runs to the end of the
    datagram; octets past Content-Length are ignored (RFC 3261 §18.3). ``stream=True``: the
    message was framed already and Content-Length must match. With ``validate`` (the default)
    the headers an endpoint relies on are checked too (see :meth:`SipRequest.validate`).

    Raises :class:`SipParseError`; its ``status`` is the response code for a request.
    """
    end = data.find(b"\r\n\r\n")
    if end != -1:
        body_start = end + 4
    else:
        end = data.find(b"\n\n")
        if end != -1:
            body_start = end + 2
        elif data.endswith(b"\r\n"):
            # No blank line at all: treat the whole datagram as headers (a liberal reading).
            end = len(data) - 2
            body_start = len(data)
        else:
            raise SipParseError("message has no end of headers (no blank line)")
    try:
        head = data[:end].decode("utf-8")
    except UnicodeDecodeError:
        head = data[:end].decode("utf-8", "surrogateescape")
    if "\n " in head or "\n\t" in head:
        head = _FOLD_RE.sub(" ", head)
    lines = head.split("\r\n") if "\r\n" in head else head.split("\n")
    start = lines[0]
    items: list[tuple[str, str, str]] = []
    append = items.append
    cache_get = _CANON_CACHE.get
    cl_values: list[str] | None = None
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(f"header line without a colon: {line[:60]!r}")
        hit = cache_get(name) or _canon(name)
        key = hit[0]
        value = value.strip(" \t")
        append((key, hit[1], value))
        if key == "content-length":
            if cl_values is None:
                cl_values = [value]
            else:
                cl_values.append(value)
    headers = Headers.__new__(Headers)
    headers._items = items

    cl = _parse_content_length(cl_values) if cl_values else None
    available = len(data) - body_start
    if cl is None:
        if stream:
            raise SipParseError("missing Content-Length on a stream transport")
        body = data[body_start:]
    else:
        if cl > available:
            raise SipParseError(f"Content-Length {cl} is larger than the {available}-byte body")
        body = data[body_start : body_start + cl] if cl else b""

    msg: SipMessage
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if len(parts) < 2:
            raise SipParseError(f"bad status line {start[:80]!r}")
        if parts[0] != SIP_VERSION:
            raise SipParseError(f"unsupported SIP version {parts[0]!r}", status=505)
        code = parts[1]
        if len(code) != 3 or not _is_digits(code) or not 100 <= int(code) <= 699:
            raise SipParseError(f"bad status code {code[:20]!r}")
        msg = SipResponse(int(code), parts[2] if len(parts) == 3 else "", headers, body)
    else:
        parts = start.split(" ")
        if len(parts) != 3:
            raise SipParseError(f"bad request line {start[:80]!r}")
        method, uri, version = parts
        if version != SIP_VERSION:
            if version.upper().startswith("SIP/"):
                raise SipParseError(f"unsupported SIP version {version!r}", status=505)
            raise SipParseError(f"bad request line {start[:80]!r}")
        if not is_token(method):
            raise SipParseError(f"bad method {method[:40]!r}")
        if not uri:
            raise SipParseError("empty Request-URI")
        msg = SipRequest(method, uri, headers, body)
    if validate:
        msg.validate()
    return msg


_CL_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\S*)", re.IGNORECASE | re.MULTILINE)


class StreamFramer:
    """Cuts a byte stream (TCP, TLS) into SIP messages using Content-Length (RFC 3261 §18.3).

    ``feed(data)`` returns the complete messages received so far; a framing error (missing or
    bad Content-Length, message larger than ``max_size``) raises :class:`SipParseError`, after
    which the connection must be closed because framing is lost. CRLF keep-alives between
    messages are skipped.
    """

    __slots__ = ("_buf", "max_size")

    def __init__(self, max_size: int = 65536) -> None:
        self._buf = bytearray()
        self.max_size = max_size

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every complete message they finish."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while buf:
            i = 0
            while i < len(buf) and buf[i] in (13, 10):
                i += 1
            if i:
                del buf[:i]
                if not buf:
                    break
            end = buf.find(b"\r\n\r\n")
            if end == -1:
                if len(buf) > self.max_size:
                    raise SipParseError(f"headers larger than {self.max_size} bytes", 513)
                break
            m = _CL_RE.search(buf, 0, end + 2)
            if m is None:
                raise SipParseError("missing Content-Length on a stream transport")
            value = m.group(1)
            if not value.isdigit() or len(value) > 10:
                raise SipParseError(f"bad Content-Length {value[:20]!r}")
            total = end + 4 + int(value)
            if total > self.max_size:
                raise SipParseError(f"message larger than {self.max_size} bytes", 513)
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete message."""
        return len(self._buf)


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> SipResponse:
    """Build a response to ``request`` (RFC 3261 §8.2.6): Via, From, To, Call-ID, CSeq copied.

    ``to_tag`` is added to To when To has no tag yet (not on 100 Trying).
    """
    h = Headers()
    items = h._items
    for key, name, value in request.headers._items:
        if key == "via" or key == "from" or key == "call-id" or key == "cseq":
            items.append((key, name, value))
        elif key == "to":
            if to_tag is not None and status != 100 and request.to.tag is None:
                value = f"{value};tag={to_tag}"
            items.append((key, name, value))
    if headers:
        for name, value in headers:
            h.add(name, value)
    return SipResponse(status, reason, h, body)
