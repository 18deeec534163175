"""The UDP driver: one listening socket, datagrams in and out (RFC 3261 §18).

Every datagram is one SIP message; the hot path only checks the size and hands the bytes up.
Outgoing messages leave from the listening socket so that the peer sees our listening port
(symmetric response routing, RFC 3581).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, cast

from sessioncore.errors import TransportError
from sessioncore.sip.address import Address
from sessioncore.sip.transport.base import Counters, MessageCallback, logger

__all__ = ["UdpEndpoint", "open_udp_endpoint"]


class UdpEndpoint(asyncio.DatagramProtocol):
    """asyncio protocol of one listening UDP socket.

    ``local`` is the bound address (filled in once the socket is up); ``family`` the socket's
    address family. Created by :func:`open_udp_endpoint`.
    """

    def __init__(self, on_message: MessageCallback, max_size: int, counters: Counters) -> None:
        self._on_message = on_message
        self._max_size = max_size
        self._counters = counters
        self._transport: asyncio.DatagramTransport | None = None
        self._v6 = False
        self.local = Address("udp", "0.0.0.0", 0)
        self.family = socket.AF_INET
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # --- asyncio callbacks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Record the transport and the bound address."""
        self._transport = cast(asyncio.DatagramTransport, transport)
        sock: socket.socket = transport.get_extra_info("socket")
        self.family = sock.family
        self._v6 = sock.family == socket.AF_INET6
        host, port = sock.getsockname()[:2]
        self.local = Address("udp", host, port)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """Hand one datagram up (dropped if larger than the size limit)."""
        n = len(data)
        c = self._counters
        if n > self._max_size:
            c.dropped += 1
            logger.warning(
                "dropping %d-byte UDP datagram from %s:%s (limit %d)",
                n, addr[0], addr[1], self._max_size,
            )  # fmt: skip
            return
        c.messages_received += 1
        c.bytes_received += n
        host: str = addr[0]
        if self._v6 and host.startswith("::ffff:") and "." in host:
            host = host[7:]  # IPv4-mapped source on a dual-stack socket
        try:
            self._on_message(data, Address("udp", host, addr[1]), self.local)
        except Exception:
            c.errors += 1
            logger.exception("on_message failed for a UDP datagram from %s:%s", host, addr[1])

    def error_received(self, exc: Exception) -> None:
        """An ICMP error or a failed ``sendto``: count and log it (the peer is not known)."""
        self._counters.errors += 1
        logger.debug("UDP socket %s: %s", self.local, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        """The socket is closed."""
        self._transport = None
        if not self.closed.done():
            self.closed.set_result(None)

    # --- used by the manager ---------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True until :meth:`close` (or a fatal socket error)."""
        return self._transport is not None and not self._transport.is_closing()

    def sendto(self, data: bytes, host: str, port: int) -> None:
        """Send one datagram (never blocks: asyncio buffers if the socket is full)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise TransportError(f"UDP socket {self.local.host}:{self.local.port} is closed")
        transport.sendto(data, (host, port))
        c = self._counters
        c.messages_sent += 1
        c.bytes_sent += len(data)

    def close(self) -> None:
        """Close the socket; :attr:`closed` resolves once asyncio has released it."""
        if self._transport is not None:
            self._transport.close()
        elif not self.closed.done():
            self.closed.set_result(None)


def _set_buffers(sock: socket.socket, size: int) -> None:
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
        except OSError as exc:  # not allowed above net.core.rmem_max etc.: keep the default
            logger.debug("cannot set socket buffer option %s to %d: %s", opt, size, exc)


async def open_udp_endpoint(
    host: str,
    port: int,
    family: int,
    on_message: MessageCallback,
    *,
    max_size: int,
    counters: Counters,
    buffer_size: int,
) -> UdpEndpoint:
    """Bind a UDP socket on ``host:port`` (port 0: ephemeral) and start receiving.

    Socket buffers are raised to ``buffer_size`` where the OS allows (failure is ignored).
    Raises :class:`OSError` if the bind fails.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # one family per socket
        _set_buffers(sock, buffer_size)
        sock.bind((host, port))
        _, protocol = await loop.create_datagram_endpoint(
            lambda: UdpEndpoint(on_message, max_size, counters), sock=sock
        )
    except BaseException:
        sock.close()
        raise
    return protocol
