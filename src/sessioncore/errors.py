"""The one exception hierarchy of sessioncore.

Everything raised on purpose derives from :class:`SessionError`. Two families matter:

* errors the *local caller* made (bad arguments, unknown session, wrong state): raised to the
  caller so that the code that made the mistake sees it;
* errors the *remote peer* made (malformed SIP, bad SDP): :class:`ProtocolError` subclasses that
  carry a SIP status hint so that the subsystem boundary can answer them (400, 420, 488 ...).

This module sits below every layer so that ``sip/`` and ``media/`` can raise these without
importing from the API layer.
"""

from __future__ import annotations


class SessionError(Exception):
    """Base class of every error sessioncore raises on purpose."""


# --- the local caller's mistakes -------------------------------------------------------------


class InvalidArgumentError(SessionError, ValueError):
    """An argument given to a public function is malformed (bad URI, bad digits ...)."""


class HeaderInjectionError(InvalidArgumentError):
    """A header value built from user text contains CR, LF or NUL."""


class SessionNotFoundError(SessionError, KeyError):
    """No session with the given id is known (it never existed or has already ended)."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "session not found"


class InvalidStateError(SessionError):
    """The operation is not allowed in the session's current state (e.g. hold while ringing)."""


class NotStartedError(SessionError):
    """The coordinator is not running (not started yet, or already stopped)."""


class ConfigurationError(SessionError):
    """The builder was given an inconsistent or incomplete configuration."""


# --- call outcomes --------------------------------------------------------------------------


class CallFailed(SessionError):
    """A call did not reach the answered state.

    ``status`` is the final SIP status code when there was one (486, 603, 408 ...), else ``None``.
    """

    def __init__(self, message: str, status: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason


class RegistrationFailed(CallFailed):
    """A REGISTER did not succeed (``status``: 401/403 for bad credentials, 408 timeout ...)."""


# --- transport and transaction failures -----------------------------------------------------


class TransportError(SessionError):
    """A message could not be sent (connection refused, unreachable, message too large)."""


class TransactionTimeoutError(SessionError):
    """A transaction timed out (Timer B or F) without a final response."""


# --- the remote peer's mistakes -------------------------------------------------------------


class ProtocolError(SessionError):
    """Something received from the network is malformed.

    ``status`` is the SIP status code to answer a request with (400 unless another fits better),
    ``reason`` the reason phrase to use.
    """

    def __init__(self, message: str, status: int = 400, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason or message


class SipParseError(ProtocolError):
    """A SIP message (or one of its headers or URIs) does not follow the grammar."""


class SdpError(ProtocolError):
    """An SDP body is malformed or cannot be satisfied."""

    def __init__(self, message: str, status: int = 488, reason: str | None = None):
        super().__init__(message, status, reason)
