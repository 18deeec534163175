"""SDP, the Session Description Protocol (RFC 8866, formerly RFC 4566), as a wire object.

:meth:`SessionDescription.parse` turns a body into objects and ``str()`` / ``bytes()`` turn them
back into text with CRLF line endings. What the parser understands (``v o s c t r m a``) is held
in typed fields; every other line (``i u e p b z k`` and unknown types) and every attribute is
kept verbatim and in order, so an SDP from a peer survives a parse/serialize round trip.

Malformed input raises :class:`~sessioncore.errors.SdpError` with status 400 and a message that
names the line; no ``IndexError`` or ``ValueError`` leaks out.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sessioncore.errors import InvalidArgumentError, SdpError

__all__ = [
    "DIRECTIONS",
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Connection",
    "MediaDescription",
    "Origin",
    "RtpMap",
    "SessionDescription",
    "Timing",
]

_LOG = logging.getLogger("sessioncore.media.sdp")

#: The four direction attributes of RFC 3264 §5.1 (``sendrecv`` is the default).
DIRECTIONS: tuple[str, ...] = ("sendrecv", "sendonly", "recvonly", "inactive")
_DIRECTION_SET = frozenset(DIRECTIONS)


@dataclass(frozen=True, slots=True)
class RtpMap:
    """One ``a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`` value."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def __str__(self) -> str:
        base = f"{self.payload_type} {self.encoding}/{self.clock_rate}"
        return base if self.channels is None else f"{base}/{self.channels}"

    @property
    def name(self) -> str:
        """``encoding/clock[/channels]`` without the payload type, for messages."""
        base = f"{self.encoding}/{self.clock_rate}"
        return base if self.channels is None else f"{base}/{self.channels}"

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        """Parse the value of an ``a=rtpmap`` attribute (the part after the colon)."""
        pt_text, _, rest = value.strip().partition(" ")
        pt = _parse_uint(pt_text, f"payload type in a=rtpmap:{_clip(value)}", maximum=127)
        parts = rest.strip().split("/")
        if len(parts) not in (2, 3) or not parts[0]:
            raise _bad(
                f"a=rtpmap:{_clip(value)} is not '<pt> <encoding>/<clock rate>[/<channels>]'"
            )
        clock = _parse_uint(parts[1], f"clock rate in a=rtpmap:{_clip(value)}")
        if clock == 0:
            raise _bad(f"a=rtpmap:{_clip(value)} has clock rate 0")
        channels = None
        if len(parts) == 3:
            channels = _parse_uint(parts[2], f"channels in a=rtpmap:{_clip(value)}")
        return cls(pt, parts[0], clock, channels)


#: RTP/AVP static payload types (RFC 3551 table 4) that an offer may use without ``a=rtpmap``.
STATIC_PAYLOAD_TYPES: dict[int, RtpMap] = {
    rm.payload_type: rm
    for rm in (
        RtpMap(0, "PCMU", 8000),
        RtpMap(3, "GSM", 8000),
        RtpMap(4, "G723", 8000),
        RtpMap(5, "DVI4", 8000),
        RtpMap(6, "DVI4", 16000),
        RtpMap(7, "LPC", 8000),
        RtpMap(8, "PCMA", 8000),
        RtpMap(9, "G722", 8000),
        RtpMap(10, "L16", 44100, 2),
        RtpMap(11, "L16", 44100),
        RtpMap(12, "QCELP", 8000),
        RtpMap(13, "CN", 8000),
        RtpMap(14, "MPA", 90000),
        RtpMap(15, "G728", 8000),
        RtpMap(16, "DVI4", 11025),
        RtpMap(17, "DVI4", 22050),
        RtpMap(18, "G729", 8000),
        RtpMap(25, "CelB", 90000),
        RtpMap(26, "JPEG", 90000),
        RtpMap(28, "nv", 90000),
        RtpMap(31, "H261", 90000),
        RtpMap(32, "MPV", 90000),
        RtpMap(33, "MP2T", 90000),
        RtpMap(34, "H263", 90000),
    )
}


# --- small parsing helpers -------------------------------------------------------------------


def _clip(text: str, limit: int = 60) -> str:
    """Quote untrusted text for an error message, shortened."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _bad(message: str) -> SdpError:
    return SdpError(message, status=400)


def _parse_uint(text: str, what: str, maximum: int | None = None) -> int:
    if not (text.isascii() and text.isdigit()):
        raise _bad(f"{what}: {_clip(text)} is not a non-negative integer")
    number = int(text)
    if maximum is not None and number > maximum:
        raise _bad(f"{what}: {number} is larger than {maximum}")
    return number


# --- line objects ----------------------------------------------------------------------------


@dataclass(slots=True)
class Origin:
    """The ``o=`` line: ``<username> <sess-id> <sess-version> <nettype> <addrtype> <address>``.

    ``session_id`` is kept as the text that was received (it only identifies the session);
    ``session_version`` is an integer because it must increase with each new offer.
    """

    username: str
    session_id: str
    session_version: int
    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )

    @classmethod
    def parse(cls, value: str) -> Origin:
        """Parse the value of an ``o=`` line."""
        parts = value.split()
        if len(parts) != 6:
            raise _bad(
                f"o= needs 6 fields '<username> <sess-id> <sess-version> <nettype> <addrtype> "
                f"<address>', got {len(parts)} in {_clip(value)}"
            )
        version = _parse_uint(parts[2], "o= session version")
        return cls(parts[0], parts[1], version, parts[5], parts[3], parts[4])


@dataclass(slots=True)
class Connection:
    """A ``c=`` line: ``<nettype> <addrtype> <address>``.

    ``address`` is kept as received, including a multicast ``/ttl/count`` suffix; :attr:`host`
    is the address alone.
    """

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"

    @property
    def host(self) -> str:
        """The address without any ``/ttl/count`` suffix."""
        return self.address.partition("/")[0]

    @property
    def is_null(self) -> bool:
        """True for the RFC 2543 hold address ``0.0.0.0`` (or the IPv6 ``::``)."""
        return self.host in ("0.0.0.0", "::")

    @classmethod
    def parse(cls, value: str) -> Connection:
        """Parse the value of a ``c=`` line."""
        parts = value.split()
        if len(parts) != 3:
            raise _bad(
                f"c= needs 3 fields '<nettype> <addrtype> <address>', got {len(parts)} "
                f"in {_clip(value)}"
            )
        return cls(parts[2], parts[1], parts[0])


@dataclass(slots=True)
class Timing:
    """A ``t=<start> <stop>`` line and the ``r=`` lines that follow it (kept verbatim)."""

    start: int = 0
    stop: int = 0
    repeats: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, value: str) -> Timing:
        """Parse the value of a ``t=`` line."""
        parts = value.split()
        if len(parts) != 2:
            raise _bad(f"t= needs 2 fields '<start> <stop>', got {len(parts)} in {_clip(value)}")
        return cls(_parse_uint(parts[0], "t= start time"), _parse_uint(parts[1], "t= stop time"))


@dataclass(slots=True)
class Attribute:
    """An ``a=<name>[:<value>]`` line. ``value`` is ``None`` for a flag such as ``a=sendrecv``."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> Attribute:
        """Parse the value of an ``a=`` line."""
        name, sep, value = text.partition(":")
        if not name or name != name.strip():
            raise _bad(f"a= line has no attribute name: {_clip(text)}")
        return cls(name, value if sep else None)


_Matcher = Callable[[Attribute], bool]


class _Attributes:
    """Accessors shared by the session level and media level (both hold ``attributes``)."""

    __slots__ = ()
    attributes: list[Attribute]

    def has_attribute(self, name: str) -> bool:
        """True when an attribute with this name is present (flag or not)."""
        return any(a.name == name for a in self.attributes)

    def get_attribute(self, name: str) -> str | None:
        """The value of the first attribute with this name (``None`` if absent or a flag)."""
        for attr in self.attributes:
            if attr.name == name:
                return attr.value
        return None

    def get_attributes(self, name: str) -> list[str | None]:
        """The values of every attribute with this name, in order."""
        return [a.value for a in self.attributes if a.name == name]

    def add_attribute(self, name: str, value: str | None = None) -> None:
        """Append an attribute."""
        self.attributes.append(Attribute(name, value))

    def set_attribute(self, name: str, value: str | None = None) -> None:
        """Replace the first attribute with this name (removing the others), or append it."""
        self._replace(lambda a: a.name == name, Attribute(name, value))

    def remove_attribute(self, name: str) -> int:
        """Remove every attribute with this name; return how many were removed."""
        before = len(self.attributes)
        self.attributes[:] = [a for a in self.attributes if a.name != name]
        return before - len(self.attributes)

    @property
    def direction(self) -> str | None:
        """The explicit direction attribute (``sendrecv`` ...) at this level, or ``None``."""
        for attr in self.attributes:
            if attr.name in _DIRECTION_SET and attr.value is None:
                return attr.name
        return None

    @direction.setter
    def direction(self, value: str | None) -> None:
        if value is None:
            self.attributes[:] = [a for a in self.attributes if a.name not in _DIRECTION_SET]
            return
        if value not in _DIRECTION_SET:
            raise InvalidArgumentError(f"direction must be one of {DIRECTIONS}, not {value!r}")
        self._replace(lambda a: a.name in _DIRECTION_SET, Attribute(value))

    def _replace(self, match: _Matcher, new: Attribute) -> None:
        out: list[Attribute] = []
        placed = False
        for attr in self.attributes:
            if match(attr):
                if not placed:
                    out.append(new)
                    placed = True
            else:
                out.append(attr)
        if not placed:
            out.append(new)
        self.attributes[:] = out


@dataclass(slots=True)
class MediaDescription(_Attributes):
    """One media section: the ``m=`` line and its ``c=``, ``a=`` and other lines.

    ``formats`` are the ``<fmt>`` tokens as text (payload type numbers for RTP). ``port`` 0
    means the stream is rejected or disabled. ``extra_lines`` holds ``(type, value)`` pairs for
    every line that is neither ``c=`` nor ``a=`` (``i=``, ``b=``, ``k=``, a second ``c=``,
    unknown types), in order.
    """

    media: str
    port: int
    proto: str
    formats: list[str] = field(default_factory=list)
    port_count: int | None = None
    connection: Connection | None = None
    attributes: list[Attribute] = field(default_factory=list)
    extra_lines: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse_m_line(cls, value: str) -> MediaDescription:
        """Parse the value of an ``m=`` line into a media description with no other lines."""
        parts = value.split()
        if len(parts) < 3:
            raise _bad(
                f"m= needs at least '<media> <port> <proto>', got {len(parts)} field(s) "
                f"in {_clip(value)}"
            )
        port_text, slash, count_text = parts[1].partition("/")
        port = _parse_uint(port_text, "m= port", maximum=65535)
        count = None
        if slash:
            count = _parse_uint(count_text, "m= port count")
            if count == 0:
                raise _bad(f"m= port count is 0 in {_clip(value)}")
        return cls(parts[0], port, parts[2], parts[3:], count)

    def m_line(self) -> str:
        """The value of the ``m=`` line."""
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        head = f"{self.media} {port} {self.proto}"
        return f"{head} {' '.join(self.formats)}" if self.formats else head

    @property
    def rejected(self) -> bool:
        """True when the port is 0 (the stream is rejected or disabled)."""
        return self.port == 0

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        """Every ``a=rtpmap`` by payload type (the first wins when one is repeated)."""
        maps: dict[int, RtpMap] = {}
        for value in self.get_attributes("rtpmap"):
            if value is None:
                raise _bad("a=rtpmap has no value")
            rtpmap = RtpMap.parse(value)
            maps.setdefault(rtpmap.payload_type, rtpmap)
        return maps

    def codec_for(self, fmt: str | int) -> RtpMap | None:
        """The codec of a payload type: its ``a=rtpmap``, else the RFC 3551 static entry."""
        text = str(fmt)
        if not (text.isascii() and text.isdigit()):
            return None
        pt = int(text)
        return self.rtpmaps.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)

    @property
    def fmtps(self) -> dict[str, str]:
        """Every ``a=fmtp:<fmt> <parameters>`` by format (the first wins when repeated)."""
        out: dict[str, str] = {}
        for value in self.get_attributes("fmtp"):
            if value is None:
                raise _bad("a=fmtp has no value")
            fmt, _, params = value.partition(" ")
            if not fmt:
                raise _bad(f"a=fmtp:{_clip(value)} has no format")
            out.setdefault(fmt, params.strip())
        return out

    def get_fmtp(self, fmt: str | int) -> str | None:
        """The ``a=fmtp`` parameters of one format, or ``None``."""
        return self.fmtps.get(str(fmt))

    def add_rtpmap(
        self,
        payload_type: int,
        encoding: str,
        clock_rate: int,
        channels: int | None = None,
        fmtp: str | None = None,
    ) -> None:
        """Append ``a=rtpmap`` (and ``a=fmtp`` when given) for a payload type."""
        self.add_attribute("rtpmap", str(RtpMap(payload_type, encoding, clock_rate, channels)))
        if fmtp is not None:
            self.add_attribute("fmtp", f"{payload_type} {fmtp}")

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in whole milliseconds (RFC 8866 allows a decimal), or ``None``."""
        value = self.get_attribute("ptime")
        if value is None:
            return None
        try:
            number = float(value.strip())
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number <= 0:
            raise _bad(f"a=ptime:{_clip(value)} is not a positive number of milliseconds")
        return max(1, round(number))

    @ptime.setter
    def ptime(self, value: int | None) -> None:
        if value is None:
            self.remove_attribute("ptime")
        elif value <= 0:
            raise InvalidArgumentError(f"ptime must be positive, not {value}")
        else:
            self.set_attribute("ptime", str(value))

    @property
    def rtcp_port(self) -> int | None:
        """The port of ``a=rtcp:<port> [...]`` (RFC 3605), or ``None``."""
        value = self.get_attribute("rtcp")
        if value is None:
            return None
        fields = value.split()
        if not fields:
            raise _bad("a=rtcp has no port")
        return _parse_uint(fields[0], "a=rtcp port", maximum=65535)

    @property
    def rtcp_mux(self) -> bool:
        """True when ``a=rtcp-mux`` (RFC 5761) is present."""
        return self.has_attribute("rtcp-mux")


@dataclass(slots=True)
class SessionDescription(_Attributes):
    """A whole SDP body.

    Build one directly (``SessionDescription(Origin(...), connection=Connection("10.0.0.1"),
    media=[...])``) or with :meth:`parse`; ``str()`` and ``bytes()`` serialize it.
    ``extra_lines`` holds the session-level lines that have no field of their own
    (``i u e p b z k``, unknown types) as ``(type, value)`` pairs, in order.
    """

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    timing: list[Timing] = field(default_factory=lambda: [Timing()])
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    version: int = 0
    extra_lines: list[tuple[str, str]] = field(default_factory=list)

    # -- accessors ---------------------------------------------------------------------------

    @property
    def audio(self) -> MediaDescription | None:
        """The first ``m=audio`` section with a non-zero port, or ``None``."""
        for media in self.media:
            if media.media == "audio" and media.port != 0:
                return media
        return None

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The connection that applies to a media section (its own ``c=``, else the session's)."""
        return media.connection or self.connection

    def effective_direction(self, media: MediaDescription) -> str:
        """The direction of a media section: its own, else the session's, else ``sendrecv``."""
        return media.direction or self.direction or "sendrecv"

    def copy(self) -> SessionDescription:
        """A deep copy that can be changed without touching this one."""
        return copy.deepcopy(self)

    # -- wire format -------------------------------------------------------------------------

    def __str__(self) -> str:
        lines = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        extras = self.extra_lines
        lines.extend(f"{t}={v}" for t, v in extras if t in _SESSION_BEFORE_C)
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines.extend(f"{t}={v}" for t, v in extras if t in _SESSION_BEFORE_T)
        for timing in self.timing:
            lines.append(f"t={timing.start} {timing.stop}")
            lines.extend(f"r={r}" for r in timing.repeats)
        lines.extend(f"{t}={v}" for t, v in extras if t not in _SESSION_BEFORE_T_OR_C)
        lines.extend(f"a={a}" for a in self.attributes)
        for media in self.media:
            lines.append(f"m={media.m_line()}")
            lines.extend(f"{t}={v}" for t, v in media.extra_lines if t == "i")
            if media.connection is not None:
                lines.append(f"c={media.connection}")
            lines.extend(f"{t}={v}" for t, v in media.extra_lines if t != "i")
            lines.extend(f"a={a}" for a in media.attributes)
        lines.append("")
        return "\r\n".join(lines)

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8", "surrogateescape")

    @classmethod
    def parse(cls, data: str | bytes) -> SessionDescription:
        """Parse an SDP body. Raises :class:`SdpError` (status 400) when it is malformed.

        Accepts CRLF or bare LF line endings and ignores blank lines. Bytes that are not UTF-8
        are kept (as surrogate escapes) so that ``bytes()`` gives them back unchanged.
        """
        if isinstance(data, bytes | bytearray | memoryview):
            text = bytes(data).decode("utf-8", "surrogateescape")
        elif isinstance(data, str):
            text = data
        else:
            raise InvalidArgumentError(f"SDP must be str or bytes, not {type(data).__name__}")
        return _Parser(text).run()


_SESSION_BEFORE_C = frozenset("iuep")
_SESSION_BEFORE_T = frozenset("bc")
_SESSION_BEFORE_T_OR_C = _SESSION_BEFORE_C | _SESSION_BEFORE_T
_SESSION_ONLY = frozenset("vostr")


class _Parser:
    """One pass over the lines of an SDP body."""

    __slots__ = ("lines",)

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")

    def _numbered(self) -> Iterator[tuple[int, str, str]]:
        for number, raw in enumerate(self.lines, 1):
            line = raw[:-1] if raw.endswith("\r") else raw
            if not line.strip():
                continue
            if len(line) < 2 or line[1] != "=" or not (line[0].isascii() and line[0].isalpha()):
                raise _bad(f"line {number}: expected '<type>=<value>', got {_clip(line)}")
            yield number, line[0], line[2:]

    def run(self) -> SessionDescription:
        lines = self._numbered()
        first = next(lines, None)
        if first is None:
            raise _bad("SDP body is empty")
        number, kind, value = first
        if kind != "v":
            raise _bad(f"line {number}: SDP must start with v=, got {kind}=")
        if value.strip() != "0":
            raise _bad(f"line {number}: unsupported SDP version {_clip(value)} (expected v=0)")

        origin: Origin | None = None
        name: str | None = None
        connection: Connection | None = None
        timing: list[Timing] = []
        attributes: list[Attribute] = []
        extras: list[tuple[str, str]] = []
        media_list: list[MediaDescription] = []
        media: MediaDescription | None = None

        for number, kind, value in lines:
            try:
                if kind == "m":
                    media = MediaDescription.parse_m_line(value)
                    media_list.append(media)
                elif kind == "a":
                    target = attributes if media is None else media.attributes
                    target.append(Attribute.parse(value))
                elif kind == "c":
                    conn = Connection.parse(value)
                    if media is None:
                        if connection is None:
                            connection = conn
                        else:
                            extras.append((kind, value))
                    elif media.connection is None:
                        media.connection = conn
                    else:
                        media.extra_lines.append((kind, value))
                elif media is not None:
                    if kind in _SESSION_ONLY:
                        raise _bad(f"{kind}= is not allowed after an m= line")
                    media.extra_lines.append((kind, value))
                elif kind == "o":
                    if origin is not None:
                        raise _bad("second o= line")
                    origin = Origin.parse(value)
                elif kind == "s":
                    if name is not None:
                        raise _bad("second s= line")
                    name = value
                elif kind == "t":
                    timing.append(Timing.parse(value))
                elif kind == "r":
                    if not timing:
                        raise _bad("r= line before any t= line")
                    timing[-1].repeats.append(value)
                elif kind == "v":
                    raise _bad("second v= line")
                else:
                    extras.append((kind, value))
            except SdpError as exc:
                raise SdpError(f"line {number}: {exc}", status=exc.status) from None

        if origin is None:
            raise _bad("SDP has no o= line")
        if name is None:
            raise _bad("SDP has no s= line")
        for index, item in enumerate(media_list, 1):
            if item.port != 0 and item.connection is None and connection is None:
                raise _bad(
                    f"m={item.media} (media section {index}) has no c= line and there is no "
                    "session-level c= line"
                )
        return SessionDescription(
            origin=origin,
            session_name=name,
            connection=connection,
            timing=timing,
            attributes=attributes,
            media=media_list,
            version=0,
            extra_lines=extras,
        )
