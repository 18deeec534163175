"""The transport manager: every listening socket and connection of one SIP endpoint.

:class:`TransportManager` is the thin asyncio driver between the network and the sans-I/O SIP
cores. It hands each complete message up through ``on_message(data, source, local)``
(synchronously, from the protocol callback: no task per message, no parsing beyond TCP framing)
and sends bytes with :meth:`TransportManager.send`, which never blocks.

Routing rules (RFC 3261 §18, RFC 3581):

* UDP leaves from the listening socket of the destination's address family, so the peer sees our
  listening port (symmetric response routing).
* TCP reuses any open connection to the destination, whichever side opened it (connections are
  keyed by the peer's address); otherwise it opens one in the background, queues the data until
  it is up, and reports a failure through ``on_error(dest, exc)``.
* TLS (RFC 3261 §26.2, RFC 5630) is TCP with an :class:`ssl.SSLContext`: the same reuse rules,
  its own connections (keyed ``Address("tls", ...)``), listeners and counters. Listening needs a
  server context (our certificate); connecting uses the client context, by default
  :func:`ssl.create_default_context` (chain and hostname verification on). A failed connect or
  handshake (untrusted or mismatched certificate) is reported through ``on_error`` with the
  :mod:`ssl` error text. See :func:`~sessioncore.sip.transport.tls.make_tls_contexts`.
* A request larger than ``udp_mtu_threshold`` bound for UDP goes over TCP when we listen on TCP
  (RFC 3261 §18.1.1); see :meth:`TransportManager.should_use_tcp`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field

from sessioncore.errors import TransportError
from sessioncore.sip.address import Address
from sessioncore.sip.transport.base import (
    Counters,
    ErrorCallback,
    MessageCallback,
    ip_family,
    logger,
    response_destination,
)
from sessioncore.sip.transport.tcp import (
    TcpConnection,
    TcpListener,
    open_tcp_connection,
    open_tcp_listener,
)
from sessioncore.sip.transport.tls import default_client_context
from sessioncore.sip.transport.udp import UdpEndpoint, open_udp_endpoint

__all__ = ["TransportManager"]


@dataclass(slots=True)
class _PendingConnect:
    """A TCP or TLS connection being opened, and what to send once it is up."""

    key: Address
    #: TLS only: the name the peer's certificate must match
    server_name: str | None = None
    queue: list[bytes] = field(default_factory=list)
    #: the destinations as the callers gave them (reported to ``on_error`` on failure)
    dests: list[Address] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class TransportManager:
    """Owns the UDP sockets, TCP/TLS listeners and connections; see the module docstring.

    ``on_message(data, source, local)`` receives one complete message: a whole datagram (UDP)
    or one framed message (TCP); ``source`` is the peer, ``local`` the listening address it
    arrived on (for an outgoing TCP connection: our TCP listener of the same family, if any).
    ``on_error(dest, exc)`` reports failures that happen after :meth:`send` returned (a TCP
    connection that could not be opened); ``exc`` is a :class:`TransportError`.

    ``max_message_size`` bounds messages both ways; ``udp_mtu_threshold`` is the RFC 3261
    §18.1.1 size above which requests move to TCP; ``recv_buffer`` the UDP socket buffer size
    asked for; ``idle_timeout`` closes TCP connections without traffic for that many seconds
    (checked by one periodic sweep); ``connect_timeout`` bounds opening a TCP connection
    (including the TLS handshake; accepted TLS connections get as long to complete theirs).

    ``tls_server_context`` (our certificate and key) enables ``listen("tls", ...)``;
    ``tls_client_context`` is used to open TLS connections, default
    :func:`~sessioncore.sip.transport.tls.default_client_context` (system trust store,
    certificate and hostname verification on). Build both with
    :func:`~sessioncore.sip.transport.tls.make_tls_contexts`.
    """

    def __init__(
        self,
        on_message: MessageCallback,
        on_error: ErrorCallback | None = None,
        *,
        max_message_size: int = 65535,
        udp_mtu_threshold: int = 1300,
        recv_buffer: int = 8 * 1024 * 1024,
        idle_timeout: float = 300.0,
        keepalive_interval: float | None = None,
        connect_timeout: float = 10.0,
        tls_server_context: ssl.SSLContext | None = None,
        tls_client_context: ssl.SSLContext | None = None,
    ) -> None:
        self._on_message = on_message
        self._on_error = on_error
        self.max_message_size = max_message_size
        self.udp_mtu_threshold = udp_mtu_threshold
        self.recv_buffer = recv_buffer
        self.idle_timeout = idle_timeout
        #: RFC 5626 CRLF keep-alive: ping connections we opened after this much silence
        self.keepalive_interval = keepalive_interval
        self.connect_timeout = connect_timeout
        self.tls_server_context = tls_server_context
        self._tls_client_context = tls_client_context
        self._udp: list[UdpEndpoint] = []
        self._udp_by_family: dict[int, UdpEndpoint] = {}
        self._listeners: list[TcpListener] = []
        self._conns: dict[Address, TcpConnection] = {}
        self._all_conns: set[TcpConnection] = set()
        self._pending: dict[Address, _PendingConnect] = {}
        self._counters = {"udp": Counters(), "tcp": Counters(), "tls": Counters()}
        self._errors = 0
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False
        self._close_done: asyncio.Future[None] | None = None

    # --- setup -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

    async def listen(self, transport: str, host: str, port: int) -> Address:
        """Listen on ``host:port`` for ``transport`` (``"udp"``, ``"tcp"`` or ``"tls"``); return
        the bound address (the real port when ``port`` is 0).

        ``host`` is an IPv4 or IPv6 literal (``"0.0.0.0"``, ``"::"``, ``"::1"`` ...) or a name
        resolved once here. IPv6 sockets are IPv6-only: listen on both families for both.
        Raises :class:`TransportError` if the manager is closed, the transport is unknown, TLS is
        asked for without ``tls_server_context``, or the bind fails.
        """
        if self._closed:
            raise TransportError("transport manager is closed")
        tp = transport.lower()
        if tp not in ("udp", "tcp", "tls"):
            raise TransportError(f"unknown transport {transport!r} (expected udp, tcp or tls)")
        if tp == "tls" and self.tls_server_context is None:
            raise TransportError("TLS listening needs a certificate: configure tls_cert/tls_key")
        family, ip = await self._resolve_bind_host(host or "0.0.0.0", port, tp)
        try:
            if tp == "udp":
                ep = await open_udp_endpoint(
                    ip, port, family, self._on_message,
                    max_size=self.max_message_size, counters=self._counters["udp"],
                    buffer_size=self.recv_buffer,
                )  # fmt: skip
                self._udp.append(ep)
                self._udp_by_family.setdefault(ep.family, ep)
                local = ep.local
            else:
                listener = await open_tcp_listener(
                    tp, ip, port, family, lambda local: self._make_conn(local.transport, local),
                    ssl_context=self.tls_server_context if tp == "tls" else None,
                    handshake_timeout=self.connect_timeout,
                )  # fmt: skip
                self._listeners.append(listener)
                local = listener.local
        except OSError as exc:
            raise TransportError(f"cannot listen on {tp} {host}:{port}: {exc}") from exc
        logger.info("listening on %s", local)
        return local

    async def _resolve_bind_host(self, host: str, port: int, tp: str) -> tuple[int, str]:
        norm = ip_family(host)
        if norm is not None:
            return norm
        loop = asyncio.get_running_loop()
        kind = socket.SOCK_DGRAM if tp == "udp" else socket.SOCK_STREAM
        try:
            infos = await loop.getaddrinfo(host, port, type=kind)
        except OSError as exc:
            raise TransportError(f"cannot resolve listen address {host!r}: {exc}") from exc
        family, _, _, _, sockaddr = infos[0]
        return int(family), str(sockaddr[0])

    def local_address(self, transport: str, family: int | None = None) -> Address | None:
        """The first listening address for ``transport`` (of ``family``, ``socket.AF_INET`` or
        ``socket.AF_INET6``, if given), or ``None``. This is what goes in Via and Contact; a
        wildcard bind (``0.0.0.0``) is returned as is, the caller substitutes a real address.
        """
        tp = transport.lower()
        if tp == "udp":
            for ep in self._udp:
                if family is None or ep.family == family:
                    return ep.local
        elif tp in ("tcp", "tls"):
            for listener in self._listeners:
                if listener.local.transport == tp and (family is None or listener.family == family):
                    return listener.local
        return None

    # --- sending ---------------------------------------------------------------------------

    def should_use_tcp(self, size: int, dest: Address) -> bool:
        """True if a ``size``-byte request to ``dest`` must go over TCP instead of UDP
        (RFC 3261 §18.1.1): ``dest`` is UDP, ``size`` exceeds ``udp_mtu_threshold`` and we
        listen on TCP in ``dest``'s address family.

        Call it before writing the Via: the request must then carry ``SIP/2.0/TCP`` and be
        sent to ``Address("tcp", dest.host, dest.port)`` (or to ``dest`` with
        ``is_request=True``, which switches by itself).
        """
        if dest.transport != "udp" or size <= self.udp_mtu_threshold:
            return False
        norm = ip_family(dest.host)
        return self.local_address("tcp", norm[0] if norm is not None else None) is not None

    def send(
        self,
        data: bytes,
        dest: Address,
        *,
        is_request: bool = False,
        server_name: str | None = None,
    ) -> None:
        """Send one message to ``dest``; never blocks.

        ``dest.host`` must be an IP literal (resolve names first, RFC 3263). UDP goes out of the
        listening socket of ``dest``'s family. TCP reuses an open connection to ``dest`` (also
        one the peer opened) or opens one in the background; if that fails ``on_error(dest,
        exc)`` is called later. With ``is_request=True`` a UDP request larger than
        ``udp_mtu_threshold`` goes over TCP instead when :meth:`should_use_tcp` says so; the
        caller must already have put ``TCP`` in its top Via.

        TLS works like TCP; a new connection verifies the peer's certificate against
        ``server_name`` (the SIP domain of a ``sips:`` target, RFC 5922), by default against
        ``dest.host`` (an IP: the certificate needs a matching ``IP:`` subjectAltName). An open
        connection to ``dest`` is reused whatever name it was verified against.

        Call it from the event loop's thread (a TCP connect is started as a task).
        Raises :class:`TransportError` when the message is larger than ``max_message_size``,
        the manager is closed, there is no socket to send from, or ``dest`` is not usable.
        """
        if self._closed:
            raise TransportError("transport manager is closed")
        n = len(data)
        if n > self.max_message_size:
            raise TransportError(
                f"cannot send a {n}-byte message to {dest}: "
                f"larger than the {self.max_message_size}-byte limit"
            )
        tp = dest.transport
        if tp == "udp":
            if is_request and n > self.udp_mtu_threshold and self.should_use_tcp(n, dest):
                logger.debug("%d-byte request to %s goes over TCP (RFC 3261 18.1.1)", n, dest)
                self._send_stream(data, Address("tcp", dest.host, dest.port), dest)
                return
            norm = ip_family(dest.host)
            if norm is None:
                raise TransportError(f"cannot send to {dest}: host is not an IP address")
            ep = self._udp_by_family.get(norm[0])
            if ep is None:
                fam = "IPv6" if norm[0] == socket.AF_INET6 else "IPv4"
                raise TransportError(f"cannot send to {dest}: no {fam} UDP socket is listening")
            ep.sendto(data, norm[1], dest.port)
        elif tp in ("tcp", "tls"):
            self._send_stream(data, dest, dest, server_name)
        else:
            raise TransportError(f"cannot send to {dest}: transport {tp!r} is not supported")

    def _send_stream(
        self, data: bytes, dest: Address, orig: Address, server_name: str | None = None
    ) -> None:
        norm = ip_family(dest.host)
        if norm is None:
            raise TransportError(f"cannot send to {dest}: host is not an IP address")
        key = dest if norm[1] == dest.host else Address(dest.transport, norm[1], dest.port)
        conn = self._conns.get(key)
        if conn is not None and conn.is_open:
            conn.write(data)
            return
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _PendingConnect(key, server_name)
            pending.task = asyncio.get_running_loop().create_task(
                self._connect(pending), name=f"sip-connect-{key}"
            )
        pending.queue.append(data)
        if orig not in pending.dests:
            pending.dests.append(orig)

    async def _connect(self, pending: _PendingConnect) -> None:
        key = pending.key
        ctx: ssl.SSLContext | None = None
        if key.transport == "tls":
            ctx = self._client_context()
        try:
            await open_tcp_connection(
                key,
                lambda: self._make_conn(key.transport, None, key),
                timeout=self.connect_timeout,
                ssl_context=ctx,
                server_hostname=pending.server_name or key.host,
            )
        except (OSError, TimeoutError) as exc:
            if self._pending.get(key) is pending:
                del self._pending[key]
            why = str(exc) or "timed out"
            logger.info("cannot connect to %s: %s", key, why)
            for dest in pending.dests:
                if isinstance(exc, ssl.SSLError):
                    text = f"TLS handshake with {dest} failed: {why}"
                else:
                    text = f"cannot connect to {dest}: {why}"
                err = TransportError(text)
                err.__cause__ = exc
                self._report_error(dest, err)
        # on success the queue was flushed in _conn_opened (before any data could arrive)

    def _client_context(self) -> ssl.SSLContext:
        if self._tls_client_context is None:
            self._tls_client_context = default_client_context()
        return self._tls_client_context

    def _report_error(self, dest: Address, exc: Exception) -> None:
        self._errors += 1
        if self._on_error is None:
            logger.warning("transport error towards %s: %s", dest, exc)
            return
        try:
            self._on_error(dest, exc)
        except Exception:
            logger.exception("on_error failed for %s", dest)

    def response_target(self, via_value: str, source: Address) -> Address:
        """Where to send a response to a request that came from ``source`` with top Via
        ``via_value``: back over the request's connection while it is open (reliable
        transports), else :func:`~sessioncore.sip.transport.base.response_destination`.
        """
        if source.reliable:
            norm = ip_family(source.host)
            if norm is not None:
                conn = self._conns.get(Address(source.transport, norm[1], source.port))
                if conn is not None and conn.is_open:
                    return source
        return response_destination(via_value, source.transport)

    # --- TCP/TLS connection bookkeeping --------------------------------------------------------

    def _make_conn(
        self, kind: str, local: Address | None, key: Address | None = None
    ) -> TcpConnection:
        conn = TcpConnection(
            kind,
            self._on_message,
            self.max_message_size,
            self._counters[kind],
            self._conn_opened,
            self._conn_closed,
            local,
            outbound=key is not None,
        )
        conn.key = key
        return conn

    def _conn_opened(self, conn: TcpConnection) -> None:
        if self._closed:
            conn.abort()
            return
        if conn.outbound:
            for listener in self._listeners:
                if listener.family == conn.family and listener.local.transport == conn.kind:
                    conn.local = listener.local
                    break
        key = conn.key if conn.key is not None else conn.peer
        conn.key = key
        self._all_conns.add(conn)
        self._conns[key] = conn
        logger.debug(
            "%s connection %s %s", conn.kind.upper(), "to" if conn.outbound else "from", conn.peer
        )
        if self._sweep is None and self.idle_timeout > 0:
            self._arm_sweep()
        pending = self._pending.pop(key, None)
        if pending is not None:
            for data in pending.queue:
                conn.write(data)

    def _conn_closed(self, conn: TcpConnection) -> None:
        self._all_conns.discard(conn)
        key = conn.key
        if key is not None and self._conns.get(key) is conn:
            del self._conns[key]

    def _arm_sweep(self) -> None:
        interval = max(0.01, min(30.0, self.idle_timeout / 4))
        if self.keepalive_interval:
            interval = min(interval, max(0.01, self.keepalive_interval / 2))
        self._sweep = asyncio.get_running_loop().call_later(interval, self._sweep_idle)

    def _sweep_idle(self) -> None:
        self._sweep = None
        if self._closed:
            return
        now = asyncio.get_running_loop().time()
        limit = self.idle_timeout
        ping = self.keepalive_interval
        for conn in list(self._all_conns):
            if now - conn.last_activity > limit:
                logger.debug("closing idle %s connection with %s", conn.kind.upper(), conn.peer)
                conn.close()
            elif (
                ping
                and conn.outbound
                and conn.is_open
                and now - max(conn.last_activity, conn.last_ping) >= ping
            ):
                conn.ping()
                self._counters[conn.kind].keepalives += 1
        if self._all_conns:
            self._arm_sweep()

    # --- shutdown and stats ----------------------------------------------------------------

    async def close(self) -> None:
        """Close every listener, connection and pending connect; safe to call more than once."""
        if self._close_done is not None:
            await asyncio.shield(self._close_done)
            return
        self._closed = True
        done = self._close_done = asyncio.get_running_loop().create_future()
        try:
            await self._shutdown()
        finally:
            done.set_result(None)

    async def _shutdown(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        tasks = [p.task for p in self._pending.values() if p.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._pending.clear()
        for listener in self._listeners:
            listener.server.close()  # stop accepting
        waits: list[asyncio.Future[None]] = []
        for conn in list(self._all_conns):
            conn.close()  # flushes what is queued (a last BYE or response)
            waits.append(conn.closed)
        for ep in self._udp:
            ep.close()
            waits.append(ep.closed)
        if waits:
            _, stuck = await asyncio.wait(waits, timeout=1.0)
            if stuck:
                for conn in list(self._all_conns):
                    conn.abort()
                await asyncio.wait(stuck, timeout=1.0)
        for listener in self._listeners:
            await listener.close()
        self._listeners.clear()
        self._udp.clear()
        self._udp_by_family.clear()
        self._conns.clear()
        self._all_conns.clear()
        logger.debug("transport manager closed")

    def stats(self) -> dict[str, int]:
        """Counters: ``udp_*``, ``tcp_*`` and ``tls_*`` (messages/bytes received and sent,
        dropped, errors, connections opened), ``tcp_connections_open``,
        ``tcp_connections_pending``, the same two for ``tls``, and ``errors`` (every error
        counted anywhere, including ``on_error`` reports such as a failed connect or TLS
        handshake).
        """
        out = self._counters["udp"].as_dict("udp")
        del out["udp_connections_opened"]
        errors = self._errors + out["udp_errors"]
        for kind in ("tcp", "tls"):
            out.update(self._counters[kind].as_dict(kind))
            out[f"{kind}_connections_open"] = sum(1 for c in self._all_conns if c.kind == kind)
            out[f"{kind}_connections_pending"] = sum(
                1 for k in self._pending if k.transport == kind
            )
        out["errors"] = errors + out["tcp_errors"] + out["tls_errors"]
        return out
