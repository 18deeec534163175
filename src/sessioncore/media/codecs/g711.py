"""G.711 μ-law (PCMU, payload type 0) and A-law (PCMA, payload type 8), RFC 3551 §4.5.14.

Both work on 8000 Hz PCM, one byte per sample. The conversion is done by :mod:`audioop` in C
(the standard library up to Python 3.12, the ``audioop-lts`` package from 3.13 on, which
installs under the same name), never one sample at a time in Python.
"""

from __future__ import annotations

import warnings

from sessioncore.media.codecs.base import Codec, check_pcm

with warnings.catch_warnings():  # 3.11/3.12 warn that the stdlib module is deprecated
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["PcmaCodec", "PcmuCodec"]

_ULAW_SILENCE = 0xFF  # μ-law code of a zero sample
_ALAW_SILENCE = 0xD5  # A-law code of a zero sample


class PcmuCodec(Codec):
    """G.711 μ-law: 8000 Hz, static payload type 0."""

    name = "PCMU"
    payload_type = 0
    clock_rate = 8000
    sample_rate = 8000

    def encode(self, pcm: bytes) -> bytes:
        """Encode 16-bit PCM into μ-law bytes (one byte per sample)."""
        check_pcm(pcm, self.name)
        return audioop.lin2ulaw(pcm, 2)

    def decode(self, payload: bytes) -> bytes:
        """Decode μ-law bytes into 16-bit PCM (every byte value is valid)."""
        return audioop.ulaw2lin(payload, 2)

    def silence(self, samples: int) -> bytes:
        """``samples`` bytes of μ-law silence (0xFF)."""
        return bytes([_ULAW_SILENCE]) * self._check_samples(samples)


class PcmaCodec(Codec):
    """G.711 A-law: 8000 Hz, static payload type 8."""

    name = "PCMA"
    payload_type = 8
    clock_rate = 8000
    sample_rate = 8000

    def encode(self, pcm: bytes) -> bytes:
        """Encode 16-bit PCM into A-law bytes (one byte per sample)."""
        check_pcm(pcm, self.name)
        return audioop.lin2alaw(pcm, 2)

    def decode(self, payload: bytes) -> bytes:
        """Decode A-law bytes into 16-bit PCM (every byte value is valid)."""
        return audioop.alaw2lin(payload, 2)

    def silence(self, samples: int) -> bytes:
        """``samples`` bytes of A-law silence (0xD5)."""
        return bytes([_ALAW_SILENCE]) * self._check_samples(samples)
