"""Registration client state machine (sans-I/O), stepped with literal times."""

from __future__ import annotations

import random

import pytest

from sessioncore.errors import InvalidStateError
from sessioncore.sip.message import SipResponse, make_response, parse_message
from sessioncore.sip.registration import (
    REGISTRATION_TRANSITIONS,
    Registration,
    RegistrationState,
)

VIA = "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKreg;rport"


def _reg(expires: int = 3600, **kw: object) -> Registration:
    return Registration(
        aor="sip:alice@127.0.0.1",
        registrar="sip:127.0.0.1:5070",
        contact="<sip:alice@127.0.0.1:5060>",
        expires=expires,
        rng=random.Random(1),
        **kw,  # type: ignore[arg-type]
    )


def _respond(reg: Registration, now: float, status: int, headers: list[tuple[str, str]]) -> object:
    req = parse_message(bytes(reg.build_register(VIA, now)))
    resp = make_response(req, status, to_tag="r1", headers=headers)  # type: ignore[arg-type]
    parsed = parse_message(bytes(resp))
    assert isinstance(parsed, SipResponse)
    return reg.on_response(parsed, now)


def test_register_refresh_and_unregister() -> None:
    reg = _reg(3600)
    req = reg.build_register(VIA, 0.0)
    assert req.method == "REGISTER" and req.uri == "sip:127.0.0.1:5070"
    assert req.headers.get("Expires") == "3600"
    assert req.cseq.seq == 1 and reg.state is RegistrationState.REGISTERING
    resp = make_response(
        parse_message(bytes(req)),  # type: ignore[arg-type]
        200,
        to_tag="x",
        headers=[("Contact", "<sip:alice@127.0.0.1:5060>;expires=600")],
    )
    update = reg.on_response(parse_message(bytes(resp)), 0.0)  # type: ignore[arg-type]
    assert update.state is RegistrationState.REGISTERED and update.expires == 600
    deadline = reg.next_deadline()
    assert deadline is not None and 0 < deadline < 600  # refreshed before it expires
    assert not reg.due(deadline - 1) and reg.due(deadline)
    again = reg.build_register(VIA, deadline)
    assert again.call_id == req.call_id and again.cseq.seq == 2  # same Call-ID, CSeq up
    assert again.from_.tag == req.from_.tag
    bye = reg.build_register(VIA, deadline + 1, expires=0)
    assert bye.headers.get("Expires") == "0"
    assert reg.state is RegistrationState.UNREGISTERING


def test_registrar_shortens_expiry() -> None:
    reg = _reg(3600)
    update = _respond(reg, 10.0, 200, [("Contact", "<sip:alice@127.0.0.1:5060>;expires=60")])
    assert update.expires == 60  # type: ignore[attr-defined]
    deadline = reg.next_deadline()
    assert deadline is not None and 10.0 + 30 <= deadline <= 10.0 + 58


def test_expires_header_when_contact_has_none() -> None:
    reg = _reg(3600)
    update = _respond(reg, 0.0, 200, [("Expires", "120")])
    assert update.expires == 120  # type: ignore[attr-defined]


def test_423_interval_too_brief() -> None:
    reg = _reg(30)
    update = _respond(reg, 5.0, 423, [("Min-Expires", "300")])
    assert update.retry_in == 0.0  # type: ignore[attr-defined]
    assert reg.due(5.0)
    retry = reg.build_register(VIA, 5.0)
    assert retry.headers.get("Expires") == "300"


def test_failure_backoff_grows_and_is_capped() -> None:
    reg = _reg(3600, backoff=(10.0, 40.0))
    waits = []
    now = 0.0
    for _ in range(5):
        update = _respond(reg, now, 503, [])
        assert reg.state is RegistrationState.FAILED
        waits.append(update.retry_in)  # type: ignore[attr-defined]
        now = reg.next_deadline() or now
    assert all(w is not None for w in waits)
    assert 5.0 <= waits[0] <= 10.0  # type: ignore[operator]
    assert waits[2] > waits[0]  # type: ignore[operator]
    assert all(w <= 40.0 for w in waits)  # type: ignore[operator]
    # a success resets the backoff
    _respond(reg, now, 200, [("Expires", "60")])
    assert reg.state is RegistrationState.REGISTERED


def test_no_retry_when_told_so() -> None:
    reg = _reg()
    reg.build_register(VIA, 0.0)
    update = reg.fail(401, "Unauthorized", 0.0, retry=False)
    assert update.state is RegistrationState.FAILED and reg.next_deadline() is None


def test_outbound_contact_parameters() -> None:
    reg = _reg(instance_id="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", reg_id=1)
    req = reg.build_register(VIA, 0.0)
    contact = req.headers.get("Contact") or ""
    assert '+sip.instance="<urn:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0>"' in contact
    assert contact.endswith(";reg-id=1")
    assert "outbound" in (req.headers.get("Supported") or "")
    assert parse_message(bytes(req)).contacts[0].params["reg-id"] == "1"


def test_transition_table_rejects_impossible_steps() -> None:
    reg = _reg()
    with pytest.raises(InvalidStateError):
        reg.on_response(  # a 200 while UNREGISTERED: nothing was sent
            SipResponse(200), 0.0
        )
    assert (RegistrationState.UNREGISTERED, "ok") not in REGISTRATION_TRANSITIONS
