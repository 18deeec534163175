"""Shared pieces of the SIP transport layer: callbacks, counters, address helpers, RFC 3581.

Everything here is pure (no sockets): the asyncio drivers live in :mod:`.udp` and :mod:`.tcp`,
and :class:`~sessioncore.sip.transport.manager.TransportManager` ties them together.

The two RFC 3581 helpers work on the raw text of the top Via value so that the caller can use
them before (or without) building a full message object:

* :func:`stamp_received` -- what a server does to the top Via of a request it receives
  (RFC 3261 §18.2.1, RFC 3581 §4);
* :func:`response_destination` -- where a server sends the response (RFC 3261 §18.2.2,
  RFC 3581 §4).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from functools import lru_cache

from sessioncore.errors import SipParseError
from sessioncore.sip.address import Address
from sessioncore.sip.headers import Via, format_params

__all__ = [
    "DEFAULT_PORTS",
    "TRANSPORTS",
    "Counters",
    "ErrorCallback",
    "MessageCallback",
    "ip_family",
    "response_destination",
    "stamp_received",
]

logger = logging.getLogger("sessioncore.sip.transport")

#: ``on_message(data, source, local)``: one complete message, where it came from, where it
#: arrived.
MessageCallback = Callable[[bytes, Address, Address], None]
#: ``on_error(dest, exc)``: sending to ``dest`` failed after :meth:`send` returned (TCP connect).
ErrorCallback = Callable[[Address, Exception], None]

#: Transport names understood by the layer (``Address.transport`` values).
TRANSPORTS = ("udp", "tcp", "tls")
#: Default ports when a Via or URI carries none (RFC 3261 §18.2.2, §19.1.2).
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


class Counters:
    """Mutable per-transport statistics, shared by every socket of one transport kind.

    Plain attributes (no locking: everything runs on the event loop thread).
    """

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "connections_opened",
        "dropped",
        "errors",
        "keepalives",
        "messages_received",
        "messages_sent",
    )

    def __init__(self) -> None:
        self.keepalives = 0  # CRLF pings sent + pongs answered
        self.messages_received = 0
        self.bytes_received = 0
        self.messages_sent = 0
        self.bytes_sent = 0
        self.dropped = 0
        self.errors = 0
        self.connections_opened = 0

    def as_dict(self, prefix: str) -> dict[str, int]:
        """The counters as ``{prefix_name: value}``."""
        return {f"{prefix}_{name}": getattr(self, name) for name in self.__slots__}


@lru_cache(maxsize=4096)
def ip_family(host: str) -> tuple[int, str] | None:
    """``(AF_INET | AF_INET6, normalized text)`` for an IP literal, ``None`` for anything else.

    IPv6 literals may come bracketed; the normalized text never is. IPv4-mapped IPv6 addresses
    (``::ffff:192.0.2.1``, what a dual-stack socket reports) are turned into plain IPv4.
    Cached: hosts repeat on every message.
    """
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return socket.AF_INET, str(mapped)
        return socket.AF_INET6, ip.compressed
    return socket.AF_INET, str(ip)


def _same_ip(a: str, b: str) -> bool:
    fa, fb = ip_family(a), ip_family(b)
    return fa is not None and fa == fb


def stamp_received(via_value: str, source: Address) -> str:
    """Add ``received`` / fill ``rport`` in the top Via of a received request.

    ``via_value`` is the raw text of the top Via value (one value, not a comma list). Per
    RFC 3261 §18.2.1 ``received=<source ip>`` is added when the sent-by host is a name or an IP
    that differs from ``source.host``; per RFC 3581 §4 when the ``rport`` parameter is present
    without a value it is set to ``source.port`` and ``received`` is added even if it equals
    sent-by. When nothing changes the text is returned unchanged; otherwise the protocol and
    sent-by part is kept as written and the parameters are re-serialized in their order
    (names lower-cased). IPv6 addresses go into ``received`` without brackets (RFC 5118 §4.5).

    Raises :class:`~sessioncore.errors.SipParseError` if the value is not a valid Via.
    """
    via = Via.parse(via_value)
    params = via.params
    fill_rport = "rport" in params and params["rport"] is None
    need_received = fill_rport or not _same_ip(via.host, source.host)
    if not need_received:
        return via_value
    norm = ip_family(source.host)
    received = norm[1] if norm is not None else source.host
    new: dict[str, str | None] = {}
    for name, value in params.items():
        if name == "rport" and fill_rport:
            new[name] = str(source.port)
        elif name == "received":
            continue  # replaced below, at the end
        else:
            new[name] = value
    new["received"] = received
    head = via_value.partition(";")[0].rstrip()
    return head + format_params(new)


def _param_host(value: str) -> str:
    return value[1:-1] if value.startswith("[") and value.endswith("]") else value


def response_destination(via_value: str, transport: str) -> Address:
    """Where to send a response whose request carried ``via_value`` as its top Via.

    RFC 3261 §18.2.2 with RFC 3581 §4: the host is ``received`` if present, else (UDP only)
    ``maddr`` if present, else the sent-by host. The port is, for UDP, ``rport`` if it carries
    a value, else the sent-by port, else the default; for reliable transports the sent-by port
    or the default (``rport`` there names the peer's ephemeral connection port, useless for a
    new connection). Defaults: 5060, 5061 for TLS. ``transport`` is the transport the request
    arrived on (``"udp"``, ``"tcp"``, ``"tls"``).

    For reliable transports the response should first go back over the connection the request
    came on: that is the request's *source* address, which
    :meth:`TransportManager.response_target` prefers while the connection is open, falling back
    to the address returned here (a new connection) once it is gone.

    Raises :class:`~sessioncore.errors.SipParseError` for a malformed Via or ``rport`` value.
    """
    via = Via.parse(via_value)
    params = via.params
    tp = transport.lower()
    reliable = tp != "udp"
    received = params.get("received")
    maddr = params.get("maddr")
    if received:
        host = _param_host(received)
    elif maddr and not reliable:
        host = _param_host(maddr)
    else:
        host = via.host
    rport = params.get("rport") if not reliable else None
    if rport:
        if not rport.isdigit() or not 0 < int(rport) <= 65535:
            raise SipParseError(f"bad rport {rport!r} in Via")
        port = int(rport)
    elif via.port is not None:
        port = via.port
    else:
        port = DEFAULT_PORTS.get(tp, 5060)
    return Address(tp, host, port)
