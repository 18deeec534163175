"""A tiny authoritative DNS server for tests, built on dnspython, listening on 127.0.0.1 UDP.

The zone is a plain dict keyed by ``(owner name, record type)`` with a list of record texts in
presentation format::

    zone = {
        ("_sip._udp.example.test.", "SRV"): ["10 60 5060 sip1.example.test."],
        ("sip1.example.test.", "A"): ["127.0.0.1"],
        ("sip1.example.test.", "AAAA"): ["::1"],
    }
    async with FakeDnsServer(zone) as server:
        resolver = SipResolver([server.host], port=server.port)
        ...
    assert ("sip1.example.test.", "A") in server.queries

It answers like an authoritative server: the records asked for, a CNAME chain followed within
the zone (at most :attr:`FakeDnsServer.MAX_CNAME_HOPS` hops, so a CNAME loop is served as the
loop it is), NODATA (NOERROR, empty answer, SOA in the authority section) for a name that exists
with other types or is an empty non-terminal, and NXDOMAIN for anything else. Names listed in
:attr:`FakeDnsServer.silent` are never answered (timeout tests); names in
:attr:`FakeDnsServer.servfail` get SERVFAIL. Every query is recorded in
:attr:`FakeDnsServer.queries`. Only use the ``.test`` TLD (RFC 2606) and loopback addresses.

It listens on UDP and TCP on the same free port: a response too big for the client's UDP
payload size is sent truncated (TC set) and the client retries over TCP, as with a real server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["FakeDnsServer", "Zone"]

#: ``{(owner, type): [record text, ...]}``, e.g. ``{("a.test.", "A"): ["127.0.0.1"]}``.
Zone = Mapping[tuple[str, str], Sequence[str]]


def _norm(name: str) -> str:
    """Lower-case ``name`` and make it absolute (trailing dot)."""
    name = name.lower()
    return name if name.endswith(".") else name + "."


class _Protocol(asyncio.DatagramProtocol):
    """Hands each datagram to the server and sends back what it returns."""

    def __init__(self, server: FakeDnsServer) -> None:
        self._server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        reply = self._server.handle(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class FakeDnsServer:
    """An authoritative UDP DNS server on 127.0.0.1 serving a dict zone (see the module doc).

    ``ttl`` is the TTL of every record unless :meth:`set` gives another; ``negative_ttl`` is the
    SOA minimum, i.e. how long NXDOMAIN and NODATA answers may be cached.
    """

    #: How many CNAMEs are followed inside one answer before giving up (a loop stops here).
    MAX_CNAME_HOPS = 20
    #: The SOA owner put in the authority section of negative answers.
    SOA_OWNER = "test."

    def __init__(
        self,
        zone: Zone | None = None,
        *,
        ttl: int = 300,
        negative_ttl: int = 60,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = 0
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self._records: dict[tuple[str, str], tuple[list[str], int]] = {}
        #: Names (absolute, lower case) whose queries are dropped without an answer.
        self.silent: set[str] = set()
        #: Names (absolute, lower case) answered with SERVFAIL.
        self.servfail: set[str] = set()
        #: Every query received, as ``(name, type)`` with an absolute lower-case name.
        self.queries: list[tuple[str, str]] = []
        self._transport: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tcp_writers: set[asyncio.StreamWriter] = set()
        for (name, rdtype), texts in (zone or {}).items():
            self.set(name, rdtype, texts)

    # --- zone editing -----------------------------------------------------------------------

    def set(self, name: str, rdtype: str, records: Sequence[str], ttl: int | None = None) -> None:
        """Replace the records of ``(name, rdtype)`` (an empty list removes them)."""
        key = (_norm(name), rdtype.upper())
        if records:
            self._records[key] = (list(records), self.ttl if ttl is None else ttl)
        else:
            self._records.pop(key, None)

    def make_silent(self, name: str) -> None:
        """Never answer queries for ``name`` (any type)."""
        self.silent.add(_norm(name))

    def make_servfail(self, name: str) -> None:
        """Answer queries for ``name`` (any type) with SERVFAIL."""
        self.servfail.add(_norm(name))

    def queries_for(self, name: str) -> list[str]:
        """The types queried for ``name``, in order."""
        n = _norm(name)
        return [t for q, t in self.queries if q == n]

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind a free port on :attr:`host` for UDP and TCP; :attr:`port` then holds it."""
        loop = asyncio.get_running_loop()
        for _ in range(20):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), local_addr=(self.host, 0)
            )
            port = int(transport.get_extra_info("sockname")[1])
            try:
                tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
            except OSError:  # the TCP side of that port is taken: try another one
                transport.close()
                continue
            self._transport, self._tcp_server, self.port = transport, tcp, port
            return
        raise OSError("no free port for the fake DNS server")

    async def stop(self) -> None:
        """Close the sockets (idempotent)."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for writer in list(self._tcp_writers):
            writer.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
            await self._tcp_server.wait_closed()
            self._tcp_server = None
        await asyncio.sleep(0)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """DNS over TCP (RFC 1035 §4.2.2): 2-byte length, message; as many as the client sends."""
        self._tcp_writers.add(writer)
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                reply = self.handle(await reader.readexactly(size), tcp=True)
                if reply is not None:
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tcp_writers.discard(writer)
            writer.close()

    async def __aenter__(self) -> FakeDnsServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- answering --------------------------------------------------------------------------

    def _exists(self, name: str) -> bool:
        """True if ``name`` owns records or is an empty non-terminal above some owner."""
        suffix = "." + name
        return any(owner == name or owner.endswith(suffix) for owner, _ in self._records)

    def _rrset(self, name: str, rdtype: str) -> dns.rrset.RRset | None:
        entry = self._records.get((name, rdtype))
        if entry is None:
            return None
        texts, ttl = entry
        return dns.rrset.from_text(name, ttl, dns.rdataclass.IN, rdtype, *texts)

    def handle(self, wire: bytes, *, tcp: bool = False) -> bytes | None:
        """Answer one query in wire format; ``None`` means "do not answer".

        Over UDP (``tcp`` false) an answer bigger than the client's payload size is sent
        truncated (TC set, no records) so that the client retries over TCP.
        """
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if len(query.question) != 1:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        qname = _norm(question.name.to_text())
        qtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((qname, qtype))
        if qname in self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if qname in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        name = qname
        seen: set[str] = set()
        for _ in range(self.MAX_CNAME_HOPS):
            if name in seen:  # a CNAME loop: serve the loop once, let the client notice
                break
            seen.add(name)
            rrset = self._rrset(name, qtype)
            if rrset is not None:
                response.answer.append(rrset)
                break
            cname = self._rrset(name, "CNAME") if qtype != "CNAME" else None
            if cname is None:
                if not self._exists(name):
                    response.set_rcode(dns.rcode.NXDOMAIN)
                self._add_soa(response)
                break
            response.answer.append(cname)
            name = _norm(cname[0].to_text())
        if tcp:
            return response.to_wire(max_size=65535)
        payload = query.payload if query.edns >= 0 else 512
        try:
            return response.to_wire(max_size=max(payload, 512))
        except dns.exception.TooBig:
            response.answer.clear()
            response.authority.clear()
            response.flags |= dns.flags.TC
            return response.to_wire()

    def _add_soa(self, response: dns.message.Message) -> None:
        soa = dns.rrset.from_text(
            self.SOA_OWNER,
            self.negative_ttl,
            dns.rdataclass.IN,
            "SOA",
            f"ns.{self.SOA_OWNER} hostmaster.{self.SOA_OWNER} 1 3600 600 86400 {self.negative_ttl}",
        )
        response.authority.append(soa)
