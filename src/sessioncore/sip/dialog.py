"""SIP dialogs (RFC 3261 §12-§15), sans-I/O.

A :class:`Dialog` holds what identifies a dialog and what in-dialog requests need: Call-ID,
tags, local and remote URIs, CSeq counters, route set and remote target. It builds in-dialog
requests and checks incoming ones; it never touches a socket. State changes follow the table
:data:`DIALOG_TRANSITIONS`; anything else raises :class:`DialogStateError`.
"""

from __future__ import annotations

import enum
import itertools
import logging
import os

from sessioncore.errors import SessionError
from sessioncore.sip.headers import Headers, NameAddr
from sessioncore.sip.message import SipRequest, SipResponse
from sessioncore.sip.uri import SipUri

__all__ = [
    "DIALOG_TRANSITIONS",
    "Dialog",
    "DialogState",
    "DialogStateError",
    "new_branch",
    "new_call_id",
    "new_tag",
]

log = logging.getLogger("sessioncore.sip.dialog")

_PREFIX = os.urandom(4).hex()
_counter = itertools.count(1)


def new_tag() -> str:
    """A fresh, globally unique tag (random prefix per process + counter)."""
    return f"{_PREFIX}{next(_counter):x}"


def new_call_id(host: str) -> str:
    """A fresh Call-ID."""
    return f"{_PREFIX}-{next(_counter):x}@{host}"


def new_branch() -> str:
    """A fresh RFC 3261 branch (with the magic cookie)."""
    return f"z9hG4bK{_PREFIX}{next(_counter):x}"


class DialogState(enum.Enum):
    """Dialog states (RFC 3261 §12)."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogStateError(SessionError):
    """A dialog event that is impossible in the dialog's current state."""


# (state, event) -> new state. Events: "2xx" (final success for the INVITE), "fail" (non-2xx
# final for the INVITE that created an early dialog), "bye" (BYE sent or received).
DIALOG_TRANSITIONS: dict[tuple[DialogState, str], DialogState] = {
    (DialogState.EARLY, "1xx"): DialogState.EARLY,
    (DialogState.EARLY, "2xx"): DialogState.CONFIRMED,
    (DialogState.EARLY, "fail"): DialogState.TERMINATED,
    (DialogState.EARLY, "bye"): DialogState.TERMINATED,
    (DialogState.CONFIRMED, "2xx"): DialogState.CONFIRMED,  # 2xx retransmission / re-INVITE
    (DialogState.CONFIRMED, "bye"): DialogState.TERMINATED,
    (DialogState.TERMINATED, "bye"): DialogState.TERMINATED,
}


class Dialog:
    """One dialog, UAC or UAS side.

    ``local_uri``/``remote_uri`` are the From/To header values without tags; ``remote_target``
    is the peer's Contact URI, updated by target refresh requests and responses.
    """

    __slots__ = (
        "call_id",
        "is_uac",
        "local_contact",
        "local_seq",
        "local_tag",
        "local_uri",
        "remote_seq",
        "remote_tag",
        "remote_target",
        "remote_uri",
        "route_set",
        "secure",
        "state",
    )

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str | None,
        local_uri: str,
        remote_uri: str,
        local_seq: int,
        remote_seq: int | None,
        remote_target: str,
        route_set: list[str],
        local_contact: str,
        is_uac: bool,
        state: DialogState = DialogState.EARLY,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.remote_target = remote_target
        self.route_set = route_set
        self.local_contact = local_contact
        self.is_uac = is_uac
        self.secure = False
        self.state = state

    @property
    def key(self) -> tuple[str, str, str]:
        """``(call_id, local_tag, remote_tag)``: how in-dialog requests find this dialog."""
        return (self.call_id, self.local_tag, self.remote_tag or "")

    def transition(self, event: str) -> DialogState:
        """Apply ``event`` per :data:`DIALOG_TRANSITIONS`; raise if impossible."""
        new = DIALOG_TRANSITIONS.get((self.state, event))
        if new is None:
            raise DialogStateError(f"dialog {self.call_id}: {event!r} impossible in {self.state}")
        if new is not self.state and log.isEnabledFor(logging.DEBUG):
            log.debug("%s: dialog %s -> %s on %s", self.call_id, self.state.value, new.value, event)
        self.state = new
        return new

    # --- creation ---------------------------------------------------------------------------

    @classmethod
    def from_uac(cls, request: SipRequest, response: SipResponse, local_contact: str) -> Dialog:
        """The UAC's dialog from its INVITE and a 1xx/2xx carrying a To tag (§12.1.2)."""
        to = response.to
        contacts = response.contacts
        target = str(contacts[0].uri) if contacts else request.uri
        route_set = list(reversed(response.headers.values("Record-Route")))
        from_value = request.headers.get("From") or ""
        to_value = request.headers.get("To") or ""
        state = DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY
        return cls(
            call_id=request.call_id,
            local_tag=request.from_.tag or "",
            remote_tag=to.tag,
            local_uri=_strip_tag(from_value),
            remote_uri=_strip_tag(to_value),
            local_seq=request.cseq.seq,
            remote_seq=None,
            remote_target=target,
            route_set=route_set,
            local_contact=local_contact,
            is_uac=True,
            state=state,
        )

    @classmethod
    def from_uas(cls, request: SipRequest, local_tag: str, local_contact: str) -> Dialog:
        """The UAS's dialog from a dialog-creating request (§12.1.1)."""
        contacts = request.contacts
        # RFC 2543 peers may omit Contact: the From URI is then the remote target.
        target = str(contacts[0].uri) if contacts else str(request.from_.uri)
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag,
            local_uri=_strip_tag(request.headers.get("To") or ""),
            remote_uri=_strip_tag(request.headers.get("From") or ""),
            local_seq=0,
            remote_seq=request.cseq.seq,
            remote_target=target,
            route_set=list(request.headers.values("Record-Route")),
            local_contact=local_contact,
            is_uac=False,
        )

    # --- in-dialog traffic ------------------------------------------------------------------

    def check_remote_cseq(self, request: SipRequest) -> bool:
        """§12.2.2: a request whose CSeq is lower than the last one is out of order (500)."""
        seq = request.cseq.seq
        if self.remote_seq is not None and seq < self.remote_seq:
            return False
        if request.method not in ("ACK", "CANCEL"):
            self.remote_seq = seq
        return True

    def refresh_target(self, message: SipRequest | SipResponse) -> None:
        """Update the remote target from a target-refresh request or its 2xx (§12.2)."""
        contacts = message.contacts
        if contacts:
            self.remote_target = str(contacts[0].uri)

    def create_request(
        self,
        method: str,
        *,
        via: str,
        body: bytes = b"",
        content_type: str | None = None,
        extra: list[tuple[str, str]] | None = None,
        cseq: int | None = None,
    ) -> SipRequest:
        """Build an in-dialog request (§12.2.1.1). ``via`` is the complete top Via value.

        CSeq increments for every method but ACK and CANCEL (pass ``cseq`` for those).
        """
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        target = self.remote_target
        routes = self.route_set
        if routes:
            first = NameAddr.parse(routes[0])
            if isinstance(first.uri, SipUri) and "lr" not in first.uri.params:
                # strict router: it becomes the Request-URI, the target goes last (§12.2.1.1)
                routes = [*routes[1:], f"<{target}>"]
                target = str(first.uri)
        remote_to = self.remote_uri + (f";tag={self.remote_tag}" if self.remote_tag else "")
        items = [
            ("via", "Via", via),
            ("max-forwards", "Max-Forwards", "70"),
            ("from", "From", f"{self.local_uri};tag={self.local_tag}"),
            ("to", "To", remote_to),
            ("call-id", "Call-ID", self.call_id),
            ("cseq", "CSeq", f"{cseq} {method}"),
        ]
        items.extend(("route", "Route", r) for r in routes)
        if method in ("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"):
            items.append(("contact", "Contact", self.local_contact))
        headers = Headers._from_raw(items)
        if extra:
            for name, value in extra:
                headers.add(name, value)
        if content_type and body:
            headers.add("Content-Type", content_type)
        return SipRequest(method, target, headers, body)

    def next_hop_uri(self) -> str:
        """The URI the next in-dialog request goes to first (first route or remote target)."""
        if self.route_set:
            return str(NameAddr.parse(self.route_set[0]).uri)
        return self.remote_target


def _strip_tag(value: str) -> str:
    """A From/To value without its tag parameter (kept as the peer wrote the rest)."""
    addr = NameAddr.parse(value)
    if "tag" not in addr.params:
        return value
    addr.params.pop("tag")
    return str(addr)
