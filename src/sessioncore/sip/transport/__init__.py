"""The SIP transport layer: thin asyncio drivers for UDP and TCP (RFC 3261 §18, RFC 3581).

:class:`TransportManager` owns the sockets and hands complete messages up; the pure helpers
:func:`stamp_received` and :func:`response_destination` implement the Via rules a server
applies to requests it receives and responses it sends.
"""

from sessioncore.sip.transport.base import response_destination, stamp_received
from sessioncore.sip.transport.manager import TransportManager

__all__ = ["TransportManager", "response_destination", "stamp_received"]
