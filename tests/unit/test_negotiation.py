"""RFC 3264 offer/answer for audio."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessioncore.errors import InvalidArgumentError, SdpError
from sessioncore.media.negotiation import (
    CODECS,
    NegotiatedMedia,
    build_answer,
    build_offer,
    bump_version,
    is_hold,
    process_answer,
    with_direction,
)
from sessioncore.media.sdp import SessionDescription


def crlf(*lines: str) -> str:
    return "".join(line + "\r\n" for line in lines)


def parse(*lines: str) -> SessionDescription:
    return SessionDescription.parse(crlf(*lines))


HEAD = ["v=0", "o=peer 100 200 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0"]

SIPP_UAC = parse(
    "v=0",
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 6000 RTP/AVP 0",
    "a=rtpmap:0 PCMU/8000",
)

BARESIP = parse(
    "v=0",
    "o=- 1953312548 2716371612 IN IP4 192.168.1.10",
    "s=-",
    "c=IN IP4 192.168.1.10",
    "t=0 0",
    "a=tool:baresip 1.0.0",
    "m=audio 10372 RTP/AVP 0 8 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=ptime:20",
    "a=sendrecv",
    "a=rtcp-mux",
)

LINPHONE = parse(
    "v=0",
    "o=alice 3421 1234 IN IP4 10.0.0.5",
    "s=Talk",
    "c=IN IP4 10.0.0.5",
    "t=0 0",
    "m=audio 7078 RTP/AVP 96 97 98 8 0 18 101 99 100",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 useinbandfec=1",
    "a=rtpmap:97 speex/16000",
    "a=rtpmap:98 speex/8000",
    "a=fmtp:18 annexb=yes",
    "a=rtpmap:101 telephone-event/48000",
    "a=rtpmap:99 telephone-event/16000",
    "a=rtpmap:100 telephone-event/8000",
    "a=ptime:30",
    "a=rtcp:7080",
    "m=video 9078 RTP/AVP 96",
    "a=rtpmap:96 VP8/90000",
)


def answer_of(offer: SessionDescription, **kwargs: object) -> tuple[str, NegotiatedMedia]:
    answer, media = build_answer(offer, "203.0.113.5", 30000, session_id=9, **kwargs)  # type: ignore[arg-type]
    text = str(answer)
    # what we send parses back and satisfies the offer from the offerer's point of view
    back = SessionDescription.parse(text)
    assert back == answer
    assert len(back.media) == len(offer.media)
    return text, media


# --- build_offer -------------------------------------------------------------------------------


def test_default_offer() -> None:
    offer = build_offer("198.51.100.1", 10000, session_id=42)
    assert str(offer) == crlf(
        "v=0",
        "o=sessioncore 42 0 IN IP4 198.51.100.1",
        "s=-",
        "c=IN IP4 198.51.100.1",
        "t=0 0",
        "m=audio 10000 RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    )


def test_offer_options_and_ipv6() -> None:
    offer = build_offer(
        "2001:db8::1",
        10002,
        codecs=("pcma",),
        dtmf=False,
        direction="sendonly",
        ptime=30,
        session_id=5,
        session_version=3,
        username="alice",
    )
    assert str(offer) == crlf(
        "v=0",
        "o=alice 5 3 IN IP6 2001:db8::1",
        "s=-",
        "c=IN IP6 2001:db8::1",
        "t=0 0",
        "m=audio 10002 RTP/AVP 8",
        "a=rtpmap:8 PCMA/8000",
        "a=ptime:30",
        "a=sendonly",
    )


def test_offer_random_session_id() -> None:
    a = build_offer("10.0.0.1", 4000)
    b = build_offer("10.0.0.1", 4000)
    assert a.origin.session_id.isdigit()
    assert a.origin.session_id != b.origin.session_id


def test_offer_custom_dtmf_pt() -> None:
    offer = build_offer("10.0.0.1", 4000, dtmf_pt=96, session_id=1)
    assert offer.media[0].formats == ["0", "8", "96"]
    assert offer.media[0].get_fmtp(96) == "0-16"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"local_ip": "not-an-ip"},
        {"rtp_port": 0},
        {"rtp_port": 70000},
        {"rtp_port": True},
        {"codecs": ()},
        {"codecs": ("opus",)},
        {"codecs": "PCMU"},
        {"codecs": ("telephone-event",)},
        {"direction": "both"},
        {"ptime": 0},
        {"dtmf_pt": 8},
        {"session_version": -1},
        {"username": "two words"},
    ],
)
def test_offer_bad_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"local_ip": "10.0.0.1", "rtp_port": 4000} | kwargs
    with pytest.raises(InvalidArgumentError):
        build_offer(**args)  # type: ignore[arg-type]


def test_codec_table() -> None:
    assert (CODECS["PCMU"].payload_type, CODECS["PCMU"].clock_rate) == (0, 8000)
    assert (CODECS["PCMA"].payload_type, CODECS["PCMA"].clock_rate) == (8, 8000)
    te = CODECS["telephone-event"]
    assert (te.payload_type, te.dynamic, te.fmtp) == (101, True, "0-16")


# --- build_answer: real-world offers -----------------------------------------------------------


def test_answer_sipp_uac() -> None:
    text, media = answer_of(SIPP_UAC)
    assert text == crlf(
        "v=0",
        "o=sessioncore 9 0 IN IP4 203.0.113.5",
        "s=-",
        "c=IN IP4 203.0.113.5",
        "t=0 0",
        "m=audio 30000 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        "a=ptime:20",
        "a=sendrecv",
    )
    assert media == NegotiatedMedia(
        remote_address="127.0.0.1",
        remote_rtp_port=6000,
        remote_rtcp_port=6001,
        payload_type=0,
        codec="PCMU",
        clock_rate=8000,
        dtmf_payload_type=None,
        direction="sendrecv",
        ptime=20,
        rejected=False,
    )
    assert media.sends and media.receives


def test_answer_baresip() -> None:
    text, media = answer_of(BARESIP)
    assert "m=audio 30000 RTP/AVP 0 101\r\n" in text
    assert "a=fmtp:101 0-15\r\n" in text  # events both sides support
    assert "rtcp-mux" not in text  # not supported: RTCP stays on port + 1
    assert media.codec == "PCMU"
    assert media.dtmf_payload_type == 101
    assert media.remote_rtcp_port == 10373


def test_answer_linphone_skips_unsupported_codecs() -> None:
    text, media = answer_of(LINPHONE)
    answer = SessionDescription.parse(text)
    audio, video = answer.media
    assert audio.formats == ["8", "100"]  # PCMA first in the offer; te/8000 is pt 100
    assert audio.rtpmaps[100].encoding == "telephone-event"
    assert audio.get_fmtp(100) == "0-15"
    assert (video.media, video.port, video.formats) == ("video", 0, ["96"])
    assert (media.codec, media.payload_type, media.dtmf_payload_type) == ("PCMA", 8, 100)
    assert media.ptime == 30
    assert media.remote_rtcp_port == 7080  # a=rtcp


def test_answer_respects_offerer_order_not_ours() -> None:
    offer = parse(*HEAD, "m=audio 5000 RTP/AVP 8 0")
    _, media = answer_of(offer, codecs=("PCMU", "PCMA"))
    assert media.codec == "PCMA"


def test_answer_restricted_codecs() -> None:
    _, media = answer_of(BARESIP, codecs=("PCMA",))
    assert (media.codec, media.payload_type) == ("PCMA", 8)


def test_dynamic_payload_types_match_by_name() -> None:
    offer = parse(
        *HEAD,
        "m=audio 5000 RTP/AVP 97 96",
        "a=rtpmap:97 pcmu/8000",
        "a=rtpmap:96 TELEPHONE-EVENT/8000",
        "a=fmtp:96 0-16",
    )
    text, media = answer_of(offer)
    assert (media.payload_type, media.codec, media.dtmf_payload_type) == (97, "PCMU", 96)
    assert "m=audio 30000 RTP/AVP 97 96\r\n" in text
    assert "a=rtpmap:97 PCMU/8000\r\n" in text
    assert "a=fmtp:96 0-16\r\n" in text


def test_static_number_with_other_codec_is_not_pcmu() -> None:
    offer = parse(*HEAD, "m=audio 5000 RTP/AVP 96 8", "a=rtpmap:96 PCMU/16000")
    _, media = answer_of(offer)
    assert media.codec == "PCMA"


def test_stereo_is_not_matched() -> None:
    offer = parse(*HEAD, "m=audio 5000 RTP/AVP 96 0", "a=rtpmap:96 PCMA/8000/2")
    _, media = answer_of(offer)
    assert media.codec == "PCMU"


def test_dtmf_disabled_or_not_offered() -> None:
    text, media = answer_of(BARESIP, dtmf=False)
    assert media.dtmf_payload_type is None
    assert "telephone-event" not in text
    offer = parse(*HEAD, "m=audio 5000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/48000")
    _, media = answer_of(offer)
    assert media.dtmf_payload_type is None


@pytest.mark.parametrize(
    ("fmtp", "expected"),
    [
        (None, "0-15"),
        ("0-15", "0-15"),
        ("0-16,32,36", "0-16"),
        ("0-11,16", "0-11,16"),
        ("5", "5"),
        ("junk", "0-15"),
    ],
)
def test_dtmf_events_intersection(fmtp: str | None, expected: str) -> None:
    lines = [*HEAD, "m=audio 5000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000"]
    if fmtp is not None:
        lines.append(f"a=fmtp:101 {fmtp}")
    text, media = answer_of(parse(*lines))
    assert media.dtmf_payload_type == 101
    assert f"a=fmtp:101 {expected}\r\n" in text


def test_dtmf_without_common_events_is_dropped() -> None:
    offer = parse(
        *HEAD,
        "m=audio 5000 RTP/AVP 0 101",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 32-40",
    )
    text, media = answer_of(offer)
    assert media.dtmf_payload_type is None
    assert "101" not in text.split("m=audio")[1]


# --- build_answer: directions and hold ---------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "wanted", "answered"),
    [
        ("sendrecv", "sendrecv", "sendrecv"),
        ("sendonly", "sendrecv", "recvonly"),
        ("recvonly", "sendrecv", "sendonly"),
        ("inactive", "sendrecv", "inactive"),
        ("sendrecv", "sendonly", "sendonly"),
        ("sendrecv", "recvonly", "recvonly"),
        ("sendrecv", "inactive", "inactive"),
        ("sendonly", "sendonly", "inactive"),
        ("recvonly", "recvonly", "inactive"),
        ("sendonly", "recvonly", "recvonly"),
    ],
)
def test_answer_direction(offered: str, wanted: str, answered: str) -> None:
    offer = parse(*HEAD, "m=audio 5000 RTP/AVP 0", f"a={offered}")
    text, media = answer_of(offer, direction=wanted)
    assert media.direction == answered
    assert f"a={answered}\r\n" in text


def test_session_level_direction_applies() -> None:
    offer = parse(*HEAD, "a=sendonly", "m=audio 5000 RTP/AVP 0")
    assert is_hold(offer)
    _, media = answer_of(offer)
    assert media.direction == "recvonly"


def test_rfc2543_hold_offer() -> None:
    offer = parse(
        "v=0",
        "o=old 1 2 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 0.0.0.0",
        "t=0 0",
        "m=audio 5000 RTP/AVP 0",
    )
    assert is_hold(offer)
    _, media = answer_of(offer)
    assert media.direction == "recvonly"
    assert not media.sends
    assert media.remote_address == "0.0.0.0"


def test_media_level_connection_wins() -> None:
    offer = parse(*HEAD, "m=audio 5000 RTP/AVP 0", "c=IN IP6 2001:db8::7")
    _, media = answer_of(offer)
    assert media.remote_address == "2001:db8::7"


def test_answer_ipv6_local() -> None:
    answer, _ = build_answer(SIPP_UAC, "::1", 30000, session_id=1)
    assert str(answer.connection) == "IN IP6 ::1"
    assert answer.origin.addrtype == "IP6"


# --- build_answer: several streams and rejection ----------------------------------------------


def test_video_first_then_audio_keeps_positions() -> None:
    offer = parse(
        *HEAD,
        "m=video 6000 RTP/AVP 96",
        "a=rtpmap:96 H264/90000",
        "m=audio 5000 RTP/AVP 0",
        "m=application 7000 UDP/BFCP *",
    )
    text, media = answer_of(offer)
    answer = SessionDescription.parse(text)
    assert [(m.media, m.port) for m in answer.media] == [
        ("video", 0),
        ("audio", 30000),
        ("application", 0),
    ]
    assert answer.media[0].formats == ["96"]
    assert answer.media[2].formats == ["*"]
    assert media.remote_rtp_port == 5000


def test_second_audio_stream_rejected() -> None:
    offer = parse(*HEAD, "m=audio 5000 RTP/AVP 0", "m=audio 5002 RTP/AVP 8")
    text, media = answer_of(offer)
    answer = SessionDescription.parse(text)
    assert [m.port for m in answer.media] == [30000, 0]
    assert media.remote_rtp_port == 5000


def test_srtp_stream_skipped_for_plain_rtp_alternative() -> None:
    offer = parse(
        *HEAD,
        "m=audio 5000 RTP/SAVP 0",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
        "m=audio 5002 RTP/AVP 0",
    )
    text, media = answer_of(offer)
    answer = SessionDescription.parse(text)
    assert [(m.port, m.proto) for m in answer.media] == [(0, "RTP/SAVP"), (30000, "RTP/AVP")]
    assert media.remote_rtp_port == 5002


def test_avpf_is_accepted_with_same_proto() -> None:
    offer = parse(*HEAD, "m=audio 5000 RTP/AVPF 0")
    text, _ = answer_of(offer)
    assert "m=audio 30000 RTP/AVPF 0\r\n" in text


def test_unsupported_first_audio_then_supported_second() -> None:
    offer = parse(
        *HEAD,
        "m=audio 5000 RTP/AVP 96",
        "a=rtpmap:96 opus/48000/2",
        "m=audio 5002 RTP/AVP 8",
    )
    _, media = answer_of(offer)
    assert (media.remote_rtp_port, media.codec) == (5002, "PCMA")


def test_no_common_codec_is_488() -> None:
    offer = parse(
        *HEAD,
        "m=audio 7078 RTP/AVP 96 97 18 101",
        "a=rtpmap:96 opus/48000/2",
        "a=rtpmap:97 speex/16000",
        "a=rtpmap:101 telephone-event/48000",
        "m=video 9078 RTP/AVP 96",
    )
    with pytest.raises(SdpError) as info:
        build_answer(offer, "10.0.0.1", 4000)
    error = info.value
    assert error.status == 488
    assert error.reason == "Not Acceptable Here"
    message = str(error)
    assert "opus/48000/2, speex/16000, G729/8000, telephone-event/48000" in message
    assert "m=video RTP/AVP (not supported)" in message
    assert "we support RTP/AVP audio with PCMU/8000, PCMA/8000" in message


def test_no_audio_at_all_is_488() -> None:
    offer = parse(*HEAD, "m=video 9078 RTP/AVP 96")
    with pytest.raises(SdpError) as info:
        build_answer(offer, "10.0.0.1", 4000)
    assert info.value.status == 488
    assert "m=video" in str(info.value)
    with pytest.raises(SdpError, match="no m= lines"):
        build_answer(parse(*HEAD), "10.0.0.1", 4000)


def test_srtp_only_is_488() -> None:
    offer = parse(*HEAD, "m=audio 5000 RTP/SAVP 0")
    with pytest.raises(SdpError, match="transport not supported") as info:
        build_answer(offer, "10.0.0.1", 4000)
    assert info.value.status == 488


def test_unknown_dynamic_pt_named_in_error() -> None:
    offer = parse(*HEAD, "m=audio 5000 RTP/AVP 96")
    with pytest.raises(SdpError, match=r"96 \(no rtpmap\)"):
        build_answer(offer, "10.0.0.1", 4000)


def test_malformed_rtpmap_in_offer_is_400() -> None:
    offer = parse(*HEAD, "m=audio 5000 RTP/AVP 0", "a=rtpmap:0 PCMU")
    with pytest.raises(SdpError) as info:
        build_answer(offer, "10.0.0.1", 4000)
    assert info.value.status == 400


def test_offer_disabling_audio_is_answered_with_port_zero() -> None:
    offer = parse(*HEAD, "m=audio 0 RTP/AVP 0", "m=video 0 RTP/AVP 96")
    text, media = answer_of(offer)
    assert [m.port for m in SessionDescription.parse(text).media] == [0, 0]
    assert media.rejected
    assert not media.sends and not media.receives
    assert media.direction == "inactive"


def test_answer_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError):
        build_answer(SIPP_UAC, "10.0.0.1", 0)
    with pytest.raises(InvalidArgumentError):
        build_answer(SIPP_UAC, "10.0.0.1", 4000, direction="up")
    with pytest.raises(InvalidArgumentError):
        build_answer(SIPP_UAC, "host.example", 4000)


# --- process_answer ------------------------------------------------------------------------------


def make_offer(**kwargs: object) -> SessionDescription:
    return build_offer("198.51.100.1", 10000, session_id=42, **kwargs)  # type: ignore[arg-type]


def test_full_exchange_between_two_endpoints() -> None:
    offer = make_offer()
    wire_offer = SessionDescription.parse(bytes(offer))
    answer, theirs = build_answer(wire_offer, "203.0.113.5", 20000, codecs=("PCMA", "PCMU"))
    ours = process_answer(offer, SessionDescription.parse(bytes(answer)))
    assert ours == NegotiatedMedia(
        remote_address="203.0.113.5",
        remote_rtp_port=20000,
        remote_rtcp_port=20001,
        payload_type=0,
        codec="PCMU",
        clock_rate=8000,
        dtmf_payload_type=101,
        direction="sendrecv",
        ptime=20,
    )
    assert (theirs.remote_address, theirs.remote_rtp_port) == ("198.51.100.1", 10000)
    assert (theirs.codec, theirs.dtmf_payload_type) == (ours.codec, ours.dtmf_payload_type)


def test_process_answer_uses_answers_payload_numbers() -> None:
    offer = make_offer()
    answer = parse(
        *HEAD,
        "m=audio 4000 RTP/AVP 8 96",
        "a=rtpmap:96 telephone-event/8000",
        "a=ptime:40",
        "a=rtcp:4005",
    )
    media = process_answer(offer, answer)
    assert (media.codec, media.payload_type, media.dtmf_payload_type) == ("PCMA", 8, 96)
    assert (media.ptime, media.remote_rtcp_port) == (40, 4005)


def test_process_answer_skips_unoffered_extras() -> None:
    answer = parse(*HEAD, "m=audio 4000 RTP/AVP 13 8")  # CN was never offered
    assert process_answer(make_offer(), answer).codec == "PCMA"


def test_process_answer_dtmf_not_offered_is_ignored() -> None:
    answer = parse(*HEAD, "m=audio 4000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000")
    assert process_answer(make_offer(dtmf=False), answer).dtmf_payload_type is None


@pytest.mark.parametrize(
    ("offered", "answered", "ours"),
    [
        ("sendrecv", "sendrecv", "sendrecv"),
        ("sendrecv", "recvonly", "sendonly"),
        ("sendrecv", "sendonly", "recvonly"),
        ("sendrecv", "inactive", "inactive"),
        ("sendonly", "recvonly", "sendonly"),
        ("sendonly", "sendrecv", "sendonly"),  # lenient: never more than we offered
        ("inactive", "inactive", "inactive"),
    ],
)
def test_process_answer_direction(offered: str, answered: str, ours: str) -> None:
    answer = parse(*HEAD, "m=audio 4000 RTP/AVP 0", f"a={answered}")
    assert process_answer(make_offer(direction=offered), answer).direction == ours


def test_process_answer_null_address_means_do_not_send() -> None:
    answer = parse(
        "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "c=IN IP4 0.0.0.0", "t=0 0",
        "m=audio 4000 RTP/AVP 0",
    )  # fmt: skip
    assert process_answer(make_offer(), answer).direction == "recvonly"


def test_process_answer_rejected_audio() -> None:
    answer = parse(*HEAD, "m=audio 0 RTP/AVP 0")
    media = process_answer(make_offer(codecs=("PCMA", "PCMU")), answer)
    assert media.rejected
    assert (media.codec, media.remote_rtp_port, media.direction) == ("PCMA", 0, "inactive")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["m=audio 4000 RTP/AVP 0", "m=video 0 RTP/AVP 96"], "2 m= line(s) but the offer had 1"),
        ([], "0 m= line(s)"),
        (["m=video 4000 RTP/AVP 96"], "is 'video' but the offer's is 'audio'"),
        (["m=audio 4000 RTP/SAVP 0"], "uses 'RTP/SAVP' but the offer used 'RTP/AVP'"),
        (
            ["m=audio 4000 RTP/AVP 18 96", "a=rtpmap:96 opus/48000/2"],
            "formats 18 96 hold no codec of the offer (PCMU/8000, PCMA/8000)",
        ),
        (["m=audio 4000 RTP/AVP 101"], "hold no codec"),
    ],
)
def test_process_answer_mismatch(lines: list[str], message: str) -> None:
    with pytest.raises(SdpError) as info:
        process_answer(make_offer(), parse(*HEAD, *lines))
    assert message in str(info.value)


def test_process_answer_without_audio_offer_is_local_error() -> None:
    offer = make_offer()
    offer.media[0].port = 0
    with pytest.raises(InvalidArgumentError):
        process_answer(offer, parse(*HEAD, "m=audio 0 RTP/AVP 0"))


# --- hold, resume, re-offers ---------------------------------------------------------------------


def test_hold_and_resume_reoffers() -> None:
    offer = make_offer()
    assert not is_hold(offer)
    hold = with_direction(offer, "sendonly")
    assert is_hold(hold)
    assert hold.origin.session_version == offer.origin.session_version + 1
    assert hold.origin.session_id == offer.origin.session_id
    assert hold.media[0].direction == "sendonly"
    assert offer.media[0].direction == "sendrecv"  # the original is untouched
    resume = with_direction(hold, "sendrecv")
    assert not is_hold(resume)
    assert resume.origin.session_version == offer.origin.session_version + 2
    assert is_hold(with_direction(offer, "inactive"))
    assert not is_hold(with_direction(offer, "recvonly"))


def test_hold_answered_by_peer() -> None:
    offer = make_offer()
    hold = with_direction(offer, "sendonly")
    answer, theirs = build_answer(SessionDescription.parse(str(hold)), "203.0.113.5", 20000)
    assert theirs.direction == "recvonly"
    assert process_answer(hold, answer).direction == "sendonly"


def test_with_direction_errors() -> None:
    with pytest.raises(InvalidArgumentError):
        with_direction(make_offer(), "paused")
    with pytest.raises(InvalidArgumentError):
        with_direction(parse(*HEAD, "m=video 5000 RTP/AVP 96"), "sendonly")


def test_is_hold_without_audio() -> None:
    assert not is_hold(parse(*HEAD, "m=video 5000 RTP/AVP 96", "a=sendonly"))


def test_reoffer_with_previous_increments_version() -> None:
    first = make_offer(session_version=7)
    second = build_offer("198.51.100.1", 10000, previous=first, session_id=999)
    third = build_offer("198.51.100.2", 10002, previous=second)
    assert [o.origin.session_version for o in (first, second, third)] == [7, 8, 9]
    assert {o.origin.session_id for o in (first, second, third)} == {"42"}
    assert third.origin.address == "198.51.100.2"
    assert bump_version(third).origin.session_version == 10
    assert third.origin.session_version == 9


def test_answer_to_reoffer_keeps_version_when_unchanged() -> None:
    first, _ = build_answer(BARESIP, "203.0.113.5", 30000, session_id=9, session_version=3)
    same, _ = build_answer(BARESIP, "203.0.113.5", 30000, previous=first)
    assert same == first
    assert same.origin.session_version == 3
    held = with_direction(BARESIP, "sendonly")
    changed, media = build_answer(held, "203.0.113.5", 30000, previous=first)
    assert changed.origin.session_version == 4
    assert changed.origin.session_id == "9"
    assert media.direction == "recvonly"


def test_negotiated_media_is_frozen() -> None:
    _, media = answer_of(SIPP_UAC)
    with pytest.raises(dataclasses.FrozenInstanceError):
        media.codec = "PCMA"  # type: ignore[misc]
    assert not hasattr(media, "__dict__")


# --- robustness: whatever a peer sends, only SdpError comes out ---------------------------------

_PEER_LINES = [
    "m=audio 5000 RTP/AVP 0 8 101",
    "m=audio 0 RTP/AVP 0",
    "m=audio 5002 RTP/SAVP 0",
    "m=audio 5004 RTP/AVP 96 97",
    "m=video 6000 RTP/AVP 96",
    "m=audio 5006 RTP/AVP",
    "c=IN IP4 0.0.0.0",
    "c=IN IP6 ::1",
    "a=rtpmap:96 PCMA/8000",
    "a=rtpmap:97 telephone-event/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=rtpmap:96 opus/48000/2",
    "a=rtpmap:0 PCMU",
    "a=fmtp:101 0-15",
    "a=fmtp:97 x-y",
    "a=fmtp:",
    "a=ptime:20",
    "a=ptime:-1",
    "a=rtcp:5001",
    "a=rtcp:x",
    "a=sendonly",
    "a=recvonly",
    "a=inactive",
]


@given(st.lists(st.sampled_from(_PEER_LINES), max_size=12))
def test_build_answer_raises_only_sdp_error(lines: list[str]) -> None:
    try:
        offer = parse(*HEAD, *lines)
        answer, media = build_answer(offer, "10.0.0.1", 4000)
    except SdpError as exc:
        assert exc.status in (400, 488)
        return
    assert len(answer.media) == len(offer.media)
    assert SessionDescription.parse(str(answer)) == answer
    if not media.rejected:
        ours = process_answer(offer, answer)
        assert (ours.codec, ours.payload_type) == (media.codec, media.payload_type)


@given(st.lists(st.sampled_from(_PEER_LINES), max_size=12))
def test_process_answer_raises_only_sdp_error(lines: list[str]) -> None:
    try:
        process_answer(build_offer("10.0.0.1", 4000), parse(*HEAD, *lines))
    except SdpError as exc:
        assert exc.status in (400, 488)
