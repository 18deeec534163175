"""sessioncore: place, answer and control SIP voice calls from asyncio.

The public API: build a :class:`SessionCoordinator` with :class:`SessionManagerBuilder`, give it
a :class:`CallHandler` subclass, and drive calls through the coordinator's methods or the simple
functions in :mod:`sessioncore.api.functions`.
"""

from sessioncore.api import (
    AutoAnswerHandler,
    CallDecision,
    CallHandler,
    CallSession,
    CallState,
    CompositeHandler,
    DecisionKind,
    IncomingCall,
    MediaQuality,
    QueueHandler,
    RegistrationInfo,
    RejectAllHandler,
    RoutingHandler,
    SessionId,
    SessionManagerBuilder,
)
from sessioncore.coordinator import SessionCoordinator
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

__version__ = "0.1.0"

__all__ = [
    "AutoAnswerHandler",
    "CallDecision",
    "CallFailed",
    "CallHandler",
    "CallSession",
    "CallState",
    "CompositeHandler",
    "ConfigurationError",
    "DecisionKind",
    "HeaderInjectionError",
    "IncomingCall",
    "InvalidArgumentError",
    "InvalidStateError",
    "MediaQuality",
    "NotStartedError",
    "ProtocolError",
    "QueueHandler",
    "RegistrationFailed",
    "RegistrationInfo",
    "RejectAllHandler",
    "RoutingHandler",
    "SdpError",
    "SessionCoordinator",
    "SessionError",
    "SessionId",
    "SessionManagerBuilder",
    "SessionNotFoundError",
    "SipParseError",
    "TransactionTimeoutError",
    "TransportError",
    "__version__",
]
