"""Calls over TLS between our own user agents: sips: URIs, certificate verification."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessioncore import CallFailed, SessionCoordinator, SessionManagerBuilder
from tests.certs import make_test_pki
from tests.integration.conftest import RecordingHandler, settle


async def _ua(handler: RecordingHandler, user: str, **tls: object) -> SessionCoordinator:
    return await (
        SessionManagerBuilder()
        .with_local_address(f"sip:{user}@127.0.0.1")
        .with_local_bind_addr("127.0.0.1", 0)
        .with_tls(**tls)  # type: ignore[arg-type]
        .with_handler(handler)
        .build()
    )


async def test_sips_call_with_verified_certificate(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path)
    uas_h, uac_h = RecordingHandler(), RecordingHandler()
    uas = await _ua(uas_h, "bob", cert=str(pki.cert_file), key=str(pki.key_file))
    uac = await _ua(uac_h, "alice", ca=str(pki.ca_file))
    try:
        tls = uas.dialogs.local_address("tls")
        session = await uac.make_call(f"sips:bob@127.0.0.1:{tls.port}")
        await uac.wait_for_answer(session.id, timeout=5)
        assert uas_h.incoming[0].headers["Via"].startswith("SIP/2.0/TLS")
        assert uac.dialogs._transport.stats()["tls_messages_sent"] >= 2
        await uac.terminate_session(session.id)
        await settle(uac, uas)
        assert uas_h.ended_count(uas_h.incoming[0].id) == 1
    finally:
        await uac.stop()
        await uas.stop()


async def test_untrusted_certificate_fails_the_call_with_a_clear_reason(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path)
    uas_h, uac_h = RecordingHandler(), RecordingHandler()
    uas = await _ua(uas_h, "bob", cert=str(pki.rogue_cert_file), key=str(pki.rogue_key_file))
    uac = await _ua(uac_h, "alice", ca=str(pki.ca_file))
    try:
        tls = uas.dialogs.local_address("tls")
        session = await uac.make_call(f"sip:bob@127.0.0.1:{tls.port};transport=tls")
        with pytest.raises(CallFailed) as info:
            await uac.wait_for_answer(session.id, timeout=10)
        assert info.value.status == 503
        assert "certificate" in (info.value.reason or "").lower()
        assert uas_h.incoming == []
        await settle(uac)
        assert uac_h.ended_count(session.id) == 1
    finally:
        await uac.stop()
        await uas.stop()
