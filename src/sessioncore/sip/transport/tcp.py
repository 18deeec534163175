"""The TCP driver: listeners and connections, framed by Content-Length (RFC 3261 §18.3).

A :class:`TcpConnection` is one asyncio protocol per connection, accepted or opened by us. It
cuts the byte stream into messages with :class:`~sessioncore.sip.message.StreamFramer` and hands
each one up; a framing error closes the connection (framing cannot be recovered).

TLS: every function here takes an optional :class:`ssl.SSLContext`. A TLS transport is this
same code with a context and ``kind="tls"`` (contexts come from :mod:`.tls`). For an accepted
TLS connection asyncio calls ``connection_made`` only once the handshake is complete.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import cast

from sessioncore.errors import SipParseError, TransportError
from sessioncore.sip.address import Address
from sessioncore.sip.message import StreamFramer
from sessioncore.sip.transport.base import Counters, MessageCallback, logger

__all__ = ["TcpConnection", "TcpListener", "open_tcp_connection", "open_tcp_listener"]

ConnectionHook = Callable[["TcpConnection"], None]


class TcpConnection(asyncio.Protocol):
    """One TCP (or TLS) connection to a peer.

    ``peer`` is the remote address, ``local`` the address reported as ``local`` to
    ``on_message`` (the listener's address, so that it is the one to put in Via/Contact).
    ``on_open`` runs in ``connection_made`` (before any data is delivered), ``on_close`` in
    ``connection_lost``. ``last_activity`` is the loop time of the last byte in or out.
    """

    def __init__(
        self,
        kind: str,
        on_message: MessageCallback,
        max_size: int,
        counters: Counters,
        on_open: ConnectionHook,
        on_close: ConnectionHook,
        local: Address | None = None,
        *,
        outbound: bool = False,
    ) -> None:
        self.kind = kind
        self.outbound = outbound
        self._on_message = on_message
        self._counters = counters
        self._on_open = on_open
        self._on_close = on_close
        self._framer = StreamFramer(max_size)
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self.peer = Address(kind, "0.0.0.0", 0)
        #: the address this connection is registered under (set by the owner; ``peer`` if None)
        self.key: Address | None = None
        self.local = local if local is not None else Address(kind, "0.0.0.0", 0)
        self.family = socket.AF_INET
        self.last_activity = self._loop.time()
        self.last_ping = self.last_activity
        self.closed: asyncio.Future[None] = self._loop.create_future()

    # --- asyncio callbacks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Record the peer and local addresses and register with the owner."""
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        sockname = transport.get_extra_info("sockname")
        sock: socket.socket | None = transport.get_extra_info("socket")
        if sock is not None:
            self.family = sock.family
        host: str = peer[0]
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]
        self.peer = Address(self.kind, host, peer[1])
        if self.local.port == 0:
            self.local = Address(self.kind, sockname[0], sockname[1])
        self._counters.connections_opened += 1
        self._on_open(self)

    def data_received(self, data: bytes) -> None:
        """Frame the bytes and hand each complete message up; answer CRLF keep-alive pings."""
        self.last_activity = self._loop.time()
        c = self._counters
        if data[:1] in (b"\r", b"\n") and not data.strip(b"\r\n") and not self._framer.buffered:
            # RFC 5626 §3.5.1: a double-CRLF ping gets a single-CRLF pong
            if b"\r\n\r\n" in data and self._transport is not None:
                self._transport.write(b"\r\n")
                c.keepalives += 1
            return
        try:
            messages = self._framer.feed(data)
        except SipParseError as exc:
            c.errors += 1
            logger.info(
                "closing %s connection from %s: framing error: %s", self.kind, self.peer, exc
            )
            self.close()
            return
        for msg in messages:
            c.messages_received += 1
            c.bytes_received += len(msg)
            try:
                self._on_message(msg, self.peer, self.local)
            except Exception:
                c.errors += 1
                logger.exception("on_message failed for a message from %s", self.peer)

    def eof_received(self) -> bool | None:
        """The peer closed its side: close ours too (SIP has no use for half-open)."""
        logger.debug("%s connection from %s closed by the peer", self.kind, self.peer)
        return None  # asyncio then closes the transport

    def connection_lost(self, exc: Exception | None) -> None:
        """Unregister; an abnormal loss is logged (pending transactions time out or retry)."""
        if exc is not None:
            logger.info("%s connection with %s lost: %s", self.kind, self.peer, exc)
        self._transport = None
        try:
            self._on_close(self)
        finally:
            if not self.closed.done():
                self.closed.set_result(None)

    # --- used by the manager ---------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True while the connection can carry data."""
        return self._transport is not None and not self._transport.is_closing()

    def write(self, data: bytes) -> None:
        """Queue ``data`` on the connection (never blocks)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise TransportError(f"{self.kind.upper()} connection to {self.peer} is closed")
        transport.write(data)
        self.last_activity = self._loop.time()
        c = self._counters
        c.messages_sent += 1
        c.bytes_sent += len(data)

    def ping(self) -> None:
        """Send an RFC 5626 double-CRLF keep-alive (the peer answers with a CRLF pong)."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(b"\r\n\r\n")
            self.last_ping = self._loop.time()

    def close(self) -> None:
        """Close after flushing what is queued; :attr:`closed` resolves when it is gone."""
        if self._transport is not None:
            self._transport.close()
        elif not self.closed.done():
            self.closed.set_result(None)

    def abort(self) -> None:
        """Close at once, dropping anything queued."""
        if self._transport is not None:
            self._transport.abort()
        elif not self.closed.done():
            self.closed.set_result(None)


class TcpListener:
    """A listening TCP (or TLS) socket; accepted connections get ``local`` as their address."""

    def __init__(self, server: asyncio.Server, local: Address, family: int) -> None:
        self.server = server
        self.local = local
        self.family = family

    async def close(self) -> None:
        """Stop accepting (open connections are closed by the manager)."""
        self.server.close()
        await self.server.wait_closed()


ConnectionFactory = Callable[[Address], TcpConnection]


async def open_tcp_listener(
    kind: str,
    host: str,
    port: int,
    family: int,
    make_connection: ConnectionFactory,
    *,
    ssl_context: ssl.SSLContext | None = None,
    handshake_timeout: float | None = None,
    backlog: int = 1024,
) -> TcpListener:
    """Listen on ``host:port`` (port 0: ephemeral); each accepted connection comes from
    ``make_connection(listener_address)``. With ``ssl_context`` this is a TLS listener and
    ``handshake_timeout`` (seconds, asyncio's default if None) bounds each accepted handshake.
    Raises :class:`OSError` if the bind fails.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
        bound_host, bound_port = sock.getsockname()[:2]
        local = Address(kind, bound_host, bound_port)
        server = await loop.create_server(
            lambda: make_connection(local),
            sock=sock,
            backlog=backlog,
            ssl=ssl_context,
            ssl_handshake_timeout=handshake_timeout if ssl_context is not None else None,
        )
    except BaseException:
        sock.close()
        raise
    return TcpListener(server, local, family)


async def open_tcp_connection(
    dest: Address,
    make_connection: Callable[[], TcpConnection],
    *,
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> TcpConnection:
    """Connect to ``dest`` (an IP literal) within ``timeout`` seconds.

    With ``ssl_context`` the connection is TLS and the peer's certificate is checked against
    ``server_hostname`` (a DNS name or an IP literal) as the context says.
    Raises :class:`OSError` (refused, unreachable; :class:`ssl.SSLError` for a failed
    handshake or a rejected certificate) or :class:`TimeoutError`.
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, protocol = await loop.create_connection(
            make_connection,
            dest.host,
            dest.port,
            ssl=ssl_context,
            server_hostname=server_hostname if ssl_context is not None else None,
        )
    return protocol
