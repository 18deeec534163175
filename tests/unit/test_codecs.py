"""Codec interface, G.711 and the codec registry."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessioncore.errors import InvalidArgumentError
from sessioncore.media.codecs import (
    _REGISTRY,
    Codec,
    CodecError,
    PcmaCodec,
    PcmuCodec,
    UnknownCodecError,
    available_codecs,
    get_codec,
    register_codec,
)


def _sine(freq: float, amplitude: float, samples: int, rate: int = 8000) -> list[int]:
    return [round(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(samples)]


def _pcm(samples: list[int]) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def _unpack(pcm: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(pcm) // 2}h", pcm))


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
def test_sine_round_trip_is_within_g711_error(name: str) -> None:
    codec = get_codec(name)
    original = _sine(1000, 16000, 800)
    encoded = codec.encode(_pcm(original))
    assert len(encoded) == 800  # one byte per sample
    decoded = _unpack(codec.decode(encoded))
    assert len(decoded) == len(original)
    for x, y in zip(original, decoded, strict=True):
        # G.711 is logarithmic: the error grows with the magnitude, at most ~1/16 of it + a step
        assert abs(x - y) <= abs(x) / 16 + 16, (x, y)
    signal = sum(x * x for x in original)
    noise = sum((x - y) ** 2 for x, y in zip(original, decoded, strict=True))
    assert 10 * math.log10(signal / noise) > 30  # SNR of G.711 at this level is ~38 dB


def test_known_code_values() -> None:
    assert PcmuCodec().encode(_pcm([0, 0])) == b"\xff\xff"
    assert PcmaCodec().encode(_pcm([0])) == b"\xd5"
    assert _unpack(PcmuCodec().decode(b"\xff")) == [0]
    assert _unpack(PcmaCodec().decode(b"\xd5")) == [8]  # A-law has no exact zero
    assert PcmuCodec().encode(_pcm([32767, -32768])) == b"\x80\x00"
    assert PcmaCodec().encode(_pcm([32767, -32768])) == b"\xaa\x2a"


@pytest.mark.parametrize("codec", [PcmuCodec(), PcmaCodec()])
def test_silence_and_frame_sizes(codec: Codec) -> None:
    assert codec.frame_samples(20) == 160
    assert codec.timestamp_increment(30) == 240
    silence = codec.silence(160)
    assert len(silence) == 160
    assert silence == codec.encode(bytes(320))
    assert set(_unpack(codec.decode(silence))) <= {0, 8}
    assert codec.silence(0) == b""
    assert (codec.channels, codec.clock_rate, codec.sample_rate) == (1, 8000, 8000)
    assert codec.name in repr(codec)


@pytest.mark.parametrize("codec", [PcmuCodec(), PcmaCodec()])
def test_bad_input_raises_typed_errors(codec: Codec) -> None:
    with pytest.raises(CodecError, match="even"):
        codec.encode(b"\x00\x01\x02")
    with pytest.raises(CodecError, match="bytes"):
        codec.encode("abcd")  # type: ignore[arg-type]
    with pytest.raises(CodecError, match="ptime"):
        codec.frame_samples(0)
    with pytest.raises(CodecError, match="ptime"):
        codec.frame_samples(True)
    with pytest.raises(CodecError, match="samples"):
        codec.silence(-1)
    assert issubclass(CodecError, InvalidArgumentError)


def test_fractional_ptime_rejected() -> None:
    class Odd(PcmuCodec):
        sample_rate = 11025

    with pytest.raises(CodecError, match="whole number"):
        Odd().frame_samples(10)


@given(st.binary(max_size=400))
def test_decode_accepts_every_byte_and_reencodes_pcmu(payload: bytes) -> None:
    codec = PcmuCodec()
    pcm = codec.decode(payload)
    assert len(pcm) == 2 * len(payload)
    # every μ-law code but the negative zero (0x7F, decodes to 0 like 0xFF) is a fixed point
    assert codec.encode(pcm) == payload.replace(b"\x7f", b"\xff")


@given(st.lists(st.integers(-32768, 32767), max_size=200))
def test_alaw_decode_encode_is_idempotent(samples: list[int]) -> None:
    codec = PcmaCodec()
    once = codec.encode(_pcm(samples))
    assert codec.encode(codec.decode(once)) == once


def test_registry_lookup_is_case_insensitive_and_gives_new_instances() -> None:
    assert available_codecs()[:2] == ["PCMU", "PCMA"]
    a, b = get_codec("pcmu"), get_codec(" PCMU ")
    assert isinstance(a, PcmuCodec) and a is not b
    assert isinstance(get_codec("Pcma"), PcmaCodec)


def test_unknown_codec_names_the_known_ones() -> None:
    with pytest.raises(UnknownCodecError) as info:
        get_codec("opus")
    assert isinstance(info.value, InvalidArgumentError)
    assert "'opus'" in str(info.value) and "PCMU" in str(info.value) and "PCMA" in str(info.value)
    assert info.value.known[:2] == ["PCMU", "PCMA"]


def test_register_a_codec() -> None:
    class Loud(PcmuCodec):
        name = "L16-test"

    try:
        register_codec(Loud, "L16-test")
        assert "L16-test" in available_codecs()
        assert isinstance(get_codec("l16-TEST"), Loud)
        with pytest.raises(InvalidArgumentError, match="already registered"):
            register_codec(Loud, "l16-test")
        register_codec(PcmaCodec, "l16-test", replace=True)
        assert isinstance(get_codec("L16-test"), PcmaCodec)
        with pytest.raises(InvalidArgumentError):
            register_codec(Loud, "  ")
        with pytest.raises(InvalidArgumentError):
            register_codec(42, "x")  # type: ignore[arg-type]
    finally:
        _REGISTRY.pop("l16-test", None)
    assert "L16-test" not in available_codecs()
