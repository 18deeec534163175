"""The API layer: builder, handler base class and built-ins, plain types, simple functions."""

from sessioncore.api.builder import SessionManagerBuilder
from sessioncore.api.functions import (
    answer_call,
    hangup_call,
    hold_call,
    make_call,
    reject_call,
    resume_call,
    send_dtmf,
    transfer_call,
)
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
    MediaQuality,
    RegistrationInfo,
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
    "MediaQuality",
    "QueueHandler",
    "RegistrationInfo",
    "RejectAllHandler",
    "RoutingHandler",
    "SessionId",
    "SessionManagerBuilder",
    "answer_call",
    "hangup_call",
    "hold_call",
    "make_call",
    "reject_call",
    "resume_call",
    "send_dtmf",
    "transfer_call",
]
