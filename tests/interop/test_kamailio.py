"""sessioncore as an account holder behind Kamailio (registrar + authenticating proxy).

* two sessioncore UAs register with digest auth (MD5 and SHA-256), over UDP and TCP; one calls
  the other through Kamailio (407 answered, Record-Route honoured), audio flows both ways,
  either side hangs up, both unregister;
* a wrong password: 401 twice, a clear failure through the API and the handler, no retry storm;
* the registrar shortens the expiry: the refresh comes in time;
* Kamailio restarted: the client's binding comes back;
* baresip registered to the same Kamailio calls a sessioncore UA through it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sessioncore import (
    CallHandler,
    RegistrationFailed,
    RegistrationInfo,
    SessionCoordinator,
    SessionManagerBuilder,
)
from sessioncore.media.analysis import dominant_frequency
from sessioncore.media.sources import ToneSource

from .baresip import Baresip
from .conftest import free_port, require_peer
from .kamailio import Kamailio, kamailio_factory, require_kamailio

pytestmark = pytest.mark.interop

KamailioFactory = Callable[..., Kamailio]
PASSWORDS = {"alice": "secret-a", "bob": "secret-b", "test": "secret-t"}


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[KamailioFactory]:
    require_kamailio()
    yield from kamailio_factory(tmp_path)


class Recorder(CallHandler):
    """Remembers registration states and calls."""

    def __init__(self) -> None:
        self.registrations: list[RegistrationInfo] = []
        self.established: list[str] = []
        self.ended: list[str] = []

    async def on_registration_state(self, info: RegistrationInfo) -> None:
        self.registrations.append(info)

    async def on_call_established(self, session, local_sdp, remote_sdp) -> None:  # type: ignore[no-untyped-def]
        self.established.append(session.id)

    async def on_call_ended(self, session, reason: str) -> None:  # type: ignore[no-untyped-def]
        self.ended.append(reason)


async def ua(
    kam: Kamailio,
    user: str,
    *,
    transport: str = "udp",
    password: str | None = None,
    tone: float | None = None,
    expires: int = 300,
    handler: Recorder | None = None,
    media: tuple[int, int] = (20000, 20999),
    t1: float = 0.5,
    retry_after: float = 30.0,
    tls_ca: Path | None = None,
) -> SessionCoordinator:
    builder = (
        SessionManagerBuilder()
        .with_local_bind_addr("127.0.0.1", 0)
        .with_transport(transport)
        .with_media_ports(*media)
        .with_timers(t1=t1, t2=max(4.0, t1))
        .with_account(
            f"sip:{user}@127.0.0.1",
            user,
            password if password is not None else PASSWORDS[user],
            registrar=kam.uri(transport=transport),  # type: ignore[arg-type]
            expires=expires,
            retry_after=retry_after,
        )
        .with_handler(handler or Recorder())
    )
    if tone is not None:
        builder = builder.with_audio(source=lambda s: ToneSource(tone))
    if tls_ca is not None:
        builder = builder.with_tls(ca=str(tls_ca))
    return await builder.build()


async def _heard(coord: SessionCoordinator, sid: str, seconds: float = 1.0) -> float:
    session = coord.get_session(sid)  # type: ignore[arg-type]
    assert session is not None
    pcm = bytearray()

    async def collect() -> None:
        async for frame in session.audio_frames():
            pcm.extend(frame)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), seconds)
    return dominant_frequency(bytes(pcm), 8000) if len(pcm) > 3200 else 0.0


@pytest.mark.parametrize(
    ("transport", "algorithm", "hangup_by"),
    [("udp", "MD5", "caller"), ("tcp", "SHA-256", "callee"), ("udp", "SHA-256", "callee")],
)
async def test_register_call_through_kamailio_and_unregister(
    kamailio: KamailioFactory, transport: str, algorithm: str, hangup_by: str
) -> None:
    kam = kamailio(algorithm=algorithm).start()
    ha, hb = Recorder(), Recorder()
    alice = await ua(kam, "alice", transport=transport, tone=700, handler=ha, media=(21000, 21999))
    bob = await ua(kam, "bob", transport=transport, tone=1100, handler=hb, media=(22000, 22999))
    try:
        for coord in (alice, bob):
            info = await coord.wait_registered(coord.local_uri or "", timeout=10)
            assert info.registered and info.status == 200
        assert kam.contacts("alice") and kam.contacts("bob"), kam.describe()
        call = await alice.make_call(kam.uri("bob", transport))  # type: ignore[arg-type]
        await alice.wait_for_answer(call.id, timeout=10)
        assert kam.wait_for(r"AUTH INVITE user alice: result 1", 5), kam.describe()
        for _ in range(100):
            if bob.list_active_sessions():
                break
            await asyncio.sleep(0.02)
        bob_sid = bob.list_active_sessions()[0].id
        # audio flows both ways (RTP goes directly between the UAs)
        heard_by_bob, heard_by_alice = await asyncio.gather(
            _heard(bob, bob_sid), _heard(alice, call.id)
        )
        assert abs(heard_by_bob - 700) < 5 and abs(heard_by_alice - 1100) < 5
        if hangup_by == "caller":
            await alice.terminate_session(call.id)
        else:
            await bob.terminate_session(bob_sid)
        await alice.wait_for_end(call.id, timeout=10)
        for _ in range(100):
            if not bob.list_active_sessions():
                break
            await asyncio.sleep(0.05)
        assert not bob.list_active_sessions()
        assert any(r.startswith("BYE ") for r in kam.requests("BYE")), kam.describe()
        for coord in (alice, bob):
            info = await coord.unregister(coord.local_uri or "", timeout=10)
            assert info.state == "unregistered", info
        assert not kam.contacts("alice") and not kam.contacts("bob"), kam.describe()
        assert [i.state for i in ha.registrations] == ["registered", "unregistered"]
    finally:
        await alice.stop()
        await bob.stop()


async def test_register_and_call_over_tls(kamailio: KamailioFactory) -> None:
    require_kamailio(tls=True)
    kam = kamailio(tls=True).start()
    ha, hb = Recorder(), Recorder()
    alice = await ua(
        kam, "alice", transport="tls", tls_ca=kam.ca_file, tone=600, handler=ha,
        media=(24000, 24999),
    )  # fmt: skip
    bob = await ua(kam, "bob", tone=1300, handler=hb, media=(25000, 25999))
    try:
        await alice.wait_registered("sip:alice@127.0.0.1", timeout=10)
        await bob.wait_registered("sip:bob@127.0.0.1", timeout=10)
        assert alice.dialogs._transport.stats()["tls_messages_sent"] >= 2
        # bob (UDP) calls alice, whom Kamailio reaches over her TLS connection
        call = await bob.make_call(kam.uri("alice"))
        await bob.wait_for_answer(call.id, timeout=10)
        for _ in range(100):
            if alice.list_active_sessions():
                break
            await asyncio.sleep(0.02)
        alice_sid = alice.list_active_sessions()[0].id
        assert abs(await _heard(alice, alice_sid) - 1300) < 5
        await alice.terminate_session(alice_sid)  # BYE over TLS, through Kamailio
        await bob.wait_for_end(call.id, timeout=10)
        info = await alice.unregister("sip:alice@127.0.0.1", timeout=10)
        assert info.state == "unregistered"
    finally:
        await alice.stop()
        await bob.stop()


async def test_wrong_password_fails_cleanly_without_retry_storm(kamailio: KamailioFactory) -> None:
    kam = kamailio().start()
    handler = Recorder()
    alice = await ua(kam, "alice", password="wrong", handler=handler)
    try:
        with pytest.raises(RegistrationFailed) as info:
            await alice.wait_registered("sip:alice@127.0.0.1", timeout=10)
        assert info.value.status == 401
        await asyncio.sleep(1.5)  # nothing more may be sent
        registers = kam.requests("REGISTER")
        assert len(registers) == 2, kam.describe()  # the first, and one with credentials
        states = [i.state for i in handler.registrations]
        assert states[-1] == "failed" and states.count("failed") == 1
        assert handler.registrations[-1].retry_in is None
        assert not kam.contacts("alice")
    finally:
        await alice.stop()


async def test_registrar_shortens_expiry_and_refresh_comes_in_time(
    kamailio: KamailioFactory,
) -> None:
    kam = kamailio(max_expires=4).start()
    handler = Recorder()
    alice = await ua(kam, "alice", expires=3600, handler=handler)
    try:
        info = await alice.wait_registered("sip:alice@127.0.0.1", timeout=10)
        assert info.expires is not None and info.expires <= 4
        # well past the granted expiry, the binding is still there: it was refreshed
        for _ in range(9):
            await asyncio.sleep(1.0)
            assert kam.contacts("alice"), kam.describe()
        refreshed = [i for i in handler.registrations if i.state == "registered"]
        assert len(refreshed) >= 3
    finally:
        await alice.stop()


async def test_client_recovers_after_kamailio_restart(kamailio: KamailioFactory) -> None:
    kam = kamailio(max_expires=3).start()
    alice = await ua(kam, "alice", expires=3, t1=0.05, retry_after=0.5)
    try:
        await alice.wait_registered("sip:alice@127.0.0.1", timeout=10)
        kam.stop()
        await asyncio.sleep(1.0)  # a refresh may fail meanwhile (timeout, or ICMP)
        kam.start()
        assert not kam.contacts("alice")  # the restart lost the binding
        for _ in range(100):
            if kam.contacts("alice"):
                break
            await asyncio.sleep(0.1)
        assert kam.contacts("alice"), kam.describe()
        info = alice.get_registration("sip:alice@127.0.0.1")
        assert info is not None and info.registered
    finally:
        await alice.stop()


class _RegisteringBaresip(Baresip):
    def __init__(self, workdir: Path, *, registrar: str, password: str, **kw: object) -> None:
        super().__init__(workdir, **kw)  # type: ignore[arg-type]
        self.registrar = registrar
        self.password = password

    def account_line(self) -> str:
        return (
            f"<sip:{self.user}@{self.registrar}>;auth_pass={self.password};regint=60;"
            f"answermode={self.answermode}"
        )


async def test_baresip_calls_sessioncore_through_kamailio(
    kamailio: KamailioFactory, tmp_path: Path
) -> None:
    binary = require_peer("baresip")
    kam = kamailio().start()
    handler = Recorder()
    bob = await ua(kam, "bob", handler=handler, tone=900, media=(23000, 23999))
    peer = _RegisteringBaresip(
        tmp_path / "baresip",
        binary=binary,
        name="test",
        user="test",
        sip_port=free_port(),
        rtp_ports=(10400, 10439),
        tone_hz=440,
        registrar=kam.address(),
        password=PASSWORDS["test"],
    )
    try:
        await bob.wait_registered("sip:bob@127.0.0.1", timeout=10)
        peer.start()
        for _ in range(100):
            if kam.contacts("test"):
                break
            await asyncio.sleep(0.1)
        assert kam.contacts("test"), f"{peer.describe()}\n{kam.describe()}"
        peer.dial(kam.uri("bob"))
        for _ in range(150):
            if bob.list_active_sessions() and handler.established:
                break
            await asyncio.sleep(0.1)
        sessions = bob.list_active_sessions()
        assert sessions, f"{peer.describe()}\n{kam.describe()}"
        heard = await _heard(bob, sessions[0].id, 1.5)
        assert abs(heard - 440) < 5, f"heard {heard}\n{peer.describe()}"
        peer.hangup()
        for _ in range(100):
            if not bob.list_active_sessions():
                break
            await asyncio.sleep(0.1)
        assert not bob.list_active_sessions()
        assert handler.ended
    finally:
        peer.stop(grace_s=3.0)
        await bob.stop()
