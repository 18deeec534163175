"""SDP wire object: parse, serialize, accessors, errors."""

from __future__ import annotations

import contextlib
import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sessioncore.errors import InvalidArgumentError, SdpError
from sessioncore.media.sdp import (
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
    Timing,
)


def crlf(*lines: str) -> str:
    return "".join(line + "\r\n" for line in lines)


BASE = ["v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "c=IN IP4 1.2.3.4", "t=0 0"]

SIPP_UAC = crlf(
    "v=0",
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 6000 RTP/AVP 0",
    "a=rtpmap:0 PCMU/8000",
)

BARESIP = crlf(
    "v=0",
    "o=- 1953312548 2716371612 IN IP4 192.168.1.10",
    "s=-",
    "c=IN IP4 192.168.1.10",
    "t=0 0",
    "a=tool:baresip 1.0.0",
    "m=audio 10372 RTP/AVP 0 8 101",
    "b=AS:64",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=ptime:20",
    "a=sendrecv",
    "a=rtcp-mux",
    "a=label:1",
)

LINPHONE = crlf(
    "v=0",
    "o=alice 3421 1234 IN IP4 10.0.0.5",
    "s=Talk",
    "c=IN IP4 10.0.0.5",
    "t=0 0",
    "a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics",
    "m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 useinbandfec=1",
    "a=rtpmap:97 speex/16000",
    "a=fmtp:97 vbr=on",
    "a=rtpmap:98 speex/8000",
    "a=fmtp:98 vbr=on",
    "a=fmtp:18 annexb=yes",
    "a=rtpmap:101 telephone-event/48000",
    "a=rtpmap:99 telephone-event/16000",
    "a=rtpmap:100 telephone-event/8000",
    "a=rtcp-fb:* trr-int 1000",
    "a=rtcp-fb:* ccm tmmbr",
    "m=video 9078 RTP/AVP 96 97",
    "c=IN IP4 10.0.0.6",
    "b=AS:512",
    "a=rtpmap:96 VP8/90000",
    "a=rtpmap:97 H264/90000",
    "a=fmtp:97 profile-level-id=42801F",
    "a=rtcp-fb:* ccm fir",
)

IPV6 = crlf(
    "v=0",
    "o=bob 2890844730 2890844730 IN IP6 2001:db8::2",
    "s= ",
    "i=a call",
    "u=http://example.com/x",
    "e=bob@example.com",
    "p=+1 617 555-6011",
    "c=IN IP6 ::1",
    "b=CT:128",
    "t=3034423619 3042462419",
    "r=604800 3600 0 90000",
    "z=2882844526 -1h 2898848070 0",
    "k=prompt",
    "a=recvonly",
    "m=audio 49170/2 RTP/AVP 0",
    "i=main audio",
    "c=IN IP6 ff15::101/3",
    "c=IN IP6 ff15::201/3",
    "b=AS:64",
    "y=an unknown line type",
    "a=rtcp:53020 IN IP6 2001:db8::3",
    "a=x-unknown",
)


@pytest.mark.parametrize("text", [SIPP_UAC, BARESIP, LINPHONE, IPV6])
def test_real_world_samples_round_trip_exactly(text: str) -> None:
    sdp = SessionDescription.parse(text)
    assert str(sdp) == text
    assert bytes(sdp) == text.encode()
    assert SessionDescription.parse(text.encode()) == sdp


def test_sipp_fields() -> None:
    sdp = SessionDescription.parse(SIPP_UAC)
    assert sdp.origin == Origin("user1", "53655765", 2353687637, "127.0.0.1")
    assert sdp.session_name == "-"
    assert sdp.connection == Connection("127.0.0.1", "IP4", "IN")
    assert sdp.timing == [Timing(0, 0)]
    (audio,) = sdp.media
    assert sdp.audio is audio
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio",
        6000,
        "RTP/AVP",
        ["0"],
    )
    assert audio.connection is None
    assert sdp.connection_for(audio) == sdp.connection
    assert audio.rtpmaps == {0: RtpMap(0, "PCMU", 8000)}
    assert audio.direction is None
    assert sdp.effective_direction(audio) == "sendrecv"
    assert audio.ptime is None
    assert audio.rtcp_port is None
    assert not audio.rejected


def test_baresip_accessors() -> None:
    sdp = SessionDescription.parse(BARESIP)
    audio = sdp.media[0]
    assert sdp.get_attribute("tool") == "baresip 1.0.0"
    assert audio.extra_lines == [("b", "AS:64")]
    assert audio.codec_for("101") == RtpMap(101, "telephone-event", 8000)
    assert audio.codec_for(8) == RtpMap(8, "PCMA", 8000)
    assert audio.get_fmtp(101) == "0-15"
    assert audio.fmtps == {"101": "0-15"}
    assert audio.ptime == 20
    assert audio.direction == "sendrecv"
    assert audio.rtcp_mux
    assert audio.has_attribute("rtcp-mux")
    assert audio.get_attribute("rtcp-mux") is None
    assert audio.get_attribute("label") == "1"


def test_linphone_many_codecs_and_media_level_connection() -> None:
    sdp = SessionDescription.parse(LINPHONE)
    audio, video = sdp.media
    maps = audio.rtpmaps
    assert maps[96] == RtpMap(96, "opus", 48000, 2)
    assert maps[96].name == "opus/48000/2"
    assert audio.codec_for(18) == RtpMap(18, "G729", 8000)  # static, no rtpmap
    assert audio.codec_for(0) == RtpMap(0, "PCMU", 8000)
    assert audio.get_attributes("rtcp-fb") == ["* trr-int 1000", "* ccm tmmbr"]
    assert video.connection == Connection("10.0.0.6")
    assert sdp.connection_for(video).host == "10.0.0.6"  # type: ignore[union-attr]
    assert sdp.connection_for(audio).host == "10.0.0.5"  # type: ignore[union-attr]
    assert video.extra_lines == [("b", "AS:512")]


def test_ipv6_and_rare_lines() -> None:
    sdp = SessionDescription.parse(IPV6)
    assert sdp.origin.addrtype == "IP6"
    assert sdp.connection == Connection("::1", "IP6")
    assert sdp.session_name == " "
    assert sdp.timing == [Timing(3034423619, 3042462419, ["604800 3600 0 90000"])]
    assert [t for t, _ in sdp.extra_lines] == ["i", "u", "e", "p", "b", "z", "k"]
    assert sdp.direction == "recvonly"
    audio = sdp.media[0]
    assert audio.port_count == 2
    assert audio.connection is not None
    assert audio.connection.host == "ff15::101"
    assert audio.connection.address == "ff15::101/3"
    assert sdp.effective_direction(audio) == "recvonly"
    assert audio.rtcp_port == 53020
    assert audio.extra_lines == [
        ("i", "main audio"),
        ("c", "IN IP6 ff15::201/3"),
        ("b", "AS:64"),
        ("y", "an unknown line type"),
    ]


def test_lines_out_of_order_are_kept_in_canonical_order() -> None:
    text = crlf(*BASE[:3], "t=0 0", "a=x", "b=AS:1", "c=IN IP4 1.2.3.4", "i=info")
    sdp = SessionDescription.parse(text)
    assert str(sdp) == crlf(*BASE[:3], "i=info", "c=IN IP4 1.2.3.4", "b=AS:1", "t=0 0", "a=x")


def test_bare_lf_and_blank_lines_are_accepted() -> None:
    text = SIPP_UAC.replace("\r\n", "\n") + "\n\n"
    sdp = SessionDescription.parse(text)
    assert str(sdp) == SIPP_UAC


def test_non_utf8_bytes_survive() -> None:
    raw = SIPP_UAC.encode().replace(b"s=-", b"s=caf\xe9")
    sdp = SessionDescription.parse(raw)
    assert bytes(sdp) == raw


def test_port_zero_stream_needs_no_connection() -> None:
    text = crlf(
        "v=0",
        "o=- 1 1 IN IP4 10.0.0.1",
        "s=-",
        "t=0 0",
        "m=video 0 RTP/AVP 96",
        "m=audio 4000 RTP/AVP 0",
        "c=IN IP4 10.0.0.1",
    )
    sdp = SessionDescription.parse(text)
    assert sdp.media[0].rejected
    assert sdp.audio is sdp.media[1]


def test_rejected_m_line_without_formats() -> None:
    text = SIPP_UAC + "m=video 0 RTP/AVP\r\n"
    sdp = SessionDescription.parse(text)
    assert sdp.media[1].formats == []
    assert str(sdp) == text


def test_missing_t_line_is_tolerated() -> None:
    text = SIPP_UAC.replace("t=0 0\r\n", "")
    sdp = SessionDescription.parse(text)
    assert sdp.timing == []
    assert str(sdp) == text


def test_fractional_ptime_is_rounded() -> None:
    sdp = SessionDescription.parse(SIPP_UAC + "a=ptime:20.0\r\n")
    assert sdp.media[0].ptime == 20


# --- building and editing ---------------------------------------------------------------------


def test_build_from_objects() -> None:
    media = MediaDescription("audio", 4000, "RTP/AVP", ["0"])
    media.add_rtpmap(0, "PCMU", 8000)
    media.add_rtpmap(101, "telephone-event", 8000, fmtp="0-16")
    media.ptime = 20
    media.direction = "sendonly"
    sdp = SessionDescription(
        Origin("me", "42", 7, "10.1.1.1"), connection=Connection("10.1.1.1"), media=[media]
    )
    assert str(sdp) == crlf(
        "v=0",
        "o=me 42 7 IN IP4 10.1.1.1",
        "s=-",
        "c=IN IP4 10.1.1.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendonly",
    )


def test_direction_setter_replaces_in_place() -> None:
    sdp = SessionDescription.parse(BARESIP)
    audio = sdp.media[0]
    position = [a.name for a in audio.attributes].index("sendrecv")
    audio.direction = "inactive"
    assert audio.attributes[position] == Attribute("inactive")
    assert audio.get_attributes("sendrecv") == []
    audio.direction = None
    assert audio.direction is None
    with pytest.raises(InvalidArgumentError):
        audio.direction = "sideways"


def test_attribute_helpers() -> None:
    media = MediaDescription("audio", 1, "RTP/AVP", ["0"])
    media.add_attribute("x", "1")
    media.add_attribute("x", "2")
    media.set_attribute("x", "3")
    assert media.get_attributes("x") == ["3"]
    assert media.remove_attribute("x") == 1
    assert media.remove_attribute("x") == 0
    media.ptime = 30
    assert media.ptime == 30
    media.ptime = None
    assert media.ptime is None
    with pytest.raises(InvalidArgumentError):
        media.ptime = 0


def test_copy_is_deep() -> None:
    sdp = SessionDescription.parse(BARESIP)
    other = sdp.copy()
    other.origin.session_version += 1
    other.media[0].direction = "inactive"
    assert sdp.origin.session_version == 2716371612
    assert sdp.media[0].direction == "sendrecv"


def test_connection_null() -> None:
    assert Connection("0.0.0.0").is_null
    assert Connection("::", "IP6").is_null
    assert not Connection("10.0.0.1").is_null


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "empty"),
        (["o=- 1 1 IN IP4 1.2.3.4", "v=0"], "must start with v="),
        (["v=1", *BASE[1:]], "unsupported SDP version"),
        ([*BASE, "v=0"], "line 6: second v= line"),
        (["v=0", "s=-"], "no o= line"),
        (["v=0", "o=- 1 1 IN IP4 1.2.3.4"], "no s= line"),
        (["v=0", "o=- 1 1 IN IP4", "s=-"], "line 2: o= needs 6 fields"),
        (["v=0", "o=- 1 x IN IP4 1.2.3.4", "s=-"], "o= session version"),
        ([*BASE, "o=- 1 1 IN IP4 1.2.3.4"], "second o= line"),
        ([*BASE, "s=again"], "second s= line"),
        ([*BASE[:3], "c=IN IP4", "t=0 0"], "line 4: c= needs 3 fields"),
        ([*BASE[:4], "t=0"], "t= needs 2 fields"),
        ([*BASE[:4], "t=a 0"], "t= start time"),
        ([*BASE[:4], "r=1 2 3"], "r= line before any t= line"),
        ([*BASE, "m=audio"], "m= needs at least"),
        ([*BASE, "m=audio x RTP/AVP 0"], "m= port"),
        ([*BASE, "m=audio 70000 RTP/AVP 0"], "larger than 65535"),
        ([*BASE, "m=audio 4000/0 RTP/AVP 0"], "port count is 0"),
        ([*BASE, "m=audio 4000/x RTP/AVP 0"], "m= port count"),
        ([*BASE, "m=audio 4000 RTP/AVP 0", "t=0 0"], "t= is not allowed after an m= line"),
        ([*BASE, "m=audio 4000 RTP/AVP 0", "o=- 1 1 IN IP4 1.2.3.4"], "o= is not allowed"),
        ([*BASE, "garbage"], "line 6: expected '<type>=<value>'"),
        ([*BASE, "1=x"], "expected '<type>=<value>'"),
        ([*BASE, "a="], "no attribute name"),
        ([*BASE, "a=:x"], "no attribute name"),
        (
            ["v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "t=0 0", "m=audio 4000 RTP/AVP 0"],
            "m=audio (media section 1) has no c= line",
        ),
    ],
)
def test_malformed(lines: list[str], message: str) -> None:
    with pytest.raises(SdpError) as info:
        SessionDescription.parse(crlf(*lines))
    assert message in str(info.value)
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("attribute", "accessor", "message"),
    [
        ("rtpmap:x PCMU/8000", "rtpmaps", "payload type"),
        ("rtpmap:0 PCMU", "rtpmaps", "is not '<pt> <encoding>/<clock rate>"),
        ("rtpmap:0 PCMU/abc", "rtpmaps", "clock rate"),
        ("rtpmap:0 PCMU/0", "rtpmaps", "clock rate 0"),
        ("rtpmap:200 PCMU/8000", "rtpmaps", "larger than 127"),
        ("rtpmap:0 L16/8000/x", "rtpmaps", "channels"),
        ("rtpmap", "rtpmaps", "a=rtpmap has no value"),
        ("fmtp", "fmtps", "a=fmtp has no value"),
        ("fmtp: x", "fmtps", "has no format"),
        ("ptime:abc", "ptime", "positive number"),
        ("ptime:0", "ptime", "positive number"),
        ("ptime:nan", "ptime", "positive number"),
        ("rtcp:", "rtcp_port", "a=rtcp has no port"),
        ("rtcp:99999", "rtcp_port", "larger than 65535"),
    ],
)
def test_malformed_attributes_fail_in_accessors(
    attribute: str, accessor: str, message: str
) -> None:
    sdp = SessionDescription.parse(SIPP_UAC.replace("a=rtpmap:0 PCMU/8000", f"a={attribute}"))
    with pytest.raises(SdpError) as info:
        getattr(sdp.media[0], accessor)
    assert message in str(info.value)
    assert info.value.status == 400


def test_wrong_type_is_local_error() -> None:
    with pytest.raises(InvalidArgumentError):
        SessionDescription.parse(42)  # type: ignore[arg-type]


def test_codec_for_non_numeric_format() -> None:
    media = MediaDescription("application", 9, "TCP/BFCP", ["*"])
    assert media.codec_for("*") is None
    assert media.codec_for(96) is None


# --- property: serialize then parse gives the same object -------------------------------------

_TOKEN = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation, min_size=1)
_ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"))
_NAME = st.text(
    alphabet=st.characters(
        exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), exclude_characters=":"
    ),
    min_size=1,
).filter(lambda s: s == s.strip())
_UINT = st.integers(min_value=0, max_value=2**64)

connections = st.builds(Connection, _TOKEN, _TOKEN, _TOKEN)
attributes = st.builds(Attribute, _NAME, st.none() | _ANY_TEXT)
_SESSION_ORDER = {t: 0 for t in "iuep"} | {"b": 1}
session_extras = st.lists(st.tuples(st.sampled_from("iuepbzkxy"), _ANY_TEXT), max_size=5).map(
    lambda xs: sorted(xs, key=lambda x: _SESSION_ORDER.get(x[0], 2))
)
media_extras = st.lists(st.tuples(st.sampled_from("ibkxy"), _ANY_TEXT), max_size=4).map(
    lambda xs: sorted(xs, key=lambda x: x[0] != "i")
)
media_descriptions = st.builds(
    MediaDescription,
    media=_TOKEN,
    port=st.integers(0, 65535),
    proto=_TOKEN,
    formats=st.lists(_TOKEN, max_size=6),
    port_count=st.none() | st.integers(1, 10),
    connection=st.none() | connections,
    attributes=st.lists(attributes, max_size=6),
    extra_lines=media_extras,
)
session_descriptions = st.builds(
    SessionDescription,
    origin=st.builds(Origin, _TOKEN, _TOKEN, _UINT, _TOKEN, _TOKEN, _TOKEN),
    session_name=_ANY_TEXT,
    connection=st.none() | connections,
    timing=st.lists(st.builds(Timing, _UINT, _UINT, st.lists(_ANY_TEXT, max_size=2)), max_size=2),
    attributes=st.lists(attributes, max_size=4),
    media=st.lists(media_descriptions, max_size=3),
    extra_lines=session_extras,
)


@given(session_descriptions)
def test_round_trip_property(sdp: SessionDescription) -> None:
    assume(
        sdp.connection is not None
        or all(m.port == 0 or m.connection is not None for m in sdp.media)
    )
    text = str(sdp)
    assert SessionDescription.parse(text) == sdp
    assert SessionDescription.parse(bytes(sdp)) == sdp
    assert str(SessionDescription.parse(text)) == text


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_sdp_error(data: bytes) -> None:
    try:
        sdp = SessionDescription.parse(b"v=0\r\n" + data)
    except SdpError as exc:
        assert exc.status == 400
    else:
        for media in sdp.media:  # accessors either work or raise SdpError
            for name in ("rtpmaps", "fmtps", "ptime", "rtcp_port"):
                with contextlib.suppress(SdpError):
                    getattr(media, name)
