"""The SIP transport layer: thin asyncio drivers for UDP, TCP and TLS (RFC 3261 §18, §26,
RFC 3581).

:class:`TransportManager` owns the sockets and hands complete messages up;
:func:`make_tls_contexts` builds its TLS contexts; the pure helpers
:func:`stamp_received` and :func:`response_destination` implement the Via rules a server
applies to requests it receives and responses it sends.
"""

from sessioncore.sip.transport.base import response_destination, stamp_received
from sessioncore.sip.transport.manager import TransportManager
from sessioncore.sip.transport.tls import default_client_context, make_tls_contexts

__all__ = [
    "TransportManager",
    "default_client_context",
    "make_tls_contexts",
    "response_destination",
    "stamp_received",
]
