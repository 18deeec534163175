"""RTP packets (RFC 3550 §5.1) as a wire object, and the RTP/RTCP demultiplexer of RFC 5761.

:meth:`RtpPacket.parse` turns a datagram into a :class:`RtpPacket` and ``bytes(packet)`` turns
it back. Both run once per media packet, so they are kept lean: one precompiled
:class:`struct.Struct` for the fixed header and a fast path for the common packet without
CSRCs, header extension or padding.

Malformed input raises :class:`RtpError` (a :class:`~sessioncore.errors.ProtocolError`) with a
message that says what is wrong; no ``IndexError`` or ``struct.error`` leaks out. Serialising a
packet whose fields are out of range raises
:class:`~sessioncore.errors.InvalidArgumentError`: that is the local caller's mistake.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sessioncore.errors import InvalidArgumentError, ProtocolError

__all__ = ["RTP_HEADER_SIZE", "RtpError", "RtpPacket", "is_rtcp"]

#: Size of the fixed RTP header.
RTP_HEADER_SIZE = 12

_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")
_unpack_header = _HEADER.unpack_from
_pack_header = _HEADER.pack


class RtpError(ProtocolError):
    """An RTP packet received from the network is malformed."""


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet.

    ``extension_profile`` is the 16-bit "defined by profile" field of the header extension
    (``0xBEDE`` for RFC 8285 one-byte headers) or ``None`` when the packet has no extension;
    ``extension`` holds the extension data (a multiple of 4 bytes), unparsed. ``padding_size``
    is the number of padding octets including the final count octet (0 = no padding).
    """

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension_profile: int | None = None
    extension: bytes = b""
    padding_size: int = 0

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Parse one RTP packet; raise :class:`RtpError` when it is malformed."""
        if len(data) < RTP_HEADER_SIZE:
            raise RtpError(
                f"RTP packet too short: {len(data)} bytes, the fixed header needs {RTP_HEADER_SIZE}"
            )
        first, second, seq, ts, ssrc = _unpack_header(data)
        if first == 0x80:  # V=2, P=0, X=0, CC=0: the common case
            return cls(second & 0x7F, seq, ts, ssrc, bytes(data[12:]), second > 0x7F)
        if first >> 6 != 2:
            raise RtpError(f"RTP version must be 2, got {first >> 6}")
        return cls._parse_slow(data, first, second, seq, ts, ssrc)

    @classmethod
    def _parse_slow(
        cls,
        data: bytes | bytearray | memoryview,
        first: int,
        second: int,
        seq: int,
        ts: int,
        ssrc: int,
    ) -> RtpPacket:
        size = len(data)
        cc = first & 0x0F
        pos = RTP_HEADER_SIZE + 4 * cc
        if size < pos:
            raise RtpError(
                f"RTP packet too short for {cc} CSRC identifiers: {size} bytes, need {pos}"
            )
        csrc = struct.unpack_from(f"!{cc}I", data, RTP_HEADER_SIZE) if cc else ()
        extension_profile: int | None = None
        extension = b""
        if first & 0x10:
            if size < pos + 4:
                raise RtpError(
                    f"RTP packet too short for the extension header: {size} bytes, need {pos + 4}"
                )
            extension_profile, words = _EXT_HEADER.unpack_from(data, pos)
            pos += 4
            end = pos + 4 * words
            if size < end:
                raise RtpError(
                    f"RTP header extension of {words} words runs past the end of the packet "
                    f"({size} bytes, need {end})"
                )
            extension = bytes(data[pos:end])
            pos = end
        padding_size = 0
        if first & 0x20:
            if size <= pos:
                raise RtpError("RTP padding bit set but the packet has no room for padding")
            padding_size = data[-1]
            if padding_size == 0:
                raise RtpError("RTP padding count is 0 (it must count itself)")
            if padding_size > size - pos:
                raise RtpError(
                    f"RTP padding count {padding_size} exceeds the {size - pos} bytes "
                    "after the header"
                )
        payload = bytes(data[pos : size - padding_size])
        return cls(
            second & 0x7F,
            seq,
            ts,
            ssrc,
            payload,
            second > 0x7F,
            csrc,
            extension_profile,
            extension,
            padding_size,
        )

    def __bytes__(self) -> bytes:
        """Serialise the packet; out-of-range fields raise ``InvalidArgumentError``."""
        pt = self.payload_type
        if not 0 <= pt <= 127:
            raise InvalidArgumentError(f"RTP payload type {pt} is out of range 0..127")
        second = pt | 0x80 if self.marker else pt
        csrc = self.csrc
        if not csrc and self.extension_profile is None and not self.padding_size:
            try:
                return _pack_header(
                    0x80, second, self.sequence_number, self.timestamp, self.ssrc
                ) + (self.payload)
            except struct.error as exc:
                raise InvalidArgumentError(f"RTP header field out of range: {exc}") from None
        return self._bytes_slow(second)

    def _bytes_slow(self, second: int) -> bytes:
        csrc = self.csrc
        if len(csrc) > 15:
            raise InvalidArgumentError(f"an RTP packet carries at most 15 CSRCs, got {len(csrc)}")
        first = 0x80 | len(csrc)
        if not 0 <= self.padding_size <= 255:
            raise InvalidArgumentError(f"RTP padding size {self.padding_size} is out of 0..255")
        if self.padding_size:
            first |= 0x20
        parts: list[bytes] = []
        try:
            if self.extension_profile is not None:
                first |= 0x10
                if len(self.extension) % 4:
                    raise InvalidArgumentError(
                        f"RTP header extension must be a multiple of 4 bytes, "
                        f"got {len(self.extension)}"
                    )
                parts.append(_EXT_HEADER.pack(self.extension_profile, len(self.extension) // 4))
                parts.append(self.extension)
            header = _pack_header(first, second, self.sequence_number, self.timestamp, self.ssrc)
            if csrc:
                header += struct.pack(f"!{len(csrc)}I", *csrc)
        except struct.error as exc:
            raise InvalidArgumentError(f"RTP header field out of range: {exc}") from None
        parts.append(self.payload)
        if self.padding_size:
            parts.append(bytes(self.padding_size - 1) + bytes((self.padding_size,)))
        return header + b"".join(parts)


def is_rtcp(data: bytes) -> bool:
    """True when a datagram on a multiplexed port is RTCP, not RTP (RFC 5761 §4).

    RTCP packet types 192-223 sit where RTP would have the marker bit set and payload types
    64-95, which RFC 5761 keeps free for this reason.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223
