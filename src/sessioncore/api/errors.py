"""The public exceptions (defined in :mod:`sessioncore.errors`, below every layer)."""

from sessioncore.errors import (
    CallFailed,
    ConfigurationError,
    HeaderInjectionError,
    InvalidArgumentError,
    InvalidStateError,
    NotStartedError,
    ProtocolError,
    RegistrationFailed,
    SdpError,
    SessionError,
    SessionNotFoundError,
    SipParseError,
    TransactionTimeoutError,
    TransportError,
)

__all__ = [
    "CallFailed",
    "ConfigurationError",
    "HeaderInjectionError",
    "InvalidArgumentError",
    "InvalidStateError",
    "NotStartedError",
    "ProtocolError",
    "RegistrationFailed",
    "SdpError",
    "SessionError",
    "SessionNotFoundError",
    "SipParseError",
    "TransactionTimeoutError",
    "TransportError",
]
