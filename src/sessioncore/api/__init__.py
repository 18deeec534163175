"""The API layer: builder, handler base class and built-ins, plain types, simple functions."""

from sessioncore.api.builder import SessionManagerBuilder
from sessioncore.api.handler import (
    AutoAnswerHandler,
    CallHandler,
    CompositeHandler,
    QueueHandler,
    RejectAllHandler,
    RoutingHandler,
)
from sessioncore.api.types import (
    CallDecision,
    CallSession,
    CallState,
    DecisionKind,
    IncomingCall,
    SessionId,
)

__all__ = [
    "AutoAnswerHandler",
    "CallDecision",
    "CallHandler",
    "CallSession",
    "CallState",
    "CompositeHandler",
    "DecisionKind",
    "IncomingCall",
    "QueueHandler",
    "RejectAllHandler",
    "RoutingHandler",
    "SessionId",
    "SessionManagerBuilder",
]
