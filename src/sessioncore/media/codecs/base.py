"""The codec interface: PCM in, RTP payload out, and back.

A :class:`Codec` turns 16-bit signed little-endian mono PCM (at :attr:`Codec.sample_rate`) into
RTP payload bytes and back. It is stateless from the caller's point of view for G.711; stateful
codecs (G.722, Opus) keep their state in the instance, so the registry hands out a new instance
per call of :func:`~sessioncore.media.codecs.get_codec` and one instance serves one direction of
one stream.

``clock_rate`` (the RTP timestamp rate, what SDP's ``a=rtpmap`` says) and ``sample_rate`` (the
PCM rate) differ for some codecs: G.722 has an RTP clock of 8000 Hz for 16000 Hz audio (RFC 3551
§4.5.2). :meth:`Codec.frame_samples` counts PCM samples, :meth:`Codec.timestamp_increment` RTP
clock ticks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from sessioncore.errors import InvalidArgumentError

__all__ = ["Codec", "CodecError", "UnknownCodecError", "check_pcm"]


class CodecError(InvalidArgumentError):
    """Audio given to a codec is malformed (odd byte count, bad frame length ...)."""


class UnknownCodecError(CodecError):
    """No codec is registered under the requested name; the message lists the known ones."""

    def __init__(self, name: str, known: list[str]):
        super().__init__(
            f"unknown codec {name!r}; available: {', '.join(known) if known else '(none)'}"
        )
        self.name = name
        self.known = known


def check_pcm(pcm: bytes, codec_name: str) -> None:
    """Raise :class:`CodecError` unless ``pcm`` is bytes-like 16-bit PCM (an even byte count)."""
    if not isinstance(pcm, bytes | bytearray | memoryview):
        raise CodecError(f"{codec_name}: PCM must be bytes, not {type(pcm).__name__}")
    if len(pcm) % 2:
        raise CodecError(
            f"{codec_name}: PCM is 16-bit samples, so its length must be even "
            f"(got {len(pcm)} bytes)"
        )


class Codec(ABC):
    """An audio codec for one direction of one RTP stream.

    Subclasses set the class attributes and implement :meth:`encode` and :meth:`decode`.
    """

    #: RTP encoding name as in SDP ``a=rtpmap`` (``"PCMU"``).
    name: str
    #: The static payload type, or the default dynamic one we offer.
    payload_type: int
    #: RTP timestamp rate (Hz).
    clock_rate: int
    #: PCM sample rate (Hz) that :meth:`encode` takes and :meth:`decode` returns.
    sample_rate: int
    #: Audio channels (sessioncore only handles mono).
    channels: int = 1

    @abstractmethod
    def encode(self, pcm: bytes) -> bytes:
        """Encode 16-bit signed little-endian mono PCM into one RTP payload.

        Raises :class:`CodecError` for malformed PCM (an odd number of bytes).
        """

    @abstractmethod
    def decode(self, payload: bytes) -> bytes:
        """Decode one RTP payload into 16-bit signed little-endian mono PCM."""

    def frame_samples(self, ptime_ms: int) -> int:
        """The number of PCM samples (at :attr:`sample_rate`) in a packet of ``ptime_ms``."""
        return self._per_ptime(self.sample_rate, ptime_ms)

    def timestamp_increment(self, ptime_ms: int) -> int:
        """RTP timestamp ticks (at :attr:`clock_rate`) per packet of ``ptime_ms``."""
        return self._per_ptime(self.clock_rate, ptime_ms)

    def silence(self, samples: int) -> bytes:
        """An encoded payload of ``samples`` PCM samples of silence."""
        return self.encode(bytes(2 * self._check_samples(samples)))

    def _check_samples(self, samples: int) -> int:
        if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
            raise CodecError(f"{self.name}: samples must be a non-negative int, not {samples!r}")
        return samples

    def _per_ptime(self, rate: int, ptime_ms: int) -> int:
        if not isinstance(ptime_ms, int) or isinstance(ptime_ms, bool) or ptime_ms <= 0:
            raise CodecError(f"{self.name}: ptime must be a positive int of ms, not {ptime_ms!r}")
        count, rest = divmod(rate * ptime_ms, 1000)
        if rest:
            raise CodecError(f"{self.name}: {ptime_ms} ms is not a whole number of samples")
        return count

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name}/{self.clock_rate} pt={self.payload_type} "
            f"pcm={self.sample_rate} Hz>"
        )
