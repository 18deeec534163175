"""SDP offer/answer (RFC 3264) for one audio stream.

* :func:`build_offer` makes our offer; :func:`process_answer` checks the peer's answer against it
  and says what to send where.
* :func:`build_answer` answers a peer's offer: the first offered codec we support (the offerer's
  order), telephone-event with the offerer's payload type, the direction of RFC 3264 §6.1, every
  other stream rejected with port 0 in its place.
* :func:`with_direction` / :func:`is_hold` / :func:`bump_version` support hold and re-offers
  (each new SDP from one side carries the ``o=`` version plus one).

Dynamic payload types are matched by encoding name and clock rate, never by number.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from sessioncore.errors import InvalidArgumentError, SdpError
from sessioncore.media.sdp import (
    DIRECTIONS,
    STATIC_PAYLOAD_TYPES,
    Connection,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
)

__all__ = [
    "CODECS",
    "DEFAULT_CODECS",
    "Codec",
    "NegotiatedMedia",
    "build_answer",
    "build_offer",
    "bump_version",
    "is_hold",
    "process_answer",
    "with_direction",
]

_LOG = logging.getLogger("sessioncore.media.negotiation")

_NOT_ACCEPTABLE = "Not Acceptable Here"
_RTP_PROTOS = frozenset({"RTP/AVP", "RTP/AVPF"})
_DEFAULT_PTIME = 20


@dataclass(frozen=True, slots=True)
class Codec:
    """A codec we can negotiate: its RTP encoding name, clock rate and payload type.

    ``payload_type`` is the static number, or for a dynamic codec the number we offer by default.
    """

    name: str
    clock_rate: int
    payload_type: int
    dynamic: bool = False
    fmtp: str | None = None

    def matches(self, rtpmap: RtpMap) -> bool:
        """True when an offered/answered payload type is this codec (name and rate, mono)."""
        return (
            rtpmap.encoding.casefold() == self.name.casefold()
            and rtpmap.clock_rate == self.clock_rate
            and rtpmap.channels in (None, 1)
        )


PCMU = Codec("PCMU", 8000, 0)
PCMA = Codec("PCMA", 8000, 8)
TELEPHONE_EVENT = Codec("telephone-event", 8000, 101, dynamic=True, fmtp="0-16")

#: The codec table, by name. ``telephone-event`` is switched on with ``dtmf=True``.
CODECS: Mapping[str, Codec] = MappingProxyType({c.name: c for c in (PCMU, PCMA, TELEPHONE_EVENT)})
#: The audio codecs offered and accepted by default, in our order of preference.
DEFAULT_CODECS: tuple[str, ...] = ("PCMU", "PCMA")
#: The DTMF events (RFC 4733 §3.2) we can send and receive: 0-9 * # A-D and flash.
_OUR_EVENTS = frozenset(range(17))
#: The events a peer supports when its telephone-event has no fmtp (RFC 4733 §7.1.1).
_DEFAULT_EVENTS = frozenset(range(16))


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """The outcome of offer/answer for the audio stream, from our side.

    ``payload_type`` is the number to put in the RTP we send (the peer's number for the codec);
    ``direction`` is OUR direction (``sendonly`` means we send and do not expect to receive);
    ``ptime`` the packet time to send with. ``rejected`` is true when the audio stream was
    refused or disabled (port 0); the address and ports are then empty/0.
    """

    remote_address: str
    remote_rtp_port: int
    remote_rtcp_port: int
    payload_type: int
    codec: str
    clock_rate: int
    dtmf_payload_type: int | None
    direction: str
    ptime: int
    rejected: bool = False

    @property
    def sends(self) -> bool:
        """True when we should send RTP."""
        return self.direction in ("sendrecv", "sendonly") and not self.rejected

    @property
    def receives(self) -> bool:
        """True when we should expect RTP."""
        return self.direction in ("sendrecv", "recvonly") and not self.rejected


# --- argument checks (the local caller's mistakes) -------------------------------------------


def _check_codecs(codecs: Sequence[str]) -> list[Codec]:
    if isinstance(codecs, str):
        raise InvalidArgumentError(f"codecs must be a sequence of names, not the string {codecs!r}")
    by_name = {name.casefold(): codec for name, codec in CODECS.items()}
    out: list[Codec] = []
    for name in codecs:
        codec = by_name.get(name.casefold()) if isinstance(name, str) else None
        if codec is None:
            raise InvalidArgumentError(
                f"unknown codec {name!r}; supported: {', '.join(DEFAULT_CODECS)}"
            )
        if codec is TELEPHONE_EVENT:
            raise InvalidArgumentError("telephone-event is not a codec here: use dtmf=True")
        if codec not in out:
            out.append(codec)
    if not out:
        raise InvalidArgumentError("at least one audio codec is needed")
    return out


def _check_address(local_ip: str) -> str:
    """Return the SDP addrtype (IP4/IP6) of an IP literal."""
    try:
        address = ipaddress.ip_address(local_ip)
    except ValueError:
        raise InvalidArgumentError(f"local_ip must be an IP address, not {local_ip!r}") from None
    return "IP4" if address.version == 4 else "IP6"


def _check_port(port: int, name: str = "rtp_port") -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidArgumentError(f"{name} must be 1..65535, not {port!r}")
    return port


def _check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise InvalidArgumentError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    return direction


def _check_ptime(ptime: int) -> int:
    if isinstance(ptime, bool) or not isinstance(ptime, int) or not 1 <= ptime <= 1000:
        raise InvalidArgumentError(f"ptime must be 1..1000 ms, not {ptime!r}")
    return ptime


def _origin(
    local_ip: str,
    addrtype: str,
    username: str,
    session_id: int | None,
    session_version: int,
    previous: SessionDescription | None,
) -> Origin:
    if previous is not None:
        old = previous.origin
        return Origin(
            old.username, old.session_id, old.session_version + 1, local_ip, "IN", addrtype
        )
    if not username or any(ch.isspace() for ch in username):
        raise InvalidArgumentError(f"username must be one non-empty token, not {username!r}")
    if session_id is None:
        session_id = secrets.randbits(62)
    for name, value in (("session_id", session_id), ("session_version", session_version)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgumentError(f"{name} must be a non-negative integer, not {value!r}")
    return Origin(username, str(session_id), session_version, local_ip, "IN", addrtype)


# --- directions -------------------------------------------------------------------------------


def _flags(direction: str) -> tuple[bool, bool]:
    """``(sends, receives)`` of a direction attribute."""
    return direction in ("sendrecv", "sendonly"), direction in ("sendrecv", "recvonly")


def _direction(send: bool, recv: bool) -> str:
    if send:
        return "sendrecv" if recv else "sendonly"
    return "recvonly" if recv else "inactive"


def _peer_flags(sdp: SessionDescription, media: MediaDescription) -> tuple[bool, bool]:
    """What the author of ``sdp`` will do on ``media``: ``(sends, receives)``.

    A null connection address (RFC 2543 hold, ``c=IN IP4 0.0.0.0``) means it receives nothing.
    """
    send, recv = _flags(sdp.effective_direction(media))
    conn = sdp.connection_for(media)
    if conn is not None and conn.is_null:
        recv = False
    return send, recv


# --- telephone-event parameters ---------------------------------------------------------------


def _parse_events(fmtp: str | None) -> frozenset[int] | None:
    """The event numbers of a telephone-event fmtp (``0-15,66``), ``None`` if malformed."""
    if fmtp is None:
        return _DEFAULT_EVENTS
    events: set[int] = set()
    for item in fmtp.replace(" ", "").split(","):
        low, dash, high = item.partition("-")
        if not (low.isascii() and low.isdigit()) or (
            dash and not (high.isascii() and high.isdigit())
        ):
            return None
        first, last = int(low), int(high) if dash else int(low)
        if first > last or last > 255:
            return None
        events.update(range(first, last + 1))
    return frozenset(events)


def _format_events(events: frozenset[int]) -> str:
    ranges: list[str] = []
    ordered = sorted(events)
    start = prev = ordered[0]
    for number in [*ordered[1:], -2]:
        if number != prev + 1:
            ranges.append(str(start) if start == prev else f"{start}-{prev}")
            start = number
        prev = number
    return ",".join(ranges)


# --- building SDP -----------------------------------------------------------------------------


def _audio_section(
    port: int,
    proto: str,
    codecs: Sequence[tuple[int, Codec]],
    dtmf: tuple[int, str] | None,
    ptime: int,
    direction: str,
) -> MediaDescription:
    media = MediaDescription("audio", port, proto, [str(pt) for pt, _ in codecs])
    for pt, codec in codecs:
        media.add_rtpmap(pt, codec.name, codec.clock_rate)
    if dtmf is not None:
        dtmf_pt, events = dtmf
        media.formats.append(str(dtmf_pt))
        media.add_rtpmap(dtmf_pt, TELEPHONE_EVENT.name, TELEPHONE_EVENT.clock_rate, fmtp=events)
    media.ptime = ptime
    media.direction = direction
    return media


def build_offer(
    local_ip: str,
    rtp_port: int,
    *,
    codecs: Sequence[str] = DEFAULT_CODECS,
    dtmf: bool = True,
    dtmf_pt: int = 101,
    direction: str = "sendrecv",
    ptime: int = 20,
    session_id: int | None = None,
    session_version: int = 0,
    username: str = "sessioncore",
    previous: SessionDescription | None = None,
) -> SessionDescription:
    """Our SDP offer: one ``m=audio`` stream at ``local_ip:rtp_port`` (RTCP on ``+1``).

    ``codecs`` are names from :data:`CODECS` in our order of preference; ``dtmf`` adds
    telephone-event (RFC 4733) as ``dtmf_pt`` (96..127). ``session_id`` defaults to a random
    number. For a re-offer pass the SDP we sent last as ``previous``: its ``o=`` username and
    session id are kept and its version is incremented by one (``session_id``,
    ``session_version`` and ``username`` are then ignored).

    Raises :class:`InvalidArgumentError` for a bad argument.
    """
    addrtype = _check_address(local_ip)
    chosen = _check_codecs(codecs)
    _check_port(rtp_port)
    _check_direction(direction)
    _check_ptime(ptime)
    if isinstance(dtmf_pt, bool) or not isinstance(dtmf_pt, int) or not 96 <= dtmf_pt <= 127:
        raise InvalidArgumentError(
            f"dtmf_pt must be a dynamic payload type 96..127, not {dtmf_pt!r}"
        )
    origin = _origin(local_ip, addrtype, username, session_id, session_version, previous)
    dtmf_spec = (dtmf_pt, _format_events(_OUR_EVENTS)) if dtmf else None
    audio = _audio_section(
        rtp_port, "RTP/AVP", [(c.payload_type, c) for c in chosen], dtmf_spec, ptime, direction
    )
    return SessionDescription(
        origin=origin, connection=Connection(local_ip, addrtype), media=[audio]
    )


def _resolve(media: MediaDescription) -> list[tuple[str, RtpMap | None]]:
    """Each format of a media section with its codec (rtpmap or static), parsing rtpmaps once."""
    maps = media.rtpmaps
    out: list[tuple[str, RtpMap | None]] = []
    for fmt in media.formats:
        rtpmap = None
        if fmt.isascii() and fmt.isdigit():
            rtpmap = maps.get(int(fmt)) or STATIC_PAYLOAD_TYPES.get(int(fmt))
        out.append((fmt, rtpmap))
    return out


def _describe(sdp: SessionDescription) -> str:
    """A short account of the streams of an offer, for error messages."""
    parts: list[str] = []
    for media in sdp.media:
        head = f"m={media.media} {media.proto}"
        if media.port == 0:
            parts.append(f"{head} (port 0)")
        elif media.media != "audio":
            parts.append(f"{head} (not supported)")
        elif media.proto not in _RTP_PROTOS:
            parts.append(f"{head} (transport not supported)")
        else:
            names = []
            for fmt, rtpmap in _resolve(media):
                names.append(f"{fmt} (no rtpmap)" if rtpmap is None else rtpmap.name)
            parts.append(f"{head} {', '.join(names) or 'no formats'}")
    return "; ".join(parts) or "no m= lines"


def _pick_codec(media: MediaDescription, ours: Sequence[Codec]) -> tuple[int, Codec] | None:
    """The first offered payload type that is one of our codecs (offerer's order)."""
    for _, rtpmap in _resolve(media):
        if rtpmap is None:
            continue
        for codec in ours:
            if codec.matches(rtpmap):
                return rtpmap.payload_type, codec
    return None


def _pick_dtmf(media: MediaDescription) -> tuple[int, frozenset[int]] | None:
    """The offered telephone-event/8000 payload type and the events both sides support."""
    for fmt, rtpmap in _resolve(media):
        if rtpmap is None or not TELEPHONE_EVENT.matches(rtpmap):
            continue
        events = _parse_events(media.get_fmtp(fmt))
        if events is None:
            _LOG.debug("malformed telephone-event fmtp %r, assuming 0-15", media.get_fmtp(fmt))
            events = _DEFAULT_EVENTS
        common = events & _OUR_EVENTS
        return (rtpmap.payload_type, common) if common else None
    return None


def _rejected_copy(media: MediaDescription) -> MediaDescription:
    return MediaDescription(media.media, 0, media.proto, list(media.formats))


def _remote_rtcp(media: MediaDescription) -> int:
    rtcp = media.rtcp_port
    return rtcp if rtcp is not None else media.port + 1


def build_answer(
    offer: SessionDescription,
    local_ip: str,
    rtp_port: int,
    *,
    codecs: Sequence[str] = DEFAULT_CODECS,
    dtmf: bool = True,
    direction: str = "sendrecv",
    ptime: int = 20,
    session_id: int | None = None,
    session_version: int = 0,
    username: str = "sessioncore",
    previous: SessionDescription | None = None,
) -> tuple[SessionDescription, NegotiatedMedia]:
    """Answer a peer's offer (RFC 3264 §6) and return the answer with what was agreed.

    The first ``m=audio`` RTP stream that offers one of ``codecs`` is accepted with the first
    such codec in the offer's order, plus telephone-event with the offer's payload type when
    ``dtmf`` and offered. Every other stream (video, a second audio stream, ...) is rejected with
    port 0 in its place. The answer's direction follows the offer's (sendonly -> recvonly,
    recvonly -> sendonly, inactive -> inactive; ``c=0.0.0.0`` counts as not receiving) combined
    with the ``direction`` we want. ``previous`` is the SDP we sent last in this dialog: its
    ``o=`` is reused, with the version incremented unless the answer is identical to it.

    When every audio stream of the offer has port 0 (the offerer disables audio) the answer
    rejects everything and the result has ``rejected=True``. Raises ``SdpError`` (488) when the
    offer has no audio stream we can accept, ``SdpError`` (400) when it is malformed, and
    :class:`InvalidArgumentError` for a bad argument.
    """
    addrtype = _check_address(local_ip)
    ours = _check_codecs(codecs)
    _check_port(rtp_port)
    _check_direction(direction)
    _check_ptime(ptime)
    origin = _origin(local_ip, addrtype, username, session_id, session_version, previous)

    answer_media: list[MediaDescription] = []
    negotiated: NegotiatedMedia | None = None
    disabled_audio: MediaDescription | None = None
    for media in offer.media:
        if negotiated is not None or media.media != "audio" or media.proto not in _RTP_PROTOS:
            answer_media.append(_rejected_copy(media))
            continue
        if media.port == 0:
            disabled_audio = disabled_audio or media
            answer_media.append(_rejected_copy(media))
            continue
        picked = _pick_codec(media, ours)
        if picked is None:
            answer_media.append(_rejected_copy(media))
            continue
        conn = offer.connection_for(media)
        if conn is None:
            raise SdpError(f"offered m=audio port {media.port} has no c= line", status=400)
        pt, codec = picked
        dtmf_pick = _pick_dtmf(media) if dtmf else None
        want_send, want_recv = _flags(direction)
        peer_send, peer_recv = _peer_flags(offer, media)
        our_direction = _direction(want_send and peer_recv, want_recv and peer_send)
        answer_media.append(
            _audio_section(
                rtp_port,
                media.proto,
                [(pt, codec)],
                None if dtmf_pick is None else (dtmf_pick[0], _format_events(dtmf_pick[1])),
                ptime,
                our_direction,
            )
        )
        negotiated = NegotiatedMedia(
            remote_address=conn.host,
            remote_rtp_port=media.port,
            remote_rtcp_port=_remote_rtcp(media),
            payload_type=pt,
            codec=codec.name,
            clock_rate=codec.clock_rate,
            dtmf_payload_type=None if dtmf_pick is None else dtmf_pick[0],
            direction=our_direction,
            ptime=media.ptime or ptime,
        )

    if negotiated is None:
        if disabled_audio is None:
            supported = ", ".join(f"{c.name}/{c.clock_rate}" for c in ours)
            raise SdpError(
                f"no acceptable audio stream: offered {_describe(offer)}; "
                f"we support RTP/AVP audio with {supported}",
                status=488,
                reason=_NOT_ACCEPTABLE,
            )
        negotiated = _rejected_result(ours[0], offer.connection_for(disabled_audio))

    answer = SessionDescription(
        origin=origin, connection=Connection(local_ip, addrtype), media=answer_media
    )
    if previous is not None:
        unchanged = answer.copy()
        unchanged.origin.session_version = previous.origin.session_version
        if unchanged == previous:
            answer = unchanged
    if _LOG.isEnabledFor(logging.DEBUG):
        _LOG.debug("answered %s with %s", _describe(offer), negotiated)
    return answer, negotiated


def _rejected_result(codec: Codec, conn: Connection | None) -> NegotiatedMedia:
    return NegotiatedMedia(
        remote_address="" if conn is None else conn.host,
        remote_rtp_port=0,
        remote_rtcp_port=0,
        payload_type=codec.payload_type,
        codec=codec.name,
        clock_rate=codec.clock_rate,
        dtmf_payload_type=None,
        direction="inactive",
        ptime=_DEFAULT_PTIME,
        rejected=True,
    )


def process_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia:
    """Check the peer's answer against our offer and return what was agreed (RFC 3264 §7).

    The answer must have as many ``m=`` lines as the offer, of the same media types and, for the
    accepted audio stream, the same transport; the codec we are to send is the first answered
    payload type that we offered (matched by name and clock rate; the answer's number is used).
    When the peer rejected our audio stream (port 0) the result has ``rejected=True``.
    Raises ``SdpError`` when the answer does not fit the offer, :class:`InvalidArgumentError`
    when ``offer`` has no audio stream.
    """
    if len(answer.media) != len(offer.media):
        raise SdpError(
            f"answer has {len(answer.media)} m= line(s) but the offer had {len(offer.media)}",
            reason=_NOT_ACCEPTABLE,
        )
    for index, (ours, theirs) in enumerate(zip(offer.media, answer.media, strict=True), 1):
        if ours.media != theirs.media:
            raise SdpError(
                f"answer m= line {index} is {theirs.media!r} but the offer's is {ours.media!r}",
                reason=_NOT_ACCEPTABLE,
            )
    indices = [i for i, m in enumerate(offer.media) if m.media == "audio" and m.port != 0]
    if not indices:
        raise InvalidArgumentError("the offer has no active audio stream")

    offered_codecs: list[RtpMap] = []
    for index in indices:
        ours, theirs = offer.media[index], answer.media[index]
        if theirs.port == 0:
            continue
        if theirs.proto != ours.proto:
            raise SdpError(
                f"answer m=audio uses {theirs.proto!r} but the offer used {ours.proto!r}",
                reason=_NOT_ACCEPTABLE,
            )
        offered_codecs = [r for _, r in _resolve(ours) if r is not None]
        audio_offered = [r for r in offered_codecs if not TELEPHONE_EVENT.matches(r)]
        chosen: tuple[RtpMap, Codec] | None = None
        dtmf_pt: int | None = None
        for _, rtpmap in _resolve(theirs):
            if rtpmap is None:
                continue
            if TELEPHONE_EVENT.matches(rtpmap):
                if dtmf_pt is None and any(TELEPHONE_EVENT.matches(r) for r in offered_codecs):
                    dtmf_pt = rtpmap.payload_type
                continue
            if chosen is None:
                codec = _known_codec(rtpmap)
                if codec is not None and any(codec.matches(r) for r in audio_offered):
                    chosen = (rtpmap, codec)
                else:
                    _LOG.debug("answer format %s was not offered, skipped", rtpmap.name)
        if chosen is None:
            raise SdpError(
                f"answer m=audio formats {' '.join(theirs.formats) or '(none)'} hold no codec "
                f"of the offer ({', '.join(r.name for r in audio_offered) or 'none'})",
                reason=_NOT_ACCEPTABLE,
            )
        conn = answer.connection_for(theirs)
        if conn is None:
            raise SdpError("answer m=audio has no c= line", status=400)
        our_send, our_recv = _flags(offer.effective_direction(ours))
        peer_send, peer_recv = _peer_flags(answer, theirs)
        rtpmap, codec = chosen
        return NegotiatedMedia(
            remote_address=conn.host,
            remote_rtp_port=theirs.port,
            remote_rtcp_port=_remote_rtcp(theirs),
            payload_type=rtpmap.payload_type,
            codec=codec.name,
            clock_rate=codec.clock_rate,
            dtmf_payload_type=dtmf_pt,
            direction=_direction(our_send and peer_recv, our_recv and peer_send),
            ptime=theirs.ptime or _DEFAULT_PTIME,
        )

    first = offer.media[indices[0]]
    known = [_known_codec(r) for _, r in _resolve(first) if r is not None]
    codec = next((c for c in known if c is not None), PCMU)
    return _rejected_result(codec, answer.connection_for(answer.media[indices[0]]))


def _known_codec(rtpmap: RtpMap) -> Codec | None:
    """The audio codec of our table that a payload type is, if any."""
    for codec in CODECS.values():
        if codec is not TELEPHONE_EVENT and codec.matches(rtpmap):
            return codec
    return None


# --- hold and re-offers -----------------------------------------------------------------------


def bump_version(sdp: SessionDescription) -> SessionDescription:
    """A copy of ``sdp`` with the ``o=`` session version incremented (for a new offer)."""
    out = sdp.copy()
    out.origin.session_version += 1
    return out


def with_direction(sdp: SessionDescription, direction: str) -> SessionDescription:
    """A copy of our ``sdp`` with every active audio stream set to ``direction``, version + 1.

    ``with_direction(last_offer, "sendonly")`` is the hold re-offer, ``"sendrecv"`` the resume.
    Raises :class:`InvalidArgumentError` for an unknown direction or an SDP without audio.
    """
    _check_direction(direction)
    out = bump_version(sdp)
    audio = [m for m in out.media if m.media == "audio" and m.port != 0]
    if not audio:
        raise InvalidArgumentError("the SDP has no active audio stream to change direction of")
    for media in audio:
        media.direction = direction
    return out


def is_hold(sdp: SessionDescription) -> bool:
    """True when ``sdp`` puts its audio on hold.

    That is: the direction of the first active audio stream is ``sendonly`` or ``inactive``, or
    its connection address is ``0.0.0.0`` (RFC 2543 style hold). False without active audio.
    """
    media = sdp.audio
    if media is None:
        return False
    if sdp.effective_direction(media) in ("sendonly", "inactive"):
        return True
    conn = sdp.connection_for(media)
    return conn is not None and conn.is_null
