"""The transport address of a SIP peer: transport, host and port.

:class:`Address` is what the sans-I/O cores (transaction layer, dialog layer) use to say where a
message goes or came from; the transport drivers map it to sockets and connections.
"""

from __future__ import annotations

from dataclasses import dataclass

from sessioncore.errors import InvalidArgumentError

__all__ = ["RELIABLE_TRANSPORTS", "TRANSPORTS", "Address"]

#: Transports an :class:`Address` may name (lower case).
TRANSPORTS = frozenset({"udp", "tcp", "tls"})
#: Transports that deliver reliably (no retransmission timers, zero wait timers).
RELIABLE_TRANSPORTS = frozenset({"tcp", "tls"})


@dataclass(frozen=True, slots=True)
class Address:
    """A transport address: ``transport`` (``"udp"``, ``"tcp"`` or ``"tls"``), ``host``, ``port``.

    ``host`` is an IP address or a host name, without brackets for IPv6. Instances are hashable
    and compare by value, so they can key dictionaries of connections or transactions.
    """

    transport: str
    host: str
    port: int

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise InvalidArgumentError(
                f"unknown transport {self.transport!r} (expected one of udp, tcp, tls)"
            )
        if not 0 <= self.port <= 65535:
            raise InvalidArgumentError(f"port {self.port} out of range")

    @property
    def reliable(self) -> bool:
        """True for TCP and TLS: no retransmissions, zero "wait" timers (RFC 3261 §17)."""
        return self.transport in RELIABLE_TRANSPORTS

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"
