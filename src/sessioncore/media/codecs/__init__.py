"""Audio codecs and their registry.

``get_codec("pcmu")`` returns a new :class:`Codec` instance (names are case-insensitive);
``register_codec(factory, name)`` adds one (G.722 and Opus slot in here later);
``available_codecs()`` lists the registered names in registration order. G.711 μ-law (``PCMU``)
and A-law (``PCMA``) are built in.
"""

from __future__ import annotations

from collections.abc import Callable

from sessioncore.errors import InvalidArgumentError
from sessioncore.media.codecs.base import Codec, CodecError, UnknownCodecError
from sessioncore.media.codecs.g711 import PcmaCodec, PcmuCodec

__all__ = [
    "Codec",
    "CodecError",
    "PcmaCodec",
    "PcmuCodec",
    "UnknownCodecError",
    "available_codecs",
    "get_codec",
    "register_codec",
]

# casefolded name -> (name as registered, factory); dicts keep registration order
_REGISTRY: dict[str, tuple[str, Callable[[], Codec]]] = {}


def register_codec(factory: Callable[[], Codec], name: str, *, replace: bool = False) -> None:
    """Register ``factory`` (a zero-argument callable returning a new :class:`Codec`) as ``name``.

    Names are case-insensitive. Registering a name twice raises :class:`InvalidArgumentError`
    unless ``replace=True``.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError(f"codec name must be a non-empty string, not {name!r}")
    if not callable(factory):
        raise InvalidArgumentError(f"codec factory for {name!r} is not callable")
    key = name.strip().casefold()
    if key in _REGISTRY and not replace:
        raise InvalidArgumentError(
            f"codec {name!r} is already registered (pass replace=True to override)"
        )
    _REGISTRY[key] = (name.strip(), factory)


def get_codec(name: str) -> Codec:
    """A new instance of the codec registered as ``name`` (case-insensitive).

    Raises :class:`UnknownCodecError` (an :class:`InvalidArgumentError`) naming the known codecs.
    """
    entry = _REGISTRY.get(name.strip().casefold()) if isinstance(name, str) else None
    if entry is None:
        raise UnknownCodecError(str(name), available_codecs())
    return entry[1]()


def available_codecs() -> list[str]:
    """The registered codec names, in registration order (``["PCMU", "PCMA"]`` by default)."""
    return [registered for registered, _ in _REGISTRY.values()]


register_codec(PcmuCodec, "PCMU")
register_codec(PcmaCodec, "PCMA")
