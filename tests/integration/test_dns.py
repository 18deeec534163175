"""RFC 3263 server location (:class:`sessioncore.sip.dns.SipResolver`) against a fake DNS server.

Every resolver here is configured with exactly one nameserver, the :class:`FakeDnsServer` on
127.0.0.1 and a free port; no real DNS server is ever asked. Names use the ``.test`` TLD.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sessioncore.errors import InvalidArgumentError, TransportError
from sessioncore.sip.address import Address
from sessioncore.sip.dns import DnsResolutionError, SipResolver, order_srv
from sessioncore.sip.uri import SipUri
from tests.dnsserver import FakeDnsServer, Zone


@pytest.fixture
async def dns_server() -> AsyncIterator[FakeDnsServer]:
    async with FakeDnsServer() as server:
        yield server


def load(server: FakeDnsServer, zone: Zone) -> None:
    for (name, rdtype), records in zone.items():
        server.set(name, rdtype, records)


def resolver_for(server: FakeDnsServer, **kwargs: Any) -> SipResolver:
    kwargs.setdefault("timeout", 1.0)
    return SipResolver([server.host], port=server.port, **kwargs)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def udp(host: str, port: int = 5060) -> Address:
    return Address("udp", host, port)


def tcp(host: str, port: int = 5060) -> Address:
    return Address("tcp", host, port)


def tls(host: str, port: int = 5061) -> Address:
    return Address("tls", host, port)


# A domain with NAPTR -> SRV -> A/AAAA, two SRV priorities and weights.
FULL_ZONE: Zone = {
    ("example.test.", "NAPTR"): [
        '20 10 "s" "SIPS+D2T" "" _sips._tcp.example.test.',
        '10 20 "s" "SIP+D2U" "" _sip._udp.example.test.',
        '10 10 "s" "SIP+D2T" "" _sip._tcp.example.test.',
        # ignored: unsupported service, ENUM, non-terminal flag, regexp
        '5 10 "s" "SIP+D2S" "" _sip._sctp.example.test.',
        '5 10 "u" "E2U+sip" "!^.*$!sip:info@example.test!" .',
        '5 10 "" "SIP+D2U" "" other.example.test.',
    ],
    ("_sip._tcp.example.test.", "SRV"): [
        "10 60 5060 a.example.test.",
        "10 40 5070 b.example.test.",
        "20 0 5080 c.example.test.",
    ],
    ("_sip._udp.example.test.", "SRV"): ["10 0 5060 a.example.test."],
    ("_sips._tcp.example.test.", "SRV"): ["10 0 5061 c.example.test."],
    ("a.example.test.", "A"): ["127.0.0.1"],
    ("b.example.test.", "A"): ["127.0.0.2"],
    ("c.example.test.", "A"): ["127.0.0.3"],
    ("c.example.test.", "AAAA"): ["::1"],
    ("example.test.", "A"): ["127.0.0.9"],
}


# --- no DNS needed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "default", "expected"),
    [
        ("sip:alice@127.0.0.1", "udp", udp("127.0.0.1")),
        ("sip:alice@127.0.0.1:5070", "tcp", tcp("127.0.0.1", 5070)),
        ("sip:alice@127.0.0.1;transport=tcp", "udp", tcp("127.0.0.1")),
        ("sip:alice@127.0.0.1;transport=TLS", "udp", tls("127.0.0.1")),
        ("sips:alice@127.0.0.1", "udp", tls("127.0.0.1")),
        ("sips:alice@127.0.0.1:6000;transport=tcp", "udp", tls("127.0.0.1", 6000)),
        ("sip:alice@[::1]", "udp", udp("::1")),
        ("sip:alice@[::1]:5080;transport=tcp", "udp", tcp("::1", 5080)),
        ("sip:alice@name.example.test;maddr=127.0.0.5", "udp", udp("127.0.0.5")),
    ],
)
async def test_ip_literal_needs_no_query(
    dns_server: FakeDnsServer, uri: str, default: str, expected: Address
) -> None:
    resolver = resolver_for(dns_server)
    assert await resolver.resolve(uri, default_transport=default) == [expected]
    assert dns_server.queries == []


async def test_accepts_parsed_uri(dns_server: FakeDnsServer) -> None:
    resolver = resolver_for(dns_server)
    uri = SipUri.parse("sip:bob@127.0.0.7:5099")
    assert await resolver.resolve(uri) == [udp("127.0.0.7", 5099)]


async def test_bad_input(dns_server: FakeDnsServer) -> None:
    resolver = resolver_for(dns_server)
    with pytest.raises(InvalidArgumentError):
        await resolver.resolve("tel:+15551234")
    with pytest.raises(InvalidArgumentError):
        await resolver.resolve("not a uri")
    with pytest.raises(InvalidArgumentError):
        await resolver.resolve("sip:127.0.0.1", default_transport="sctp")
    with pytest.raises(DnsResolutionError, match="sctp"):
        await resolver.resolve("sip:host.example.test;transport=sctp")
    with pytest.raises(DnsResolutionError, match="UDP"):
        await resolver.resolve("sips:host.example.test;transport=udp")
    with pytest.raises(DnsResolutionError, match="TLS"):
        await resolver_for(dns_server, supported=("udp",)).resolve("sips:127.0.0.1")
    assert dns_server.queries == []


# --- explicit port / transport ------------------------------------------------------------


async def test_name_with_port_uses_address_records_only(dns_server: FakeDnsServer) -> None:
    load(dns_server, FULL_ZONE)
    resolver = resolver_for(dns_server)
    assert await resolver.resolve("sip:bob@c.example.test:5090") == [
        udp("127.0.0.3", 5090),
        udp("::1", 5090),
    ]
    assert sorted(dns_server.queries) == [("c.example.test.", "A"), ("c.example.test.", "AAAA")]
    assert await resolver.resolve("sips:bob@c.example.test:5091") == [
        tls("127.0.0.3", 5091),
        tls("::1", 5091),
    ]


async def test_transport_param_uses_that_srv_only(dns_server: FakeDnsServer) -> None:
    load(dns_server, FULL_ZONE)
    resolver = resolver_for(dns_server, rng=random.Random(1))
    result = await resolver.resolve("sip:example.test;transport=tcp")
    assert {a.host for a in result[:2]} == {"127.0.0.1", "127.0.0.2"}
    assert result[2] == tcp("127.0.0.3", 5080)
    assert all(a.transport == "tcp" for a in result)
    assert "NAPTR" not in dns_server.queries_for("example.test.")
    assert await resolver.resolve("sip:example.test;transport=tls") == [
        tls("127.0.0.3"),
        tls("::1"),
    ]


async def test_transport_param_without_srv_falls_back_to_address(
    dns_server: FakeDnsServer,
) -> None:
    dns_server.set("plain.example.test.", "A", ["127.0.0.4"])
    resolver = resolver_for(dns_server)
    assert await resolver.resolve("sip:plain.example.test;transport=tcp") == [tcp("127.0.0.4")]
    assert await resolver.resolve("sip:plain.example.test;transport=tls") == [tls("127.0.0.4")]
    assert dns_server.queries_for("_sip._tcp.plain.example.test.") == ["SRV"]
    assert dns_server.queries_for("_sips._tcp.plain.example.test.") == ["SRV"]


# --- NAPTR -> SRV -> A ----------------------------------------------------------------------


async def test_naptr_srv_address_chain_order(dns_server: FakeDnsServer) -> None:
    load(dns_server, FULL_ZONE)
    resolver = resolver_for(dns_server, rng=random.Random(7))
    result = await resolver.resolve("sip:alice@example.test")
    # NAPTR order 10 pref 10 (TCP): priority 10 (a, b in weighted order), then priority 20 (c)
    assert {result[0], result[1]} == {tcp("127.0.0.1"), tcp("127.0.0.2", 5070)}
    assert result[2:4] == [tcp("127.0.0.3", 5080), tcp("::1", 5080)]
    # NAPTR order 10 pref 20 (UDP), then order 20 (TLS)
    assert result[4:] == [udp("127.0.0.1"), tls("127.0.0.3"), tls("::1")]
    # the bogus NAPTR records led nowhere
    for name in ("_sip._sctp.example.test.", "other.example.test."):
        assert dns_server.queries_for(name) == []


async def test_srv_weights_are_honoured(dns_server: FakeDnsServer) -> None:
    load(dns_server, FULL_ZONE)
    resolver = resolver_for(dns_server, rng=random.Random(42))
    first_a = 0
    runs = 400
    for _ in range(runs):
        result = await resolver.resolve("sip:example.test;transport=tcp")
        assert result[2].host == "127.0.0.3"  # lower priority always after
        first_a += result[0].host == "127.0.0.1"
    assert 0.5 < first_a / runs < 0.7  # weight 60 of 100
    assert dns_server.queries_for("_sip._tcp.example.test.") == ["SRV"]  # cached


def test_order_srv_zero_weights_and_priorities() -> None:
    class Rd:
        def __init__(self, priority: int, weight: int, name: str) -> None:
            self.priority, self.weight, self.name = priority, weight, name

    records = [Rd(20, 0, "z"), Rd(10, 0, "x"), Rd(10, 100, "y"), Rd(5, 1, "w")]
    seen_x_first = 0
    for seed in range(200):
        ordered = [r.name for r in order_srv(records, random.Random(seed))]
        assert ordered[0] == "w" and ordered[3] == "z"
        assert set(ordered[1:3]) == {"x", "y"}
        seen_x_first += ordered[1] == "x"
    assert seen_x_first < 20  # weight 0 is picked first only rarely


async def test_naptr_filtered_to_supported(dns_server: FakeDnsServer) -> None:
    load(dns_server, FULL_ZONE)
    resolver = resolver_for(dns_server, supported=("udp",))
    assert await resolver.resolve("sip:example.test") == [udp("127.0.0.1")]


async def test_naptr_with_no_usable_record_falls_back_to_srv(dns_server: FakeDnsServer) -> None:
    load(
        dns_server,
        {
            ("odd.example.test.", "NAPTR"): ['10 10 "s" "SIP+D2S" "" _sip._sctp.odd.example.test.'],
            ("_sip._udp.odd.example.test.", "SRV"): ["10 0 5062 a.example.test."],
            ("a.example.test.", "A"): ["127.0.0.1"],
        },
    )
    resolver = resolver_for(dns_server)
    assert await resolver.resolve("sip:odd.example.test") == [udp("127.0.0.1", 5062)]


# --- SRV without NAPTR, address fallback ------------------------------------------------------


async def test_srv_without_naptr(dns_server: FakeDnsServer) -> None:
    load(
        dns_server,
        {
            ("_sip._udp.srv.example.test.", "SRV"): ["10 0 5062 a.example.test."],
            ("_sip._tcp.srv.example.test.", "SRV"): ["10 0 5063 b.example.test."],
            ("a.example.test.", "A"): ["127.0.0.1"],
            ("b.example.test.", "A"): ["127.0.0.2"],
        },
    )
    resolver = resolver_for(dns_server)
    assert await resolver.resolve("sip:bob@srv.example.test") == [
        udp("127.0.0.1", 5062),
        tcp("127.0.0.2", 5063),
    ]
    assert dns_server.queries_for("srv.example.test.") == ["NAPTR"]
    tcp_only = resolver_for(dns_server, supported=("tcp", "tls"))
    assert await tcp_only.resolve("sip:bob@srv.example.test") == [tcp("127.0.0.2", 5063)]


async def test_srv_target_dot_means_not_available(dns_server: FakeDnsServer) -> None:
    load(
        dns_server,
        {
            ("_sip._udp.dot.example.test.", "SRV"): ["0 0 0 ."],
            ("dot.example.test.", "A"): ["127.0.0.8"],
        },
    )
    resolver = resolver_for(dns_server)
    assert await resolver.resolve("sip:dot.example.test") == [udp("127.0.0.8")]


async def test_fallback_to_address_records(dns_server: FakeDnsServer) -> None:
    dns_server.set("host.example.test.", "A", ["127.0.0.6"])
    resolver = resolver_for(dns_server)
    assert await resolver.resolve("sip:bob@host.example.test") == [udp("127.0.0.6")]
    assert await resolver.resolve("sip:bob@host.example.test", default_transport="tcp") == [
        tcp("127.0.0.6")
    ]
    assert await resolver.resolve("sips:bob@host.example.test") == [tls("127.0.0.6")]
    assert dns_server.queries_for("host.example.test.") == ["NAPTR", "A", "AAAA"]
    assert dns_server.queries_for("_sip._udp.host.example.test.") == ["SRV"]


# --- sips, IPv6 ------------------------------------------------------------------------------


async def test_sips_only_tls_targets(dns_server: FakeDnsServer) -> None:
    load(dns_server, FULL_ZONE)
    resolver = resolver_for(dns_server)
    result = await resolver.resolve("sips:alice@example.test")
    assert result == [tls("127.0.0.3"), tls("::1")]
    # NAPTR-less sips domain: only _sips._tcp is asked
    dns_server.set("_sips._tcp.s.example.test.", "SRV", ["10 0 5061 a.example.test."])
    assert await resolver.resolve("sips:s.example.test") == [tls("127.0.0.1")]
    assert dns_server.queries_for("_sip._udp.s.example.test.") == []
    assert dns_server.queries_for("_sip._tcp.s.example.test.") == []
    # sips;transport=tcp means TLS
    assert await resolver.resolve("sips:s.example.test;transport=tcp") == [tls("127.0.0.1")]


async def test_sips_with_only_non_tls_records_fails(dns_server: FakeDnsServer) -> None:
    load(
        dns_server,
        {
            ("u.example.test.", "NAPTR"): ['10 10 "s" "SIP+D2U" "" _sip._udp.u.example.test.'],
            ("_sip._udp.u.example.test.", "SRV"): ["10 0 5060 a.example.test."],
            ("a.example.test.", "A"): ["127.0.0.1"],
        },
    )
    resolver = resolver_for(dns_server)
    with pytest.raises(DnsResolutionError, match=r"u\.example\.test"):
        await resolver.resolve("sips:u.example.test")


async def test_aaaa_included(dns_server: FakeDnsServer) -> None:
    dns_server.set("dual.example.test.", "A", ["127.0.0.1"])
    dns_server.set("dual.example.test.", "AAAA", ["::1"])
    dns_server.set("v6.example.test.", "AAAA", ["::1"])
    resolver = resolver_for(dns_server)
    assert await resolver.resolve("sip:dual.example.test") == [udp("127.0.0.1"), udp("::1")]
    assert await resolver.resolve("sip:v6.example.test") == [udp("::1")]
    v6_first = resolver_for(dns_server, address_types=("AAAA", "A"))
    assert await v6_first.resolve("sip:dual.example.test:5070") == [
        udp("::1", 5070),
        udp("127.0.0.1", 5070),
    ]
    v4_only = resolver_for(dns_server, address_types=("A",))
    assert await v4_only.resolve("sip:dual.example.test:5070") == [udp("127.0.0.1", 5070)]


async def test_cname_chain(dns_server: FakeDnsServer) -> None:
    load(
        dns_server,
        {
            ("alias.example.test.", "CNAME"): ["alias2.example.test."],
            ("alias2.example.test.", "CNAME"): ["a.example.test."],
            ("a.example.test.", "A"): ["127.0.0.1"],
        },
    )
    resolver = resolver_for(dns_server)
    assert await resolver.resolve("sip:alias.example.test:5070") == [udp("127.0.0.1", 5070)]


# --- failures -------------------------------------------------------------------------------


async def test_nxdomain(dns_server: FakeDnsServer) -> None:
    resolver = resolver_for(dns_server)
    with pytest.raises(DnsResolutionError) as info:
        await resolver.resolve("sip:bob@missing.example.test")
    message = str(info.value)
    assert "missing.example.test" in message
    assert "NXDOMAIN" in message
    assert isinstance(info.value, TransportError)
    with pytest.raises(DnsResolutionError, match=r"gone\.example\.test.*NXDOMAIN"):
        await resolver.resolve("sip:bob@gone.example.test:5060")


async def test_no_records(dns_server: FakeDnsServer) -> None:
    dns_server.set("txt.example.test.", "TXT", ['"hello"'])
    resolver = resolver_for(dns_server)
    with pytest.raises(DnsResolutionError, match=r"txt\.example\.test.*no records"):
        await resolver.resolve("sip:txt.example.test:5060")


async def test_nameserver_never_answers(dns_server: FakeDnsServer) -> None:
    dns_server.make_silent("slow.example.test.")
    resolver = resolver_for(dns_server, timeout=0.5)
    start = time.monotonic()
    with pytest.raises(DnsResolutionError) as info:
        await resolver.resolve("sip:bob@slow.example.test")
    elapsed = time.monotonic() - start
    assert elapsed < 0.5 + 0.5  # one query's timeout (NAPTR), plus scheduling slack
    assert "slow.example.test" in str(info.value)
    assert "timeout" in str(info.value)
    assert dns_server.queries_for("slow.example.test.")  # it was asked (and retried)


async def test_nothing_listening_fails_within_timeout() -> None:
    # a port with nothing behind it: refused or silent, never a hang
    server = FakeDnsServer()
    await server.start()
    port = server.port
    await server.stop()
    resolver = SipResolver(["127.0.0.1"], port=port, timeout=0.5)
    start = time.monotonic()
    with pytest.raises(DnsResolutionError, match=r"dead\.example\.test"):
        await resolver.resolve("sip:dead.example.test")
    assert time.monotonic() - start < 0.5 + 0.5


async def test_overall_timeout(dns_server: FakeDnsServer) -> None:
    dns_server.make_silent("slow.example.test.")
    resolver = resolver_for(dns_server, timeout=5.0, overall_timeout=0.3)
    start = time.monotonic()
    with pytest.raises(DnsResolutionError, match=r"within 0\.3 s"):
        await resolver.resolve("sip:bob@slow.example.test")
    assert time.monotonic() - start < 1.0


async def test_servfail(dns_server: FakeDnsServer) -> None:
    dns_server.make_servfail("broken.example.test.")
    resolver = resolver_for(dns_server)
    with pytest.raises(
        DnsResolutionError, match=r"NAPTR lookup of broken\.example\.test.*SERVFAIL"
    ):
        await resolver.resolve("sip:broken.example.test")


async def test_partial_failure_is_tolerated(dns_server: FakeDnsServer) -> None:
    dns_server.set("half.example.test.", "A", ["127.0.0.1"])
    dns_server.make_servfail("half.example.test.")
    resolver = resolver_for(dns_server)
    with pytest.raises(DnsResolutionError, match="SERVFAIL"):
        await resolver.resolve("sip:half.example.test:5060")
    # one SRV target broken, the other fine: the fine one is used
    load(
        dns_server,
        {
            ("_sip._udp.p.example.test.", "SRV"): [
                "10 0 5060 half.example.test.",
                "20 0 5060 a.example.test.",
            ],
            ("a.example.test.", "A"): ["127.0.0.1"],
        },
    )
    assert await resolver.resolve("sip:p.example.test;transport=udp") == [udp("127.0.0.1")]


async def test_cname_loop(dns_server: FakeDnsServer) -> None:
    load(
        dns_server,
        {
            ("loop.example.test.", "CNAME"): ["loop2.example.test."],
            ("loop2.example.test.", "CNAME"): ["loop.example.test."],
        },
    )
    resolver = resolver_for(dns_server)
    start = time.monotonic()
    with pytest.raises(DnsResolutionError, match=r"loop\.example\.test.*CNAME"):
        await resolver.resolve("sip:loop.example.test:5060")
    assert time.monotonic() - start < 1.0


async def test_naptr_self_reference_is_ignored(dns_server: FakeDnsServer) -> None:
    load(
        dns_server,
        {
            ("self.example.test.", "NAPTR"): [
                '10 10 "s" "SIP+D2U" "" self.example.test.',
                '10 20 "" "SIP+D2U" "" self.example.test.',
            ],
            ("self.example.test.", "A"): ["127.0.0.1"],
        },
    )
    resolver = resolver_for(dns_server)
    assert await resolver.resolve("sip:self.example.test") == [udp("127.0.0.1")]
    assert dns_server.queries_for("self.example.test.").count("NAPTR") == 1


async def test_srv_explosion_is_bounded(dns_server: FakeDnsServer) -> None:
    srv = [f"10 0 5060 t{i}.example.test." for i in range(40)]
    dns_server.set("_sip._udp.big.example.test.", "SRV", srv)
    for i in range(40):
        dns_server.set(f"t{i}.example.test.", "A", [f"127.0.{i}.{j}" for j in range(1, 6)])
    resolver = resolver_for(dns_server, max_srv_targets=20, max_addresses=64)
    result = await resolver.resolve("sip:big.example.test;transport=udp")
    assert len(result) == 64
    asked = {name for name, rdtype in dns_server.queries if rdtype == "A"}
    assert len(asked) == 20


# --- caching and sharing ----------------------------------------------------------------------


async def test_second_resolve_is_served_from_cache(dns_server: FakeDnsServer) -> None:
    load(dns_server, FULL_ZONE)
    resolver = resolver_for(dns_server, rng=random.Random(3))
    first = await resolver.resolve("sips:example.test")
    count = len(dns_server.queries)
    assert count > 0
    assert await resolver.resolve("sips:example.test") == first
    assert len(dns_server.queries) == count
    # negative answers are cached too
    with pytest.raises(DnsResolutionError):
        await resolver.resolve("sip:missing.example.test:5060")
    count = len(dns_server.queries)
    with pytest.raises(DnsResolutionError):
        await resolver.resolve("sip:missing.example.test:5060")
    assert len(dns_server.queries) == count


async def test_cache_honours_ttl_and_cap(dns_server: FakeDnsServer) -> None:
    clock = FakeClock()
    dns_server.set("short.example.test.", "A", ["127.0.0.1"], ttl=5)
    dns_server.set("long.example.test.", "A", ["127.0.0.2"], ttl=86400)
    resolver = resolver_for(dns_server, clock=clock, cache_ttl_cap=60.0, address_types=("A",))

    async def queries_after_resolving(name: str) -> int:
        before = len(dns_server.queries)
        await resolver.resolve(f"sip:{name}:5060")
        return len(dns_server.queries) - before

    assert await queries_after_resolving("short.example.test") == 1
    assert await queries_after_resolving("long.example.test") == 1
    clock.now += 4
    assert await queries_after_resolving("short.example.test") == 0
    clock.now += 2  # past the 5 s TTL
    assert await queries_after_resolving("short.example.test") == 1
    assert await queries_after_resolving("long.example.test") == 0
    clock.now += 60  # past the cap, far below the record's own TTL
    assert await queries_after_resolving("long.example.test") == 1
    # a changed record is seen once the entry expired
    dns_server.set("short.example.test.", "A", ["127.0.0.9"], ttl=5)
    clock.now += 10
    assert await resolver.resolve("sip:short.example.test:5060") == [udp("127.0.0.9")]
    resolver.clear_cache()
    assert resolver.cache_size == 0


async def test_concurrent_resolves_share_queries(dns_server: FakeDnsServer) -> None:
    load(dns_server, FULL_ZONE)
    resolver = resolver_for(dns_server)
    results = await asyncio.gather(*(resolver.resolve("sips:example.test") for _ in range(10)))
    assert all(r == results[0] for r in results)
    assert len(dns_server.queries) == len(set(dns_server.queries))


async def test_cancelled_resolve_leaves_resolver_usable(dns_server: FakeDnsServer) -> None:
    dns_server.make_silent("slow.example.test.")
    dns_server.set("a.example.test.", "A", ["127.0.0.1"])
    resolver = resolver_for(dns_server, timeout=0.3)
    task = asyncio.create_task(resolver.resolve("sip:slow.example.test"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await resolver.resolve("sip:a.example.test:5060") == [udp("127.0.0.1", 5060)]
    await asyncio.sleep(0.4)  # the orphaned query ends quietly
