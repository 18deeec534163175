"""SessionManagerBuilder: configure, build and start a SessionCoordinator."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence

from sessioncore.api.handler import CallHandler
from sessioncore.api.types import CallSession
from sessioncore.coordinator.coordinator import SessionCoordinator
from sessioncore.errors import ConfigurationError, SipParseError
from sessioncore.media.manager import MediaConfig
from sessioncore.media.sinks import AudioSink
from sessioncore.media.sources import AudioSource
from sessioncore.sip.headers import NameAddr
from sessioncore.sip.manager import Account, SipConfig
from sessioncore.sip.transaction import TimerConfig
from sessioncore.sip.uri import SipUri, check_header_value

__all__ = ["SessionManagerBuilder"]

_TRANSPORTS = ("udp", "tcp", "tls")


class SessionManagerBuilder:
    """Fluent configuration of a :class:`SessionCoordinator`.

    >>> coordinator = await (SessionManagerBuilder()
    ...     .with_local_address("sip:alice@127.0.0.1")
    ...     .with_sip_port(5060)
    ...     .with_handler(MyHandler())
    ...     .build())
    """

    def __init__(self) -> None:
        self._local_uri: str | None = None
        self._user = "sessioncore"
        self._display: str | None = None
        self._bind_host = "127.0.0.1"
        self._port = 5060
        self._transport = "udp"
        self._media_start = 10000
        self._media_end = 20000
        self._media_ip: str | None = None
        self._handler: CallHandler | None = None
        self._user_agent = "sessioncore/0.1"
        self._timers = TimerConfig()
        self._advertised: str | None = None
        self._source_factory: Callable[[CallSession], AudioSource | None] | None = None
        self._sink_factory: Callable[[CallSession], AudioSink | None] | None = None
        self._codecs: tuple[str, ...] = ("PCMU", "PCMA")
        self._symmetric_rtp = True
        self._ptime = 20
        self._accounts: list[Account] = []
        self._rtp_timeout: float | None = None
        self._inbound_auth: tuple[str, dict[str, str]] | None = None
        self._outbound_proxy: str | None = None
        self._dns: tuple[list[str] | None, int, float] = (None, 53, 2.0)
        self._tls: tuple[str | None, str | None, str | None, bool, int | None] = (
            None, None, None, True, None,
        )  # fmt: skip

    def with_local_address(self, uri: str) -> SessionManagerBuilder:
        """Our identity: the From URI of our calls and the user part of our Contact."""
        check_header_value(uri, "local address")
        try:
            addr = NameAddr.parse(uri)
        except SipParseError as exc:
            raise ConfigurationError(f"bad local address {uri!r}: {exc}") from None
        if not isinstance(addr.uri, SipUri):
            raise ConfigurationError(f"local address must be a sip: URI, not {uri!r}")
        self._local_uri = uri
        self._user = addr.uri.user or "sessioncore"
        self._display = addr.display_name
        return self

    def with_sip_port(self, port: int) -> SessionManagerBuilder:
        """The SIP port to listen on (0 picks a free one)."""
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError(f"SIP port must be 0-65535, not {port!r}")
        self._port = port
        return self

    def with_local_bind_addr(self, host: str, port: int | None = None) -> SessionManagerBuilder:
        """The address (and optionally port) to listen on."""
        check_header_value(host, "bind address")
        self._bind_host = host
        if port is not None:
            self.with_sip_port(port)
        return self

    def with_advertised_host(self, host: str) -> SessionManagerBuilder:
        """The host to put in Via and Contact when it differs from the bind address."""
        self._advertised = check_header_value(host, "advertised host")
        return self

    def with_transport(self, transport: str) -> SessionManagerBuilder:
        """The default transport for our requests: ``udp`` or ``tcp`` (both are listened on)."""
        tp = transport.lower()
        if tp not in _TRANSPORTS:
            raise ConfigurationError(f"transport must be one of {_TRANSPORTS}, not {transport!r}")
        self._transport = tp
        return self

    def with_media_ports(self, start: int, end: int) -> SessionManagerBuilder:
        """The RTP port range (even ports for RTP, odd for RTCP)."""
        if not 1024 <= start < end <= 65535:
            raise ConfigurationError(f"bad media port range {start}-{end}")
        self._media_start, self._media_end = start, end
        return self

    def with_media_address(self, ip: str) -> SessionManagerBuilder:
        """The IP address to announce in SDP (default: the SIP bind address)."""
        self._media_ip = check_header_value(ip, "media address")
        return self

    def with_audio(
        self,
        source: Callable[[CallSession], AudioSource | None] | None = None,
        sink: Callable[[CallSession], AudioSink | None] | None = None,
    ) -> SessionManagerBuilder:
        """Per-call audio: ``source(session)`` gives what to send (default silence),
        ``sink(session)`` where to put what the peer sends (default nowhere). Either may
        return ``None`` for a call."""
        self._source_factory = source
        self._sink_factory = sink
        return self

    def with_codecs(self, codecs: Sequence[str], ptime: int = 20) -> SessionManagerBuilder:
        """Audio codecs in order of preference (``PCMU``, ``PCMA``) and the packet time."""
        from sessioncore.media.codecs import available_codecs

        known = {c.upper() for c in available_codecs()}
        wanted = tuple(c.upper() for c in codecs)
        bad = [c for c in wanted if c not in known]
        if not wanted or bad:
            raise ConfigurationError(f"unknown codecs {bad}; available: {sorted(known)}")
        if ptime not in (10, 20, 30, 40, 60):
            raise ConfigurationError(f"ptime must be 10, 20, 30, 40 or 60 ms, not {ptime}")
        self._codecs = wanted
        self._ptime = ptime
        return self

    def with_media_timeout(self, seconds: float | None) -> SessionManagerBuilder:
        """Hang up a call (reason ``"media timeout"``) when no RTP arrives for ``seconds`` while
        we expect some (not on hold); ``None`` (the default) never does."""
        if seconds is not None and seconds <= 0:
            raise ConfigurationError(f"the media timeout must be positive, not {seconds}")
        self._rtp_timeout = seconds
        return self

    def with_symmetric_rtp(self, enabled: bool = True) -> SessionManagerBuilder:
        """Send RTP to where the peer's RTP comes from (RFC 4961); on by default."""
        self._symmetric_rtp = enabled
        return self

    def with_account(
        self,
        aor: str,
        username: str,
        password: str,
        registrar: str | None = None,
        expires: int = 3600,
        *,
        outbound_proxy: str | None = None,
        register: bool = True,
        outbound: bool = False,
        retry_after: float = 30.0,
    ) -> SessionManagerBuilder:
        """A SIP account: registered at ``registrar`` (default: the AOR's domain) when the
        coordinator starts, refreshed before expiry, and used to answer 401/407 challenges to
        our requests. Several accounts may be added; calls go out as the first one unless
        ``make_call(..., from_uri=...)`` names another. ``outbound=True`` adds RFC 5626
        ``+sip.instance``/``reg-id`` to the binding. After a failure (timeout, 5xx ...) the
        registration is retried after ``retry_after`` seconds, doubling up to 30 minutes; a
        wrong password is not retried.
        """
        for value, what in ((aor, "AOR"), (username, "username"), (password, "password")):
            check_header_value(value, what)
        try:
            uri = NameAddr.parse(aor).uri
        except SipParseError as exc:
            raise ConfigurationError(f"bad account AOR {aor!r}: {exc}") from None
        if not isinstance(uri, SipUri) or not uri.user:
            raise ConfigurationError(f"an account AOR must be sip:user@domain, not {aor!r}")
        if not 0 <= expires <= 2**31:
            raise ConfigurationError(f"expires must be 0..2^31, not {expires}")
        for proxy in (registrar, outbound_proxy):
            if proxy is not None:
                check_header_value(proxy, "registrar/proxy URI")
                try:
                    SipUri.parse(proxy)
                except SipParseError as exc:
                    raise ConfigurationError(f"bad registrar/proxy URI {proxy!r}: {exc}") from None
        instance = str(uuid.uuid4()) if outbound else None
        self._accounts.append(
            Account(
                aor=str(uri), username=username, password=password, registrar=registrar,
                expires=expires, outbound_proxy=outbound_proxy, register=register,
                instance_id=instance, reg_id=1 if outbound else None,
                retry_after=retry_after,
            )
        )  # fmt: skip
        if self._local_uri is None:
            self._local_uri = str(uri)
            self._user = uri.user or self._user
        return self

    def with_outbound_proxy(self, uri: str) -> SessionManagerBuilder:
        """Send every out-of-dialog request through this proxy (a pre-loaded ``Route`` with
        ``;lr``), for every account added so far and added later without a proxy of its own."""
        check_header_value(uri, "outbound proxy")
        try:
            SipUri.parse(uri)
        except SipParseError as exc:
            raise ConfigurationError(f"bad outbound proxy URI {uri!r}: {exc}") from None
        self._outbound_proxy = uri
        return self

    def with_tls(
        self,
        cert: str | None = None,
        key: str | None = None,
        ca: str | None = None,
        *,
        verify: bool = True,
        port: int | None = None,
    ) -> SessionManagerBuilder:
        """TLS (``sips:``, ``;transport=tls``): with ``cert``/``key`` (PEM files) we also listen
        for TLS on ``port`` (default: the SIP port + 1); ``ca`` is the CA file peers'
        certificates are verified against (default: the system's). Verification is on unless
        ``verify=False`` (lab use only: it is logged as a warning)."""
        for path in (cert, key, ca):
            if path is not None:
                check_header_value(path, "file name")
        if (cert is None) != (key is None):
            raise ConfigurationError("give both a TLS certificate and its key, or neither")
        self._tls = (cert, key, ca, verify, port)
        return self

    def with_dns(
        self, nameservers: list[str] | None = None, port: int = 53, timeout: float = 2.0
    ) -> SessionManagerBuilder:
        """DNS servers for RFC 3263 look-ups of SIP domains (default: the system's)."""
        for ns in nameservers or ():
            check_header_value(ns, "nameserver")
        self._dns = (list(nameservers) if nameservers else None, port, timeout)
        return self

    def with_inbound_auth(self, realm: str, users: dict[str, str]) -> SessionManagerBuilder:
        """Require digest credentials (``users``: name -> password) for incoming INVITEs: an
        unauthenticated INVITE is challenged with 401, never answered."""
        check_header_value(realm, "realm")
        if not users:
            raise ConfigurationError("with_inbound_auth needs at least one user")
        self._inbound_auth = (realm, dict(users))
        return self

    def with_handler(self, handler: CallHandler) -> SessionManagerBuilder:
        """The application's :class:`CallHandler`."""
        if not isinstance(handler, CallHandler):
            raise ConfigurationError("the handler must be a CallHandler instance")
        self._handler = handler
        return self

    def with_user_agent(self, user_agent: str) -> SessionManagerBuilder:
        """The User-Agent/Server header value."""
        self._user_agent = check_header_value(user_agent, "user agent")
        return self

    def with_timers(
        self,
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        *,
        invite_timeout: float | None = None,
    ) -> SessionManagerBuilder:
        """SIP timer base values (RFC 3261 §17); ``invite_timeout`` (Timer C) ends an outgoing
        call that rings unanswered that long (failed with 408)."""
        if not 0 < t1 <= t2 or t4 <= 0:
            raise ConfigurationError(f"bad timers T1={t1} T2={t2} T4={t4}")
        if invite_timeout is not None and invite_timeout <= 0:
            raise ConfigurationError(f"invite_timeout must be positive, not {invite_timeout}")
        self._timers = TimerConfig(t1=t1, t2=t2, t4=t4, timer_c=invite_timeout)
        return self

    def build_coordinator(self) -> SessionCoordinator:
        """The configured coordinator, not started."""
        host = self._bind_host
        media_ip = self._media_ip or (
            self._advertised or (host if host not in ("0.0.0.0", "::") else "127.0.0.1")
        )
        sip = SipConfig(
            bind_host=host,
            port=self._port,
            transport=self._transport,
            user=self._user,
            display_name=self._display,
            advertised_host=self._advertised,
            user_agent=self._user_agent,
            timers=self._timers,
            accounts=[
                a
                if a.outbound_proxy or not self._outbound_proxy
                else dataclasses.replace(a, outbound_proxy=self._outbound_proxy)
                for a in self._accounts
            ],
            outbound_proxy=self._outbound_proxy,
            tls_cert=self._tls[0],
            tls_key=self._tls[1],
            tls_ca=self._tls[2],
            tls_verify=self._tls[3],
            tls_port=self._tls[4],
            dns_nameservers=self._dns[0],
            dns_port=self._dns[1],
            dns_timeout=self._dns[2],
            inbound_auth=self._inbound_auth,
        )
        media = MediaConfig(
            local_ip=media_ip,
            port_start=self._media_start,
            port_end=self._media_end,
            codecs=self._codecs,
            ptime=self._ptime,
            symmetric_rtp=self._symmetric_rtp,
            rtp_timeout=self._rtp_timeout,
        )
        return SessionCoordinator(
            sip_config=sip,
            media_config=media,
            handler=self._handler,
            local_uri=self._local_uri,
            audio_source_factory=self._source_factory,
            audio_sink_factory=self._sink_factory,
        )

    async def build(self) -> SessionCoordinator:
        """Build and start the coordinator (sockets bound, event loop running)."""
        coordinator = self.build_coordinator()
        await coordinator.start()
        return coordinator
