"""Registration client (RFC 3261 §10), sans-I/O.

A :class:`Registration` keeps one binding of our Contact at a registrar alive: it builds the
REGISTER requests (one Call-ID, CSeq increasing), reads the responses (expiry granted, 423 Min-
Expires, failures), and tells the driver when to act next (refresh before expiry, retry after
a failure with backoff). Authentication is the driver's business: it re-sends the request this
class built with credentials added.

States and transitions are the table :data:`REGISTRATION_TRANSITIONS`.
"""

from __future__ import annotations

import enum
import logging
import random
from dataclasses import dataclass

from sessioncore.errors import InvalidStateError, SipParseError
from sessioncore.sip.dialog import new_call_id, new_tag
from sessioncore.sip.headers import Headers, NameAddr
from sessioncore.sip.message import SipRequest, SipResponse

__all__ = [
    "REGISTRATION_TRANSITIONS",
    "Registration",
    "RegistrationState",
    "RegistrationUpdate",
]

log = logging.getLogger("sessioncore.sip.registration")


class RegistrationState(enum.Enum):
    """Where a registration is."""

    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    UNREGISTERING = "unregistering"
    FAILED = "failed"


_S = RegistrationState

# (state, event) -> new state
REGISTRATION_TRANSITIONS: dict[tuple[RegistrationState, str], RegistrationState] = {
    (_S.UNREGISTERED, "register"): _S.REGISTERING,
    (_S.FAILED, "register"): _S.REGISTERING,
    (_S.REGISTERED, "register"): _S.REGISTERING,  # refresh
    (_S.REGISTERING, "register"): _S.REGISTERING,  # 423 / auth retry
    (_S.REGISTERING, "ok"): _S.REGISTERED,
    (_S.REGISTERING, "fail"): _S.FAILED,
    (_S.REGISTERED, "unregister"): _S.UNREGISTERING,
    (_S.REGISTERING, "unregister"): _S.UNREGISTERING,
    (_S.FAILED, "unregister"): _S.UNREGISTERED,
    (_S.UNREGISTERED, "unregister"): _S.UNREGISTERED,
    (_S.UNREGISTERING, "unregister"): _S.UNREGISTERING,
    (_S.UNREGISTERING, "ok"): _S.UNREGISTERED,
    (_S.UNREGISTERING, "fail"): _S.UNREGISTERED,
}


@dataclass(frozen=True, slots=True)
class RegistrationUpdate:
    """What a response did to the registration (for the driver's event)."""

    state: RegistrationState
    status: int
    reason: str
    expires: int | None
    retry_in: float | None


class Registration:
    """One AOR bound at one registrar.

    ``aor`` is our address of record (``sip:alice@example.com``), ``registrar`` the Request-URI
    of the REGISTERs (``sip:example.com``), ``contact`` our Contact value (``<sip:...>``).
    """

    def __init__(
        self,
        *,
        aor: str,
        registrar: str,
        contact: str,
        expires: int = 3600,
        instance_id: str | None = None,
        reg_id: int | None = None,
        refresh_margin: float = 0.1,
        backoff: tuple[float, float] = (30.0, 1800.0),
        rng: random.Random | None = None,
    ) -> None:
        if expires < 0:
            raise InvalidStateError(f"expires must be >= 0, not {expires}")
        self.aor = aor
        self.registrar = registrar
        self.contact = contact
        self.requested = expires
        self.expires: int | None = None  # granted
        self.state = RegistrationState.UNREGISTERED
        self.call_id = new_call_id("sessioncore")
        self.tag = new_tag()
        self.cseq = 0
        self.instance_id = instance_id
        self.reg_id = reg_id
        self.refresh_margin = refresh_margin
        self._backoff = backoff
        self._failures = 0
        self._rng = rng or random.Random()
        self._deadline: float | None = None
        self._want: int = expires
        self.last_status: int | None = None
        self.last_reason: str = ""
        self.path: list[str] = []  # the registrar's Path (RFC 3327), informational

    # --- state ------------------------------------------------------------------------------

    def _step(self, event: str) -> RegistrationState:
        new = REGISTRATION_TRANSITIONS.get((self.state, event))
        if new is None:
            raise InvalidStateError(f"registration {self.aor}: {event} impossible in {self.state}")
        if new is not self.state and log.isEnabledFor(logging.DEBUG):
            log.debug("%s: registration %s -> %s", self.aor, self.state.value, new.value)
        self.state = new
        return new

    def next_deadline(self) -> float | None:
        """When :meth:`due` next wants a REGISTER sent (refresh or retry), if ever."""
        return self._deadline

    def due(self, now: float) -> bool:
        """True when a refresh or retry is due now."""
        return self._deadline is not None and now >= self._deadline

    # --- requests ---------------------------------------------------------------------------

    def build_register(self, via: str, now: float, *, expires: int | None = None) -> SipRequest:
        """The next REGISTER (``expires=0`` removes the binding). ``via`` is the full Via."""
        want = self._want if expires is None else expires
        self._step("unregister" if want == 0 else "register")
        self._deadline = None
        self.cseq += 1
        contact = self.contact
        if self.instance_id is not None:
            contact += f';+sip.instance="<urn:uuid:{self.instance_id}>"'
            if self.reg_id is not None:
                contact += f";reg-id={self.reg_id}"
        items = [
            ("via", "Via", via),
            ("max-forwards", "Max-Forwards", "70"),
            ("from", "From", f"<{self.aor}>;tag={self.tag}"),
            ("to", "To", f"<{self.aor}>"),
            ("call-id", "Call-ID", self.call_id),
            ("cseq", "CSeq", f"{self.cseq} REGISTER"),
            ("contact", "Contact", contact),
            ("expires", "Expires", str(want)),
        ]
        if self.instance_id is not None:
            items.append(("supported", "Supported", "outbound, path"))
        return SipRequest("REGISTER", self.registrar, Headers._from_raw(items))

    def next_cseq(self) -> int:
        """A fresh CSeq for a re-sent REGISTER (with credentials); same Call-ID."""
        self.cseq += 1
        return self.cseq

    # --- responses --------------------------------------------------------------------------

    def on_response(self, response: SipResponse, now: float) -> RegistrationUpdate:
        """Take the final response to our REGISTER (401/407 are the driver's to handle)."""
        status = response.status
        self.last_status, self.last_reason = status, response.reason
        unregistering = self.state is RegistrationState.UNREGISTERING
        if 200 <= status < 300:
            self._failures = 0
            self._step("ok")
            if unregistering:
                self.expires = None
                self._deadline = None
                return self._update(status, response.reason)
            self.expires = self._granted(response)
            if self.expires is not None and self.expires > 0:
                refresh = max(
                    self.expires * (1 - self.refresh_margin), self.expires - 600, 1.0
                )  # refresh at 90 % (and at most 10 minutes early), never later than expiry
                refresh = min(refresh, max(self.expires - 2.0, self.expires * 0.5))
                self._deadline = now + refresh
            return self._update(status, response.reason)
        if status == 423 and not unregistering:
            minimum = response.headers.get("Min-Expires")
            if minimum is not None and minimum.strip().isdigit():
                self._want = max(int(minimum.strip()), 1)
                self._deadline = now  # retry at once with the longer expiry
                return self._update(status, response.reason, retry_in=0.0)
        return self.fail(status, response.reason, now)

    def fail(
        self, status: int, reason: str, now: float, *, retry: bool = True
    ) -> RegistrationUpdate:
        """Record a failure (error response, timeout, transport error, bad credentials)."""
        self.last_status, self.last_reason = status, reason
        unregistering = self.state is RegistrationState.UNREGISTERING
        self._step("fail")
        self.expires = None
        if unregistering or not retry:
            self._deadline = None
            return self._update(status, reason)
        self._failures += 1
        base, cap = self._backoff
        delay = min(cap, base * (2 ** (self._failures - 1)))
        delay *= 0.5 + self._rng.random() / 2  # RFC 5626 §4.5 style: 50-100 % of the wait
        self._deadline = now + delay
        return self._update(status, reason, retry_in=delay)

    def stop(self) -> None:
        """No more refreshes or retries."""
        self._deadline = None

    def _granted(self, response: SipResponse) -> int | None:
        """The expiry the registrar granted our Contact (its param, else Expires)."""
        ours = _contact_uri(self.contact)
        for value in response.headers.values("Contact"):
            try:
                addr = NameAddr.parse(value)
            except SipParseError:
                continue
            if str(addr.uri) == ours or len(response.headers.values("Contact")) == 1:
                exp = addr.params.get("expires")
                if exp is not None and exp.isdigit():
                    return int(exp)
        header = response.headers.get("Expires")
        if header is not None and header.strip().isdigit():
            return int(header.strip())
        return self._want

    def _update(
        self, status: int, reason: str, retry_in: float | None = None
    ) -> RegistrationUpdate:
        return RegistrationUpdate(self.state, status, reason, self.expires, retry_in)


def _contact_uri(contact: str) -> str:
    try:
        return str(NameAddr.parse(contact).uri)
    except SipParseError:
        return contact
