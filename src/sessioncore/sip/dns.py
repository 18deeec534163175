"""Locating SIP servers: RFC 3263 §4 (NAPTR -> SRV -> A/AAAA) on top of dnspython.

:class:`SipResolver` turns a SIP or SIPS URI into the ordered list of :class:`Address` targets
a client should try, one after the other:

* a numeric IP host needs no DNS at all: transport from the ``transport`` parameter (``sips``:
  TLS, otherwise the caller's default), port from the URI or 5060 (5061 for TLS);
* a host name with an explicit port: the host's A/AAAA records with that port;
* a host name with a ``transport`` parameter but no port: the SRV records of that transport
  (``_sip._udp``, ``_sip._tcp``, ``_sips._tcp``), else the host's A/AAAA records with the
  transport's default port;
* otherwise NAPTR (``SIP+D2U``, ``SIP+D2T``, ``SIPS+D2T``, limited to the supported transports,
  by order and preference), then the SRV records each names (by priority, weighted random
  within a priority, RFC 2782), then each SRV target's A/AAAA records. Without usable NAPTR
  records the SRV names of the supported transports are queried directly; without SRV records
  the host's A/AAAA records are used with port 5060 (5061 for ``sips``) and the default
  transport.

A ``maddr`` parameter replaces the host (RFC 3263 §4). A ``sips`` URI never yields a non-TLS
target. Every query is bounded by ``timeout`` and a whole resolution by ``overall_timeout``;
answers are cached per ``(name, type)`` for their TTL (NXDOMAIN and "no records" answers for
their negative TTL), at most ``cache_ttl_cap`` seconds. Concurrent resolutions share queries
that are in flight.

Errors: when a step finds nothing and one of its queries failed (timeout, SERVFAIL, a CNAME
chain that never ends ...), :class:`DnsResolutionError` is raised at once rather than falling
through to the next step, which could pick a target the domain did not intend. A failed query
is tolerated when other queries of the same step produced targets (an AAAA lookup that times
out while A answers, one SRV target out of three that cannot be resolved). When nothing at all
is found, the error lists every lookup made and its outcome.

A TLS client should verify the server's certificate against the URI's domain (RFC 5922), not
the address returned here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver

from sessioncore.errors import InvalidArgumentError, SipParseError, TransportError
from sessioncore.sip.address import TRANSPORTS, Address
from sessioncore.sip.uri import SipUri, parse_uri

__all__ = [
    "DEFAULT_PORTS",
    "DnsResolutionError",
    "SipResolver",
    "order_srv",
]

logger = logging.getLogger(__name__)

#: The default port of each transport (RFC 3261 §19.1.2).
DEFAULT_PORTS: Final = {"udp": 5060, "tcp": 5060, "tls": 5061}
# NAPTR service field -> transport (RFC 3263 §4.1).
_NAPTR_SERVICES: Final = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
# transport -> SRV owner prefix (RFC 3263 §4.1).
_SRV_PREFIXES: Final = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
# How many lookups an error message lists.
_MAX_TRACE: Final = 12
# How many NAPTR records of one answer are looked at.
_MAX_NAPTR: Final = 16

_A = dns.rdatatype.A
_AAAA = dns.rdatatype.AAAA
_SRV = dns.rdatatype.SRV
_NAPTR = dns.rdatatype.NAPTR


class DnsResolutionError(TransportError):
    """No target could be found for a SIP URI: the message says what was looked up and why it
    failed (NXDOMAIN, no records, timeout, SERVFAIL, unsupported transport ...)."""


# --- query results and SRV ordering ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Lookup:
    """The outcome of one successful query: records (possibly none) and a status for messages."""

    name: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    records: tuple[Any, ...]
    status: str  # "ok", "NXDOMAIN" or "no records"

    def describe(self) -> str:
        what = f"{dns.rdatatype.to_text(self.rdtype)} {self.name}"
        if self.status == "ok":
            return f"{what}: {len(self.records)} record(s)"
        return f"{what}: {self.status}"


@dataclass(slots=True)
class _CacheEntry:
    expires: float
    lookup: _Lookup


@dataclass(frozen=True, slots=True)
class _SrvTarget:
    """One SRV record reduced to what the next step needs."""

    target: dns.name.Name
    port: int
    transport: str


@dataclass(slots=True)
class _Trace:
    """What one resolution looked up, for the error message when nothing is found."""

    steps: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        if text not in self.steps:
            self.steps.append(text)

    def __str__(self) -> str:
        shown = self.steps[:_MAX_TRACE]
        more = len(self.steps) - len(shown)
        return "; ".join(shown) + (f"; ... {more} more" if more > 0 else "")


def order_srv(records: Iterable[Any], rng: random.Random | None = None) -> list[Any]:
    """Order SRV records for trying (RFC 2782): ascending priority, and within a priority a
    weighted random order (zero-weight records first in the running sum, so they are picked
    rarely but not never).

    ``records`` are dnspython SRV rdata (anything with ``priority`` and ``weight``).
    """
    rand = rng if rng is not None else random
    pending = sorted(records, key=lambda r: (int(r.priority), int(r.weight) != 0))
    ordered: list[Any] = []
    while pending:
        priority = int(pending[0].priority)
        group = [r for r in pending if int(r.priority) == priority]
        pending = pending[len(group) :]
        while group:
            total = sum(int(r.weight) for r in group)
            pick = rand.randint(0, total)
            running = 0
            chosen = len(group) - 1
            for i, r in enumerate(group):
                running += int(r.weight)
                if running >= pick:
                    chosen = i
                    break
            ordered.append(group.pop(chosen))
    return ordered


def _describe_failure(exc: dns.exception.DNSException) -> str:
    """A short human reason for a failed query (``timeout``, ``SERVFAIL`` ...)."""
    if isinstance(exc, dns.exception.Timeout):
        return "timeout"
    if isinstance(exc, dns.resolver.NoNameservers):
        reasons: list[str] = []
        for error in exc.kwargs.get("errors", []):
            # (server, tcp, port, exception or None, response or None)
            err = error[3] if len(error) > 3 else None
            response = error[4] if len(error) > 4 else None
            if isinstance(err, dns.message.ChainTooLong):
                reason = "CNAME chain too long (loop?)"
            elif err is not None:
                reason = str(err) or type(err).__name__
            elif isinstance(response, dns.message.Message):
                reason = dns.rcode.to_text(response.rcode())
            else:
                reason = "failed"
            reason = f"{reason} from {error[0]}"
            if reason not in reasons:
                reasons.append(reason)
        return "; ".join(reasons) or "all nameservers failed"
    if isinstance(exc, dns.resolver.YXDOMAIN):
        return "YXDOMAIN"
    return str(exc) or type(exc).__name__


# --- the resolver ---------------------------------------------------------------------------


class SipResolver:
    """RFC 3263 server location for SIP URIs (see the module documentation).

    ``nameservers``: the DNS servers to ask (IP addresses, queried on ``port``); ``None`` uses
    the system configuration (``/etc/resolv.conf``). ``timeout`` bounds each query (retries
    included), ``overall_timeout`` (default ``4 * timeout``) one whole :meth:`resolve`.
    ``supported`` lists the transports the caller can use, in the order to try them when there
    are no NAPTR records. ``address_types`` says which of ``"A"``/``"AAAA"`` to query and in
    which order to list the addresses of one host. ``max_srv_targets`` and ``max_addresses``
    bound what a hostile or broken zone can make us do; ``rng`` and ``clock`` are for tests.
    """

    def __init__(
        self,
        nameservers: list[str] | None = None,
        port: int = 53,
        timeout: float = 2.0,
        *,
        supported: Sequence[str] = ("udp", "tcp", "tls"),
        cache_ttl_cap: float = 300.0,
        overall_timeout: float | None = None,
        address_types: Sequence[str] = ("A", "AAAA"),
        max_srv_targets: int = 20,
        max_addresses: int = 64,
        max_cache_entries: int = 1024,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout <= 0:
            raise InvalidArgumentError(f"timeout must be positive, not {timeout}")
        bad = [t for t in supported if t not in TRANSPORTS]
        if bad or not supported:
            raise InvalidArgumentError(f"supported transports must be udp/tcp/tls, not {bad}")
        types = [t.upper() for t in address_types]
        if not types or any(t not in ("A", "AAAA") for t in types):
            raise InvalidArgumentError(f"address_types must be A and/or AAAA, not {types}")
        if nameservers is None:
            try:
                self._resolver = dns.asyncresolver.Resolver()
            except dns.exception.DNSException as exc:
                raise DnsResolutionError(f"no usable system DNS configuration: {exc}") from exc
        else:
            if not nameservers:
                raise InvalidArgumentError("nameservers must not be empty (None: system)")
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = list(nameservers)
            self._resolver.port = port
        # dnspython retransmits within a query's lifetime; two tries per server fit in one.
        self._resolver.timeout = timeout / 2
        self._resolver.lifetime = timeout
        self._resolver.use_edns(0, 0, 1232)
        self._resolver.cache = None  # we cache ourselves, with a TTL cap
        self.timeout = timeout
        self.overall_timeout = overall_timeout if overall_timeout is not None else 4 * timeout
        self.supported: tuple[str, ...] = tuple(dict.fromkeys(supported))
        self.cache_ttl_cap = cache_ttl_cap
        self.max_srv_targets = max_srv_targets
        self.max_addresses = max_addresses
        self.max_cache_entries = max_cache_entries
        self._address_types = tuple(dns.rdatatype.from_text(t) for t in dict.fromkeys(types))
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._cache: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], _CacheEntry] = {}
        self._inflight: dict[
            tuple[dns.name.Name, dns.rdatatype.RdataType], asyncio.Task[_Lookup]
        ] = {}

    # --- public API ---------------------------------------------------------------------

    async def resolve(self, uri: str | SipUri, *, default_transport: str = "udp") -> list[Address]:
        """The ordered targets to try for ``uri`` (RFC 3263 §4); never empty.

        ``default_transport`` applies to ``sip:`` URIs without a ``transport`` parameter when
        neither NAPTR nor SRV records choose one. Raises :class:`InvalidArgumentError` for a
        malformed or non-SIP URI and :class:`DnsResolutionError` when no target can be found.
        """
        sip_uri = self._as_sip_uri(uri)
        if default_transport not in TRANSPORTS:
            raise InvalidArgumentError(
                f"default_transport must be udp, tcp or tls, not {default_transport!r}"
            )
        try:
            targets = await self._resolve(sip_uri, default_transport)
        except DnsResolutionError as exc:
            raise DnsResolutionError(f"cannot resolve {sip_uri}: {exc}") from None
        logger.debug("resolved %s -> %s", sip_uri, ", ".join(map(str, targets)))
        return targets

    async def _resolve(self, uri: SipUri, default_transport: str) -> list[Address]:
        """:meth:`resolve` without the URI in its error messages."""
        secure = uri.scheme == "sips"
        if secure:
            self._check_supported("tls")
        host = uri.params.get("maddr") or uri.host
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        transport = self._explicit_transport(uri, default_transport)
        if _is_ip(host):
            self._check_supported(transport)
            port = uri.port if uri.port is not None else DEFAULT_PORTS[transport]
            return [Address(transport, host, port)]
        try:
            name = dns.name.from_text(host)
        except (dns.exception.DNSException, UnicodeError) as exc:
            raise DnsResolutionError(f"bad host name {host!r}: {exc}") from None
        trace = _Trace()
        try:
            async with asyncio.timeout(self.overall_timeout):
                targets = await self._locate(uri, name, transport, secure, trace)
        except TimeoutError:
            raise DnsResolutionError(
                f"no result within {self.overall_timeout:g} s"
                + (f" ({trace})" if trace.steps else "")
            ) from None
        if not targets:
            raise DnsResolutionError(f"no usable records ({trace})")
        return targets

    def clear_cache(self) -> None:
        """Forget every cached answer."""
        self._cache.clear()

    @property
    def cache_size(self) -> int:
        """How many ``(name, type)`` answers are cached (expired ones included until purged)."""
        return len(self._cache)

    # --- URI handling -------------------------------------------------------------------

    @staticmethod
    def _as_sip_uri(uri: str | SipUri) -> SipUri:
        if isinstance(uri, SipUri):
            return uri
        try:
            parsed = parse_uri(uri)
        except SipParseError as exc:
            raise InvalidArgumentError(f"cannot resolve {uri!r}: {exc}") from exc
        if not isinstance(parsed, SipUri):
            raise InvalidArgumentError(f"cannot resolve {uri!r}: not a sip: or sips: URI")
        return parsed

    def _explicit_transport(self, uri: SipUri, default_transport: str) -> str:
        """The transport when the URI alone decides it (IP literal, explicit port or
        ``transport`` parameter), and for the final A/AAAA fallback."""
        secure = uri.scheme == "sips"
        param = uri.transport
        if param is None:
            transport = "tls" if secure else default_transport
        elif param == "tls":
            transport = "tls"
        elif param == "tcp":
            transport = "tls" if secure else "tcp"
        elif param == "udp":
            if secure:
                raise DnsResolutionError("sips over UDP is not possible")
            transport = "udp"
        else:
            raise DnsResolutionError(f"transport={param} is not supported")
        return transport

    def _check_supported(self, transport: str) -> None:
        if transport not in self.supported:
            raise DnsResolutionError(
                f"it needs {transport.upper()}, which is not supported "
                f"(supported: {', '.join(self.supported)})"
            )

    # --- the RFC 3263 steps -------------------------------------------------------------

    async def _locate(
        self,
        uri: SipUri,
        name: dns.name.Name,
        transport: str,
        secure: bool,
        trace: _Trace,
    ) -> list[Address]:
        if uri.port is not None or uri.transport is not None:
            self._check_supported(transport)
        if uri.port is not None:
            return await self._addresses_of([(name, uri.port, transport)], trace)
        if uri.transport is not None:
            srv_names = [(_srv_name(transport, name), transport)]
            targets = await self._via_srv(srv_names, trace)
            if targets:
                return targets
            return await self._addresses_of([(name, DEFAULT_PORTS[transport], transport)], trace)
        targets = await self._via_naptr(name, secure, trace)
        if targets:
            return targets
        allowed = ("tls",) if secure else self.supported
        srv_names = [(_srv_name(t, name), t) for t in allowed if t in self.supported]
        targets = await self._via_srv(srv_names, trace)
        if targets:
            return targets
        self._check_supported(transport)
        return await self._addresses_of([(name, DEFAULT_PORTS[transport], transport)], trace)

    async def _via_naptr(self, name: dns.name.Name, secure: bool, trace: _Trace) -> list[Address]:
        """NAPTR step: usable records by (order, preference) -> their SRV names."""
        lookup = await self._query(name, _NAPTR)
        trace.add(lookup.describe())
        usable: list[tuple[int, int, dns.name.Name, str]] = []
        for rd in lookup.records[:_MAX_NAPTR]:
            service = bytes(rd.service).decode("ascii", "replace").upper()
            transport = _NAPTR_SERVICES.get(service)
            replacement: dns.name.Name = rd.replacement
            if (
                transport is None
                or transport not in self.supported
                or (secure and transport != "tls")
                or bytes(rd.flags).lower() != b"s"
                or bytes(rd.regexp)
                or replacement == dns.name.root
                or replacement == name  # a self-reference would loop back here
            ):
                continue
            usable.append((int(rd.order), int(rd.preference), replacement, transport))
        if lookup.records and not usable:
            trace.add(f"NAPTR {name}: no usable record")
        usable.sort(key=lambda u: (u[0], u[1]))
        return await self._via_srv([(u[2], u[3]) for u in usable], trace)

    async def _via_srv(
        self, srv_names: Sequence[tuple[dns.name.Name, str]], trace: _Trace
    ) -> list[Address]:
        """SRV step: query the names (concurrently), order each set, resolve the targets."""
        srv_names = list(dict.fromkeys(srv_names))
        if not srv_names:
            return []
        lookups = await self._gather_step([self._query(n, _SRV) for n, _ in srv_names], trace)
        hosts: list[tuple[dns.name.Name, int, str]] = []
        for (_, transport), lookup in zip(srv_names, lookups, strict=True):
            if lookup is None:
                continue
            for rd in order_srv(lookup.records, self._rng):
                target: dns.name.Name = rd.target
                if target == dns.name.root:  # "service decidedly not available here"
                    trace.add(f"SRV {lookup.name}: service not available (target '.')")
                    continue
                if len(hosts) >= self.max_srv_targets:
                    trace.add(f"SRV targets limited to {self.max_srv_targets}")
                    break
                hosts.append((target, int(rd.port), transport))
        if not hosts:
            return []
        return await self._addresses_of(hosts, trace)

    async def _addresses_of(
        self, hosts: Sequence[tuple[dns.name.Name, int, str]], trace: _Trace
    ) -> list[Address]:
        """A/AAAA step for each ``(host, port, transport)``, all queried concurrently."""
        names = list(dict.fromkeys(h for h, _, _ in hosts))
        queries = [(n, rdtype) for n in names for rdtype in self._address_types]
        lookups = await self._gather_step([self._query(n, t) for n, t in queries], trace)
        found: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], _Lookup] = {
            q: lk for q, lk in zip(queries, lookups, strict=True) if lk is not None
        }
        result: dict[Address, None] = {}
        for host, port, transport in hosts:
            for rdtype in self._address_types:
                lookup = found.get((host, rdtype))
                if lookup is None:
                    continue
                for rd in lookup.records:
                    if len(result) >= self.max_addresses:
                        trace.add(f"addresses limited to {self.max_addresses}")
                        return list(result)
                    result[Address(transport, str(rd.address), port)] = None
        return list(result)

    async def _gather_step(self, coros: Sequence[Any], trace: _Trace) -> list[_Lookup | None]:
        """Run one step's queries concurrently. A failed query becomes ``None`` if another
        query of the step found records; if none did, the first failure is raised."""
        results = await asyncio.gather(*coros, return_exceptions=True)
        lookups: list[_Lookup | None] = []
        failures: list[DnsResolutionError] = []
        for res in results:
            if isinstance(res, DnsResolutionError):
                failures.append(res)
                trace.add(str(res))
                lookups.append(None)
            elif isinstance(res, BaseException):
                raise res
            else:
                trace.add(res.describe())
                lookups.append(res)
        if failures:
            if not any(lk is not None and lk.records for lk in lookups):
                raise failures[0]
            for failure in failures:
                logger.warning("DNS lookup failed, using the other answers: %s", failure)
        return lookups

    # --- queries and the cache ----------------------------------------------------------

    async def _query(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> _Lookup:
        """One cached query; raises :class:`DnsResolutionError` on timeout/SERVFAIL/...."""
        key = (name, rdtype)
        entry = self._cache.get(key)
        if entry is not None:
            if entry.expires > self._clock():
                return entry.lookup
            del self._cache[key]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._send_query(name, rdtype))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._query_done(key, t))
        return await asyncio.shield(task)

    def _query_done(
        self, key: tuple[dns.name.Name, dns.rdatatype.RdataType], task: asyncio.Task[_Lookup]
    ) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning if every waiter left

    async def _send_query(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> _Lookup:
        what = f"{dns.rdatatype.to_text(rdtype)} lookup of {name}"
        try:
            # dnspython's lifetime can overrun a little (backoff); asyncio.timeout is the hard cap
            async with asyncio.timeout(self.timeout):
                answer = await self._resolver.resolve(
                    name, rdtype, raise_on_no_answer=False, search=False, lifetime=self.timeout
                )
        except dns.resolver.NXDOMAIN as exc:
            lookup = _Lookup(name, rdtype, (), "NXDOMAIN")
            self._store(lookup, _negative_ttl(exc, name))
            logger.debug("%s: NXDOMAIN", what)
            return lookup
        except (dns.exception.Timeout, TimeoutError):
            raise DnsResolutionError(
                f"{what} failed: timeout (no answer within {self.timeout:g} s)"
            ) from None
        except dns.exception.DNSException as exc:
            raise DnsResolutionError(f"{what} failed: {_describe_failure(exc)}") from None
        records = tuple(answer.rrset) if answer.rrset is not None else ()
        lookup = _Lookup(name, rdtype, records, "ok" if records else "no records")
        self._store(lookup, float(answer.chaining_result.minimum_ttl))
        logger.debug("%s: %s", what, lookup.describe())
        return lookup

    def _store(self, lookup: _Lookup, ttl: float) -> None:
        ttl = min(ttl, self.cache_ttl_cap)
        if ttl <= 0 or self.max_cache_entries <= 0:
            return
        now = self._clock()
        if len(self._cache) >= self.max_cache_entries:
            for key in [k for k, e in self._cache.items() if e.expires <= now]:
                del self._cache[key]
            while len(self._cache) >= self.max_cache_entries:
                del self._cache[next(iter(self._cache))]  # the oldest entry
        self._cache[(lookup.name, lookup.rdtype)] = _CacheEntry(now + ttl, lookup)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _srv_name(transport: str, name: dns.name.Name) -> dns.name.Name:
    return dns.name.from_text(_SRV_PREFIXES[transport], origin=name)


def _negative_ttl(exc: dns.resolver.NXDOMAIN, name: dns.name.Name) -> float:
    """The negative-caching TTL of an NXDOMAIN answer (SOA minimum, RFC 2308), or 0."""
    try:
        response = exc.kwargs.get("responses", {}).get(name)
        if not isinstance(response, dns.message.QueryMessage):
            return 0.0
        return float(response.resolve_chaining().minimum_ttl)
    except (dns.exception.DNSException, KeyError, AttributeError):
        return 0.0
