"""The sans-I/O transaction layer, stepped with a fake clock (literal ``now`` values)."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessioncore.errors import InvalidArgumentError, InvalidStateError
from sessioncore.sip.address import Address
from sessioncore.sip.message import SipRequest, SipResponse, make_response, parse_message
from sessioncore.sip.transaction import (
    TRANSITIONS,
    AckReceived,
    AckTimeout,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TimerConfig,
    TransactionError,
    TransactionEvent,
    TransactionLayer,
    TransactionState,
    TransactionStateError,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailed,
    UnknownTransactionError,
)

UDP_PEER = Address("udp", "192.0.2.20", 5060)
TCP_PEER = Address("tcp", "192.0.2.20", 5060)
OTHER_PEER = Address("udp", "192.0.2.30", 5060)

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv1\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bKproxy\r\n"
    b"Route: <sip:p1.example.com;lr>\r\n"
    b"Route: <sip:p2.example.com;lr>\r\n"
    b"Max-Forwards: 69\r\n"
    b"From: Alice <sip:alice@example.com>;tag=ft1\r\n"
    b"To: Bob <sip:bob@example.com>\r\n"
    b"Call-ID: c1@192.0.2.10\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.10:5060>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)

OPTIONS = (
    b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKopt1\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:alice@example.com>;tag=ft2\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: c2@192.0.2.10\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

CANCEL = (
    b"CANCEL sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv1\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: Alice <sip:alice@example.com>;tag=ft1\r\n"
    b"To: Bob <sip:bob@example.com>\r\n"
    b"Call-ID: c1@192.0.2.10\r\n"
    b"CSeq: 7 CANCEL\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# The ACK for a 2xx: a new transaction, hence a new branch (RFC 3261 §13.2.2.4).
ACK_2XX = (
    b"ACK sip:alice@192.0.2.10:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKack2\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: Alice <sip:alice@example.com>;tag=ft1\r\n"
    b"To: Bob <sip:bob@example.com>;tag=tt1\r\n"
    b"Call-ID: c1@192.0.2.10\r\n"
    b"CSeq: 7 ACK\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# The ACK for a non-2xx final, as the client transaction builds it (same branch).
ACK_NON2XX = (
    b"ACK sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv1\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: Alice <sip:alice@example.com>;tag=ft1\r\n"
    b"To: Bob <sip:bob@example.com>;tag=tt1\r\n"
    b"Call-ID: c1@192.0.2.10\r\n"
    b"CSeq: 7 ACK\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def req(data: bytes, **replace: bytes) -> SipRequest:
    """Parse a request, after replacing byte fragments (``old=new`` pairs given as keys)."""
    for old, new in replace.items():
        data = data.replace(old.encode(), new)
    msg = parse_message(data)
    assert isinstance(msg, SipRequest)
    return msg


def over_wire(msg: SipRequest | SipResponse) -> SipRequest | SipResponse:
    """Serialize and re-parse, as if the message crossed the network."""
    parsed = parse_message(bytes(msg))
    assert isinstance(parsed, (SipRequest, SipResponse))
    return parsed


def events(layer: TransactionLayer) -> list[TransactionEvent]:
    out = []
    while (ev := layer.next_event()) is not None:
        out.append(ev)
    return out


def identify(evs: list[object]) -> list[object]:
    """Events with a request replaced by (type, key, Call-ID): after its final response a
    server transaction keeps only a slim copy of the request, so identity cannot be compared."""
    out: list[object] = []
    for ev in evs:
        request = getattr(ev, "request", None)
        if isinstance(request, SipRequest):
            out.append((type(ev), ev.key, request.call_id))  # type: ignore[attr-defined]
        else:
            out.append(ev)
    return out


def sent(layer: TransactionLayer) -> list[tuple[bytes, Address]]:
    return layer.datagrams_to_send()


def run_timers(layer: TransactionLayer, until: float) -> list[tuple[float, bytes]]:
    """Fire timers up to ``until`` the aioquic way; return ``(time, datagram)`` of each send."""
    out: list[tuple[float, bytes]] = []
    while (t := layer.get_timer()) is not None and t <= until:
        layer.handle_timer(t)
        out.extend((t, data) for data, _ in layer.datagrams_to_send())
    return out


def start_line(data: bytes) -> bytes:
    return data.split(b"\r\n", 1)[0]


# --- Address -----------------------------------------------------------------------------------


def test_address() -> None:
    assert str(Address("udp", "127.0.0.1", 5060)) == "udp:127.0.0.1:5060"
    assert str(Address("tls", "::1", 5061)) == "tls:[::1]:5061"
    assert not UDP_PEER.reliable
    assert TCP_PEER.reliable and Address("tls", "h", 1).reliable
    assert Address("udp", "h", 1) == Address("udp", "h", 1)
    assert len({Address("udp", "h", 1), Address("udp", "h", 1)}) == 1
    with pytest.raises(InvalidArgumentError):
        Address("sctp", "h", 1)
    with pytest.raises(InvalidArgumentError):
        Address("udp", "h", 70000)


# --- INVITE client -----------------------------------------------------------------------------


def test_invite_client_udp_timer_a_then_b() -> None:
    layer = TransactionLayer()
    invite = req(INVITE)
    key = layer.send_request(invite, UDP_PEER, now=0.0)
    [(data, dest)] = sent(layer)
    assert dest == UDP_PEER and data == bytes(invite)
    assert layer.state_of(key) is TransactionState.CALLING
    assert layer.get_timer() == 0.5

    resent = run_timers(layer, until=31.9)
    assert [t for t, _ in resent] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # doubling, no cap
    assert all(d == data for _, d in resent)
    assert events(layer) == []

    assert layer.get_timer() == 32.0  # Timer B = 64*T1
    layer.handle_timer(32.0)
    assert sent(layer) == []
    assert events(layer) == [TransactionTimeout(key, invite, "B"), TransactionTerminated(key)]
    assert layer.active_count() == 0 and len(layer) == 0
    assert layer.stats["retransmissions"] == 6 and layer.stats["timeouts"] == 1
    assert layer.stats["transactions"] == 1
    assert layer.get_timer() is None  # the pending Timer A was cancelled


def test_invite_client_tcp_no_retransmission_but_timeout() -> None:
    layer = TransactionLayer()
    invite = req(INVITE)
    key = layer.send_request(invite, TCP_PEER, now=10.0)
    assert len(sent(layer)) == 1
    assert layer.get_timer() == 42.0
    assert run_timers(layer, until=100.0) == []
    assert events(layer) == [TransactionTimeout(key, invite, "B"), TransactionTerminated(key)]
    assert layer.active_count() == 0


def test_invite_client_provisional_stops_retransmissions() -> None:
    layer = TransactionLayer()
    invite = req(INVITE)
    key = layer.send_request(invite, UDP_PEER, 0.0)
    sent(layer)
    ringing = make_response(invite, 180, to_tag="tt1")
    layer.receive(over_wire(ringing), UDP_PEER, 0.2)
    [ev] = events(layer)
    assert isinstance(ev, ResponseReceived) and ev.key == key and ev.response.status == 180
    assert ev.request is invite
    assert layer.state_of(key) is TransactionState.PROCEEDING
    assert layer.get_timer() is None  # neither A nor B in Proceeding (RFC 3261 §17.1.1.2)
    layer.receive(over_wire(make_response(invite, 183, to_tag="tt1")), UDP_PEER, 1.0)
    [ev] = events(layer)
    assert isinstance(ev, ResponseReceived) and ev.response.status == 183
    layer.terminate(key)
    assert events(layer) == [TransactionTerminated(key)]
    assert layer.active_count() == 0


def test_invite_client_timer_c_when_configured() -> None:
    layer = TransactionLayer(TimerConfig(timer_c=180.0))
    invite = req(INVITE)
    key = layer.send_request(invite, UDP_PEER, 0.0)
    layer.receive(over_wire(make_response(invite, 180, to_tag="tt1")), UDP_PEER, 1.0)
    assert layer.get_timer() == 181.0
    layer.receive(over_wire(make_response(invite, 180, to_tag="tt1")), UDP_PEER, 2.0)
    assert layer.get_timer() == 182.0  # re-armed by each provisional
    events(layer)
    layer.handle_timer(182.0)
    assert events(layer) == [TransactionTimeout(key, invite, "C"), TransactionTerminated(key)]


def test_invite_client_non_2xx_final_builds_ack() -> None:
    layer = TransactionLayer()
    invite = req(INVITE)
    key = layer.send_request(invite, UDP_PEER, 0.0)
    sent(layer)
    busy = make_response(invite, 486, to_tag="tt1")
    layer.receive(over_wire(busy), UDP_PEER, 0.3)
    [ev] = events(layer)
    assert isinstance(ev, ResponseReceived) and ev.response.status == 486
    assert layer.state_of(key) is TransactionState.COMPLETED

    [(ack_bytes, dest)] = sent(layer)
    assert dest == UDP_PEER
    ack = parse_message(ack_bytes)
    assert isinstance(ack, SipRequest)
    assert ack.method == "ACK" and ack.uri == "sip:bob@example.com"
    assert ack.headers.values("Via") == ["SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv1"]
    assert ack.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert ack.headers.get("Max-Forwards") == "70"
    assert ack.headers.get("From") == "Alice <sip:alice@example.com>;tag=ft1"
    assert ack.to.tag == "tt1"
    assert ack.headers.get("To") == "Bob <sip:bob@example.com>;tag=tt1"
    assert ack.call_id == "c1@192.0.2.10"
    assert (ack.cseq.seq, ack.cseq.method) == (7, "ACK")
    assert ack.headers.get("Content-Length") == "0" and ack.body == b""
    assert "Contact" not in ack.headers and "Content-Type" not in ack.headers

    # A retransmitted final is absorbed: the same ACK again, nothing for the TU.
    layer.receive(over_wire(busy), UDP_PEER, 1.0)
    assert sent(layer) == [(ack_bytes, UDP_PEER)]
    assert events(layer) == []

    assert layer.get_timer() == pytest.approx(32.3)  # Timer D
    assert run_timers(layer, until=100.0) == []  # no more INVITE retransmissions
    assert events(layer) == [TransactionTerminated(key)]
    assert layer.active_count() == 0


def test_invite_client_non_2xx_final_over_tcp_ends_at_once() -> None:
    layer = TransactionLayer()
    invite = req(INVITE, **{"SIP/2.0/UDP": b"SIP/2.0/TCP"})
    key = layer.send_request(invite, TCP_PEER, 0.0)
    sent(layer)
    layer.receive(over_wire(make_response(invite, 603, to_tag="tt1")), TCP_PEER, 0.1)
    assert len(sent(layer)) == 1  # the ACK
    [ev, end] = events(layer)
    assert isinstance(ev, ResponseReceived) and end == TransactionTerminated(key)
    assert layer.active_count() == 0
    assert layer.get_timer() is None


def test_invite_client_2xx_accepted_reports_retransmissions_and_forks() -> None:
    layer = TransactionLayer()
    invite = req(INVITE)
    key = layer.send_request(invite, UDP_PEER, 0.0)
    sent(layer)
    ok = over_wire(make_response(invite, 200, to_tag="tt1"))
    layer.receive(ok, UDP_PEER, 0.1)
    assert layer.state_of(key) is TransactionState.ACCEPTED
    assert sent(layer) == []  # the dialog layer sends the ACK for a 2xx
    [ev] = events(layer)
    assert isinstance(ev, ResponseReceived) and ev.response.status == 200

    layer.receive(ok, UDP_PEER, 0.6)  # retransmission: passed up so the ACK is re-sent
    fork = over_wire(make_response(invite, 200, to_tag="tt2"))
    layer.receive(fork, UDP_PEER, 0.7)  # another branch answered too
    layer.receive(over_wire(make_response(invite, 180, to_tag="tt3")), UDP_PEER, 0.8)
    layer.receive(over_wire(make_response(invite, 486, to_tag="tt4")), UDP_PEER, 0.9)
    evs = events(layer)
    assert [(type(e), e.response.to.tag) for e in evs if isinstance(e, ResponseReceived)] == [
        (ResponseReceived, "tt1"),
        (ResponseReceived, "tt2"),
    ]
    assert len(evs) == 2  # the late 180 and 486 were absorbed
    assert sent(layer) == []

    assert layer.get_timer() == pytest.approx(32.1)  # Timer M = 64*T1, no retransmissions
    assert run_timers(layer, until=100.0) == []
    assert events(layer) == [TransactionTerminated(key)]
    assert layer.active_count() == 0


def test_stray_response_is_dropped() -> None:
    layer = TransactionLayer()
    invite = req(INVITE)
    layer.receive(over_wire(make_response(invite, 200, to_tag="x")), UDP_PEER, 0.0)
    assert events(layer) == [] and sent(layer) == []
    assert layer.active_count() == 0


# --- non-INVITE client -------------------------------------------------------------------------


def test_non_invite_client_timer_e_capped_at_t2_then_f() -> None:
    layer = TransactionLayer()
    options = req(OPTIONS)
    key = layer.send_request(options, UDP_PEER, 0.0)
    sent(layer)
    resent = run_timers(layer, until=31.9)
    assert [t for t, _ in resent] == [
        0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5,
    ]  # fmt: skip
    assert layer.get_timer() == 32.0
    layer.handle_timer(32.0)
    assert events(layer) == [TransactionTimeout(key, options, "F"), TransactionTerminated(key)]
    assert layer.active_count() == 0 and layer.get_timer() is None


def test_non_invite_client_proceeding_retransmits_every_t2() -> None:
    layer = TransactionLayer()
    options = req(OPTIONS)
    key = layer.send_request(options, UDP_PEER, 0.0)
    sent(layer)
    layer.receive(over_wire(make_response(options, 100)), UDP_PEER, 0.2)
    assert layer.state_of(key) is TransactionState.PROCEEDING
    resent = run_timers(layer, until=13.0)
    assert [t for t, _ in resent] == [0.5, 4.5, 8.5, 12.5]
    layer.receive(over_wire(make_response(options, 200, to_tag="t")), UDP_PEER, 13.0)
    assert [type(e) for e in events(layer)] == [ResponseReceived, ResponseReceived]
    assert layer.state_of(key) is TransactionState.COMPLETED
    # Completed absorbs retransmitted responses; Timer K = T4 ends it.
    layer.receive(over_wire(make_response(options, 200, to_tag="t")), UDP_PEER, 14.0)
    assert events(layer) == [] and sent(layer) == []
    assert layer.get_timer() == 18.0
    assert run_timers(layer, until=100.0) == []
    assert events(layer) == [TransactionTerminated(key)]
    assert layer.active_count() == 0


def test_non_invite_client_over_tcp_ends_on_final() -> None:
    layer = TransactionLayer()
    options = req(OPTIONS)
    key = layer.send_request(options, TCP_PEER, 0.0)
    sent(layer)
    assert layer.get_timer() == 32.0  # only Timer F
    layer.receive(over_wire(make_response(options, 404, to_tag="t")), TCP_PEER, 1.0)
    [ev, end] = events(layer)
    assert isinstance(ev, ResponseReceived) and ev.response.status == 404
    assert end == TransactionTerminated(key)  # Timer K is 0 on reliable transports
    assert layer.active_count() == 0 and layer.get_timer() is None


def test_configurable_timers() -> None:
    layer = TransactionLayer(TimerConfig(t1=0.1, t2=0.4, t4=1.0))
    options = req(OPTIONS)
    key = layer.send_request(options, UDP_PEER, 0.0)
    sent(layer)
    resent = run_timers(layer, until=1.6)
    assert [t for t, _ in resent] == pytest.approx([0.1, 0.3, 0.7, 1.1, 1.5])
    layer.receive(over_wire(make_response(options, 200, to_tag="t")), UDP_PEER, 2.0)
    assert layer.get_timer() == pytest.approx(3.0)  # Timer K = T4
    run_timers(layer, until=10.0)
    assert events(layer)[-1] == TransactionTerminated(key)

    invite = req(INVITE)
    key = layer.send_request(invite, UDP_PEER, 0.0)
    sent(layer)
    resent = run_timers(layer, until=6.35)
    assert [t for t, _ in resent] == pytest.approx([0.1, 0.3, 0.7, 1.5, 3.1, 6.3])
    assert layer.get_timer() == pytest.approx(6.4)  # Timer B = 64*T1
    layer.handle_timer(6.4)
    assert events(layer)[0] == TransactionTimeout(key, invite, "B")

    overridden = TransactionLayer(TimerConfig(timer_b=5.0, timer_d=1.0))
    key = overridden.send_request(invite, TCP_PEER, 0.0)
    assert overridden.get_timer() == 5.0
    assert overridden.config.timer_d == 1.0


def test_timer_config_validation() -> None:
    with pytest.raises(InvalidArgumentError):
        TimerConfig(t1=0)
    with pytest.raises(InvalidArgumentError):
        TimerConfig(t1=1.0, t2=0.5)
    with pytest.raises(InvalidArgumentError):
        TimerConfig(timer_h=-1.0)


# --- INVITE server -----------------------------------------------------------------------------


def new_invite_server(
    layer: TransactionLayer, source: Address = UDP_PEER
) -> tuple[str, SipRequest]:
    layer.receive(req(INVITE), source, 0.0)
    [ev] = events(layer)
    assert isinstance(ev, RequestReceived) and ev.source == source
    assert sent(layer) == []  # the TU decides on 100 Trying
    return ev.key, ev.request


def test_invite_server_absorbs_retransmissions_and_resends_last_response() -> None:
    layer = TransactionLayer()
    key, invite = new_invite_server(layer)
    assert layer.state_of(key) is TransactionState.PROCEEDING

    layer.receive(req(INVITE), UDP_PEER, 0.1)  # before any response: absorbed silently
    assert events(layer) == [] and sent(layer) == []

    trying = make_response(invite, 100)
    layer.send_response(key, trying, 0.2)
    assert sent(layer) == [(bytes(trying), UDP_PEER)]
    ringing = make_response(invite, 180, to_tag="tt1")
    layer.send_response(key, ringing, 0.3)
    sent(layer)
    layer.receive(req(INVITE), UDP_PEER, 0.5)
    assert sent(layer) == [(bytes(ringing), UDP_PEER)]
    assert events(layer) == []
    assert layer.get_timer() is None  # no timers in Proceeding

    busy = make_response(invite, 486, to_tag="tt1")
    layer.send_response(key, busy, 1.0)
    sent(layer)
    layer.receive(req(INVITE), UDP_PEER, 1.2)
    assert sent(layer) == [(bytes(busy), UDP_PEER)]
    assert events(layer) == []


def test_invite_server_non_2xx_retransmits_until_ack_then_confirmed_then_timer_i() -> None:
    layer = TransactionLayer()
    key, invite = new_invite_server(layer)
    busy = make_response(invite, 486, to_tag="tt1")
    layer.send_response(key, busy, 10.0)
    assert sent(layer) == [(bytes(busy), UDP_PEER)]
    assert layer.state_of(key) is TransactionState.COMPLETED
    resent = run_timers(layer, until=18.0)
    assert [t for t, _ in resent] == [10.5, 11.5, 13.5, 17.5]  # Timer G, capped at T2
    assert all(d == bytes(busy) for _, d in resent)

    layer.receive(req(ACK_NON2XX), UDP_PEER, 18.0)
    assert layer.state_of(key) is TransactionState.CONFIRMED
    assert events(layer) == []  # absorbed by the transaction
    layer.receive(req(ACK_NON2XX), UDP_PEER, 18.5)  # retransmitted ACK: absorbed too
    layer.receive(req(INVITE), UDP_PEER, 18.6)  # late INVITE retransmission: absorbed
    assert events(layer) == [] and sent(layer) == []

    assert layer.get_timer() == 23.0  # Timer I = T4; G and H cancelled
    assert run_timers(layer, until=100.0) == []
    assert events(layer) == [TransactionTerminated(key)]
    assert layer.active_count() == 0


def test_invite_server_timer_h_without_ack() -> None:
    layer = TransactionLayer()
    key, invite = new_invite_server(layer)
    layer.send_response(key, make_response(invite, 404, to_tag="tt1"), 0.0)
    sent(layer)
    resent = run_timers(layer, until=31.9)
    assert [t for t, _ in resent] == [
        0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5,
    ]  # fmt: skip
    layer.handle_timer(32.0)
    timeout, terminated = events(layer)
    assert terminated == TransactionTerminated(key)
    assert isinstance(timeout, TransactionTimeout)
    assert (timeout.key, timeout.timer) == (key, "H")
    # after its final response the transaction keeps only an identifying copy of the request
    assert timeout.request.call_id == invite.call_id and timeout.request.body == b""
    assert timeout.request.cseq == invite.cseq
    assert layer.active_count() == 0 and layer.get_timer() is None


def test_invite_server_non_2xx_over_tcp() -> None:
    layer = TransactionLayer()
    key, invite = new_invite_server(layer, TCP_PEER)
    layer.send_response(key, make_response(invite, 486, to_tag="tt1"), 0.0)
    assert len(sent(layer)) == 1
    assert layer.get_timer() == 32.0  # no Timer G, Timer H still runs
    layer.receive(req(ACK_NON2XX), TCP_PEER, 0.1)
    assert events(layer) == [TransactionTerminated(key)]  # Timer I is 0 on reliable
    assert layer.active_count() == 0 and layer.get_timer() is None


def test_invite_server_2xx_retransmitted_until_ack_received() -> None:
    layer = TransactionLayer()
    key, invite = new_invite_server(layer)
    ok = make_response(invite, 200, to_tag="tt1")
    layer.send_response(key, ok, 0.0)
    assert sent(layer) == [(bytes(ok), UDP_PEER)]
    assert layer.state_of(key) is TransactionState.ACCEPTED
    resent = run_timers(layer, until=8.0)
    assert [t for t, _ in resent] == [0.5, 1.5, 3.5, 7.5]
    assert all(d == bytes(ok) for _, d in resent)

    layer.receive(req(INVITE), UDP_PEER, 8.0)  # retransmitted INVITE: absorbed (RFC 6026)
    assert sent(layer) == [] and events(layer) == []

    layer.receive(req(ACK_2XX), UDP_PEER, 8.1)  # the ACK for a 2xx matches no transaction
    [ack_ev] = events(layer)
    assert isinstance(ack_ev, AckReceived) and ack_ev.key is None
    assert ack_ev.source == UDP_PEER and ack_ev.request.method == "ACK"
    layer.ack_received(key)  # what the dialog layer does
    assert run_timers(layer, until=31.9) == []  # retransmissions stopped
    assert layer.state_of(key) is TransactionState.ACCEPTED
    layer.handle_timer(32.0)  # Timer L
    assert events(layer) == [TransactionTerminated(key)]  # no AckTimeout
    assert layer.active_count() == 0
    layer.ack_received(key)  # late: ignored


def test_invite_server_2xx_without_ack_times_out_with_timer_l() -> None:
    layer = TransactionLayer()
    key, invite = new_invite_server(layer)
    layer.send_response(key, make_response(invite, 200, to_tag="tt1"), 0.0)
    sent(layer)
    resent = run_timers(layer, until=31.9)
    assert [t for t, _ in resent] == [
        0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5,
    ]  # fmt: skip
    layer.handle_timer(32.0)
    assert identify(events(layer)) == [
        (AckTimeout, key, invite.call_id),
        TransactionTerminated(key),
    ]
    assert layer.active_count() == 0 and layer.get_timer() is None


def test_invite_server_2xx_over_tcp_not_retransmitted() -> None:
    layer = TransactionLayer()
    key, invite = new_invite_server(layer, TCP_PEER)
    layer.send_response(key, make_response(invite, 200, to_tag="tt1"), 0.0)
    assert len(sent(layer)) == 1
    assert run_timers(layer, until=100.0) == []
    assert identify(events(layer)) == [
        (AckTimeout, key, invite.call_id),
        TransactionTerminated(key),
    ]


def test_invite_server_state_errors() -> None:
    layer = TransactionLayer()
    key, invite = new_invite_server(layer)
    with pytest.raises(TransactionStateError):
        layer.ack_received(key)  # no 2xx sent yet
    layer.send_response(key, make_response(invite, 486, to_tag="tt1"), 0.0)
    with pytest.raises(TransactionStateError) as info:
        layer.send_response(key, make_response(invite, 180, to_tag="tt1"), 0.1)
    assert isinstance(info.value, InvalidStateError)
    with pytest.raises(TransactionStateError):
        layer.send_response(key, make_response(invite, 200, to_tag="tt1"), 0.1)
    with pytest.raises(UnknownTransactionError):
        layer.send_response("s:nope", make_response(invite, 200), 0.1)
    client_key = layer.send_request(req(OPTIONS), UDP_PEER, 0.0)
    with pytest.raises(TransactionStateError):
        layer.send_response(client_key, make_response(invite, 200), 0.1)


# --- non-INVITE server -------------------------------------------------------------------------


def test_non_invite_server_lifecycle() -> None:
    layer = TransactionLayer()
    layer.receive(req(OPTIONS), UDP_PEER, 0.0)
    [ev] = events(layer)
    assert isinstance(ev, RequestReceived)
    key = ev.key
    assert layer.state_of(key) is TransactionState.TRYING
    layer.receive(req(OPTIONS), UDP_PEER, 0.1)  # Trying: absorbed
    assert sent(layer) == [] and events(layer) == []
    ok = make_response(ev.request, 200, to_tag="t")
    layer.send_response(key, ok, 0.2)
    assert sent(layer) == [(bytes(ok), UDP_PEER)]
    layer.receive(req(OPTIONS), UDP_PEER, 0.3)
    assert sent(layer) == [(bytes(ok), UDP_PEER)]  # Completed: re-send the final
    assert events(layer) == []
    assert layer.get_timer() == pytest.approx(32.2)  # Timer J = 64*T1
    layer.handle_timer(32.2)
    assert events(layer) == [TransactionTerminated(key)]
    assert layer.active_count() == 0


def test_non_invite_server_over_tcp_ends_on_final() -> None:
    layer = TransactionLayer()
    layer.receive(req(OPTIONS), TCP_PEER, 0.0)
    [ev] = events(layer)
    assert isinstance(ev, RequestReceived)
    layer.send_response(ev.key, make_response(ev.request, 200, to_tag="t"), 0.0)
    assert events(layer) == [TransactionTerminated(ev.key)]
    assert layer.active_count() == 0


# --- CANCEL ------------------------------------------------------------------------------------


def test_cancel_matches_invite_server_transaction() -> None:
    layer = TransactionLayer()
    invite_key, invite = new_invite_server(layer)
    layer.send_response(invite_key, make_response(invite, 180, to_tag="tt1"), 0.1)
    sent(layer)
    layer.receive(req(CANCEL), UDP_PEER, 1.0)
    [ev] = events(layer)
    assert isinstance(ev, CancelReceived)
    assert ev.invite_key == invite_key and ev.key != invite_key
    assert layer.state_of(ev.key) is TransactionState.TRYING
    layer.send_response(ev.key, make_response(ev.request, 200, to_tag="tt1"), 1.0)
    layer.send_response(invite_key, make_response(invite, 487, to_tag="tt1"), 1.0)
    assert [start_line(d) for d, _ in sent(layer)] == [
        b"SIP/2.0 200 OK",
        b"SIP/2.0 487 Request Terminated",
    ]
    layer.receive(req(ACK_NON2XX), UDP_PEER, 1.1)
    run_timers(layer, until=100.0)
    assert sorted(type(e).__name__ for e in events(layer)) == ["TransactionTerminated"] * 2
    assert layer.active_count() == 0


def test_cancel_without_invite() -> None:
    layer = TransactionLayer()
    layer.receive(req(CANCEL), UDP_PEER, 0.0)
    [ev] = events(layer)
    assert isinstance(ev, CancelReceived) and ev.invite_key is None
    layer.send_response(ev.key, make_response(ev.request, 481, to_tag="x"), 0.0)
    run_timers(layer, until=100.0)
    assert events(layer) == [TransactionTerminated(ev.key)]
    assert layer.active_count() == 0


def test_cancel_from_another_sent_by_does_not_match() -> None:
    layer = TransactionLayer()
    new_invite_server(layer)
    layer.receive(req(CANCEL, **{"192.0.2.10:5060;": b"192.0.2.99:5060;"}), UDP_PEER, 0.0)
    [ev] = events(layer)
    assert isinstance(ev, CancelReceived) and ev.invite_key is None


def test_sending_cancel_is_its_own_client_transaction() -> None:
    layer = TransactionLayer()
    invite = req(INVITE)
    invite_key = layer.send_request(invite, UDP_PEER, 0.0)
    layer.receive(over_wire(make_response(invite, 180, to_tag="tt1")), UDP_PEER, 0.1)
    cancel = req(CANCEL)
    cancel_key = layer.send_request(cancel, UDP_PEER, 1.0)
    assert cancel_key != invite_key
    events(layer)
    layer.receive(over_wire(make_response(cancel, 200, to_tag="tt1")), UDP_PEER, 1.1)
    layer.receive(over_wire(make_response(invite, 487, to_tag="tt1")), UDP_PEER, 1.2)
    evs = [e for e in events(layer) if isinstance(e, ResponseReceived)]
    assert [(e.key, e.response.status) for e in evs] == [(cancel_key, 200), (invite_key, 487)]


# --- RFC 2543 fallback -------------------------------------------------------------------------


def test_rfc2543_matching_without_magic_cookie() -> None:
    old = {"branch=z9hG4bKinv1": b"branch=1234"}
    layer = TransactionLayer()
    layer.receive(req(INVITE, **old), UDP_PEER, 0.0)
    [ev] = events(layer)
    assert isinstance(ev, RequestReceived)
    key, invite = ev.key, ev.request
    layer.send_response(key, make_response(invite, 180, to_tag="tt1"), 0.1)
    sent(layer)

    layer.receive(req(INVITE, **old), UDP_PEER, 0.5)  # retransmission matched without cookie
    assert [start_line(d) for d, _ in sent(layer)] == [b"SIP/2.0 180 Ringing"]
    assert events(layer) == []

    layer.receive(req(CANCEL, **old), UDP_PEER, 0.6)
    [cancel_ev] = events(layer)
    assert isinstance(cancel_ev, CancelReceived) and cancel_ev.invite_key == key

    layer.send_response(key, make_response(invite, 487, to_tag="tt1"), 0.7)
    sent(layer)
    # An ACK with another To tag is not for our response: passed up, transaction unchanged.
    layer.receive(req(ACK_NON2XX, **old, **{"tag=tt1": b"tag=zz9"}), UDP_PEER, 0.8)
    [stray] = events(layer)
    assert isinstance(stray, AckReceived) and stray.key is None
    assert layer.state_of(key) is TransactionState.COMPLETED
    layer.receive(req(ACK_NON2XX, **old), UDP_PEER, 0.9)
    assert layer.state_of(key) is TransactionState.CONFIRMED
    assert events(layer) == []


def test_rfc2543_matching_without_branch() -> None:
    no_branch = {";branch=z9hG4bKinv1": b""}
    layer = TransactionLayer()
    layer.receive(req(INVITE, **no_branch), UDP_PEER, 0.0)
    [ev] = events(layer)
    assert isinstance(ev, RequestReceived)
    layer.send_response(ev.key, make_response(ev.request, 100), 0.0)
    sent(layer)
    layer.receive(req(INVITE, **no_branch), UDP_PEER, 0.5)
    assert [start_line(d) for d, _ in sent(layer)] == [b"SIP/2.0 100 Trying"]
    # A new CSeq is a new transaction.
    layer.receive(req(INVITE, **no_branch, **{"CSeq: 7": b"CSeq: 8"}), UDP_PEER, 0.6)
    [ev2] = events(layer)
    assert isinstance(ev2, RequestReceived) and ev2.key != ev.key
    assert layer.active_count() == 2


# --- ACK for 2xx in Accepted, transport errors, misc ---------------------------------------------


def test_ack_matching_accepted_server_transaction_is_passed_up() -> None:
    # An ACK reusing the INVITE's branch (some peers do) reaches the TU with the key.
    layer = TransactionLayer()
    key, invite = new_invite_server(layer)
    layer.send_response(key, make_response(invite, 200, to_tag="tt1"), 0.0)
    sent(layer)
    layer.receive(req(ACK_NON2XX), UDP_PEER, 0.1)
    [ev] = events(layer)
    assert isinstance(ev, AckReceived) and ev.key == key


def test_transport_error_fails_transactions_to_that_peer() -> None:
    layer = TransactionLayer()
    invite = req(INVITE)
    options = req(OPTIONS)
    k1 = layer.send_request(invite, UDP_PEER, 0.0)
    k2 = layer.send_request(options, UDP_PEER, 0.0)
    k3 = layer.send_request(req(OPTIONS, **{"opt1": b"opt2"}), OTHER_PEER, 0.0)
    layer.transport_error(UDP_PEER, 0.1)
    assert events(layer) == [
        TransportFailed(k1, invite),
        TransactionTerminated(k1),
        TransportFailed(k2, options),
        TransactionTerminated(k2),
    ]
    assert layer.active_count() == 1 and layer.state_of(k3) is TransactionState.TRYING
    layer.transport_error_for(k3)
    assert [type(e) for e in events(layer)] == [TransportFailed, TransactionTerminated]
    assert layer.active_count() == 0
    assert layer.get_timer() is None
    layer.transport_error_for(k3)  # unknown now: ignored
    assert events(layer) == []


def test_transport_error_for_server_transaction() -> None:
    layer = TransactionLayer()
    key, invite = new_invite_server(layer, TCP_PEER)
    layer.send_response(key, make_response(invite, 200, to_tag="tt1"), 0.0)
    layer.transport_error(TCP_PEER, 0.1)
    assert identify(events(layer)) == [
        (TransportFailed, key, invite.call_id),
        TransactionTerminated(key),
    ]
    assert layer.active_count() == 0


def test_transport_error_ignored_once_final_received() -> None:
    layer = TransactionLayer()
    invite = req(INVITE)
    key = layer.send_request(invite, UDP_PEER, 0.0)
    layer.receive(over_wire(make_response(invite, 200, to_tag="tt1")), UDP_PEER, 0.1)
    events(layer)
    layer.transport_error(UDP_PEER, 0.2)
    assert events(layer) == []
    assert layer.state_of(key) is TransactionState.ACCEPTED


def test_send_request_rejects_bad_input() -> None:
    layer = TransactionLayer()
    with pytest.raises(InvalidArgumentError):
        layer.send_request(req(ACK_2XX), UDP_PEER, 0.0)
    with pytest.raises(InvalidArgumentError):
        layer.send_request(req(OPTIONS, **{";branch=z9hG4bKopt1": b""}), UDP_PEER, 0.0)
    layer.send_request(req(OPTIONS), UDP_PEER, 0.0)
    with pytest.raises(TransactionError):
        layer.send_request(req(OPTIONS), UDP_PEER, 0.0)


def test_send_stateless() -> None:
    layer = TransactionLayer()
    ack = req(ACK_2XX)
    layer.send_stateless(ack, UDP_PEER)
    assert sent(layer) == [(bytes(ack), UDP_PEER)]
    assert layer.active_count() == 0 and events(layer) == []


def test_unparseable_via_is_dropped() -> None:
    layer = TransactionLayer()
    bad = parse_message(OPTIONS.replace(b"SIP/2.0/UDP 192.0.2.10", b"bogus"), validate=False)
    layer.receive(bad, UDP_PEER, 0.0)
    assert events(layer) == [] and layer.active_count() == 0


def test_transitions_are_logged_with_branch(caplog: pytest.LogCaptureFixture) -> None:
    layer = TransactionLayer()
    invite = req(INVITE)
    with caplog.at_level(logging.DEBUG, logger="sessioncore.sip.transaction"):
        layer.send_request(invite, UDP_PEER, 0.0)
        layer.receive(over_wire(make_response(invite, 180, to_tag="t")), UDP_PEER, 0.1)
    assert any(
        r.getMessage().startswith("z9hG4bKinv1: INVITE client Calling -> Proceeding on 1xx")
        for r in caplog.records
    )


def test_transition_tables_are_consistent() -> None:
    for table in TRANSITIONS.values():
        for (state, event), new in table.items():
            assert isinstance(state, TransactionState) and isinstance(new, TransactionState)
            assert state is not TransactionState.TERMINATED
            assert isinstance(event, str)


def test_many_calls_leave_nothing_behind() -> None:
    client = TransactionLayer()
    server = TransactionLayer()
    for i in range(200):
        invite = req(INVITE, **{"inv1": f"call{i}".encode(), "c1@": f"c{i}@".encode()})
        ckey = client.send_request(invite, UDP_PEER, 0.0)
        for data, _ in client.datagrams_to_send():
            server.receive(parse_message(data), UDP_PEER, 0.0)
        ev = server.next_event()
        assert isinstance(ev, RequestReceived)
        server.send_response(ev.key, make_response(ev.request, 486, to_tag="x"), 0.0)
        for data, _ in server.datagrams_to_send():
            client.receive(parse_message(data), UDP_PEER, 0.0)
        for data, _ in client.datagrams_to_send():  # the ACK
            server.receive(parse_message(data), UDP_PEER, 0.0)
        assert client.state_of(ckey) is TransactionState.COMPLETED
        assert server.state_of(ev.key) is TransactionState.CONFIRMED
    for layer in (client, server):
        run_timers(layer, until=1000.0)
        assert layer.active_count() == 0
        assert layer.get_timer() is None
        assert len(layer._heap) == 0


# --- property: whatever happens, everything ends and nothing leaks ------------------------------

_SERVER_ACTIONS = [
    "invite", "cancel", "ack", "ack2xx", "100", "180", "200", "486", "ack_received",
    "tick", "long_tick", "transport_error", "options", "options_200",
]  # fmt: skip
_CLIENT_ACTIONS = [
    "send_invite", "send_options", "r100", "r180", "r200", "r200_fork", "r486", "o200",
    "tick", "long_tick", "transport_error", "terminate",
]  # fmt: skip


@given(
    st.lists(st.sampled_from(_SERVER_ACTIONS), max_size=30),
    st.sampled_from([UDP_PEER, TCP_PEER]),
)
@settings(max_examples=300, deadline=None)
def test_server_side_random_sequences_never_leak(actions: list[str], peer: Address) -> None:
    layer = TransactionLayer()
    now = 0.0
    invite = req(INVITE)
    options = req(OPTIONS)
    invite_key: str | None = None
    options_key: str | None = None
    seen: set[str] = set()
    for action in actions:
        try:
            if action == "invite":
                layer.receive(req(INVITE), peer, now)
            elif action == "cancel":
                layer.receive(req(CANCEL), peer, now)
            elif action == "ack":
                layer.receive(req(ACK_NON2XX), peer, now)
            elif action == "ack2xx":
                layer.receive(req(ACK_2XX), peer, now)
            elif action == "options":
                layer.receive(req(OPTIONS), peer, now)
            elif action in ("100", "180", "200", "486") and invite_key is not None:
                resp = make_response(invite, int(action), to_tag="tt1")
                layer.send_response(invite_key, resp, now)
            elif action == "options_200" and options_key is not None:
                layer.send_response(options_key, make_response(options, 200, to_tag="t"), now)
            elif action == "ack_received" and invite_key is not None:
                layer.ack_received(invite_key)
            elif action == "tick":
                now += 0.7
                layer.handle_timer(now)
            elif action == "long_tick":
                now += 20.0
                layer.handle_timer(now)
            elif action == "transport_error":
                layer.transport_error(peer, now)
        except (TransactionStateError, UnknownTransactionError):
            pass
        for ev in events(layer):
            if isinstance(ev, CancelReceived):
                seen.add(ev.key)
            if isinstance(ev, RequestReceived):
                seen.add(ev.key)
                if ev.request.method == "INVITE":
                    invite_key = ev.key
                else:
                    options_key = ev.key
        layer.datagrams_to_send()
    while (t := layer.get_timer()) is not None:
        layer.handle_timer(t)
    waiting = {TransactionState.TRYING, TransactionState.PROCEEDING}
    for key in seen:
        state = layer.state_of(key)
        assert state is None or state in waiting  # only what waits for the TU's answer is left
        layer.terminate(key)
    assert layer.active_count() == 0
    assert layer.get_timer() is None and len(layer._heap) == 0


@given(
    st.lists(st.sampled_from(_CLIENT_ACTIONS), max_size=30),
    st.sampled_from([UDP_PEER, TCP_PEER]),
)
@settings(max_examples=300, deadline=None)
def test_client_side_random_sequences_never_leak(actions: list[str], peer: Address) -> None:
    layer = TransactionLayer()
    now = 0.0
    invite = req(INVITE)
    options = req(OPTIONS)
    responses = {
        "r100": make_response(invite, 100),
        "r180": make_response(invite, 180, to_tag="a"),
        "r200": make_response(invite, 200, to_tag="a"),
        "r200_fork": make_response(invite, 200, to_tag="b"),
        "r486": make_response(invite, 486, to_tag="a"),
        "o200": make_response(options, 200, to_tag="a"),
    }
    keys: list[str] = []
    for action in actions:
        try:
            if action == "send_invite":
                keys.append(layer.send_request(invite, peer, now))
            elif action == "send_options":
                keys.append(layer.send_request(options, peer, now))
            elif action in responses:
                layer.receive(over_wire(responses[action]), peer, now)
            elif action == "tick":
                now += 0.7
                layer.handle_timer(now)
            elif action == "long_tick":
                now += 20.0
                layer.handle_timer(now)
            elif action == "transport_error":
                layer.transport_error(peer, now)
            elif action == "terminate" and keys:
                layer.terminate(keys[-1])
        except TransactionError:
            pass  # duplicate send_request while the first is alive
        terminated = [e.key for e in events(layer) if isinstance(e, TransactionTerminated)]
        for key in terminated:
            assert layer.state_of(key) is None
        layer.datagrams_to_send()
    while (t := layer.get_timer()) is not None:
        layer.handle_timer(t)
    for key in keys:
        # Only an INVITE left in Proceeding may remain: it waits for the TU (no Timer C).
        assert layer.state_of(key) in (None, TransactionState.PROCEEDING)
        layer.terminate(key)
    assert layer.active_count() == 0
    assert layer.get_timer() is None and len(layer._heap) == 0
