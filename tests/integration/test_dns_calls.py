"""Calls to SIP domains: RFC 3263 look-ups against a DNS server on 127.0.0.1, and failover."""

from __future__ import annotations

import socket

import pytest

from sessioncore import SessionManagerBuilder, TransportError
from tests.dnsserver import FakeDnsServer
from tests.integration.conftest import RecordingHandler, make_ua, settle


async def test_srv_failover_to_the_next_target() -> None:
    uas_h, uac_h = RecordingHandler(), RecordingHandler()
    uas = await make_ua(uas_h, "bob")
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))  # a black hole: the first target never answers
    good_port = uas.dialogs.local_address("udp").port
    zone = {
        ("_sip._udp.example.test.", "SRV"): [
            f"10 10 {dead.getsockname()[1]} sip1.example.test.",
            f"20 10 {good_port} sip2.example.test.",
        ],
        ("sip1.example.test.", "A"): ["127.0.0.1"],
        ("sip2.example.test.", "A"): ["127.0.0.1"],
    }
    async with FakeDnsServer(zone) as dns:
        uac = await (
            SessionManagerBuilder()
            .with_local_address("sip:alice@127.0.0.1")
            .with_local_bind_addr("127.0.0.1", 0)
            .with_timers(t1=0.02, t2=4.0)
            .with_dns([dns.host], port=dns.port, timeout=1.0)
            .with_handler(uac_h)
            .build()
        )
        try:
            session = await uac.make_call("sip:bob@example.test")
            await uac.wait_for_answer(session.id, timeout=10)  # after Timer B on sip1
            assert ("_sip._udp.example.test.", "SRV") in dns.queries
            assert len(uas_h.incoming) == 1
            await uac.terminate_session(session.id)
            await settle(uac, uas)
        finally:
            dead.close()
            await uac.stop()
            await uas.stop()


async def test_unknown_domain_is_a_typed_error_and_leaks_nothing() -> None:
    async with FakeDnsServer({}) as dns:
        uac = await (
            SessionManagerBuilder()
            .with_local_address("sip:alice@127.0.0.1")
            .with_local_bind_addr("127.0.0.1", 0)
            .with_dns([dns.host], port=dns.port, timeout=0.5)
            .build()
        )
        try:
            with pytest.raises(TransportError) as info:
                await uac.make_call("sip:bob@missing.example.test")
            assert "missing.example.test" in str(info.value)
            assert uac.list_active_sessions() == [] and uac.media.active == 0
        finally:
            await uac.stop()


async def test_ip_literals_need_no_dns() -> None:
    uas_h = RecordingHandler()
    uas = await make_ua(uas_h, "bob")
    async with FakeDnsServer({}) as dns:
        uac = await (
            SessionManagerBuilder()
            .with_local_address("sip:alice@127.0.0.1")
            .with_local_bind_addr("127.0.0.1", 0)
            .with_dns([dns.host], port=dns.port)
            .build()
        )
        try:
            port = uas.dialogs.local_address("udp").port
            s = await uac.make_call(f"sip:bob@127.0.0.1:{port}")
            await uac.wait_for_answer(s.id, timeout=5)
            assert dns.queries == []
            await uac.terminate_session(s.id)
            await settle(uac, uas)
        finally:
            await uac.stop()
            await uas.stop()
