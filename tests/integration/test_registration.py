"""Registration against registrars that misbehave: silence, unusable challenges, garbage."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sessioncore import RegistrationFailed, SessionManagerBuilder
from sessioncore.sip.message import SipRequest, make_response, parse_message


class FakeRegistrar(asyncio.DatagramProtocol):
    """Answers every REGISTER with ``status`` and ``headers`` (or never, with status 0)."""

    def __init__(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.status = status
        self.headers = headers
        self.seen = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = parse_message(data)
        if not isinstance(msg, SipRequest):
            return
        self.seen += 1
        if self.status and self.transport is not None:
            resp = make_response(msg, self.status, to_tag="reg", headers=self.headers)
            self.transport.sendto(bytes(resp), addr)


async def _registrar(status: int, headers: list[tuple[str, str]]) -> tuple[FakeRegistrar, int]:
    loop = asyncio.get_running_loop()
    proto = FakeRegistrar(status, headers)
    await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    assert proto.transport is not None
    port = proto.transport.get_extra_info("sockname")[1]
    return proto, port


async def _ua(port: int):  # type: ignore[no-untyped-def]
    return await (
        SessionManagerBuilder()
        .with_local_bind_addr("127.0.0.1", 0)
        .with_timers(t1=0.02, t2=4.0)
        .with_account(
            "sip:alice@127.0.0.1",
            "alice",
            "pw",
            registrar=f"sip:127.0.0.1:{port}",
            retry_after=60.0,
        )
        .build()
    )


async def test_registrar_that_never_answers() -> None:
    registrar, port = await _registrar(0, [])
    ua = await _ua(port)
    try:
        with pytest.raises(RegistrationFailed) as info:
            await ua.wait_registered("sip:alice@127.0.0.1", timeout=10)
        assert info.value.status == 408
        state = ua.get_registration("sip:alice@127.0.0.1")
        assert state is not None and state.retry_in is not None  # it will try again later
        assert registrar.seen >= 2  # retransmitted (UDP), then gave up
        assert ua.dialogs.pending_registers() == 0
    finally:
        await ua.stop()
        assert registrar.transport is not None
        registrar.transport.close()


@pytest.mark.parametrize(
    ("challenge", "words"),
    [
        ('Digest realm="x", nonce="n1", algorithm=FOO-9', "FOO-9"),
        ('Digest realm="x", nonce="n1", algorithm=MD5, qop="auth", nonce="again"', "nonce"),
        ("Basic realm=x", "Basic"),
    ],
)
async def test_unusable_challenges_fail_with_a_reason(challenge: str, words: str) -> None:
    registrar, port = await _registrar(401, [("WWW-Authenticate", challenge)])
    ua = await _ua(port)
    try:
        with pytest.raises(RegistrationFailed) as info:
            await ua.wait_registered("sip:alice@127.0.0.1", timeout=10)
        assert info.value.status == 401
        assert words.lower() in (info.value.reason or "").lower()
        await asyncio.sleep(0.3)
        assert registrar.seen == 1  # no retry storm
    finally:
        await ua.stop()
        assert registrar.transport is not None
        registrar.transport.close()


async def test_garbage_from_the_registrar_is_dropped() -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    ua = await _ua(sock.getsockname()[1])
    try:
        _, addr = await loop.sock_recvfrom(sock, 65535)
        sock.sendto(b"SIP/2.0 200 OK\r\nVia: garbage\r\n\r\n", addr)  # unparseable: dropped
        with pytest.raises(RegistrationFailed) as info:
            await ua.wait_registered("sip:alice@127.0.0.1", timeout=10)
        assert info.value.status == 408
    finally:
        sock.close()
        await ua.stop()


async def test_unregister_after_a_failure_returns_at_once() -> None:
    registrar, port = await _registrar(403, [])
    ua = await _ua(port)
    try:
        with pytest.raises(RegistrationFailed):
            await ua.wait_registered("sip:alice@127.0.0.1", timeout=10)
        info = await asyncio.wait_for(ua.unregister("sip:alice@127.0.0.1"), 2)
        assert info.state == "unregistered"
    finally:
        await ua.stop()
        assert registrar.transport is not None
        registrar.transport.close()


async def test_service_route_from_the_registrar_is_used_for_calls() -> None:
    """RFC 3608: the Service-Route of the REGISTER's 200 is pre-loaded on later requests."""
    # the "service proxy" is another UA of ours: the INVITE must arrive there with the Route
    from tests.integration.conftest import RecordingHandler, make_ua

    proxy_h = RecordingHandler()
    proxy = await make_ua(proxy_h, "proxy")
    pport = proxy.dialogs.local_address("udp").port
    registrar, port = await _registrar(
        200,
        [
            ("Contact", "<sip:alice@127.0.0.1>;expires=300"),
            ("Service-Route", f"<sip:orig@127.0.0.1:{pport};lr>"),
        ],
    )
    ua = await _ua(port)
    try:
        await ua.wait_registered("sip:alice@127.0.0.1", timeout=5)
        s = await ua.make_call("sip:bob@127.0.0.1:5999")  # goes to the service route first
        await ua.wait_for_answer(s.id, timeout=5)
        invite = proxy_h.incoming[0]
        assert invite.headers.get("Route") == f"<sip:orig@127.0.0.1:{pport};lr>"
        assert invite.request_uri == "sip:bob@127.0.0.1:5999"
        await ua.terminate_session(s.id)
    finally:
        await ua.stop()
        await proxy.stop()
        assert registrar.transport is not None
        registrar.transport.close()


class NatRegistrar(FakeRegistrar):
    """Answers 200 as if we were behind a NAT: received=127.0.0.2, rport=40000 in our Via."""

    def __init__(self) -> None:
        super().__init__(200, [])
        self.contacts: list[str] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = parse_message(data)
        if not isinstance(msg, SipRequest) or self.transport is None:
            return
        self.seen += 1
        self.contacts.append(msg.headers.get("Contact") or "")
        via = (msg.headers.get("Via") or "").replace(";rport", ";rport=40000;received=127.0.0.2")
        msg.headers.set("Via", via)
        contact = msg.headers.get("Contact") or ""
        resp = make_response(msg, 200, to_tag="reg", headers=[("Contact", contact + ";expires=60")])
        self.transport.sendto(bytes(resp), addr)


async def test_behind_a_nat_the_contact_uses_the_address_the_registrar_saw() -> None:
    loop = asyncio.get_running_loop()
    registrar = NatRegistrar()
    await loop.create_datagram_endpoint(lambda: registrar, local_addr=("127.0.0.1", 0))
    assert registrar.transport is not None
    ua = await _ua(registrar.transport.get_extra_info("sockname")[1])
    try:
        await ua.wait_registered("sip:alice@127.0.0.1", timeout=5)
        for _ in range(100):
            if registrar.seen >= 2:
                break
            await asyncio.sleep(0.02)
        assert registrar.seen == 2  # registered, learned the public address, re-registered
        assert "127.0.0.2:40000" in registrar.contacts[1]
        assert "127.0.0.2:40000" in ua.dialogs._contact("udp")  # and calls use it too
    finally:
        await ua.stop()
        registrar.transport.close()
