"""RTP port allocation (sans-I/O: no sockets are opened here).

:class:`PortAllocator` hands out even RTP ports (RTCP uses the odd port above, RFC 3550 §11)
round-robin from a range, so a port just released is the last to be handed out again; late
packets of an old call then do not land in a new one.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from sessioncore.errors import InvalidArgumentError, SessionError

__all__ = ["PortAllocator", "PortsExhaustedError"]

_LOG = logging.getLogger("sessioncore.media.ports")


class PortsExhaustedError(SessionError):
    """Every RTP port of the range is allocated (or reported in use by the probe)."""


class PortAllocator:
    """Even RTP ports from ``start..end`` (inclusive); each port's RTCP port ``+1`` is in range.

    ``allocate()`` and ``release()`` are O(1). ``probe``, when given, is called with a candidate
    RTP port and returns ``True`` when the port (and the RTCP port above it) may be used; a port
    it refuses is moved to the back of the queue and the next one is tried, so that allocation
    is O(number of refused ports).
    """

    __slots__ = ("_allocated", "_end", "_free", "_probe", "_start")

    def __init__(self, start: int, end: int, *, probe: Callable[[int], bool] | None = None) -> None:
        for name, value in (("start", start), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
                raise InvalidArgumentError(f"{name} must be a port 1..65535, not {value!r}")
        first = start + (start & 1)
        if first + 1 > end:
            raise InvalidArgumentError(
                f"port range {start}-{end} holds no even RTP port with its RTCP port (+1)"
            )
        self._start = first
        self._end = end if end & 1 else end - 1  # the last RTCP port
        self._free: deque[int] = deque(range(first, self._end, 2))
        self._allocated: set[int] = set()
        self._probe = probe

    @property
    def capacity(self) -> int:
        """How many RTP ports the range holds."""
        return (self._end - self._start + 1) // 2

    @property
    def available(self) -> int:
        """How many ports are free (the probe may still refuse some of them)."""
        return len(self._free)

    @property
    def in_use(self) -> int:
        """How many ports are allocated."""
        return len(self._allocated)

    def is_allocated(self, port: int) -> bool:
        """True when ``port`` has been allocated and not released."""
        return port in self._allocated

    def allocate(self) -> int:
        """Return a free even RTP port. Raises :class:`PortsExhaustedError` when none is left."""
        free = self._free
        for _ in range(len(free)):
            port = free.popleft()
            if self._probe is not None:
                try:
                    usable = self._probe(port)
                except BaseException:
                    free.append(port)
                    raise
                if not usable:
                    _LOG.debug("port %d refused by probe, skipping", port)
                    free.append(port)
                    continue
            self._allocated.add(port)
            return port
        raise PortsExhaustedError(
            f"no free RTP port in {self._start}-{self._end} "
            f"({len(self._allocated)} allocated, {len(free)} refused by the probe)"
        )

    def release(self, port: int) -> None:
        """Give a port back. Releasing a port that is not allocated does nothing.

        Raises :class:`InvalidArgumentError` for a port that this allocator could never have
        handed out (odd, or outside the range).
        """
        if (
            isinstance(port, bool)
            or not isinstance(port, int)
            or port & 1
            or not self._start <= port < self._end
        ):
            raise InvalidArgumentError(
                f"{port!r} is not an RTP port of the range {self._start}-{self._end}"
            )
        if port not in self._allocated:
            _LOG.debug("release of port %d that is not allocated, ignored", port)
            return
        self._allocated.remove(port)
        self._free.append(port)

    def __repr__(self) -> str:
        return (
            f"PortAllocator({self._start}-{self._end}, in_use={len(self._allocated)}, "
            f"free={len(self._free)})"
        )
