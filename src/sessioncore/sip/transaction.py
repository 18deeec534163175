"""The SIP transaction layer, sans-I/O (RFC 3261 §17, amended by RFC 6026).

:class:`TransactionLayer` holds every client and server transaction of one user agent. It is fed
parsed messages and the current time and answers with bytes to send, events and its next
deadline, in the style of aioquic's ``QuicConnection``::

    layer.receive(message, source, now)         # from the transport driver
    key = layer.send_request(request, dest, now)  # from the TU (dialog layer)
    layer.send_response(server_key, response, now)
    layer.handle_timer(now)                     # when get_timer() has passed
    for data, dest in layer.datagrams_to_send(): ...
    while (event := layer.next_event()) is not None: ...

Nothing here touches a socket, a task or the event loop; all timers of all transactions live in
one :class:`~sessioncore.sip.timers.TimerHeap`.

Transitions are data: each kind of transaction has a table ``{(state, event): new_state}``
(:data:`TRANSITIONS`). Events are response classes (``"1xx"``, ``"2xx"``, ``"3xx-6xx"``),
requests (``"request"`` for a retransmission, ``"ack"``), timers (``"timer_A"`` ...), TU actions
(``"send_1xx"`` ..., ``"ack_received"``) and ``"transport_error"``. A TU action missing from
the table raises :class:`TransactionStateError`; a network or timer event missing from the
table is absorbed (RFC 3261 discards such messages), logged at DEBUG. Only
:meth:`TransactionLayer.terminate` (the TU giving up) bypasses the tables: it is allowed in
every state.

Responses to a server transaction are sent to the address the request came from (symmetric
response routing, as with ``rport``); the transport driver may reuse the connection.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

from sessioncore.errors import (
    InvalidArgumentError,
    InvalidStateError,
    SessionError,
    SipParseError,
)
from sessioncore.sip.address import Address
from sessioncore.sip.headers import Headers, Via
from sessioncore.sip.message import SipMessage, SipRequest, SipResponse
from sessioncore.sip.timers import TimerHandle, TimerHeap

__all__ = [
    "INVITE_CLIENT_TRANSITIONS",
    "INVITE_SERVER_TRANSITIONS",
    "MAGIC_COOKIE",
    "NON_INVITE_CLIENT_TRANSITIONS",
    "NON_INVITE_SERVER_TRANSITIONS",
    "TRANSITIONS",
    "AckReceived",
    "AckTimeout",
    "CancelReceived",
    "RequestReceived",
    "ResponseReceived",
    "TimerConfig",
    "TransactionError",
    "TransactionEvent",
    "TransactionKind",
    "TransactionLayer",
    "TransactionState",
    "TransactionStateError",
    "TransactionTerminated",
    "TransactionTimeout",
    "TransportFailed",
    "UnknownTransactionError",
]

_log = logging.getLogger("sessioncore.sip.transaction")
_DEBUG = logging.DEBUG

#: The branch prefix of RFC 3261 requests (§8.1.1.7); without it, RFC 2543 matching applies.
MAGIC_COOKIE = "z9hG4bK"


# --- errors ----------------------------------------------------------------------------------


class TransactionError(SessionError):
    """The TU misused the transaction layer (duplicate transaction, wrong kind ...)."""


class TransactionStateError(TransactionError, InvalidStateError):
    """The TU asked for a transition the transaction's state machine does not allow."""


class UnknownTransactionError(TransactionError, KeyError):
    """No transaction with the given key exists (it never did, or it has terminated)."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "unknown transaction"


# --- states and transition tables ------------------------------------------------------------


class TransactionKind(StrEnum):
    """The four transaction state machines of RFC 3261 §17."""

    INVITE_CLIENT = "INVITE client"
    NON_INVITE_CLIENT = "non-INVITE client"
    INVITE_SERVER = "INVITE server"
    NON_INVITE_SERVER = "non-INVITE server"


class TransactionState(StrEnum):
    """Transaction states (RFC 3261 §17, ``Accepted`` from RFC 6026)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


_S = TransactionState
Table: TypeAlias = dict[tuple[TransactionState, str], TransactionState]

#: INVITE client transaction (RFC 3261 §17.1.1, Figure 5 as amended by RFC 6026 Figure 5).
INVITE_CLIENT_TRANSITIONS: Table = {
    (_S.CALLING, "timer_A"): _S.CALLING,  # retransmit the INVITE (unreliable only)
    (_S.CALLING, "timer_B"): _S.TERMINATED,  # no response: TransactionTimeout
    (_S.CALLING, "1xx"): _S.PROCEEDING,
    (_S.CALLING, "2xx"): _S.ACCEPTED,
    (_S.CALLING, "3xx-6xx"): _S.COMPLETED,  # send the ACK
    (_S.CALLING, "transport_error"): _S.TERMINATED,
    (_S.PROCEEDING, "1xx"): _S.PROCEEDING,
    (_S.PROCEEDING, "2xx"): _S.ACCEPTED,
    (_S.PROCEEDING, "3xx-6xx"): _S.COMPLETED,
    (_S.PROCEEDING, "timer_C"): _S.TERMINATED,  # only when TimerConfig.timer_c is set
    (_S.PROCEEDING, "transport_error"): _S.TERMINATED,
    (_S.COMPLETED, "3xx-6xx"): _S.COMPLETED,  # retransmitted final: re-send the ACK
    (_S.COMPLETED, "timer_D"): _S.TERMINATED,
    (_S.ACCEPTED, "2xx"): _S.ACCEPTED,  # 2xx retransmission or fork: pass to the TU
    (_S.ACCEPTED, "timer_M"): _S.TERMINATED,
}

#: Non-INVITE client transaction (RFC 3261 §17.1.2, Figure 6).
NON_INVITE_CLIENT_TRANSITIONS: Table = {
    (_S.TRYING, "timer_E"): _S.TRYING,
    (_S.TRYING, "timer_F"): _S.TERMINATED,
    (_S.TRYING, "1xx"): _S.PROCEEDING,
    (_S.TRYING, "2xx"): _S.COMPLETED,
    (_S.TRYING, "3xx-6xx"): _S.COMPLETED,
    (_S.TRYING, "transport_error"): _S.TERMINATED,
    (_S.PROCEEDING, "timer_E"): _S.PROCEEDING,
    (_S.PROCEEDING, "timer_F"): _S.TERMINATED,
    (_S.PROCEEDING, "1xx"): _S.PROCEEDING,
    (_S.PROCEEDING, "2xx"): _S.COMPLETED,
    (_S.PROCEEDING, "3xx-6xx"): _S.COMPLETED,
    (_S.PROCEEDING, "transport_error"): _S.TERMINATED,
    (_S.COMPLETED, "timer_K"): _S.TERMINATED,
}

#: INVITE server transaction (RFC 3261 §17.2.1, Figure 7 as amended by RFC 6026 Figure 7).
INVITE_SERVER_TRANSITIONS: Table = {
    (_S.PROCEEDING, "request"): _S.PROCEEDING,  # retransmitted INVITE: re-send last 1xx
    (_S.PROCEEDING, "send_1xx"): _S.PROCEEDING,
    (_S.PROCEEDING, "send_2xx"): _S.ACCEPTED,
    (_S.PROCEEDING, "send_3xx-6xx"): _S.COMPLETED,
    (_S.PROCEEDING, "transport_error"): _S.TERMINATED,
    (_S.COMPLETED, "request"): _S.COMPLETED,  # re-send the final response
    (_S.COMPLETED, "timer_G"): _S.COMPLETED,
    (_S.COMPLETED, "timer_H"): _S.TERMINATED,  # no ACK: TransactionTimeout
    (_S.COMPLETED, "ack"): _S.CONFIRMED,
    (_S.COMPLETED, "transport_error"): _S.TERMINATED,
    (_S.CONFIRMED, "ack"): _S.CONFIRMED,  # retransmitted ACK: absorbed
    (_S.CONFIRMED, "timer_I"): _S.TERMINATED,
    (_S.ACCEPTED, "send_2xx"): _S.ACCEPTED,
    (_S.ACCEPTED, "timer_G2xx"): _S.ACCEPTED,  # re-send the 2xx until the TU saw the ACK
    (_S.ACCEPTED, "ack"): _S.ACCEPTED,  # an ACK matching the transaction: pass to the TU
    (_S.ACCEPTED, "ack_received"): _S.ACCEPTED,
    (_S.ACCEPTED, "timer_L"): _S.TERMINATED,  # AckTimeout unless ack_received was called
    (_S.ACCEPTED, "transport_error"): _S.TERMINATED,
}

#: Non-INVITE server transaction (RFC 3261 §17.2.2, Figure 8).
NON_INVITE_SERVER_TRANSITIONS: Table = {
    (_S.TRYING, "send_1xx"): _S.PROCEEDING,
    (_S.TRYING, "send_2xx"): _S.COMPLETED,
    (_S.TRYING, "send_3xx-6xx"): _S.COMPLETED,
    (_S.TRYING, "transport_error"): _S.TERMINATED,
    (_S.PROCEEDING, "request"): _S.PROCEEDING,  # re-send the last provisional
    (_S.PROCEEDING, "send_1xx"): _S.PROCEEDING,
    (_S.PROCEEDING, "send_2xx"): _S.COMPLETED,
    (_S.PROCEEDING, "send_3xx-6xx"): _S.COMPLETED,
    (_S.PROCEEDING, "transport_error"): _S.TERMINATED,
    (_S.COMPLETED, "request"): _S.COMPLETED,  # re-send the final response
    (_S.COMPLETED, "timer_J"): _S.TERMINATED,
    (_S.COMPLETED, "transport_error"): _S.TERMINATED,
}

#: The table of each kind of transaction.
TRANSITIONS: dict[TransactionKind, Table] = {
    TransactionKind.INVITE_CLIENT: INVITE_CLIENT_TRANSITIONS,
    TransactionKind.NON_INVITE_CLIENT: NON_INVITE_CLIENT_TRANSITIONS,
    TransactionKind.INVITE_SERVER: INVITE_SERVER_TRANSITIONS,
    TransactionKind.NON_INVITE_SERVER: NON_INVITE_SERVER_TRANSITIONS,
}

_ICT = TransactionKind.INVITE_CLIENT
_NICT = TransactionKind.NON_INVITE_CLIENT
_IST = TransactionKind.INVITE_SERVER
_NIST = TransactionKind.NON_INVITE_SERVER


# --- timers ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """Timer values in seconds (RFC 3261 Table 4, RFC 6026 §8.11).

    ``None`` means the RFC default derived from T1/T4. ``timer_d``, ``timer_i``, ``timer_j`` and
    ``timer_k`` are the values used on unreliable transports; on TCP/TLS they are always 0.
    ``timer_c`` bounds an INVITE client transaction in Proceeding (RFC 3261 leaves that to the
    TU; ``None`` waits for ever, a value ends it with ``TransactionTimeout(timer="C")``).
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_b: float | None = None  # 64*T1: INVITE transaction timeout
    timer_c: float | None = None  # INVITE in Proceeding: no limit by default
    timer_d: float = 32.0  # wait for response retransmits (0 on reliable)
    timer_f: float | None = None  # 64*T1: non-INVITE transaction timeout
    timer_h: float | None = None  # 64*T1: wait for ACK
    timer_i: float | None = None  # T4: wait for ACK retransmits (0 on reliable)
    timer_j: float | None = None  # 64*T1: wait for request retransmits (0 on reliable)
    timer_k: float | None = None  # T4: wait for response retransmits (0 on reliable)
    timer_l: float | None = None  # 64*T1: wait in Accepted (server)
    timer_m: float | None = None  # 64*T1: wait in Accepted (client)

    def __post_init__(self) -> None:
        if not self.t1 > 0:
            raise InvalidArgumentError(f"T1 must be positive, not {self.t1}")
        if not self.t2 >= self.t1:
            raise InvalidArgumentError(f"T2 ({self.t2}) must not be smaller than T1 ({self.t1})")
        if not self.t4 >= 0:
            raise InvalidArgumentError(f"T4 must not be negative, not {self.t4}")
        for name in (
            "timer_b", "timer_c", "timer_d", "timer_f", "timer_h", "timer_i", "timer_j",
            "timer_k", "timer_l", "timer_m",
        ):  # fmt: skip
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise InvalidArgumentError(f"{name} must not be negative, not {value}")


class _Durations:
    """The concrete timer values for one kind of transport (resolved once per layer)."""

    __slots__ = ("b", "c", "d", "f", "h", "i", "j", "k", "m", "reliable", "t1", "t2", "wait_l")

    def __init__(self, cfg: TimerConfig, reliable: bool) -> None:
        t64 = 64 * cfg.t1
        dflt = _default
        self.reliable = reliable
        self.t1 = cfg.t1
        self.t2 = cfg.t2
        self.b = dflt(cfg.timer_b, t64)
        self.c = cfg.timer_c
        self.f = dflt(cfg.timer_f, t64)
        self.h = dflt(cfg.timer_h, t64)
        self.wait_l = dflt(cfg.timer_l, t64)
        self.m = dflt(cfg.timer_m, t64)
        self.d = 0.0 if reliable else cfg.timer_d
        self.i = 0.0 if reliable else dflt(cfg.timer_i, cfg.t4)
        self.j = 0.0 if reliable else dflt(cfg.timer_j, t64)
        self.k = 0.0 if reliable else dflt(cfg.timer_k, cfg.t4)


def _default(value: float | None, default: float) -> float:
    return default if value is None else value


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request (not ACK, not CANCEL) created server transaction ``key``; the TU answers
    with :meth:`TransactionLayer.send_response`."""

    key: str
    request: SipRequest
    source: Address


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL created non-INVITE server transaction ``key`` (answer it with 200 or 481).

    ``invite_key`` is the INVITE server transaction it cancels (RFC 3261 §9.2), or ``None``.
    """

    key: str
    request: SipRequest
    source: Address
    invite_key: str | None


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK no transaction absorbed: the ACK for a 2xx, for the dialog layer.

    ``key`` is ``None`` normally; it names the INVITE server transaction when the ACK matched
    one in the Accepted state (RFC 6026 §8.7, RFC 2543 peers).
    """

    request: SipRequest
    source: Address
    key: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for client transaction ``key``; ``request`` is the request it answers."""

    key: str
    response: SipResponse
    request: SipRequest


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """A transaction timed out: ``timer`` is ``"B"`` or ``"F"`` (no final response), ``"C"``
    (INVITE stuck in Proceeding, when configured) or ``"H"`` (our non-2xx final got no ACK)."""

    key: str
    request: SipRequest
    timer: str


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """Timer L fired before the TU reported the ACK for our 2xx: the dialog should send BYE."""

    key: str
    request: SipRequest


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The driver reported that a message of transaction ``key`` could not be sent."""

    key: str
    request: SipRequest


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """Transaction ``key`` is gone (after any other event about it); forget its key."""

    key: str


TransactionEvent: TypeAlias = (
    RequestReceived
    | CancelReceived
    | AckReceived
    | ResponseReceived
    | TransactionTimeout
    | AckTimeout
    | TransportFailed
    | TransactionTerminated
)


# --- the transaction record ------------------------------------------------------------------


class _Transaction:
    """One transaction: its state, the serialized messages it may retransmit and its timers.

    ``retx`` is the retransmission timer (A, E, G or the 2xx one), ``life`` the one that ends
    the current state (B, C, D, F, H, I, J, K, L, M): no state needs more than one of each.
    """

    __slots__ = (
        "ack_bytes",
        "acked",
        "branch",
        "durations",
        "interval",
        "key",
        "kind",
        "life",
        "remote",
        "request",
        "request_bytes",
        "response",
        "response_bytes",
        "retx",
        "state",
        "table",
    )

    def __init__(
        self,
        key: str,
        kind: TransactionKind,
        state: TransactionState,
        request: SipRequest,
        remote: Address,
        branch: str,
        durations: _Durations,
    ) -> None:
        self.key = key
        self.kind = kind
        self.table = TRANSITIONS[kind]
        self.state = state
        self.request = request
        self.remote = remote
        self.branch = branch
        self.durations = durations
        self.request_bytes = b""
        self.ack_bytes = b""
        self.response: SipResponse | None = None
        self.response_bytes: bytes | None = None
        self.interval = 0.0
        self.retx: TimerHandle[_TimerKey] | None = None
        self.life: TimerHandle[_TimerKey] | None = None
        self.acked = False

    def __repr__(self) -> str:
        return f"<{self.kind} transaction {self.key} {self.state}>"


_TimerKey: TypeAlias = tuple[_Transaction, str]
_TimerAction: TypeAlias = Callable[[_Transaction, str, float], None]


def _status_event(status: int) -> str:
    if status < 200:
        return "1xx"
    if status < 300:
        return "2xx"
    return "3xx-6xx"


# --- the layer -------------------------------------------------------------------------------


class TransactionLayer:
    """Every SIP transaction of one user agent, as a sans-I/O state machine (RFC 3261 §17).

    Feed it with :meth:`receive`, :meth:`send_request`, :meth:`send_response` and
    :meth:`handle_timer`; drain :meth:`datagrams_to_send` and :meth:`next_event`, and arm one
    timer at :meth:`get_timer`. Every method takes ``now`` from the same monotonic clock.
    """

    def __init__(self, config: TimerConfig | None = None) -> None:
        self._config = config if config is not None else TimerConfig()
        self._unreliable = _Durations(self._config, reliable=False)
        self._reliable = _Durations(self._config, reliable=True)
        self._txns: dict[str, _Transaction] = {}
        self._heap: TimerHeap[_TimerKey] = TimerHeap()
        self._out: list[tuple[bytes, Address]] = []
        self._events: deque[TransactionEvent] = deque()
        #: Counters for monitoring: ``transactions`` created, ``retransmissions`` (messages
        #: re-sent by a timer or in answer to a retransmission), ``timeouts`` (B, C, F, H, L
        #: without ACK) and ``transport_failures``.
        self.stats: dict[str, int] = {
            "transactions": 0,
            "retransmissions": 0,
            "timeouts": 0,
            "transport_failures": 0,
        }
        self._timer_actions: dict[str, _TimerAction] = {
            "A": self._on_timer_a,
            "B": self._on_timeout,
            "C": self._on_timeout,
            "D": self._on_wait_over,
            "E": self._on_timer_e,
            "F": self._on_timeout,
            "G": self._on_timer_g,
            "G2xx": self._on_timer_g,
            "H": self._on_timeout,
            "I": self._on_wait_over,
            "J": self._on_wait_over,
            "K": self._on_wait_over,
            "L": self._on_timer_l,
            "M": self._on_wait_over,
        }

    # --- introspection ---------------------------------------------------------------------

    @property
    def config(self) -> TimerConfig:
        """The timer configuration."""
        return self._config

    def active_count(self) -> int:
        """How many transactions exist (terminated ones are removed at once)."""
        return len(self._txns)

    def __len__(self) -> int:
        return len(self._txns)

    def state_of(self, key: str) -> TransactionState | None:
        """The state of transaction ``key``, or ``None`` if there is no such transaction."""
        txn = self._txns.get(key)
        return None if txn is None else txn.state

    def kind_of(self, key: str) -> TransactionKind | None:
        """The kind of transaction ``key``, or ``None`` if there is no such transaction."""
        txn = self._txns.get(key)
        return None if txn is None else txn.kind

    # --- output ----------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        """Take the queued ``(bytes, destination)`` pairs, oldest first."""
        out = self._out
        self._out = []
        return out

    def next_event(self) -> TransactionEvent | None:
        """Take the oldest pending event, or ``None``."""
        events = self._events
        return events.popleft() if events else None

    def get_timer(self) -> float | None:
        """The next deadline at which :meth:`handle_timer` must be called, or ``None``."""
        return self._heap.next_deadline()

    # --- TU actions ------------------------------------------------------------------------

    def send_request(self, request: SipRequest, dest: Address, now: float) -> str:
        """Start a client transaction for ``request`` (not ACK) towards ``dest``.

        The request must carry its top Via with a branch (the transaction key is built from it)
        and is serialized once. Returns the client transaction key.
        """
        method = request.method
        if method == "ACK":
            raise InvalidArgumentError(
                "an ACK has no client transaction: send the ACK for a 2xx with send_stateless"
            )
        try:
            branch = request.branch
            _ = request.cseq  # parsed now, so that building the ACK later cannot fail
            call_id = request.call_id
            has_from = request.headers.get("From") is not None
            has_to = request.headers.get("To") is not None
        except SipParseError as exc:
            raise InvalidArgumentError(f"cannot send {method}: {exc}") from exc
        if not branch:
            raise InvalidArgumentError(f"cannot send {method}: the top Via has no branch")
        if not call_id or not has_from or not has_to:
            raise InvalidArgumentError(f"cannot send {method}: Call-ID, From and To are required")
        key = f"c:{branch}:{method}"
        if key in self._txns:
            raise TransactionError(f"client transaction {key} exists already")
        durations = self._reliable if dest.reliable else self._unreliable
        if method == "INVITE":
            kind, state, retx, life, timeout = _ICT, _S.CALLING, "A", "B", durations.b
        else:
            kind, state, retx, life, timeout = _NICT, _S.TRYING, "E", "F", durations.f
        txn = _Transaction(key, kind, state, request, dest, branch, durations)
        data = bytes(request)
        txn.request_bytes = data
        self._txns[key] = txn
        self.stats["transactions"] += 1
        self._out.append((data, dest))
        heap = self._heap
        if not durations.reliable:
            txn.interval = durations.t1
            txn.retx = heap.schedule(now + durations.t1, (txn, retx))
        txn.life = heap.schedule(now + timeout, (txn, life))
        if _log.isEnabledFor(_DEBUG):
            _log.debug("%s: new %s transaction in %s to %s", branch, kind, state, dest)
        return key

    def send_response(self, server_key: str, response: SipResponse, now: float) -> None:
        """Send ``response`` in server transaction ``server_key`` (RFC 3261 §17.2.1, §17.2.2).

        For INVITE: a 2xx moves to Accepted and is retransmitted (unreliable transports) until
        :meth:`ack_received` or Timer L; a 300-699 moves to Completed, retransmitted with
        Timer G until the ACK arrives or Timer H fires. Raises :class:`UnknownTransactionError`
        or :class:`TransactionStateError` (e.g. a second final response).
        """
        txn = self._txns.get(server_key)
        if txn is None:
            raise UnknownTransactionError(f"no transaction {server_key}")
        kind = txn.kind
        if kind is _ICT or kind is _NICT:
            raise TransactionStateError(f"{server_key} is a client transaction")
        status = response.status
        if not 100 <= status <= 699:
            raise InvalidArgumentError(f"bad response status {status}")
        event = "send_" + _status_event(status)
        old = txn.state
        self._step(txn, event, strict=True)
        data = bytes(response)
        txn.response_bytes = data
        self._out.append((data, txn.remote))
        if status < 200:
            txn.response = response
            return
        if _is_2543(txn.key):
            txn.response = response  # RFC 2543 ACK matching compares To tags
        else:
            # From here on only the bytes are retransmitted: keep the long-lived state small
            # (a server transaction outlives its call by up to 64*T1).
            txn.response = None
            txn.request = _slim(txn.request)
        d = txn.durations
        heap = self._heap
        if kind is _IST:
            if status < 300:
                if old is _S.PROCEEDING:
                    txn.life = heap.schedule(now + d.wait_l, (txn, "L"))
                    if not d.reliable:
                        txn.interval = d.t1
                        txn.retx = heap.schedule(now + d.t1, (txn, "G2xx"))
            else:
                if not d.reliable:
                    txn.interval = d.t1
                    txn.retx = heap.schedule(now + d.t1, (txn, "G"))
                txn.life = heap.schedule(now + d.h, (txn, "H"))
        else:
            self._wait(txn, "J", d.j, now)

    def ack_received(self, server_key: str) -> None:
        """The TU got the ACK for the 2xx of INVITE server transaction ``server_key``.

        Stops the 2xx retransmissions; the transaction stays in Accepted until Timer L (to
        absorb retransmitted INVITEs) and then ends without :class:`AckTimeout`. Unknown keys
        (the transaction already ended) are ignored.
        """
        txn = self._txns.get(server_key)
        if txn is None:
            return
        self._step(txn, "ack_received", strict=True)
        txn.acked = True
        self._heap.cancel(txn.retx)
        txn.retx = None
        txn.response_bytes = None

    def terminate(self, key: str) -> None:
        """End transaction ``key`` at once, without retransmissions or events other than
        :class:`TransactionTerminated` (for a TU that gives up). Unknown keys are ignored."""
        txn = self._txns.get(key)
        if txn is None:
            return
        if _log.isEnabledFor(_DEBUG):
            _log.debug("%s: %s %s -> Terminated on terminate", txn.branch, txn.kind, txn.state)
        txn.state = _S.TERMINATED
        self._terminate(txn)

    def send_stateless(self, message: SipRequest | SipResponse, dest: Address) -> None:
        """Queue ``message`` for ``dest`` outside any transaction (ACK for a 2xx, 400 to an
        unparseable request)."""
        self._out.append((bytes(message), dest))

    # --- network and driver input ----------------------------------------------------------

    def receive(self, message: SipMessage, source: Address, now: float) -> None:
        """Handle a message received from ``source`` (already parsed).

        Responses go to their client transaction (RFC 3261 §17.1.3; unmatched ones are dropped,
        as RFC 6026 amends §18.1.2); requests to their server transaction (§17.2.3), creating
        one for a new request. Messages whose Via, CSeq or From cannot be parsed are dropped.
        """
        try:
            if isinstance(message, SipResponse):
                self._receive_response(message, now)
            elif isinstance(message, SipRequest):
                self._receive_request(message, source, now)
        except SipParseError as exc:
            _log.warning("dropping %r from %s: %s", message, source, exc)

    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now``."""
        txns = self._txns
        actions = self._timer_actions
        for txn, name in self._heap.pop_due(now):
            if txns.get(txn.key) is txn:  # an earlier timer of this batch may have ended it
                actions[name](txn, name, now)

    def transport_error(self, dest: Address, now: float) -> None:
        """Sending to ``dest`` failed: every transaction with that peer that is still waiting to
        deliver something ends with :class:`TransportFailed` (RFC 3261 §17.1.4, §17.2.4)."""
        for txn in [t for t in self._txns.values() if t.remote == dest]:
            self._fail(txn)

    def transport_error_for(self, key: str) -> None:
        """Sending a message of transaction ``key`` failed (see :meth:`transport_error`)."""
        txn = self._txns.get(key)
        if txn is not None:
            self._fail(txn)

    # --- internals: state machine ----------------------------------------------------------

    def _step(self, txn: _Transaction, event: str, strict: bool = False) -> TransactionState | None:
        old = txn.state
        new = txn.table.get((old, event))
        if new is None:
            if strict:
                raise TransactionStateError(
                    f"{txn.branch}: {event} is not allowed in {txn.kind} transaction state {old}"
                )
            if _log.isEnabledFor(_DEBUG):
                _log.debug("%s: %s %s ignores %s", txn.branch, txn.kind, old, event)
            return None
        if _log.isEnabledFor(_DEBUG):
            _log.debug("%s: %s %s -> %s on %s", txn.branch, txn.kind, old, new, event)
        txn.state = new
        return new

    def _terminate(self, txn: _Transaction) -> None:
        heap = self._heap
        heap.cancel(txn.retx)
        heap.cancel(txn.life)
        txn.retx = txn.life = None
        del self._txns[txn.key]
        self._events.append(TransactionTerminated(txn.key))

    def _wait(self, txn: _Transaction, name: str, delay: float, now: float) -> None:
        """Arm the wait timer ``name`` or, when it is 0 (reliable transports), end now."""
        if delay > 0:
            txn.life = self._heap.schedule(now + delay, (txn, name))
        else:
            self._step(txn, "timer_" + name, strict=True)
            self._terminate(txn)

    def _stop_timers(self, txn: _Transaction) -> None:
        heap = self._heap
        heap.cancel(txn.retx)
        heap.cancel(txn.life)
        txn.retx = txn.life = None

    def _resend(self, data: bytes, dest: Address) -> None:
        self._out.append((data, dest))
        self.stats["retransmissions"] += 1

    def _fail(self, txn: _Transaction) -> None:
        if self._step(txn, "transport_error") is None:
            return
        self.stats["transport_failures"] += 1
        self._events.append(TransportFailed(txn.key, txn.request))
        self._terminate(txn)

    # --- internals: responses (client side) ------------------------------------------------

    def _receive_response(self, response: SipResponse, now: float) -> None:
        branch = response.top_via.branch
        if branch is None:
            _log.debug("dropping %r without a branch", response)
            return
        key = f"c:{branch}:{response.cseq.method}"
        txn = self._txns.get(key)
        if txn is None:
            if _log.isEnabledFor(_DEBUG):
                _log.debug("%s: dropping stray %r (no transaction)", branch, response)
            return
        event = _status_event(response.status)
        old = txn.state
        if self._step(txn, event) is None:
            return  # absorbed
        events = self._events
        if txn.kind is _ICT:
            if event == "1xx":
                self._stop_timers(txn)
                c = txn.durations.c
                if c is not None:
                    txn.life = self._heap.schedule(now + c, (txn, "C"))
                events.append(ResponseReceived(key, response, txn.request))
            elif event == "2xx":
                if old is not _S.ACCEPTED:
                    self._stop_timers(txn)
                    txn.life = self._heap.schedule(now + txn.durations.m, (txn, "M"))
                events.append(ResponseReceived(key, response, txn.request))
            elif old is _S.COMPLETED:
                self._resend(txn.ack_bytes, txn.remote)  # retransmitted final
            else:
                self._stop_timers(txn)
                ack = _build_ack(txn.request, response)
                txn.ack_bytes = ack
                self._out.append((ack, txn.remote))
                events.append(ResponseReceived(key, response, txn.request))
                self._wait(txn, "D", txn.durations.d, now)
        else:
            events.append(ResponseReceived(key, response, txn.request))
            if event != "1xx":
                self._stop_timers(txn)
                self._wait(txn, "K", txn.durations.k, now)

    # --- internals: requests (server side) -------------------------------------------------

    def _receive_request(self, request: SipRequest, source: Address, now: float) -> None:
        method = request.method
        via = request.top_via
        branch = via.branch
        if method == "ACK":
            self._receive_ack(request, source, via, branch, now)
            return
        key = _server_key(request, via, branch, method)
        txn = self._txns.get(key)
        if txn is not None:
            if _is_2543(key) and request.to.tag != txn.request.to.tag:
                _log.debug("%s: RFC 2543 request with another To tag dropped", key)
                return
            if self._step(txn, "request") is not None and txn.response_bytes is not None:
                self._resend(txn.response_bytes, txn.remote)
            return
        durations = self._reliable if source.reliable else self._unreliable
        label = branch or key
        if method == "INVITE":
            txn = _Transaction(key, _IST, _S.PROCEEDING, request, source, label, durations)
        else:
            txn = _Transaction(key, _NIST, _S.TRYING, request, source, label, durations)
        self._txns[key] = txn
        self.stats["transactions"] += 1
        if _log.isEnabledFor(_DEBUG):
            _log.debug("%s: new %s transaction in %s from %s", label, txn.kind, txn.state, source)
        if method == "CANCEL":
            invite_key = _server_key(request, via, branch, "INVITE")
            invite = self._txns.get(invite_key)
            matched = invite is not None and (
                not _is_2543(invite_key) or request.to.tag == invite.request.to.tag
            )
            self._events.append(
                CancelReceived(key, request, source, invite_key if matched else None)
            )
        else:
            self._events.append(RequestReceived(key, request, source))

    def _receive_ack(
        self, request: SipRequest, source: Address, via: Via, branch: str | None, now: float
    ) -> None:
        key = _server_key(request, via, branch, "INVITE")
        txn = self._txns.get(key)
        if txn is not None and _is_2543(key):  # RFC 2543: the To tag must be our response's
            response = txn.response
            if response is None or request.to.tag != response.to.tag:
                txn = None
        if txn is None:
            self._events.append(AckReceived(request, source))
            return
        old = txn.state
        if self._step(txn, "ack") is None:
            return  # ACK before any final response: nothing to acknowledge
        if old is _S.COMPLETED:
            self._stop_timers(txn)
            self._wait(txn, "I", txn.durations.i, now)
        elif old is _S.ACCEPTED:
            self._events.append(AckReceived(request, source, key))

    # --- internals: timers -----------------------------------------------------------------

    def _on_timer_a(self, txn: _Transaction, name: str, now: float) -> None:
        if self._step(txn, "timer_A") is None:
            return
        self._resend(txn.request_bytes, txn.remote)
        txn.interval *= 2
        txn.retx = self._heap.schedule(now + txn.interval, (txn, "A"))

    def _on_timer_e(self, txn: _Transaction, name: str, now: float) -> None:
        if self._step(txn, "timer_E") is None:
            return
        self._resend(txn.request_bytes, txn.remote)
        t2 = txn.durations.t2
        if txn.state is _S.TRYING:
            txn.interval = min(txn.interval * 2, t2)
        else:
            txn.interval = t2
        txn.retx = self._heap.schedule(now + txn.interval, (txn, "E"))

    def _on_timer_g(self, txn: _Transaction, name: str, now: float) -> None:
        # Timer G (non-2xx final) and the 2xx retransmission timer (RFC 3261 §13.3.1.4).
        if self._step(txn, "timer_" + name) is None or txn.response_bytes is None:
            return
        self._resend(txn.response_bytes, txn.remote)
        txn.interval = min(txn.interval * 2, txn.durations.t2)
        txn.retx = self._heap.schedule(now + txn.interval, (txn, name))

    def _on_timeout(self, txn: _Transaction, name: str, now: float) -> None:
        # Timers B, C, F (no final response) and H (no ACK).
        if self._step(txn, "timer_" + name) is None:
            return
        self.stats["timeouts"] += 1
        self._events.append(TransactionTimeout(txn.key, txn.request, name))
        self._terminate(txn)

    def _on_timer_l(self, txn: _Transaction, name: str, now: float) -> None:
        if self._step(txn, "timer_L") is None:
            return
        if not txn.acked:
            self.stats["timeouts"] += 1
            self._events.append(AckTimeout(txn.key, txn.request))
        self._terminate(txn)

    def _on_wait_over(self, txn: _Transaction, name: str, now: float) -> None:
        # Timers D, I, J, K, M: the state only absorbed retransmissions.
        if self._step(txn, "timer_" + name) is None:
            return
        self._terminate(txn)


_SLIM_KEYS = frozenset({"via", "from", "to", "call-id", "cseq"})


def _slim(request: SipRequest) -> SipRequest:
    """A copy of ``request`` with only the headers that identify it, no body, no parse cache."""
    items = [e for e in request.headers._items if e[0] in _SLIM_KEYS]
    return SipRequest(request.method, request.uri, Headers._from_raw(items))


def _server_key(request: SipRequest, via: Via, branch: str | None, method: str) -> str:
    """The server transaction key of ``request`` as ``method`` (RFC 3261 §17.2.3).

    With the magic cookie: branch, sent-by and method. Without (RFC 2543): Request-URI, From
    tag, Call-ID, CSeq number, top Via and method; keys of this form start with ``s2``. The
    To tag is compared separately (for an ACK it is the tag of our response).
    """
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return f"s:{branch}:{via.sent_by}:{method}"
    return (
        f"s2543:{request.call_id}:{request.from_.tag}:{request.cseq.seq}:{request.uri}:"
        f"{via.transport}:{via.sent_by}:{branch}:{method}"
    )


def _is_2543(key: str) -> bool:
    return key.startswith("s2543:")


def _build_ack(request: SipRequest, response: SipResponse) -> bytes:
    """The ACK for a non-2xx final response (RFC 3261 §17.1.1.3), serialized."""
    rh = request.headers
    h = Headers()
    h.add("Via", rh.values("Via")[0])
    h.add("Max-Forwards", "70")
    for route in rh.get_all("Route"):
        h.add("Route", route)
    h.add("From", rh.get("From") or "")
    h.add("To", response.headers.get("To") or rh.get("To") or "")
    h.add("Call-ID", request.call_id)
    h.add("CSeq", f"{request.cseq.seq} ACK")
    return bytes(SipRequest("ACK", request.uri, h))
