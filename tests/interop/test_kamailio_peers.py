"""The Kamailio harness (``kamailio.py``) proven with independent software only: SIPp, baresip,
``openssl s_client`` and Python's ``ssl`` module. sessioncore itself is not involved here.

* SIPp registers with digest auth (MD5 and SHA-256 challenges, qop=auth), over UDP and TCP;
  a wrong password gets a second 401; ``max_expires`` shortens the granted expiry; a restart
  forgets registrations.
* Two baresips register through Kamailio (account ``<sip:USER@127.0.0.1:PORT>;auth_pass=...``)
  and call each other through it (407 on the INVITE, record-routed BYE); each hears the
  other's tone.
* TLS: the listener's certificate verifies against ``ca_file`` (openssl and Python), a REGISTER
  over TLS is challenged, and a baresip registers and calls over TLS.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import ssl
import subprocess
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .baresip import Baresip
from .conftest import HOST, SippRun, free_port, require_peer
from .kamailio import Kamailio, kamailio_factory, require_kamailio

pytestmark = pytest.mark.interop

KamailioFactory = Callable[..., Kamailio]
BaresipFactory = Callable[..., Baresip]
SippFactory = Callable[..., SippRun]

SIPP_TIMEOUT_S = 20


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[KamailioFactory]:
    """Factory for :class:`Kamailio`s (not started); all are stopped at teardown."""
    require_kamailio()
    yield from kamailio_factory(tmp_path)


# --------------------------------------------------------------------------- SIPp REGISTER


def register_scenario(path: Path, *, final: int = 200, expect_expires: int | None = None) -> Path:
    """REGISTER -> 401 -> REGISTER with ``[authentication]`` (``-au``/``-ap``) -> ``final``.

    With ``expect_expires``, the 200's Contact must carry ``expires=N`` (checked by SIPp: a
    mismatch fails the call).
    """
    check = ""
    if expect_expires is not None:
        check = f"""
    <action>
      <ereg regexp="expires={expect_expires}([^0-9]|$)" search_in="hdr" header="Contact:"
            check_it="true" assign_to="granted"/>
    </action>"""
    register = """
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[service]@[remote_ip]:[remote_port]>;tag=[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: {cseq} REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Expires: 3600
      User-Agent: SIPp
      {auth}Content-Length: 0

    ]]>
  </send>"""
    auth_line = "[authentication]\n      "
    final_auth = ' auth="true"' if final in (401, 407) else ""
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="REGISTER with digest auth, then {final}">
{register.format(cseq=1, auth="")}
  <recv response="401" auth="true"/>
{register.format(cseq=2, auth=auth_line)}
  <recv response="{final}"{final_auth}>{check}
  </recv>{'<Reference variables="granted"/>' if check else ""}
</scenario>
"""
    path.write_text(text)
    return path


def run_register(
    sipp: SippFactory,
    kam: Kamailio,
    tmp_path: Path,
    *,
    name: str,
    user: str,
    password: str,
    transport: str = "udp",
    final: int = 200,
    expect_expires: int | None = None,
) -> SippRun:
    scenario = register_scenario(
        tmp_path / f"{name}.xml", final=final, expect_expires=expect_expires
    )
    run = sipp(
        scenario,
        name=name,
        remote=kam.address(),
        transport=transport,
        calls=1,
        service=user,
        timeout_s=SIPP_TIMEOUT_S,
        extra=["-au", user, "-ap", password],
    )
    result = run.run()
    context = f"{result.describe()}\n{kam.describe()}"
    assert result.returncode == 0 and result.successful == 1 and result.failed == 0, context
    return run


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_registers_with_md5_digest(
    kamailio: KamailioFactory, sipp: SippFactory, tmp_path: Path, transport: str
) -> None:
    kam = kamailio().start()
    run = run_register(
        sipp, kam, tmp_path, name="reg", user="alice", password="secret-a", transport=transport
    )
    messages = (run.workdir / "messages.log").read_text(errors="replace")
    challenge = re.search(r"(?im)^WWW-Authenticate:.*$", messages)
    assert challenge, messages
    assert 'qop="auth"' in challenge.group(0) and "SHA-256" not in challenge.group(0)
    assert re.search(r'(?im)^Authorization: Digest .*username="alice"', messages), messages
    contacts = kam.contacts("alice")
    assert f"sip:alice@{HOST}:{run.port}" in contacts, (contacts, kam.describe())
    assert kam.wait_for(r"AUTH REGISTER user alice: result 1"), kam.describe()


def test_sipp_wrong_password_is_challenged_again(
    kamailio: KamailioFactory, sipp: SippFactory, tmp_path: Path
) -> None:
    kam = kamailio().start()
    run_register(sipp, kam, tmp_path, name="bad", user="alice", password="wrong", final=401)
    assert kam.contacts("alice") == [], kam.describe()
    assert kam.wait_for(r"AUTH REGISTER user alice: result -2"), kam.describe()  # -2: bad pw


def test_sipp_unknown_user_is_challenged_again(
    kamailio: KamailioFactory, sipp: SippFactory, tmp_path: Path
) -> None:
    kam = kamailio().start()
    run_register(sipp, kam, tmp_path, name="nobody", user="mallory", password="x", final=401)
    assert kam.contacts("mallory") == [], kam.describe()


def test_max_expires_shortens_the_registration(
    kamailio: KamailioFactory, sipp: SippFactory, tmp_path: Path
) -> None:
    kam = kamailio(max_expires=60).start()
    run_register(
        sipp, kam, tmp_path, name="short", user="bob", password="secret-b", expect_expires=60
    )
    out = kam.rpc("ul.lookup", "location", "bob")
    found = re.search(r"Expires:\s*(\d+)", out)
    assert found and 0 < int(found.group(1)) <= 60, out


class UdpRegistrar:
    """A bare-hands REGISTER client (Python socket + hashlib), for what SIPp 3.6.1 cannot do:
    SIPp answers only MD5 (and AKAv1-MD5) challenges, it aborts on ``algorithm=SHA-256``."""

    def __init__(self, kam: Kamailio, user: str) -> None:
        self.kam = kam
        self.user = user
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(5)
        self.local = "{}:{}".format(*self.sock.getsockname())
        self.call_id = f"sha-{time.monotonic_ns()}@{HOST}"
        self.cseq = 0

    def close(self) -> None:
        self.sock.close()

    def register(self, authorization: str | None = None) -> str:
        self.cseq += 1
        uri = f"sip:{self.kam.address()}"
        auth = f"Authorization: {authorization}\r\n" if authorization else ""
        request = (
            f"REGISTER {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.local};branch=z9hG4bK-{time.monotonic_ns()};rport\r\n"
            f"From: <sip:{self.user}@{self.kam.address()}>;tag=sha\r\n"
            f"To: <sip:{self.user}@{self.kam.address()}>\r\n"
            f"Call-ID: {self.call_id}\r\nCSeq: {self.cseq} REGISTER\r\n"
            f"Contact: <sip:{self.user}@{self.local}>\r\nExpires: 300\r\nMax-Forwards: 70\r\n"
            f"{auth}Content-Length: 0\r\n\r\n"
        )
        self.sock.sendto(request.encode(), (HOST, self.kam.port))
        reply, _ = self.sock.recvfrom(65535)
        return reply.decode(errors="replace")

    def answer(self, challenge: str, password: str, algorithm: str) -> str:
        """The Authorization header value for a ``WWW-Authenticate`` challenge (qop=auth)."""
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.split(" ", 1)[1]))
        digest = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[algorithm]

        def h(text: str) -> str:
            return digest(text.encode()).hexdigest()

        uri = f"sip:{self.kam.address()}"
        cnonce, nc = "0a4f113b", "00000001"
        ha1 = h(f"{self.user}:{params['realm']}:{password}")
        ha2 = h(f"REGISTER:{uri}")
        response = h(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        return (
            f'Digest username="{self.user}", realm="{params["realm"]}", '
            f'nonce="{params["nonce"]}", uri="{uri}", response="{response}", '
            f'algorithm={algorithm}, cnonce="{cnonce}", qop=auth, nc={nc}'
        )


def status_of(reply: str) -> int:
    return int(reply.split(" ", 2)[1])


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_digest_algorithm(kamailio: KamailioFactory, algorithm: str) -> None:
    """``Kamailio(algorithm=...)``: the challenge names it (SHA-256) and Kamailio accepts a
    response computed with it, and refuses one computed with the other algorithm."""
    kam = kamailio(algorithm=algorithm).start()
    other = "MD5" if algorithm == "SHA-256" else "SHA-256"
    client = UdpRegistrar(kam, "alice")
    try:
        first = client.register()
        assert status_of(first) == 401, first
        challenge = re.search(r"(?im)^WWW-Authenticate: (.*)$", first)
        assert challenge, first
        assert ("algorithm=SHA-256" in challenge.group(1)) == (algorithm == "SHA-256"), first
        wrong = client.register(client.answer(challenge.group(1).strip(), "secret-a", other))
        assert status_of(wrong) == 401, f"{wrong}\n{kam.describe()}"
        again = re.search(r"(?im)^WWW-Authenticate: (.*)$", wrong)
        assert again, wrong
        right = client.register(client.answer(again.group(1).strip(), "secret-a", algorithm))
        assert status_of(right) == 200, f"{right}\n{kam.describe()}"
    finally:
        client.close()
    assert kam.contacts("alice") == [f"sip:alice@{client.local}"], kam.describe()


def test_restart_forgets_registrations(
    kamailio: KamailioFactory, sipp: SippFactory, tmp_path: Path
) -> None:
    kam = kamailio().start()
    run_register(sipp, kam, tmp_path, name="before", user="test", password="secret-t")
    assert kam.contacts("test"), kam.describe()
    kam.restart()
    assert kam.contacts("test") == [], kam.describe()
    run_register(sipp, kam, tmp_path, name="after", user="test", password="secret-t")
    assert kam.contacts("test"), kam.describe()


# --------------------------------------------------------------------------- baresip via Kamailio


class RegisteringBaresip(Baresip):
    """A baresip whose account registers to Kamailio (``regint``) with a password.

    baresip 1.0 registers to the host:port of the AOR, so the AOR names Kamailio:
    ``<sip:alice@127.0.0.1:KPORT[;transport=tls]>;auth_pass=PW;regint=60;answermode=auto``.
    """

    def __init__(self, workdir: Path, *, registrar: str, password: str, **kwargs: object) -> None:
        super().__init__(workdir, **kwargs)  # type: ignore[arg-type]
        self.registrar = registrar  # "127.0.0.1:PORT" or "127.0.0.1:PORT;transport=tls"
        self.password = password

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.registrar}"

    def account_line(self) -> str:
        return f"<{self.aor}>;auth_pass={self.password};regint=60;answermode={self.answermode}"


@pytest.fixture
def reg_baresip(tmp_path: Path) -> Iterator[Callable[..., RegisteringBaresip]]:
    binary = require_peer("baresip")
    peers: list[RegisteringBaresip] = []

    def make(name: str, **kwargs: object) -> RegisteringBaresip:
        lo = 10000 + len(peers) * 40
        kwargs.setdefault("sip_port", free_port())
        kwargs.setdefault("rtp_ports", (lo, lo + 39))
        peer = RegisteringBaresip(tmp_path / name, binary=binary, name=name, **kwargs)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.stop(grace_s=3.0)


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(0.1)
    return True


def dominant_hz(path: Path) -> float | None:
    """The strongest frequency in a 16-bit mono WAV (the first channel); None if silent."""
    import numpy as np

    with wave.open(str(path), "rb") as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")[::channels]
    if data.size < rate // 2 or not np.any(data):
        return None
    chunk = data[data.size // 4 : data.size * 3 // 4].astype(float)
    spectrum = np.abs(np.fft.rfft(chunk * np.hanning(chunk.size)))
    return float(np.argmax(spectrum[1:]) + 1) * rate / chunk.size


def registered(kam: Kamailio, *peers: Baresip) -> bool:
    return all(kam.contacts(p.user) for p in peers)


def call_through(kam: Kamailio, caller: Baresip, callee: Baresip, target: str) -> None:
    """caller dials ``target`` (callee's AOR at Kamailio), talks 2 s, hangs up; checks logs."""
    context = lambda: f"{caller.describe()}\n{callee.describe()}\n{kam.describe()}"  # noqa: E731
    caller.dial(target)
    ok = caller.wait_established(15) and callee.wait_established(5)
    assert ok, f"call not established\n{context()}"
    time.sleep(2.0)
    caller.hangup()
    ok = caller.wait_terminated(10) and callee.wait_terminated(10)
    assert ok, f"call not terminated\n{context()}"
    # the INVITE was challenged (407) then relayed; the BYE was routed by Kamailio
    assert kam.wait_for(rf"AUTH INVITE user {caller.user}: result 1", 5), context()
    assert any(r.startswith("BYE ") for r in kam.requests("BYE")), context()
    invites = [m for m in callee.sip_messages() if m.is_request and m.method == "INVITE"]
    assert invites and re.search(r"(?im)^Record-Route:", invites[-1].text), context()


def assert_heard(peer: Baresip, hz: float, context: str) -> None:
    files = peer.recordings("dec")
    assert files, f"{peer.name}: no -dec.wav recording\n{context}"
    heard = dominant_hz(files[-1])
    assert heard is not None and abs(heard - hz) < 10, f"{peer.name} heard {heard} Hz\n{context}"


def test_baresip_pair_registers_and_calls_through_kamailio(
    kamailio: KamailioFactory, reg_baresip: Callable[..., RegisteringBaresip]
) -> None:
    kam = kamailio().start()
    alice = reg_baresip(
        "alice", user="alice", password="secret-a", registrar=kam.address(), tone_hz=440
    ).start()
    bob = reg_baresip(
        "bob", user="bob", password="secret-b", registrar=kam.address(), tone_hz=1000
    ).start()
    ok = wait_until(lambda: registered(kam, alice, bob), 10)
    assert ok, f"not registered\n{alice.describe()}\n{bob.describe()}\n{kam.describe()}"
    assert alice.wait_for(r"200 OK", 5), alice.describe()
    call_through(kam, alice, bob, kam.uri("bob"))
    alice.stop()
    bob.stop()
    context = f"{alice.describe()}\n{bob.describe()}"
    assert_heard(bob, 440, context)
    assert_heard(alice, 1000, context)


# --------------------------------------------------------------------------- TLS


def test_tls_certificate_verifies_with_ca_file(kamailio: KamailioFactory) -> None:
    require_kamailio(tls=True)
    kam = kamailio(tls=True).start()
    assert kam.tls_port is not None
    openssl = shutil.which("openssl")
    if openssl is not None:
        done = subprocess.run(
            [openssl, "s_client", "-connect", kam.address("tls"), "-CAfile", str(kam.ca_file),
             "-verify_return_error", "-verify_ip", HOST, "-brief"],
            input=b"", capture_output=True, timeout=15, check=False,
        )  # fmt: skip
        out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        assert done.returncode == 0 and "Verification: OK" in out, out

    # Python's ssl: hostname (IP SAN) + chain verified; OPTIONS -> 200, REGISTER -> 401
    ctx = ssl.create_default_context(cafile=str(kam.ca_file))
    with (
        socket.create_connection((HOST, kam.tls_port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        local = "{}:{}".format(*tls.getsockname())
        for method, uri, expected in (
            ("OPTIONS", f"sip:{kam.address('tls')};transport=tls", 200),
            ("REGISTER", f"sip:{kam.address('tls')};transport=tls", 401),
        ):
            request = (
                f"{method} {uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/TLS {local};branch=z9hG4bK-{method}-{time.monotonic_ns()}\r\n"
                f"From: <sip:alice@{HOST}>;tag=t1\r\nTo: <sip:alice@{HOST}>\r\n"
                f"Call-ID: tls-{method}-{time.monotonic_ns()}@{HOST}\r\nCSeq: 1 {method}\r\n"
                f"Contact: <sip:alice@{local};transport=tls>\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            tls.sendall(request.encode())
            reply = b""
            while b"\r\n\r\n" not in reply:
                chunk = tls.recv(65535)
                assert chunk, f"connection closed\n{kam.describe()}"
                reply += chunk
            status = reply.split(b"\r\n", 1)[0].decode()
            assert status.startswith(f"SIP/2.0 {expected} "), (status, kam.describe())


def test_baresip_registers_and_calls_over_tls(
    kamailio: KamailioFactory, reg_baresip: Callable[..., RegisteringBaresip]
) -> None:
    """alice on TLS calls bob on UDP and back: Kamailio bridges TLS<->UDP, and reaches alice
    over her own TLS connection (``;alias`` on her Contact)."""
    require_kamailio(tls=True)
    kam = kamailio(tls=True).start()
    tls_registrar = f"{kam.address('tls')};transport=tls"
    ca = [f"sip_cafile\t{kam.ca_file}"]
    alice = reg_baresip(
        "alice", user="alice", password="secret-a", registrar=tls_registrar,
        tone_hz=440, extra_config=ca,
    ).start()  # fmt: skip
    bob = reg_baresip(
        "bob", user="bob", password="secret-b", registrar=kam.address(), tone_hz=1000
    ).start()
    ok = wait_until(lambda: registered(kam, alice, bob), 10)
    assert ok, f"not registered\n{alice.describe()}\n{bob.describe()}\n{kam.describe()}"
    sent = [m for m in alice.sip_messages() if m.is_request and m.method == "REGISTER"]
    assert sent and all(m.transport == "TLS" for m in sent), alice.describe()
    # baresip adds ;transport=tls itself (from the account)
    call_through(kam, alice, bob, f"sip:bob@{kam.address('tls')}")
    call_through(kam, bob, alice, kam.uri("alice"))
