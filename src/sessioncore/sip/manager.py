"""DialogManager: the SIP subsystem's driver.

It owns the transports, the sans-I/O :class:`~sessioncore.sip.transaction.TransactionLayer`
and the dialogs, applies the endpoint rules of RFC 3261 §8.2 (416, 420, 481, 482, 483, 501 ...)
and reports what happens as :mod:`sessioncore.sip.events` through one callback. It never calls
user code and knows nothing of media: SDP travels through it as opaque text.

Everything here runs on the event loop thread, driven by received datagrams and by one timer
handle that follows the transaction layer's next deadline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sessioncore.errors import (
    InvalidArgumentError,
    InvalidStateError,
    SessionError,
    SipParseError,
    TransportError,
)
from sessioncore.sip import events as ev
from sessioncore.sip.address import Address
from sessioncore.sip.auth import AuthError, DigestClient, DigestServer, parse_challenge
from sessioncore.sip.dialog import Dialog, DialogState, new_branch, new_call_id, new_tag
from sessioncore.sip.dns import SipResolver
from sessioncore.sip.headers import Headers, NameAddr, header_key, is_token, split_header_list
from sessioncore.sip.message import (
    KNOWN_METHODS,
    SipRequest,
    SipResponse,
    make_response,
    parse_message,
)
from sessioncore.sip.registration import Registration, RegistrationState, RegistrationUpdate
from sessioncore.sip.transaction import (
    AckReceived,
    AckTimeout,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TimerConfig,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailed,
)
from sessioncore.sip.transport.base import stamp_received
from sessioncore.sip.transport.manager import TransportManager
from sessioncore.sip.transport.tls import make_tls_contexts
from sessioncore.sip.uri import SipUri, check_header_value, format_host, parse_uri

__all__ = ["DialogManager", "SipConfig"]

log = logging.getLogger("sessioncore.sip.manager")

ALLOWED_METHODS = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, REFER"
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()
_PROTECTED = frozenset(
    {"via", "from", "to", "call-id", "cseq", "contact", "max-forwards", "content-length",
     "content-type", "route", "record-route"}
)  # fmt: skip
_DIALOG_METHODS = frozenset({"BYE", "INFO", "NOTIFY", "REFER", "UPDATE", "OPTIONS", "INVITE"})


@dataclass(slots=True)
class Account:
    """A SIP account: an address of record, its credentials and where it registers.

    ``registrar`` defaults to the AOR's host (``sip:alice@example.com`` -> ``sip:example.com``);
    ``outbound_proxy`` (a SIP URI) receives every out-of-dialog request of this account
    (loose routing, ``;lr``). ``register=False`` keeps the credentials (for challenges to our
    calls) without registering.
    """

    aor: str
    username: str
    password: str
    registrar: str | None = None
    expires: int = 3600
    outbound_proxy: str | None = None
    register: bool = True
    instance_id: str | None = None
    reg_id: int | None = None
    retry_after: float = 30.0  # first wait after a failed registration (then doubling)


@dataclass(slots=True)
class SipConfig:
    """What the SIP subsystem needs to start."""

    bind_host: str = "127.0.0.1"
    port: int = 5060
    transport: str = "udp"
    user: str = "sessioncore"
    display_name: str | None = None
    advertised_host: str | None = None
    user_agent: str = "sessioncore/0.1"
    timers: TimerConfig = field(default_factory=TimerConfig)
    max_message_size: int = 65535
    listen_transports: tuple[str, ...] = ("udp", "tcp")
    accounts: list[Account] = field(default_factory=list)
    inbound_auth: tuple[str, dict[str, str]] | None = None  # (realm, {user: password})
    outbound_proxy: str | None = None  # for requests of no account
    tls_cert: str | None = None  # our certificate (PEM): enables the TLS listener
    tls_key: str | None = None
    tls_ca: str | None = None  # CAs to verify peers with (default: the system's)
    tls_verify: bool = True
    tls_port: int | None = None  # default: SIP port + 1 (ephemeral when the SIP port is)
    dns_nameservers: list[str] | None = None  # None: the system's resolver configuration
    dns_port: int = 53
    dns_timeout: float = 2.0
    keepalive_interval: float | None = 90.0  # RFC 5626 CRLF pings on TCP/TLS we opened
    nat_contact_rewrite: bool = True  # use the registrar's received/rport in our Contact


class _Call:
    """Per-call SIP state kept by the DialogManager (one INVITE dialog usage)."""

    __slots__ = (
        "ack",
        "awaiting_ack",
        "dest",
        "dialog",
        "invite",
        "invite_key",
        "is_uac",
        "keys",
        "pending_cancel",
        "provisional",
        "ref",
        "reinvite_in",
        "reinvite_in_req",
        "reinvite_out",
        "state",
        "targets",
        "transport",
    )

    def __init__(self, ref: str, is_uac: bool, invite: SipRequest, dest: Address) -> None:
        self.ref = ref
        self.is_uac = is_uac
        self.invite = invite
        self.invite_key = ""
        self.dest = dest
        self.transport = dest.transport
        self.dialog: Dialog | None = None
        # calling -> early -> confirmed -> terminating -> terminated (UAC), or
        # received -> confirmed -> ... (UAS). "cancelling": CANCEL sent, waiting for 487.
        self.state = "calling" if is_uac else "received"
        self.ack: tuple[bytes, Address] | None = None
        self.pending_cancel = False
        self.provisional = False
        self.reinvite_in: str | None = None  # server txn key of the peer's pending re-INVITE
        self.reinvite_in_req: SipRequest | None = None
        self.awaiting_ack: dict[int, str] = {}  # CSeq of an INVITE we sent 2xx to -> txn key
        self.keys: list[str] = []  # server INVITE transaction keys indexed in _by_invite_key
        self.targets: list[Address] = []  # further RFC 3263 targets to fail over to
        self.reinvite_out: str | None = None  # client txn key of our pending re-INVITE


class DialogManager:
    """The SIP subsystem: transports + transactions + dialogs, reporting through ``emit``."""

    def __init__(self, config: SipConfig, emit: Callable[[ev.DialogEvent], None]) -> None:
        self.config = config
        self._emit = emit
        self._txn = TransactionLayer(config.timers)
        server_ctx, client_ctx = make_tls_contexts(
            certfile=config.tls_cert, keyfile=config.tls_key, cafile=config.tls_ca,
            verify=config.tls_verify,
        )  # fmt: skip
        self._transport = TransportManager(
            self._on_message,
            self._on_transport_error,
            max_message_size=config.max_message_size,
            tls_server_context=server_ctx,
            tls_client_context=client_ctx,
            keepalive_interval=config.keepalive_interval,
        )
        self._last_transport_error = ""
        self._auth_problem = ""
        self._resolver: SipResolver | None = None
        self._reg_targets: dict[str, list[Address]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tls_names: dict[Address, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._calls: dict[str, _Call] = {}
        self._by_dialog: dict[tuple[str, str, str], _Call] = {}
        self._by_invite_key: dict[str, _Call] = {}
        self._client_purpose: dict[str, tuple[_Call, str]] = {}
        self._merged: dict[tuple[str, str, int], str] = {}
        self._merged_by_key: dict[str, tuple[str, str, int]] = {}
        self._addresses: dict[str, Address] = {}
        self._accounts: dict[str, Account] = {}
        self._auth: dict[str, DigestClient] = {}
        self._registrations: dict[str, Registration] = {}
        self._reg_keys: dict[str, tuple[Registration, Address]] = {}
        self._reg_timers: dict[str, asyncio.TimerHandle] = {}
        self._inbound: DigestServer | None = None
        self._service_routes: dict[str, list[str]] = {}
        self._public: dict[str, tuple[str, int]] = {}  # transport -> address seen by registrar
        if config.inbound_auth is not None:
            realm, users = config.inbound_auth
            self._inbound = DigestServer(realm, users)
        for account in config.accounts:
            self.add_account(account)
        self._flushing = False
        self.stats: dict[str, int] = {
            "messages_received": 0,
            "messages_sent": 0,
            "parse_errors": 0,
            "retransmissions": 0,
        }

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the listening sockets."""
        self._loop = asyncio.get_running_loop()
        wanted = set(self.config.listen_transports) | {self.config.transport}
        if self.config.port == 0 and len(wanted) > 1:
            # UDP and TCP share one port number: find one free for both
            self.config.port = _free_port_pair(self.config.bind_host)
        for tp in ("udp", "tcp"):
            if tp in wanted:
                addr = await self._transport.listen(tp, self.config.bind_host, self.config.port)
                self._addresses[tp] = addr
                if self.config.port == 0:
                    self.config.port = addr.port
        if self.config.tls_cert:
            port = self.config.tls_port
            if port is None:
                port = self.config.port + 1 if self.config.port not in (0, 65535) else 0
            addr = await self._transport.listen("tls", self.config.bind_host, port)
            self._addresses["tls"] = addr

    async def stop(self) -> None:
        """Close every socket and forget every call (the coordinator hangs up first)."""
        for task in list(self._tasks):
            task.cancel()
        for timer in self._reg_timers.values():
            timer.cancel()
        self._reg_timers.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._transport.close()
        self._calls.clear()
        self._by_dialog.clear()
        self._by_invite_key.clear()
        self._client_purpose.clear()

    def local_address(self, transport: str | None = None) -> Address:
        """The address we listen on for ``transport`` (default: the configured one).

        Without a TLS listener (no certificate), TLS requests still go out, from the TCP
        address: replies come back on the same connection.
        """
        tp = transport or self.config.transport
        addr = self._addresses.get(tp)
        if addr is None and tp == "tls" and "tcp" in self._addresses:
            tcp = self._addresses["tcp"]
            return Address("tls", tcp.host, tcp.port)
        if addr is None:
            raise TransportError(f"not listening on {tp}")
        return addr

    @property
    def active_calls(self) -> int:
        """How many calls the SIP layer still tracks."""
        return len(self._calls)

    def retransmissions(self) -> int:
        """How many retransmissions the transaction layer has sent."""
        return int(getattr(self._txn, "stats", {}).get("retransmissions", 0))

    def pending_hangups(self) -> int:
        """BYE and CANCEL requests still waiting for their final response."""
        cancelling = sum(1 for c in self._calls.values() if c.state == "cancelling")
        byes = sum(1 for _, what in self._client_purpose.values() if what == "bye")
        return cancelling + byes

    def pending_registers(self) -> int:
        """REGISTER requests still waiting for their final response."""
        return len(self._reg_keys)

    def transaction_count(self) -> int:
        """How many transactions are alive (for leak checks)."""
        return self._txn.active_count()

    # --- helpers ----------------------------------------------------------------------------

    def _now(self) -> float:
        loop = self._loop
        return loop.time() if loop is not None else 0.0

    def _host(self, tp: str) -> str:
        addr = self.local_address(tp)
        return self.config.advertised_host or addr.host

    def _via(self, tp: str, branch: str | None = None) -> str:
        addr = self.local_address(tp)
        host = format_host(self.config.advertised_host or addr.host)
        return f"SIP/2.0/{tp.upper()} {host}:{addr.port};branch={branch or new_branch()};rport"

    def _contact(self, tp: str) -> str:
        public = self._public.get(tp)
        if public is not None:  # learned from the registrar (we are behind a NAT)
            host, port = format_host(public[0]), public[1]
        else:
            addr = self.local_address(tp)
            host, port = format_host(self.config.advertised_host or addr.host), addr.port
        suffix = "" if tp == "udp" else f";transport={tp}"
        return f"<sip:{self.config.user}@{host}:{port}{suffix}>"

    def _resolve(self, uri_text: str, default_tp: str | None = None) -> Address:
        uri = parse_uri(uri_text)
        if not isinstance(uri, SipUri):
            raise InvalidArgumentError(f"cannot send to a non-SIP URI: {uri_text!r}")
        tp = uri.transport or default_tp or self.config.transport
        if uri.scheme == "sips":
            tp = "tls"
        if tp not in self._addresses and not (tp == "tls" and "tcp" in self._addresses):
            raise InvalidArgumentError(f"transport {tp!r} of {uri_text!r} is not enabled")
        host = uri.params.get("maddr") or uri.host
        try:
            ipaddress.ip_address(host)
        except ValueError:
            # A name: resolve it (RFC 3263 look-ups come with the routing issue).
            try:
                infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
            except OSError as exc:
                raise TransportError(f"cannot resolve {host!r}: {exc}") from exc
            resolved = Address(tp, str(infos[0][4][0]), uri.port or (5061 if tp == "tls" else 5060))
            if tp == "tls":
                self._tls_names[resolved] = host  # verify the certificate against the name
            return resolved
        return Address(tp, host, uri.port or (5061 if tp == "tls" else 5060))

    def _flush(self) -> None:
        """Run transaction events, send what is queued and re-arm the timer."""
        if self._flushing:
            return
        self._flushing = True
        try:
            txn = self._txn
            send = self._transport.send
            while True:
                event = txn.next_event()
                if event is not None:
                    try:
                        self._on_txn_event(event)
                    except Exception:
                        log.exception("error handling %r", event)
                    continue
                out = txn.datagrams_to_send()
                if not out:
                    break
                names = self._tls_names
                for data, dest in out:
                    try:
                        if dest.transport == "tls" and dest in names:
                            send(data, dest, server_name=names[dest])
                        else:
                            send(data, dest)
                        self.stats["messages_sent"] += 1
                    except TransportError as exc:
                        log.info("send to %s failed: %s", dest, exc)
                        txn.transport_error(dest, self._now())
            self._arm_timer()
        finally:
            self._flushing = False

    def _arm_timer(self) -> None:
        deadline = self._txn.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._txn.handle_timer(self._now())
        self._flush()

    def _send_request(self, request: SipRequest, dest: Address) -> str:
        """Start a client transaction; large requests move from UDP to TCP (RFC 3261 §18.1.1).

        Requests without credentials get the ones of realms that challenged us before
        (pre-emptive reuse, RFC 3261 §22.3), so a peer that challenges every request is not
        asked twice each time."""
        h = request.headers
        if self._auth and "Authorization" not in h and "Proxy-Authorization" not in h:
            client = self._auth_client(request)
            if client is not None:
                for name, value in _preemptive(client, request):
                    h.add(name, value)
        if dest.transport == "udp" and "tcp" in self._addresses:
            size = len(request.body) + 64
            for _, name, value in request.headers._items:
                size += len(name) + len(value) + 4
            if self._transport.should_use_tcp(size, dest):
                branch = request.branch or new_branch()
                request.headers.set("Via", self._via("tcp", branch))
                request.invalidate()
                dest = Address("tcp", dest.host, dest.port)
                log.debug("%s: request of ~%d bytes moves to TCP", request.call_id, size)
        return self._txn.send_request(request, dest, self._now())

    def _respond(self, key: str, request: SipRequest, status: int, reason: str | None = None,
                 *, to_tag: str | None = None, headers: list[tuple[str, str]] | None = None,
                 body: bytes = b"") -> None:  # fmt: skip
        resp = make_response(request, status, reason, to_tag=to_tag, headers=headers, body=body)
        resp.headers.add("Server", self.config.user_agent)
        self._txn.send_response(key, resp, self._now())

    # --- receiving --------------------------------------------------------------------------

    def _on_message(self, data: bytes, source: Address, local: Address) -> None:
        self.stats["messages_received"] += 1
        try:
            msg = parse_message(data, stream=source.reliable)
        except SipParseError as exc:
            self.stats["parse_errors"] += 1
            self._reject_unparsable(data, source, exc)
            return
        if isinstance(msg, SipRequest):
            top = msg.headers.get("Via")
            if top is not None:
                first, sep, rest = top.partition(",")
                try:
                    stamped = stamp_received(first, source)
                except SipParseError as exc:
                    self.stats["parse_errors"] += 1
                    self._reject_unparsable(data, source, exc)
                    return
                if stamped is not first:
                    msg.headers.set("Via", stamped + (sep + rest if sep else ""))
                    msg.invalidate()
                    # keep any further Via lines after the first
        elif len(msg.vias) != 1:
            log.info("dropping response with %d Via values from %s", len(msg.vias), source)
            return
        try:
            self._txn.receive(msg, source, self._now())
        except Exception:
            log.exception("transaction layer failed on a message from %s", source)
        self._flush()

    def _reject_unparsable(self, data: bytes, source: Address, exc: SipParseError) -> None:
        if data.startswith(b"SIP/"):
            log.info("dropping malformed response from %s: %s", source, exc)
            return
        h = _salvage_headers(data)
        if h is None or data.startswith(b"ACK "):
            log.info("dropping malformed message from %s (cannot answer it): %s", source, exc)
            return
        reason = "".join(ch for ch in str(exc) if 32 <= ord(ch) < 127)[:120]
        h.add("Warning", f'399 sessioncore "{reason.replace(chr(34), chr(39))}"')
        resp = SipResponse(exc.status, None, h)
        log.info("answering %d to a malformed request from %s: %s", exc.status, source, exc)
        self._txn.send_stateless(resp, source)
        self._flush()

    def _on_transport_error(self, dest: Address, exc: Exception) -> None:
        log.info("transport error towards %s: %s", dest, exc)
        # the transaction layer reports the failure synchronously below: keep the text for it
        self._last_transport_error = str(exc)[:200]
        self._txn.transport_error(dest, self._now())
        self._flush()

    # --- transaction events -----------------------------------------------------------------

    def _on_txn_event(self, event: object) -> None:
        if isinstance(event, RequestReceived):
            self._on_request(event.key, event.request, event.source)
        elif isinstance(event, ResponseReceived):
            self._on_response(event.key, event.response, event.request)
        elif isinstance(event, AckReceived):
            self._on_ack(event.request)
        elif isinstance(event, CancelReceived):
            self._on_cancel(event.key, event.request, event.invite_key)
        elif isinstance(event, TransactionTerminated):
            self._client_purpose.pop(event.key, None)
            mkey = self._merged_by_key.pop(event.key, None)
            if mkey is not None:
                self._merged.pop(mkey, None)
        elif isinstance(event, TransactionTimeout):
            self._on_failure(event.key, event.request, 408, f"timeout (Timer {event.timer})")
        elif isinstance(event, TransportFailed):
            detail = self._last_transport_error
            reason = f"transport error: {detail}" if detail else "transport error"
            self._on_failure(event.key, event.request, 503, reason)
        elif isinstance(event, AckTimeout):
            call = self._by_invite_key.get(event.key)
            if call is not None and call.state == "confirmed" and not call.is_uac:
                log.info("%s: no ACK for our 2xx; hanging up", call.invite.call_id)
                self._send_bye(call)
                self._end(call, "no ACK", by_remote=True)

    def _on_request(self, key: str, req: SipRequest, source: Address) -> None:
        method = req.method
        ruri = req.request_uri
        if not isinstance(ruri, SipUri):
            self._respond(key, req, 416)
            return
        to_tag = req.to.tag
        mf = req.max_forwards
        if mf == 0 and method != "OPTIONS":
            self._respond(key, req, 483)
            return
        required = [
            opt for v in req.headers.values("Require") for opt in split_header_list(v)
        ] if "Require" in req.headers else []  # fmt: skip
        unsupported = [o for o in required if o not in SUPPORTED_EXTENSIONS]
        if unsupported:
            self._respond(key, req, 420, headers=[("Unsupported", ", ".join(unsupported))])
            return
        branch = req.branch or ""
        if to_tag is None:
            from_tag = req.from_.tag or ""
            mkey = (req.call_id, from_tag, req.cseq.seq)
            seen = self._merged.get(mkey)
            if seen is not None and seen != branch:
                self._respond(key, req, 482)
                return
            if method == "INVITE":
                self._merged[mkey] = branch
                self._merged_by_key[key] = mkey
        if method not in KNOWN_METHODS:
            self._respond(key, req, 501, headers=[("Allow", ALLOWED_METHODS)])
            return
        if to_tag is not None:
            self._on_in_dialog(key, req, to_tag)
            return
        if method == "INVITE":
            self._on_invite(key, req, source)
        elif method == "OPTIONS":
            self._respond(key, req, 200, headers=self._capabilities())
        elif method == "BYE":
            self._respond(key, req, 481)
        elif method in ("REGISTER", "SUBSCRIBE", "PUBLISH", "MESSAGE", "PRACK", "UPDATE"):
            self._respond(key, req, 405, headers=[("Allow", ALLOWED_METHODS)])
        else:
            self._respond(key, req, 481)

    def _capabilities(self) -> list[tuple[str, str]]:
        return [
            ("Allow", ALLOWED_METHODS),
            ("Accept", "application/sdp"),
            ("Accept-Language", "en"),
            ("Supported", ", ".join(sorted(SUPPORTED_EXTENSIONS)) or "replaces"),
        ]

    def _on_invite(self, key: str, req: SipRequest, source: Address) -> None:
        if self._inbound is not None and not self._check_inbound_auth(key, req):
            return
        ctype = req.content_type
        if req.body and ctype != "application/sdp":
            self._respond(key, req, 415, headers=[("Accept", "application/sdp")])
            return
        accept = req.headers.get("Accept")
        if accept is not None and "application/sdp" not in accept.lower():
            self._respond(
                key, req, 406,
                headers=[("Warning", '399 sessioncore "only application/sdp is supported"')],
            )  # fmt: skip
            return
        local_tag = new_tag()
        ref = f"in-{local_tag}"
        call = _Call(ref, False, req, source)
        call.invite_key = key
        call.dialog = Dialog.from_uas(req, local_tag, self._contact(source.transport))
        self._calls[ref] = call
        self._by_dialog[call.dialog.key] = call
        self._by_invite_key[key] = call
        call.keys.append(key)
        self._respond(key, req, 100)
        self._emit(
            ev.IncomingInvite(
                ref,
                req.call_id,
                req.headers.get("From") or "",
                req.headers.get("To") or "",
                req.uri,
                req.body.decode("utf-8", "replace") if req.body else None,
                tuple(req.headers.items()),
            )
        )

    def _check_inbound_auth(self, key: str, req: SipRequest) -> bool:
        """Digest-authenticate an incoming INVITE; challenge (401) and return False if not."""
        server = self._inbound
        assert server is not None
        now = time.time()
        stale = False
        for value in req.headers.get_all("Authorization"):
            result = server.verify(value, req.method, req.uri, now, req.body)
            if result.ok:
                return True
            stale = stale or result.stale
            log.info("%s: credentials refused: %s", req.call_id, result.reason)
        hdrs = [("WWW-Authenticate", c) for c in server.challenge(now, stale=stale)]
        self._respond(key, req, 401, headers=hdrs)
        return False

    def _on_in_dialog(self, key: str, req: SipRequest, to_tag: str) -> None:
        dkey = (req.call_id, to_tag, req.from_.tag or "")
        call = self._by_dialog.get(dkey)
        method = req.method
        if call is None or call.dialog is None:
            self._respond(key, req, 481)
            return
        dialog = call.dialog
        if not dialog.check_remote_cseq(req):
            self._respond(key, req, 500, "CSeq Out of Order")
            return
        if method == "BYE":
            self._respond(key, req, 200)
            if call.reinvite_in is not None:
                self._respond_pending_reinvite(call, 487)
            self._end(call, "remote hangup", by_remote=True)
        elif method == "INVITE":
            if call.state != "confirmed":
                self._respond(key, req, 491 if call.state == "received" else 481)
                return
            if call.reinvite_in is not None or call.reinvite_out is not None:
                self._respond(key, req, 491)
                return
            if req.body and req.content_type != "application/sdp":
                self._respond(key, req, 415, headers=[("Accept", "application/sdp")])
                return
            dialog.refresh_target(req)
            call.reinvite_in = key
            call.reinvite_in_req = req
            self._emit(ev.ReinviteReceived(call.ref, req.body.decode("utf-8", "replace") or None))
        elif method == "INFO":
            self._respond(key, req, 200)
            self._emit(ev.InfoReceived(call.ref, req.content_type, req.body))
        elif method == "REFER":
            self._on_refer(key, req, call)
        elif method == "NOTIFY":
            self._respond(key, req, 200)
            self._on_notify(req, call)
        elif method == "OPTIONS":
            self._respond(key, req, 200, headers=self._capabilities())
        else:
            self._respond(key, req, 501 if method not in _DIALOG_METHODS else 405,
                          headers=[("Allow", ALLOWED_METHODS)])  # fmt: skip

    def _on_refer(self, key: str, req: SipRequest, call: _Call) -> None:
        refer_to = req.headers.get("Refer-To")
        try:
            if refer_to is None or req.headers.count("Refer-To") != 1:
                raise SipParseError("REFER needs exactly one Refer-To header")
            target = NameAddr.parse(refer_to).uri
        except SipParseError as exc:
            self._respond(key, req, 400, headers=[("Warning", f'399 sessioncore "{exc}"')])
            return
        if not isinstance(target, SipUri):
            self._respond(key, req, 416)
            return
        plain = target.copy()
        plain.headers.clear()  # ?Replaces= (attended transfer) is not supported yet
        self._respond(key, req, 202)
        self._emit(ev.ReferReceived(call.ref, str(plain)))

    def _on_notify(self, req: SipRequest, call: _Call) -> None:
        event = (req.headers.get("Event") or "").split(";", 1)[0].strip().lower()
        if event != "refer" or req.content_type != "message/sipfrag":
            return
        line = req.body.split(b"\r\n", 1)[0].decode("utf-8", "replace").split()
        if len(line) < 2 or not line[1].isdigit():
            return
        state = (req.headers.get("Subscription-State") or "").strip().lower()
        status = int(line[1])
        self._emit(ev.ReferNotify(call.ref, status, state.startswith("terminated")))

    def notify_refer(self, ref: str, status: int, reason: str, *, final: bool) -> None:
        """Report the progress of a transfer we were asked for (RFC 3515 NOTIFY, sipfrag)."""
        call = self._calls.get(ref)
        if call is None or call.dialog is None or call.state != "confirmed":
            return
        check_header_value(reason, "reason phrase")
        sub = "terminated;reason=noresource" if final else "active;expires=60"
        req = call.dialog.create_request(
            "NOTIFY",
            via=self._via(call.transport),
            body=f"SIP/2.0 {status} {reason}\r\n".encode(),
            content_type="message/sipfrag;version=2.0",
            extra=[("Event", "refer"), ("Subscription-State", sub)],
        )
        dest = self._resolve(call.dialog.next_hop_uri(), call.transport)
        key = self._send_request(req, dest)
        self._client_purpose[key] = (call, "info")
        self._flush()

    def _on_ack(self, req: SipRequest) -> None:
        to_tag = req.to.tag
        if to_tag is None:
            return
        call = self._by_dialog.get((req.call_id, to_tag, req.from_.tag or ""))
        if call is None:
            log.debug("stray ACK for %s", req.call_id)
            return
        key = call.awaiting_ack.pop(req.cseq.seq, None)
        if key is None:
            return
        self._txn.ack_received(key)
        if key == call.invite_key and call.state == "confirmed":
            self._emit(ev.CallConfirmed(call.ref, req.body.decode("utf-8", "replace") or None))

    def _on_cancel(self, key: str, req: SipRequest, invite_key: str | None) -> None:
        call = self._by_invite_key.get(invite_key) if invite_key else None
        if call is None or call.is_uac:
            self._respond(key, req, 481)
            return
        self._respond(key, req, 200)
        if call.state == "received":
            self._respond(call.invite_key, call.invite, 487,
                          to_tag=call.dialog.local_tag if call.dialog else None)  # fmt: skip
            self._forget(call)
            self._emit(ev.CallCancelled(call.ref))

    def _on_response(self, key: str, resp: SipResponse, request: SipRequest) -> None:
        purpose = self._client_purpose.get(key)
        if purpose is None:
            reg = self._reg_keys.get(key)
            if reg is not None and resp.status >= 200:
                del self._reg_keys[key]
                self._on_register_response(reg[0], reg[1], resp, request)
            return
        call, what = purpose
        status = resp.status
        if status in (401, 407) and self._retry_call_request(key, call, what, resp, request):
            return
        if 200 <= status < 300:
            client = self._auth_client(request)
            if client is not None:
                client.success()
        if what == "invite":
            self._on_invite_response(call, resp, request)
        elif what == "reinvite":
            if status < 200:
                return
            if status < 300:
                self._send_ack(call, resp, request)
                if call.dialog is not None:
                    call.dialog.refresh_target(resp)
            if call.reinvite_out == key:
                call.reinvite_out = None
                self._emit(
                    ev.ReinviteResult(
                        call.ref, status, resp.reason, resp.body.decode("utf-8", "replace") or None
                    )
                )
            if status in (408, 481):
                self._send_bye(call)
                self._end(call, f"re-INVITE failed with {status}", by_remote=True)
        elif what in ("bye", "cancel", "info"):
            if status >= 200:
                self._client_purpose.pop(key, None)
                if what == "cancel":
                    self._expect_487(call)
        elif what == "refer" and status >= 200:
            self._emit(ev.ReferResult(call.ref, status, resp.reason))

    def _on_invite_response(self, call: _Call, resp: SipResponse, request: SipRequest) -> None:
        status = resp.status
        sdp = resp.body.decode("utf-8", "replace") if resp.body else None
        if status < 200:
            call.provisional = True
            if status == 100:
                if call.pending_cancel and call.state == "calling":
                    self._send_cancel(call)
                return
            if resp.to.tag and call.dialog is None:
                call.dialog = Dialog.from_uac(request, resp, self._contact(call.transport))
                self._by_dialog[call.dialog.key] = call
            if call.state == "calling":
                call.state = "early"
                if call.pending_cancel:
                    self._send_cancel(call)
                    return
            if call.state == "early":
                self._emit(ev.CallProgress(call.ref, status, resp.reason, sdp))
            return
        if status < 300:
            first = call.state != "confirmed" and call.state != "terminating"
            if call.dialog is None or call.dialog.remote_tag != resp.to.tag:
                if call.dialog is not None:
                    self._by_dialog.pop(call.dialog.key, None)
                call.dialog = Dialog.from_uac(request, resp, self._contact(call.transport))
                self._by_dialog[call.dialog.key] = call
            else:
                call.dialog.refresh_target(resp)
                if call.dialog.state is DialogState.EARLY:
                    call.dialog.transition("2xx")
            self._send_ack(call, resp, request)
            if not first:
                return
            if call.state in ("cancelling",) or call.pending_cancel:
                # We hung up while the 2xx was on its way: confirm, then BYE at once.
                call.state = "confirmed"
                self._send_bye(call)
                self._end(call, "cancelled", by_remote=False)
                return
            call.state = "confirmed"
            self._emit(ev.CallAnswered(call.ref, sdp))
            return
        if call.state in ("calling", "early", "cancelling"):
            reason = resp.reason
            self._forget(call)
            if call.state == "cancelling" and status == 487:
                self._emit(ev.CallFailedEvent(call.ref, 487, "cancelled"))
            else:
                self._emit(ev.CallFailedEvent(call.ref, status, reason))
            call.state = "terminated"

    def _on_failure(self, key: str, request: SipRequest, status: int, reason: str) -> None:
        purpose = self._client_purpose.pop(key, None)
        reg = self._reg_keys.pop(key, None)
        if reg is not None:
            self._registration_update(reg[0], reg[0].fail(status, reason, self._now()))
            return
        if purpose is None:
            call = self._by_invite_key.get(key)
            if call is not None and not call.is_uac and call.state == "received":
                self._forget(call)
                self._emit(ev.CallFailedEvent(call.ref, status, reason))
            return
        call, what = purpose
        if (
            what == "invite"
            and call.state == "calling"
            and call.targets
            and (status == 503 or "Timer B" in reason)
        ):
            self._failover(call, reason)
            return
        if what == "invite" and call.state in ("calling", "early", "cancelling"):
            if call.state == "early":
                self._send_cancel(call)  # Timer C: stop the far end ringing too
            self._forget(call)
            self._emit(ev.CallFailedEvent(call.ref, status, reason))
            call.state = "terminated"
        elif what == "reinvite":
            call.reinvite_out = None
            self._emit(ev.ReinviteResult(call.ref, status, reason, None))
            self._end(call, f"re-INVITE {reason}", by_remote=True)
        elif what == "bye":
            self._end(call, "hangup", by_remote=False)
        elif what == "cancel":
            self._expect_487(call)

    def _expect_487(self, call: _Call) -> None:
        """After our CANCEL completes, give the INVITE 64*T1 to end, then give up on it."""
        if self._loop is None or call.state != "cancelling":
            return
        delay = 64 * self.config.timers.t1
        self._loop.call_later(delay, self._cancel_expired, call)

    def _cancel_expired(self, call: _Call) -> None:
        if call.state != "cancelling" or self._calls.get(call.ref) is not call:
            return
        log.info("%s: no final response after CANCEL; giving up", call.invite.call_id)
        self._txn.terminate(call.invite_key)
        self._forget(call)
        call.state = "terminated"
        self._emit(ev.CallFailedEvent(call.ref, 487, "cancelled (no final response)"))
        self._flush()

    # --- actions (called by the coordinator) ------------------------------------------------

    def _call(self, ref: str) -> _Call:
        call = self._calls.get(ref)
        if call is None:
            raise InvalidStateError(f"no SIP call {ref!r} (already ended?)")
        return call

    def make_call(
        self,
        ref: str,
        to_uri: str,
        from_uri: str | None,
        sdp: str | None,
        headers: list[tuple[str, str]] | None = None,
        transport: str | None = None,
        targets: list[Address] | None = None,
    ) -> None:
        """Send an INVITE for a new call. Raises :class:`InvalidArgumentError` on a bad URI.

        ``targets`` (from :meth:`locate`) are tried in order: the next one when a target
        fails with a transport error or a timeout before any response (RFC 3263 §4.3).
        """
        check_header_value(to_uri, "destination URI")
        try:
            target = parse_uri(to_uri)
        except SipParseError as exc:
            raise InvalidArgumentError(f"bad destination URI {to_uri!r}: {exc}") from None
        if not isinstance(target, SipUri):
            raise InvalidArgumentError(f"destination must be a sip: or sips: URI, not {to_uri!r}")
        account = self._account_for(from_uri)
        if from_uri is None and account is not None:
            from_uri = account.aor
        if targets:
            dest, rest = targets[0], list(targets[1:])
        else:
            dest, rest = self._resolve(self._account_dest(account, to_uri), transport), []
        tp = dest.transport
        host = self._host(tp)
        if from_uri is None:
            from_uri = f"sip:{self.config.user}@{format_host(host)}"
        check_header_value(from_uri, "From URI")
        try:
            from_addr = NameAddr.parse(from_uri)
        except SipParseError as exc:
            raise InvalidArgumentError(f"bad From URI {from_uri!r}: {exc}") from None
        from_addr.params["tag"] = new_tag()
        target_for_to = target.copy()
        target_for_to.params.pop("transport", None)
        h = Headers()
        h.add("Via", self._via(tp))
        h.add("Max-Forwards", "70")
        h.add("From", str(from_addr))
        h.add("To", f"<{target_for_to}>")
        h.add("Call-ID", new_call_id(format_host(host)))
        h.add("CSeq", "1 INVITE")
        h.add("Contact", self._contact(tp))
        h.add("Allow", ALLOWED_METHODS)
        h.add("User-Agent", self.config.user_agent)
        for name, value in headers or ():
            check_header_value(name, "header name")
            if not is_token(name) or header_key(name) in _PROTECTED:
                raise InvalidArgumentError(
                    f"{name!r} cannot be set: a header name must be a token and not one the "
                    "stack writes itself (Via, From, To, Call-ID, CSeq, Contact ...)"
                )
            h.add(name, check_header_value(value))
        body = b""
        if sdp:
            h.add("Content-Type", "application/sdp")
            body = sdp.encode()
        req = SipRequest("INVITE", to_uri, h, body)
        self._add_route(req, account)
        call = _Call(ref, True, req, dest)
        call.targets = rest
        self._calls[ref] = call
        key = self._send_request(req, dest)
        if dest.transport == "udp" and req.top_via.transport == "TCP":
            call.dest = Address("tcp", dest.host, dest.port)
            call.transport = "tcp"
        call.invite_key = key
        self._client_purpose[key] = (call, "invite")
        self._flush()

    def ring(self, ref: str, status: int = 180) -> None:
        """Send a provisional response (180 Ringing) for an incoming call."""
        call = self._call(ref)
        if call.state != "received" or call.dialog is None:
            raise InvalidStateError(f"call {ref} is not ringing")
        hdrs = [("Contact", call.dialog.local_contact)]
        self._respond(call.invite_key, call.invite, status, to_tag=call.dialog.local_tag,
                      headers=hdrs)  # fmt: skip
        self._flush()

    def answer(self, ref: str, sdp: str | None) -> None:
        """Send 200 OK for an incoming call."""
        call = self._call(ref)
        if call.state != "received" or call.dialog is None:
            raise InvalidStateError(f"call {ref} cannot be answered in state {call.state}")
        call.state = "confirmed"
        call.dialog.transition("2xx")
        hdrs = [("Contact", call.dialog.local_contact), ("Allow", ALLOWED_METHODS)]
        body = b""
        if sdp:
            hdrs.append(("Content-Type", "application/sdp"))
            body = sdp.encode()
        rr = call.invite.headers.get_all("Record-Route")
        hdrs = [("Record-Route", v) for v in rr] + hdrs
        self._respond(call.invite_key, call.invite, 200, to_tag=call.dialog.local_tag,
                      headers=hdrs, body=body)  # fmt: skip
        call.awaiting_ack[call.invite.cseq.seq] = call.invite_key
        self._flush()

    def reject(
        self, ref: str, status: int, reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:  # fmt: skip
        """Send a final non-2xx response for an incoming call and forget it."""
        if not 300 <= status <= 699:
            raise InvalidArgumentError(f"reject status must be 300-699, not {status}")
        if reason is not None:
            check_header_value(reason, "reason phrase")
        call = self._call(ref)
        if call.state != "received":
            raise InvalidStateError(f"call {ref} cannot be rejected in state {call.state}")
        safe = [(check_header_value(n), check_header_value(v)) for n, v in headers or ()]
        tag = call.dialog.local_tag if call.dialog else None
        self._respond(call.invite_key, call.invite, status, reason, to_tag=tag, headers=safe)
        self._forget(call)
        call.state = "terminated"
        self._flush()

    def hangup(self, ref: str) -> str:
        """End a call: CANCEL while early (UAC), 480 while ringing (UAS), BYE when confirmed.

        Returns what was done: ``"cancel"``, ``"reject"``, ``"bye"`` or ``"none"``.
        """
        call = self._calls.get(ref)
        if call is None:
            return "none"
        if call.is_uac and call.state == "calling" and not call.provisional:
            call.pending_cancel = True  # §9.1: wait for a provisional before CANCEL
            return "cancel"
        if call.is_uac and call.state == "calling":
            self._send_cancel(call)
            self._flush()
            return "cancel"
        if call.is_uac and call.state == "early":
            self._send_cancel(call)
            self._flush()
            return "cancel"
        if not call.is_uac and call.state == "received":
            self.reject(ref, 480, "Temporarily Unavailable")
            return "reject"
        if call.state == "confirmed":
            self._send_bye(call)
            self._end(call, "local hangup", by_remote=False, emit=False)
            self._flush()
            return "bye"
        return "none"

    def _send_cancel(self, call: _Call) -> None:
        inv = call.invite
        h = Headers()
        h.add("Via", inv.headers.get("Via") or "")
        h.add("Max-Forwards", "70")
        h.add("From", inv.headers.get("From") or "")
        h.add("To", inv.headers.get("To") or "")
        h.add("Call-ID", inv.call_id)
        h.add("CSeq", f"{inv.cseq.seq} CANCEL")
        for r in inv.headers.get_all("Route"):
            h.add("Route", r)
        cancel = SipRequest("CANCEL", inv.uri, h)
        call.state = "cancelling"
        call.pending_cancel = False
        key = self._txn.send_request(cancel, call.dest, self._now())
        self._client_purpose[key] = (call, "cancel")

    def _send_ack(self, call: _Call, resp: SipResponse, request: SipRequest) -> None:
        dialog = call.dialog
        if dialog is None:
            return
        # the ACK for a 2xx carries the INVITE's credentials (RFC 3261 §13.2.2.4)
        creds = [
            (name, value)
            for name in ("Authorization", "Proxy-Authorization")
            for value in request.headers.get_all(name)
        ]
        ack = dialog.create_request(
            "ACK", via=self._via(call.transport), cseq=request.cseq.seq, extra=creds or None
        )
        dest = self._resolve(dialog.next_hop_uri(), call.transport)
        self._txn.send_stateless(ack, dest)

    def _send_bye(self, call: _Call) -> None:
        dialog = call.dialog
        if dialog is None:
            return
        bye = dialog.create_request("BYE", via=self._via(call.transport))
        bye.headers.add("User-Agent", self.config.user_agent)
        dest = self._resolve(dialog.next_hop_uri(), call.transport)
        key = self._send_request(bye, dest)
        self._client_purpose[key] = (call, "bye")
        call.state = "terminating"

    def reinvite(self, ref: str, sdp: str | None) -> None:
        """Send a re-INVITE (hold, resume, media change) in a confirmed call."""
        call = self._call(ref)
        if call.state != "confirmed" or call.dialog is None:
            raise InvalidStateError(f"call {ref} is not established")
        if call.reinvite_out is not None or call.reinvite_in is not None:
            raise InvalidStateError(f"call {ref} already has a re-INVITE in progress")
        body = sdp.encode() if sdp else b""
        req = call.dialog.create_request(
            "INVITE", via=self._via(call.transport), body=body,
            content_type="application/sdp" if body else None,
        )  # fmt: skip
        dest = self._resolve(call.dialog.next_hop_uri(), call.transport)
        key = self._send_request(req, dest)
        call.reinvite_out = key
        self._client_purpose[key] = (call, "reinvite")
        self._flush()

    def respond_reinvite(self, ref: str, status: int, sdp: str | None = None) -> None:
        """Answer the peer's pending re-INVITE."""
        call = self._call(ref)
        if call.reinvite_in is None:
            raise InvalidStateError(f"call {ref} has no pending re-INVITE")
        self._respond_pending_reinvite(call, status, sdp)
        self._flush()

    def _respond_pending_reinvite(self, call: _Call, status: int, sdp: str | None = None) -> None:
        key = call.reinvite_in
        req = call.reinvite_in_req
        call.reinvite_in = None
        call.reinvite_in_req = None
        if key is None or req is None or call.dialog is None:
            return
        if 200 <= status < 300:
            call.awaiting_ack[req.cseq.seq] = key
        hdrs = [("Contact", call.dialog.local_contact)]
        body = b""
        if sdp and status < 300:
            hdrs.append(("Content-Type", "application/sdp"))
            body = sdp.encode()
        self._respond(key, req, status, headers=hdrs, body=body)

    def send_info(self, ref: str, content_type: str, body: bytes) -> None:
        """Send an in-dialog INFO (DTMF relay and the like)."""
        call = self._call(ref)
        if call.state != "confirmed" or call.dialog is None:
            raise InvalidStateError(f"call {ref} is not established")
        check_header_value(content_type, "content type")
        req = call.dialog.create_request(
            "INFO", via=self._via(call.transport), body=body, content_type=content_type
        )
        dest = self._resolve(call.dialog.next_hop_uri(), call.transport)
        key = self._send_request(req, dest)
        self._client_purpose[key] = (call, "info")
        self._flush()

    def refer(self, ref: str, target: str) -> None:
        """Ask the peer to call ``target`` (blind transfer, RFC 3515)."""
        call = self._call(ref)
        if call.state != "confirmed" or call.dialog is None:
            raise InvalidStateError(f"call {ref} is not established")
        check_header_value(target, "transfer target")
        try:
            parse_uri(target)
        except SipParseError as exc:
            raise InvalidArgumentError(f"bad transfer target {target!r}: {exc}") from None
        req = call.dialog.create_request(
            "REFER", via=self._via(call.transport), extra=[("Refer-To", f"<{target}>")]
        )
        dest = self._resolve(call.dialog.next_hop_uri(), call.transport)
        key = self._send_request(req, dest)
        self._client_purpose[key] = (call, "refer")
        self._flush()

    def redirect(self, ref: str, target: str, status: int = 302) -> None:
        """Answer an incoming call with a redirect (302 Moved Temporarily) to ``target``."""
        check_header_value(target, "redirect target")
        try:
            parse_uri(target)
        except SipParseError as exc:
            raise InvalidArgumentError(f"bad redirect target {target!r}: {exc}") from None
        self.reject(ref, status, headers=[("Contact", f"<{target}>")])

    # --- server location (RFC 3263) ---------------------------------------------------------

    async def locate(self, uri_text: str, transport: str | None = None) -> list[Address]:
        """Where to send requests for ``uri_text``: IP literals directly, names through DNS
        (NAPTR, SRV, A/AAAA), in the order to try them."""
        uri = parse_uri(uri_text)
        if not isinstance(uri, SipUri):
            raise InvalidArgumentError(f"cannot send to a non-SIP URI: {uri_text!r}")
        host = uri.params.get("maddr") or uri.host
        try:
            ipaddress.ip_address(host)
            return [self._resolve(uri_text, transport)]
        except ValueError:
            pass
        if self._resolver is None:
            cfg = self.config
            self._resolver = SipResolver(cfg.dns_nameservers, cfg.dns_port, cfg.dns_timeout)
        found = await self._resolver.resolve(
            uri, default_transport=transport or self.config.transport
        )
        usable = [
            a for a in found
            if a.transport in self._addresses or (a.transport == "tls" and "tcp" in self._addresses)
        ]  # fmt: skip
        if not usable:
            raise TransportError(
                f"{uri_text}: DNS gave only targets over transports we do not use: {found}"
            )
        for addr in usable:
            if addr.transport == "tls":
                self._tls_names[addr] = host
        return usable

    def first_hop(self, to_uri: str, from_uri: str | None) -> str:
        """The URI an out-of-dialog request to ``to_uri`` is sent to first (proxy or target)."""
        return self._account_dest(self._account_for(from_uri), to_uri)

    def _failover(self, call: _Call, reason: str) -> None:
        """Try the INVITE at the next target (new transaction, same CSeq, RFC 3263 §4.3)."""
        dest = call.targets.pop(0)
        log.info("%s: %s; trying the next target %s", call.invite.call_id, reason, dest)
        old = call.invite
        h = old.headers.copy()
        h.set("Via", self._via(dest.transport))
        retry = SipRequest(old.method, old.uri, h, old.body)
        call.dest = dest
        call.transport = dest.transport
        call.invite = retry
        key = self._send_request(retry, dest)
        call.invite_key = key
        self._client_purpose[key] = (call, "invite")

    # --- accounts, registration and authentication ----------------------------------------

    def add_account(self, account: Account) -> None:
        """Keep ``account``'s credentials (answering challenges for it); does not register."""
        check_header_value(account.aor, "AOR")
        check_header_value(account.username, "username")
        aor = parse_uri(account.aor)
        if not isinstance(aor, SipUri):
            raise InvalidArgumentError(f"an account's AOR must be a SIP URI, not {account.aor!r}")
        self._accounts[account.aor] = account
        self._auth[account.aor] = DigestClient(account.username, account.password)

    def register(self, aor: str) -> None:
        """Start (or restart) the registration of account ``aor``."""
        account = self._accounts.get(aor)
        if account is None:
            raise InvalidArgumentError(f"no account {aor!r}; add it with the builder first")
        reg = self._registrations.get(aor)
        if reg is None:
            uri = parse_uri(account.aor)
            assert isinstance(uri, SipUri)  # checked in add_account
            registrar = account.registrar or f"{uri.scheme}:{uri.host_port}"
            reg_uri = parse_uri(registrar)
            tp = (reg_uri.transport if isinstance(reg_uri, SipUri) else None) or (
                self.config.transport
            )
            reg = Registration(
                aor=account.aor,
                registrar=registrar,
                contact=self._contact(tp),
                expires=account.expires,
                instance_id=account.instance_id,
                reg_id=account.reg_id,
                backoff=(account.retry_after, max(account.retry_after, 1800.0)),
            )
            self._registrations[aor] = reg
        proxy = account.outbound_proxy or self.config.outbound_proxy
        first = proxy or reg.registrar
        if aor not in self._reg_targets and not _is_ip_uri(first) and self._loop is not None:
            task = self._loop.create_task(self._locate_registrar(reg, first))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._send_register(reg)

    async def _locate_registrar(self, reg: Registration, uri: str) -> None:
        try:
            self._reg_targets[reg.aor] = await self.locate(uri)
        except (TransportError, InvalidArgumentError) as exc:
            self._registration_update(reg, reg.fail(503, str(exc), self._now()))
            return
        self._send_register(reg)

    def unregister(self, aor: str) -> None:
        """Remove our binding (REGISTER with expires 0) and stop refreshing."""
        reg = self._registrations.get(aor)
        if reg is None:
            return
        timer = self._reg_timers.pop(aor, None)
        if timer is not None:
            timer.cancel()
        if reg.state in (RegistrationState.REGISTERED, RegistrationState.REGISTERING):
            self._send_register(reg, expires=0)
        else:
            # nothing bound at the registrar (failed, or never sent): just stop, and say so
            reg.stop()
            self._registrations.pop(aor, None)
            self._emit(ev.RegistrationChanged(aor, "unregistered", 0, "stopped", None, None))

    def registration(self, aor: str) -> Registration | None:
        """The registration of ``aor``, if any."""
        return self._registrations.get(aor)

    def _account_for(self, from_uri: str | None) -> Account | None:
        """The account a call from ``from_uri`` uses (the first account when not given)."""
        if not self._accounts:
            return None
        if from_uri is None:
            return next(iter(self._accounts.values()))
        try:
            wanted = NameAddr.parse(from_uri).uri
        except SipParseError:
            return None
        for account in self._accounts.values():
            acc = parse_uri(account.aor)
            if (
                isinstance(acc, SipUri)
                and isinstance(wanted, SipUri)
                and acc.user == wanted.user
                and acc.host.lower() == wanted.host.lower()
            ):
                return account
        return None

    def _account_dest(self, account: Account | None, uri: str) -> str:
        service = self._service_routes.get(account.aor) if account is not None else None
        if service:
            return str(NameAddr.parse(service[0]).uri)
        if account is not None and account.outbound_proxy:
            return account.outbound_proxy
        return self.config.outbound_proxy or uri

    def _send_register(self, reg: Registration, *, expires: int | None = None) -> None:
        account = self._accounts.get(reg.aor)
        try:
            targets = self._reg_targets.get(reg.aor)
            if targets:
                dest = targets[0]
            else:
                proxy = (account.outbound_proxy if account else None) or self.config.outbound_proxy
                dest = self._resolve(proxy or reg.registrar)
        except (TransportError, InvalidArgumentError) as exc:
            self._registration_update(reg, reg.fail(503, str(exc), self._now()))
            return
        req = reg.build_register(self._via(dest.transport), self._now(), expires=expires)
        self._add_route(req, account)
        key = self._send_request(req, dest)
        self._reg_keys[key] = (reg, dest)
        self._flush()

    def _on_register_response(
        self, reg: Registration, dest: Address, resp: SipResponse, request: SipRequest
    ) -> None:
        status = resp.status
        if status in (401, 407):
            retry = self._authenticated(request, resp)
            if retry is not None:
                retry.headers.set("CSeq", f"{reg.next_cseq()} REGISTER")
                retry.invalidate()
                key = self._send_request(retry, dest)
                self._reg_keys[key] = (reg, dest)
                return
            reason = self._auth_problem or "authentication failed: the credentials were refused"
            self._auth_problem = ""
            self._registration_update(reg, reg.fail(status, reason, self._now(), retry=False))
            return
        if 200 <= status < 300:
            client = self._auth.get(reg.aor)
            if client is not None:
                client.success()
            routes = resp.headers.values("Service-Route")  # RFC 3608
            if routes:
                self._service_routes[reg.aor] = routes
            else:
                self._service_routes.pop(reg.aor, None)
            reg.path = resp.headers.values("Path")  # RFC 3327: informational for a UA
            if reg.state is RegistrationState.REGISTERING and self._learn_public(reg, resp):
                # behind a NAT: bind the address the registrar sees instead (RFC 3581 rport)
                self._registration_update(reg, reg.on_response(resp, self._now()))
                reg.contact = self._contact(dest.transport)
                self._send_register(reg)
                return
        self._registration_update(reg, reg.on_response(resp, self._now()))

    def _learn_public(self, reg: Registration, resp: SipResponse) -> bool:
        """Note the address the registrar saw us at (``received``/``rport`` of our Via) when
        it differs from ours; True when the Contact must change."""
        if not self.config.nat_contact_rewrite:
            return False
        try:
            via = resp.top_via
        except SipParseError:
            return False
        received = via.params.get("received")
        rport = via.params.get("rport")
        if received is None and not (rport and rport.isdigit()):
            return False
        tp = via.transport.lower()
        if tp != "udp":
            return False  # connection transports: the registrar answers on our connection
        public = (
            received or via.host,
            int(rport) if rport and rport.isdigit() else via.port or 5060,
        )
        current = self._public.get(tp) or (
            self.config.advertised_host or self.local_address(tp).host,
            self.local_address(tp).port,
        )
        if public == current:
            return False
        log.info("%s: the registrar sees us at %s:%d (NAT): rewriting our Contact",
                 reg.aor, public[0], public[1])  # fmt: skip
        self._public[tp] = public
        return True

    def _registration_update(self, reg: Registration, update: RegistrationUpdate) -> None:
        self._emit(
            ev.RegistrationChanged(
                reg.aor, update.state.value, update.status, update.reason, update.expires,
                update.retry_in,
            )
        )  # fmt: skip
        timer = self._reg_timers.pop(reg.aor, None)
        if timer is not None:
            timer.cancel()
        deadline = reg.next_deadline()
        if deadline is not None and self._loop is not None:
            self._reg_timers[reg.aor] = self._loop.call_at(deadline, self._registration_due, reg)
        if update.state is RegistrationState.UNREGISTERED:
            self._registrations.pop(reg.aor, None)

    def _registration_due(self, reg: Registration) -> None:
        self._reg_timers.pop(reg.aor, None)
        if self._registrations.get(reg.aor) is reg:
            self._send_register(reg)

    def _add_route(self, request: SipRequest, account: Account | None) -> None:
        service = self._service_routes.get(account.aor) if account is not None else None
        if service and request.method != "REGISTER":
            for route in service:
                request.headers.add("Route", route)
            return
        proxy = account.outbound_proxy if account is not None else None
        proxy = proxy or self.config.outbound_proxy
        if proxy:
            uri = parse_uri(proxy)
            if isinstance(uri, SipUri) and "lr" not in uri.params:
                uri = uri.copy()
                uri.params["lr"] = None
            request.headers.add("Route", f"<{uri}>")

    def _auth_client(self, request: SipRequest) -> DigestClient | None:
        """The credentials for a request: the account its From names, else the first one."""
        if not self._auth:
            return None
        try:
            from_uri = request.from_.uri
        except SipParseError:
            return None
        if isinstance(from_uri, SipUri):
            for aor, client in self._auth.items():
                acc = parse_uri(aor)
                if (
                    isinstance(acc, SipUri)
                    and acc.user == from_uri.user
                    and acc.host.lower() == from_uri.host.lower()
                ):
                    return client
        return next(iter(self._auth.values()))

    def _authenticated(self, request: SipRequest, response: SipResponse) -> SipRequest | None:
        """``request`` again with credentials for ``response``'s challenges, or ``None`` when
        there is nothing (more) to try: no credentials, unusable challenge, or a second
        challenge without ``stale=true`` (wrong password: no retry storm)."""
        client = self._auth_client(request)
        if client is None:
            return None
        www = response.status == 401
        name = "WWW-Authenticate" if www else "Proxy-Authenticate"
        try:
            challenges = [parse_challenge(v) for v in response.headers.get_all(name)]
            if not any(c.is_digest for c in challenges):
                offered = ", ".join(sorted({c.scheme for c in challenges})) or "nothing"
                self._auth_problem = f"no Digest challenge to answer (offered: {offered})"
                return None
            if not client.should_retry(challenges, proxy=not www):
                self._auth_problem = "the credentials were refused (challenged again)"
                return None
            values = client.answer(
                challenges, request.method, request.uri, request.body, proxy=not www
            )
        except (AuthError, SessionError) as exc:
            log.info(
                "%s: cannot answer the %d challenge: %s", request.call_id, response.status, exc
            )
            self._auth_problem = str(exc)
            return None
        header = "Authorization" if www else "Proxy-Authorization"
        h = request.headers.copy()
        h.remove(header)
        for value in values:
            h.add(header, value)
        top = request.top_via
        h.set("Via", self._via(top.transport.lower()))
        return SipRequest(request.method, request.uri, h, request.body)

    def _retry_call_request(
        self, key: str, call: _Call, what: str, resp: SipResponse, request: SipRequest
    ) -> bool:
        """Re-send a challenged INVITE / in-dialog request with credentials; True if sent."""
        retry = self._authenticated(request, resp)
        if retry is None:
            return False
        if call.dialog is not None and what != "invite":
            call.dialog.local_seq += 1
            seq = call.dialog.local_seq
        else:
            seq = request.cseq.seq + 1
        retry.headers.set("CSeq", f"{seq} {request.method}")
        retry.invalidate()
        dest = call.dest if what == "invite" else self._resolve(
            call.dialog.next_hop_uri() if call.dialog else call.invite.uri, call.transport
        )  # fmt: skip
        self._client_purpose.pop(key, None)
        new_key = self._send_request(retry, dest)
        self._client_purpose[new_key] = (call, what)
        if what == "invite":
            call.invite = retry
            call.invite_key = new_key
        elif what == "reinvite":
            call.reinvite_out = new_key
        return True

    # --- bookkeeping ------------------------------------------------------------------------

    def _end(self, call: _Call, reason: str, *, by_remote: bool, emit: bool = True) -> None:
        if call.state == "terminated":
            return
        was_terminating = call.state == "terminating"
        call.state = "terminating" if not by_remote and not was_terminating else "terminated"
        if call.dialog is not None and call.dialog.state is not DialogState.TERMINATED:
            call.dialog.transition("bye")
        self._forget(call)
        call.state = "terminated"
        if emit:
            self._emit(ev.CallTerminated(call.ref, reason, by_remote))

    def _forget(self, call: _Call) -> None:
        self._calls.pop(call.ref, None)
        if call.dialog is not None:
            self._by_dialog.pop(call.dialog.key, None)
        for key in call.keys:
            self._by_invite_key.pop(key, None)

    def forget(self, ref: str) -> None:
        """Drop whatever SIP state is left for ``ref`` (cleanup path; never raises)."""
        call = self._calls.get(ref)
        if call is not None:
            self._forget(call)


_SALVAGE = {"via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To",
            "call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq"}  # fmt: skip


def _salvage_headers(data: bytes) -> Headers | None:
    """The Via/From/To/Call-ID/CSeq lines of a request too broken to parse, to answer it.

    Returns ``None`` when there is no Via or CSeq to address a response with.
    """
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    head = head.replace("\r\n ", " ").replace("\r\n\t", " ")
    h = Headers()
    for line in head.split("\r\n")[1:]:
        name, colon, value = line.partition(":")
        canon = _SALVAGE.get(name.strip().lower())
        if colon and canon is not None:
            h.add(canon, value.strip())
    if "Via" not in h or "CSeq" not in h:
        return None
    return h


def _free_port_pair(host: str) -> int:
    """A port number free for both UDP and TCP on ``host`` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port: int = udp.getsockname()[1]
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise TransportError(f"no port free for both UDP and TCP on {host}")


def _preemptive(client: DigestClient, request: SipRequest) -> list[tuple[str, str]]:
    """Credentials for realms that challenged us before (RFC 3261 §22.3 reuse)."""
    method, uri, body = request.method, request.uri, request.body
    out = [("Authorization", v) for v in client.authorize(method, uri, body)]
    out += [("Proxy-Authorization", v) for v in client.authorize(method, uri, body, proxy=True)]
    return out


def _is_ip_uri(uri_text: str) -> bool:
    """True when ``uri_text`` is a SIP URI whose host is an IP literal (no DNS needed)."""
    try:
        uri = parse_uri(uri_text)
    except SipParseError:
        return True  # let the synchronous path report it
    if not isinstance(uri, SipUri):
        return True
    try:
        ipaddress.ip_address(uri.params.get("maddr") or uri.host)
    except ValueError:
        return False
    return True
