"""RTCP packets (RFC 3550 §6) as wire objects, compound packets, and NTP time helpers.

:func:`parse_compound` splits a datagram into packets: :class:`SenderReport`,
:class:`ReceiverReport`, :class:`SourceDescription`, :class:`Bye`, and
:class:`UnknownRtcpPacket` for every other type (APP, feedback, XR ...), kept opaque so that it
survives a round trip. ``bytes(packet)`` serialises one packet and :func:`serialize_compound`
a list of them.

Malformed input raises :class:`RtcpError` (a :class:`~sessioncore.errors.ProtocolError`) with a
message naming the packet and what is wrong. Out-of-range fields given to a serialiser raise
:class:`~sessioncore.errors.InvalidArgumentError`.

NTP timestamps are 64-bit fixed point (32.32) seconds since 1900; RTCP also uses the "middle
32 bits" (16.16) for LSR and DLSR (§6.4.1). Helpers convert between those and Unix time.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from sessioncore.errors import InvalidArgumentError, ProtocolError

__all__ = [
    "NTP_EPOCH_OFFSET",
    "RTCP_APP",
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "SDES_CNAME",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpError",
    "RtcpPacket",
    "SdesChunk",
    "SdesItem",
    "SenderReport",
    "SourceDescription",
    "UnknownRtcpPacket",
    "ntp_from_unix",
    "ntp_middle32",
    "ntp_short_from_seconds",
    "parse_compound",
    "seconds_from_ntp_short",
    "serialize_compound",
    "unix_from_ntp",
]

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204

SDES_END = 0
SDES_CNAME = 1

#: Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
NTP_EPOCH_OFFSET = 2_208_988_800

_HEADER = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IIIIII")
_SR_INFO = struct.Struct("!IQIII")
_SSRC = struct.Struct("!I")
_NAMES = {RTCP_SR: "SR", RTCP_RR: "RR", RTCP_SDES: "SDES", RTCP_BYE: "BYE", RTCP_APP: "APP"}


class RtcpError(ProtocolError):
    """An RTCP packet received from the network is malformed."""


# --- NTP time ---------------------------------------------------------------------------------


def ntp_from_unix(t: float) -> int:
    """The 64-bit NTP timestamp (32.32 fixed point since 1900) for Unix time ``t``."""
    whole = math.floor(t)
    fraction = round((t - whole) * 4294967296.0)  # may round up to 2**32: the carry is right
    return (((whole + NTP_EPOCH_OFFSET) << 32) + fraction) & 0xFFFFFFFFFFFFFFFF


def unix_from_ntp(ntp: int) -> float:
    """Unix time for a 64-bit NTP timestamp (the reverse of :func:`ntp_from_unix`)."""
    return ntp / 4294967296.0 - NTP_EPOCH_OFFSET


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP timestamp (16.16 seconds), as used for LSR."""
    return (ntp >> 16) & 0xFFFFFFFF


def ntp_short_from_seconds(seconds: float) -> int:
    """A duration in seconds as 16.16 fixed point (the unit of DLSR), clamped to 32 bits."""
    value = round(seconds * 65536.0)
    return min(max(value, 0), 0xFFFFFFFF)


def seconds_from_ntp_short(value: int) -> float:
    """A 16.16 fixed-point value (LSR, DLSR, a middle-32 difference) in seconds."""
    return value / 65536.0


# --- report blocks ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block (RFC 3550 §6.4.1) about the source ``ssrc``.

    ``fraction_lost`` is 8-bit fixed point (0-255), ``packets_lost`` a 24-bit signed
    cumulative count, ``highest_seq`` the extended highest sequence number, ``jitter`` in
    timestamp units, ``lsr`` and ``dlsr`` in 16.16 NTP seconds.
    """

    ssrc: int
    fraction_lost: int = 0
    packets_lost: int = 0
    highest_seq: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    SIZE = 24

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> ReportBlock:
        """Parse a 24-byte report block at ``offset``."""
        if len(data) - offset < 24:
            raise RtcpError(f"report block truncated: {len(data) - offset} bytes, need 24")
        ssrc, lost_word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)

    def __bytes__(self) -> bytes:
        """Serialise the block (24 bytes)."""
        if not 0 <= self.fraction_lost <= 255:
            raise InvalidArgumentError(f"fraction_lost {self.fraction_lost} is out of 0..255")
        if not -0x800000 <= self.packets_lost <= 0x7FFFFF:
            raise InvalidArgumentError(
                f"packets_lost {self.packets_lost} does not fit in 24 bits (signed)"
            )
        lost_word = (self.fraction_lost << 24) | (self.packets_lost & 0xFFFFFF)
        try:
            return _BLOCK.pack(
                self.ssrc, lost_word, self.highest_seq, self.jitter, self.lsr, self.dlsr
            )
        except struct.error as exc:
            raise InvalidArgumentError(f"report block field out of range: {exc}") from None


def _parse_blocks(name: str, body: bytes, offset: int, count: int) -> list[ReportBlock]:
    need = offset + 24 * count
    if len(body) < need:
        raise RtcpError(
            f"{name} with {count} report blocks needs {need + 4} bytes, "
            f"its length gives {len(body) + 4}"
        )
    return [ReportBlock.parse(body, offset + 24 * i) for i in range(count)]


def _check_count(name: str, count: int) -> None:
    if count > 31:
        raise InvalidArgumentError(f"an RTCP {name} holds at most 31 entries, got {count}")


def _check_extension(name: str, extension: bytes) -> None:
    if len(extension) % 4:
        raise InvalidArgumentError(
            f"RTCP {name} extension must be a multiple of 4 bytes, got {len(extension)}"
        )


def _packet(count: int, packet_type: int, body: bytes) -> bytes:
    return _HEADER.pack(0x80 | count, packet_type, len(body) // 4) + body


# --- packets ----------------------------------------------------------------------------------


@dataclass(slots=True)
class SenderReport:
    """An SR: sender info plus reception reports (RFC 3550 §6.4.1).

    ``ntp_timestamp`` is the full 64-bit NTP time; ``extension`` is profile-specific data after
    the report blocks (kept verbatim).
    """

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)
    extension: bytes = b""

    packet_type = RTCP_SR

    @classmethod
    def _parse(cls, count: int, body: bytes) -> SenderReport:
        if len(body) < 24:
            raise RtcpError(f"SR too short: {len(body) + 4} bytes, need at least 28")
        ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(body)
        reports = _parse_blocks("SR", body, 24, count)
        return cls(ssrc, ntp, rtp_ts, packets, octets, reports, body[24 + 24 * count :])

    def __bytes__(self) -> bytes:
        """Serialise the SR."""
        _check_count("SR", len(self.reports))
        _check_extension("SR", self.extension)
        try:
            info = _SR_INFO.pack(
                self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count,
                self.octet_count,
            )  # fmt: skip
        except struct.error as exc:
            raise InvalidArgumentError(f"SR field out of range: {exc}") from None
        body = b"".join([info, *(bytes(r) for r in self.reports), self.extension])
        return _packet(len(self.reports), RTCP_SR, body)


@dataclass(slots=True)
class ReceiverReport:
    """An RR: reception reports from a source that has not sent RTP lately (§6.4.2)."""

    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)
    extension: bytes = b""

    packet_type = RTCP_RR

    @classmethod
    def _parse(cls, count: int, body: bytes) -> ReceiverReport:
        if len(body) < 4:
            raise RtcpError(f"RR too short: {len(body) + 4} bytes, need at least 8")
        (ssrc,) = _SSRC.unpack_from(body)
        reports = _parse_blocks("RR", body, 4, count)
        return cls(ssrc, reports, body[4 + 24 * count :])

    def __bytes__(self) -> bytes:
        """Serialise the RR."""
        _check_count("RR", len(self.reports))
        _check_extension("RR", self.extension)
        try:
            head = _SSRC.pack(self.ssrc)
        except struct.error as exc:
            raise InvalidArgumentError(f"RR field out of range: {exc}") from None
        body = b"".join([head, *(bytes(r) for r in self.reports), self.extension])
        return _packet(len(self.reports), RTCP_RR, body)


#: One SDES item: (type, value). Type 1 is CNAME.
SdesItem = tuple[int, bytes]
#: One SDES chunk: (ssrc, items).
SdesChunk = tuple[int, list[SdesItem]]


@dataclass(slots=True)
class SourceDescription:
    """An SDES packet (§6.5): per source, a list of ``(item type, value)`` pairs."""

    chunks: list[SdesChunk] = field(default_factory=list)

    packet_type = RTCP_SDES

    def cname(self, ssrc: int) -> str | None:
        """The CNAME given for ``ssrc``, decoded as UTF-8, or None."""
        for chunk_ssrc, items in self.chunks:
            if chunk_ssrc == ssrc:
                for kind, value in items:
                    if kind == SDES_CNAME:
                        return value.decode("utf-8", "replace")
        return None

    @classmethod
    def _parse(cls, count: int, body: bytes) -> SourceDescription:
        chunks: list[SdesChunk] = []
        pos = 0
        size = len(body)
        for index in range(count):
            if size - pos < 4:
                raise RtcpError(f"SDES chunk {index + 1} of {count} is truncated")
            (ssrc,) = _SSRC.unpack_from(body, pos)
            pos += 4
            items: list[SdesItem] = []
            while True:
                if pos >= size:
                    raise RtcpError(f"SDES chunk {index + 1} has no end-of-items null octet")
                kind = body[pos]
                if kind == SDES_END:
                    break
                if pos + 2 > size or pos + 2 + body[pos + 1] > size:
                    raise RtcpError(
                        f"SDES item of type {kind} in chunk {index + 1} runs past the "
                        "end of the packet"
                    )
                length = body[pos + 1]
                items.append((kind, body[pos + 2 : pos + 2 + length]))
                pos += 2 + length
            pos = (pos + 4) & ~3  # the null octet(s) up to the next 32-bit boundary
            chunks.append((ssrc, items))
        return cls(chunks)

    def __bytes__(self) -> bytes:
        """Serialise the SDES packet (each chunk null-terminated and 32-bit aligned)."""
        _check_count("SDES", len(self.chunks))
        parts: list[bytes] = []
        for ssrc, items in self.chunks:
            try:
                chunk = bytearray(_SSRC.pack(ssrc))
            except struct.error as exc:
                raise InvalidArgumentError(f"SDES SSRC out of range: {exc}") from None
            for kind, value in items:
                if not 1 <= kind <= 255:
                    raise InvalidArgumentError(f"SDES item type {kind} is out of 1..255")
                if len(value) > 255:
                    raise InvalidArgumentError(
                        f"SDES item of type {kind} is {len(value)} bytes, at most 255 allowed"
                    )
                chunk += bytes((kind, len(value)))
                chunk += value
            chunk += bytes(4 - len(chunk) % 4)  # at least one null octet
            parts.append(bytes(chunk))
        return _packet(len(self.chunks), RTCP_SDES, b"".join(parts))


@dataclass(slots=True)
class Bye:
    """A BYE packet (§6.6): the sources leaving and an optional reason."""

    sources: list[int] = field(default_factory=list)
    reason: str | None = None

    packet_type = RTCP_BYE

    @classmethod
    def _parse(cls, count: int, body: bytes) -> Bye:
        need = 4 * count
        if len(body) < need:
            raise RtcpError(
                f"BYE with {count} sources needs {need + 4} bytes, its length gives {len(body) + 4}"
            )
        sources = list(struct.unpack_from(f"!{count}I", body)) if count else []
        reason: str | None = None
        if len(body) > need:
            length = body[need]
            if need + 1 + length > len(body):
                raise RtcpError(f"BYE reason of {length} bytes runs past the end of the packet")
            reason = body[need + 1 : need + 1 + length].decode("utf-8", "replace")
        return cls(sources, reason)

    def __bytes__(self) -> bytes:
        """Serialise the BYE (the reason padded with nulls to a 32-bit boundary)."""
        _check_count("BYE", len(self.sources))
        try:
            body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        except struct.error as exc:
            raise InvalidArgumentError(f"BYE SSRC out of range: {exc}") from None
        if self.reason is not None:
            text = self.reason.encode("utf-8")
            if len(text) > 255:
                raise InvalidArgumentError(f"BYE reason is {len(text)} bytes, at most 255")
            reason = bytes((len(text),)) + text
            body += reason + bytes(-len(reason) % 4)
        return _packet(len(self.sources), RTCP_BYE, body)


@dataclass(slots=True)
class UnknownRtcpPacket:
    """Any other RTCP packet (APP, RTPFB, PSFB, XR ...), kept as its count field and body."""

    packet_type: int
    count: int = 0
    payload: bytes = b""

    def __bytes__(self) -> bytes:
        """Serialise the packet with its original count field and body."""
        if not 0 <= self.count <= 31:
            raise InvalidArgumentError(f"RTCP count field {self.count} is out of 0..31")
        if not 0 <= self.packet_type <= 255:
            raise InvalidArgumentError(f"RTCP packet type {self.packet_type} is out of 0..255")
        if len(self.payload) % 4:
            raise InvalidArgumentError(
                f"RTCP packet body must be a multiple of 4 bytes, got {len(self.payload)}"
            )
        return _HEADER.pack(0x80 | self.count, self.packet_type, len(self.payload) // 4) + (
            self.payload
        )


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | UnknownRtcpPacket


# --- compound packets -------------------------------------------------------------------------


def parse_compound(data: bytes | bytearray | memoryview) -> list[RtcpPacket]:
    """Parse a (compound) RTCP datagram into its packets.

    Checks RFC 3550 A.2's structure: version 2 everywhere, lengths that add up exactly to the
    datagram, and a padding count that fits inside its packet. Reduced-size RTCP (RFC 5506) is
    accepted: the first packet need not be an SR or RR.
    """
    size = len(data)
    if size == 0:
        raise RtcpError("empty RTCP packet")
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < size:
        index = len(packets) + 1
        if size - pos < 4:
            raise RtcpError(
                f"RTCP packet {index} truncated: {size - pos} bytes left at offset {pos}, "
                "a header needs 4"
            )
        first, packet_type, words = _HEADER.unpack_from(data, pos)
        version = first >> 6
        if version != 2:
            raise RtcpError(f"RTCP packet {index}: version must be 2, got {version}")
        end = pos + 4 * (words + 1)
        if end > size:
            raise RtcpError(
                f"RTCP packet {index} (type {packet_type}) length field says {4 * (words + 1)} "
                f"bytes, only {size - pos} remain"
            )
        body = bytes(data[pos + 4 : end])
        if first & 0x20:
            pad = data[end - 1]
            if pad == 0 or pad > len(body):
                raise RtcpError(
                    f"RTCP packet {index} (type {packet_type}) has an invalid padding count "
                    f"{pad} for a {len(body)}-byte body"
                )
            body = body[:-pad]
        count = first & 0x1F
        try:
            packets.append(_parse_one(packet_type, count, body))
        except RtcpError as exc:
            name = _NAMES.get(packet_type, str(packet_type))
            raise RtcpError(f"RTCP packet {index} ({name}): {exc}") from None
        pos = end
    return packets


def _parse_one(packet_type: int, count: int, body: bytes) -> RtcpPacket:
    if packet_type == RTCP_SR:
        return SenderReport._parse(count, body)
    if packet_type == RTCP_RR:
        return ReceiverReport._parse(count, body)
    if packet_type == RTCP_SDES:
        return SourceDescription._parse(count, body)
    if packet_type == RTCP_BYE:
        return Bye._parse(count, body)
    return UnknownRtcpPacket(packet_type, count, body)


def serialize_compound(packets: Iterable[RtcpPacket]) -> bytes:
    """Concatenate the serialised packets into one compound RTCP datagram."""
    return b"".join(bytes(p) for p in packets)
