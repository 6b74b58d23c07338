"""SDP for WHIP and WHEP: the gate in front of aiortc, plus a few answer and header helpers.

Sans-IO and free of aiortc: every function here takes text or bytes and returns values.

aiortc parses the offer again later, and its parser trusts its input: an ``assert``, a bare
``next()`` or a dict lookup fails on things a hostile or just unusual client can send. So
:func:`parse_offer` refuses, with an HTTP status and a one-line reason, everything that would
make aiortc raise something other than a clean error. It also refuses what our pipeline cannot
use (wrong direction, no usable codec), so the client gets a 4xx that says why instead of a
session that never carries media. :attr:`Offer.sdp` is the validated text, normalised to CRLF
line endings, and is what should be handed to aiortc.

Sources: RFC 8866 (SDP), RFC 9725 (WHIP), draft-ietf-wish-whep, RFC 8840 (trickle-ice-sdpfrag),
RFC 8445 §5.1 / RFC 8839 (candidate grammar), RFC 7064 / RFC 7065 (STUN/TURN URIs),
RFC 9110 §5.6.4 / §8.8.3 (quoted strings, entity tags), RFC 8288 (Link).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_SDP_BYTES = 64 * 1024
"""Bigger offers are refused (413) before parsing. Chromium's audio+video offers in the tests
are 3-4 KiB; FFmpeg's and OBS's about 1 KiB."""

MAX_SDPFRAG_BYTES = 16 * 1024
MAX_TRICKLE_CANDIDATES = 64
"""A browser gathers a handful of candidates per interface; 64 leaves room for many
interfaces while bounding what one PATCH can make the ICE agent do."""

MAX_MEDIA_SECTIONS = 16
"""WHIP carries at most one audio and one video m-line; a WHEP player rarely adds more than a
data channel. Each m-line becomes an aiortc transceiver, so the count is bounded."""

# What each role accepts per kind. aiortc 1.16 itself receives VP8 and H.264 only; VP9 is in
# the WHIP list because the brief asks for it (the session layer decides what it can decode).
# aiortc 1.16 can receive H.264 and VP8 only (it has no VP9 depacketiser).
WHIP_CODECS: dict[str, tuple[str, ...]] = {"video": ("h264", "vp8"), "audio": ("opus",)}
WHEP_CODECS: dict[str, tuple[str, ...]] = {"video": ("h264",), "audio": ("opus",)}

# The client's direction for each role: a WHIP client sends, a WHEP client receives.
_DIRECTIONS: dict[str, tuple[str, ...]] = {
    "whip": ("sendonly", "sendrecv"),
    "whep": ("recvonly", "sendrecv"),
}
_ALL_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_KINDS = ("audio", "video", "application")

# Encoding names for static payload types that need no a=rtpmap (RFC 3551 table 4).
_STATIC_AUDIO = {0: ("pcmu", 8000), 8: ("pcma", 8000), 9: ("g722", 8000), 13: ("cn", 8000)}

# a=fmtp parameters aiortc converts with int().
_FMTP_INT = frozenset(
    {"apt", "max-fr", "max-fs", "maxplaybackrate", "minptime", "stereo", "useinbandfec"}
)

# Payload formats that repair or wrap another codec: never a "usable codec" by themselves,
# and they take no bitrate hints.
_REPAIR_CODECS = frozenset({"rtx", "red", "ulpfec", "flexfec", "flexfec-03"})


class SdpError(ValueError):
    """An offer or fragment we refuse.

    ``status`` is the HTTP status to answer (400, 413, 415 or 422) and ``str(exc)`` a
    one-line reason for the client.
    """

    status: int

    def __init__(self, status: int, reason: str) -> None:
        if status not in (400, 413, 415, 422):
            raise ValueError(f"SdpError status must be 400, 413, 415 or 422, not {status}")
        # Reasons quote client text (codec names, attribute names): keep them one short line.
        clean = "".join(ch if ch.isprintable() else "?" for ch in reason)
        if len(clean) > 300:
            clean = clean[:297] + "..."
        super().__init__(clean)
        self.status = status


# --------------------------------------------------------------------------- lines


# A control character anywhere in a line: str.splitlines() (which aiortc uses) would split on
# several of them (\x0b, \x0c, \x1c-\x1e, \x85, U+2028/9), so a line containing one would mean
# different things to us and to aiortc. A lone \r is caught here too.
_BAD_CHAR = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
# RFC 8866 §5 type letters (plus the obsolete "u"/"e"/"p"/"i"/"k"/"r"/"z" ones).
_TYPE_LETTERS = frozenset("vosiuepcbtrzkam")
_ATTR = re.compile(r"a=([A-Za-z0-9][A-Za-z0-9_.\-]*)(?::(.*))?")


def _decode(body: bytes, limit: int, what: str) -> str:
    if len(body) > limit:
        raise SdpError(413, f"{what} is {len(body)} bytes; the limit is {limit}")
    try:
        return bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError(400, f"{what} is not UTF-8 text") from None


def _lines(text: str, what: str) -> list[tuple[int, str]]:
    """(line number, line) for every non-blank line; lines end in \\r\\n or \\n."""
    out: list[tuple[int, str]] = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw[:-1] if raw.endswith("\r") else raw
        line = line.rstrip(" ")
        if not line:
            continue
        if _BAD_CHAR.search(line):
            raise SdpError(400, f"{what} line {number} contains a control character")
        if len(line) < 2 or line[1] != "=" or line[0] not in _TYPE_LETTERS:
            raise SdpError(400, f"{what} line {number} is not an SDP <type>=<value> line")
        out.append((number, line))
    return out


def _attr(number: int, line: str, what: str) -> tuple[str, str | None]:
    m = _ATTR.fullmatch(line)
    if m is None:
        raise SdpError(400, f"{what} line {number} is a malformed attribute")
    # Attribute names are case-sensitive (RFC 8866 §5.13), as they are to aiortc.
    return m.group(1), m.group(2)


# Attributes that aiortc reads and that must carry a value (it calls .split() on the value).
_NEEDS_VALUE = frozenset(
    {
        "mid",
        "ice-ufrag",
        "ice-pwd",
        "ice-options",
        "fingerprint",
        "setup",
        "rtpmap",
        "fmtp",
        "rtcp-fb",
        "candidate",
        "extmap",
        "ssrc",
        "ssrc-group",
        "rtcp",
        "sctp-port",
        "sctpmap",
        "max-message-size",
        "group",
        "msid-semantic",
        "msid",
    }
)

# Per-attribute syntax, checked where aiortc would otherwise fail on int(), unpacking or a
# regex assert. Each is the shape real clients send, no looser.
_SYNTAX: dict[str, re.Pattern[str]] = {
    "fingerprint": re.compile(r"[A-Za-z0-9\-]{1,16} [0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){15,63}"),
    "rtpmap": re.compile(r"([0-9]{1,3}) ([A-Za-z0-9_.\-]{1,32})/([0-9]{1,6})(?:/([0-9]{1,2}))?"),
    "fmtp": re.compile(r"([0-9]{1,3}) (\S.*)"),
    "rtcp-fb": re.compile(r"(?:\*|[0-9]{1,3}) \S.*"),
    "extmap": re.compile(r"[0-9]{1,5}(?:/[a-z]{1,8})? \S+"),
    "ssrc": re.compile(r"[0-9]{1,10} [^:]+:.*"),
    "ssrc-group": re.compile(r"\S+(?: [0-9]{1,10})*"),
    "rtcp": re.compile(r"[0-9]{1,5}(?: IN IP[46] \S+)?"),
    "sctp-port": re.compile(r"[0-9]{1,5}"),
    "max-message-size": re.compile(r"[0-9]{1,10}"),
    "sctpmap": re.compile(r"[0-9]{1,5} \S.*"),
    "mid": re.compile(r"[\x21-\x7e]{1,64}"),
    "setup": re.compile(r"actpass|active|passive|holdconn"),
}
_C_LINE = re.compile(r"c=IN IP[46] \S+")
_M_LINE = re.compile(r"m=(\S+) ([0-9]{1,5}) ([A-Z/]+) (\S+(?: \S+)*)")
# ICE credentials: RFC 8839 allows ALPHA / DIGIT / "+" / "/". We accept any visible ASCII
# except the characters that would break a STUN USERNAME ("ufrag:ufrag") or a quoted ETag.
_ICE_CRED = re.compile(r"[\x21\x23-\x39\x3b-\x7e]{1,256}")


def _check_syntax(number: int, name: str, value: str | None, what: str) -> None:
    if value is None:
        if name in _NEEDS_VALUE:
            raise SdpError(400, f"{what} line {number}: a={name} needs a value")
        return
    if name in ("ice-ufrag", "ice-pwd"):
        if not _ICE_CRED.fullmatch(value):
            raise SdpError(400, f"{what} line {number}: malformed a={name}")
        return
    if name == "candidate":
        _check_candidate(number, value, what)
        return
    pattern = _SYNTAX.get(name)
    if pattern is not None and not pattern.fullmatch(value):
        if name == "extmap" and re.fullmatch(r"[0-9]{1,5}(?:/[a-z]{1,8})? \S+ .+", value):
            # RFC 8285 extension attributes: legal SDP, but aiortc cannot parse them.
            raise SdpError(422, f"{what} line {number}: a=extmap attributes are not supported")
        raise SdpError(400, f"{what} line {number}: malformed a={name}")


def _check_candidate(number: int, value: str, what: str) -> None:
    """RFC 8839 §5.1 candidate-attribute, as far as aioice relies on it."""
    bad = SdpError(400, f"{what} line {number}: malformed a=candidate")
    tokens = value.split(" ")
    if len(tokens) < 8 or "" in tokens:
        raise bad
    foundation, component, transport, priority, address, port, typ, kind = tokens[:8]
    if not (
        re.fullmatch(r"[A-Za-z0-9+/]{1,32}", foundation)
        and re.fullmatch(r"[0-9]{1,3}", component)
        and re.fullmatch(r"[A-Za-z0-9_\-]{1,16}", transport)
        and re.fullmatch(r"[0-9]{1,10}", priority)
        and re.fullmatch(r"[A-Za-z0-9.:%_\-]{1,255}", address)
        and re.fullmatch(r"[0-9]{1,5}", port)
        and int(port) <= 65535
        and typ == "typ"
        and re.fullmatch(r"[A-Za-z0-9_\-]{1,16}", kind)
    ):
        raise bad
    # aioice int()s these extension values; anything else it ignores.
    for i in range(8, len(tokens) - 1, 2):
        if tokens[i] in ("rport", "generation") and not re.fullmatch(r"[0-9]{1,10}", tokens[i + 1]):
            raise bad


# --------------------------------------------------------------------------- offers


@dataclass(frozen=True)
class RtpFormat:
    """One payload type of an m-line: a=rtpmap plus its a=fmtp."""

    pt: int
    name: str  # lower-case encoding name
    clock_rate: int
    channels: int | None = None
    fmtp: str | None = None

    def param(self, key: str) -> str | None:
        """The value of one a=fmtp parameter ("" for a bare flag), None when absent."""
        for item in (self.fmtp or "").split(";"):
            k, sep, v = item.partition("=")
            if k.strip().lower() == key.lower():
                return v.strip() if sep else ""
        return None


@dataclass(frozen=True)
class MediaSection:
    kind: str  # "audio" | "video" | "application" | other
    mid: str | None
    direction: str  # sendrecv/sendonly/recvonly/inactive (default sendrecv)
    codecs: tuple[str, ...]  # lower-case encoding names in offer order, each once
    port: int  # 0 = rejected/disabled m-line (unless bundle_only)
    ice_ufrag: str | None  # section-level, else session-level value
    ice_pwd: str | None
    formats: tuple[RtpFormat, ...] = ()  # in m-line order, PTs without a known name left out
    setup: str | None = None  # a=setup, section-level else session-level
    rtcp_mux: bool = False
    bundle_only: bool = False  # RFC 8843: port 0 but carried on the BUNDLE transport

    @property
    def active(self) -> bool:
        return self.port != 0 or self.bundle_only


@dataclass(frozen=True)
class Offer:
    media: tuple[MediaSection, ...]
    has_fingerprint: bool  # a=fingerprint at session level or on every m-line
    sdp: str = field(default="", repr=False)  # the validated offer with CRLF endings

    def section(self, kind: str) -> MediaSection | None:
        """The first active m-line of that kind."""
        return next((m for m in self.media if m.kind == kind and m.active), None)


@dataclass
class _Draft:
    """A media section while its lines are read."""

    index: int
    kind: str
    port: int
    fmts: list[str]
    mid: str | None = None
    direction: str | None = None
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    setup: str | None = None
    fingerprint: bool = False
    rtcp_mux: bool = False
    bundle_only: bool = False
    rtpmap: dict[int, tuple[str, int, int | None]] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)

    def label(self) -> str:
        mid = f", mid {self.mid}" if self.mid is not None else ""
        return f"m-line {self.index} ({self.kind}{mid})"


def parse_offer(body: bytes, *, role: str) -> Offer:
    """Validate a WHIP (``role="whip"``) or WHEP (``role="whep"``) SDP offer.

    Raises only :class:`SdpError` for any ``body``; ``ValueError`` for an unknown role.
    """
    if role not in _DIRECTIONS:
        raise ValueError(f"role must be 'whip' or 'whep', not {role!r}")
    what = "offer"
    lines = _lines(_decode(body, MAX_SDP_BYTES, what), what)
    if not lines or lines[0][1] != "v=0":
        raise SdpError(400, "offer is not SDP: it must start with v=0")

    s_ufrag: str | None = None
    s_pwd: str | None = None
    s_setup: str | None = None
    s_direction: str | None = None
    s_fingerprint = False
    drafts: list[_Draft] = []
    mids: set[str] = set()

    for number, line in lines[1:]:
        kind = line[0]
        cur = drafts[-1] if drafts else None
        if kind == "v":
            raise SdpError(400, f"offer line {number}: a second v= line")
        if kind == "m":
            m = _M_LINE.fullmatch(line)
            if m is None:
                raise SdpError(400, f"offer line {number} is a malformed m= line")
            if len(drafts) >= MAX_MEDIA_SECTIONS:
                raise SdpError(400, f"offer has more than {MAX_MEDIA_SECTIONS} m-lines")
            port = int(m.group(2))
            if port > 65535:
                raise SdpError(400, f"offer line {number}: port {port} is out of range")
            fmts = m.group(4).split(" ")
            if m.group(1) in ("audio", "video"):
                for fmt in fmts:
                    # RTP payload types are 7 bits; 72-76 collide with RTCP (RFC 5761 §4).
                    if not re.fullmatch(r"[0-9]{1,3}", fmt) or int(fmt) > 127:
                        raise SdpError(400, f"offer line {number}: bad payload type {fmt}")
                    if 72 <= int(fmt) <= 76:
                        raise SdpError(400, f"offer line {number}: payload type {fmt} is reserved")
            drafts.append(_Draft(index=len(drafts), kind=m.group(1), port=port, fmts=fmts))
            continue
        if kind == "c":
            if not _C_LINE.fullmatch(line):
                raise SdpError(400, f"offer line {number} is a malformed c= line")
            continue
        if kind != "a":
            continue
        name, value = _attr(number, line, what)
        _check_syntax(number, name, value, what)
        if cur is None:
            if name == "ice-ufrag":
                s_ufrag = value
            elif name == "ice-pwd":
                s_pwd = value
            elif name == "setup":
                s_setup = value
            elif name == "fingerprint":
                s_fingerprint = True
            elif name in _ALL_DIRECTIONS:
                s_direction = name
            continue
        if name == "mid":
            assert value is not None
            if cur.mid is not None or value in mids:
                raise SdpError(400, f"offer line {number}: duplicate a=mid:{value}")
            cur.mid = value
            mids.add(value)
        elif name in _ALL_DIRECTIONS:
            cur.direction = name
        elif name == "ice-ufrag":
            cur.ice_ufrag = value
        elif name == "ice-pwd":
            cur.ice_pwd = value
        elif name == "setup":
            cur.setup = value
        elif name == "fingerprint":
            cur.fingerprint = True
        elif name == "rtcp-mux":
            cur.rtcp_mux = True
        elif name == "bundle-only":
            cur.bundle_only = True
        elif name == "rtpmap":
            m = _SYNTAX["rtpmap"].fullmatch(value or "")
            assert m is not None
            pt = int(m.group(1))
            if pt in cur.rtpmap:
                raise SdpError(400, f"offer line {number}: second a=rtpmap for {pt}")
            channels = int(m.group(4)) if m.group(4) else None
            cur.rtpmap[pt] = (m.group(2).lower(), int(m.group(3)), channels)
        elif name == "fmtp":
            m = _SYNTAX["fmtp"].fullmatch(value or "")
            assert m is not None
            pt = int(m.group(1))
            if pt in cur.fmtp:
                raise SdpError(400, f"offer line {number}: second a=fmtp for {pt}")
            cur.fmtp[pt] = m.group(2)

    if not drafts:
        raise SdpError(400, "offer has no m= line")
    media = tuple(_finish(d, s_ufrag, s_pwd, s_setup, s_direction) for d in drafts)
    _check_offer(role, drafts, media, s_fingerprint)
    sdp = "".join(line + "\r\n" for _, line in lines)
    return Offer(media=media, has_fingerprint=True, sdp=sdp)


def _finish(
    d: _Draft, ufrag: str | None, pwd: str | None, setup: str | None, direction: str | None
) -> MediaSection:
    for pt, params in d.fmtp.items():
        # aiortc looks the codec of every a=fmtp up with a bare next(): an a=fmtp without
        # its a=rtpmap would escape as StopIteration.
        if pt not in d.rtpmap:
            raise SdpError(400, f"{d.label()}: a=fmtp:{pt} has no a=rtpmap")
        for param in params.split(";"):
            key, sep, value = param.partition("=")
            if sep and key in _FMTP_INT and not re.fullmatch(r"[0-9]{1,10}", value):
                raise SdpError(400, f"{d.label()}: a=fmtp:{pt} {key} must be a number")
    formats: list[RtpFormat] = []
    if d.kind in ("audio", "video"):
        for fmt in d.fmts:
            pt = int(fmt)
            if pt in d.rtpmap:
                name, clock, channels = d.rtpmap[pt]
            elif d.kind == "audio" and pt in _STATIC_AUDIO:
                name, clock = _STATIC_AUDIO[pt]
                channels = None
            else:
                continue
            formats.append(RtpFormat(pt, name, clock, channels, d.fmtp.get(pt)))
    codecs = tuple(dict.fromkeys(f.name for f in formats))
    return MediaSection(
        kind=d.kind,
        mid=d.mid,
        direction=d.direction or direction or "sendrecv",
        codecs=codecs,
        port=d.port,
        ice_ufrag=d.ice_ufrag or ufrag,
        ice_pwd=d.ice_pwd or pwd,
        formats=tuple(formats),
        setup=d.setup or setup,
        rtcp_mux=d.rtcp_mux,
        bundle_only=d.bundle_only,
    )


def _usable(fmt: RtpFormat) -> bool:
    # aiortc (and every browser decoder we feed) packetises H.264 in mode 1 only.
    return fmt.name != "h264" or fmt.param("packetization-mode") == "1"


def _check_offer(
    role: str, drafts: list[_Draft], media: tuple[MediaSection, ...], s_fingerprint: bool
) -> None:
    # Every m-line, not only active ones: aiortc checks credentials and rtcp-mux on all.
    for d, sec in zip(drafts, media, strict=True):
        if sec.ice_ufrag is None or sec.ice_pwd is None:
            raise SdpError(400, f"{d.label()} has no a=ice-ufrag/a=ice-pwd")
        if not (s_fingerprint or d.fingerprint):
            raise SdpError(400, f"{d.label()} has no a=fingerprint (DTLS is required)")
        if sec.setup is None:
            raise SdpError(400, f"{d.label()} has no a=setup")
        if sec.setup == "holdconn":
            raise SdpError(422, f"{d.label()}: a=setup:holdconn is not supported")
        if sec.kind not in _KINDS:
            raise SdpError(422, f"{d.label()}: media kind {sec.kind!r} is not supported")
        if sec.kind in ("audio", "video") and not sec.rtcp_mux:
            raise SdpError(422, f"{d.label()} lacks a=rtcp-mux, which WebRTC requires")

    active = [(d, s) for d, s in zip(drafts, media, strict=True) if s.active]
    counts = {k: sum(1 for _, s in active if s.kind == k) for k in _KINDS}
    if counts["application"] > 1:
        raise SdpError(400, "offer has more than one active application m-line")
    if role == "whip":
        for k in ("audio", "video"):
            if counts[k] > 1:
                raise SdpError(400, f"WHIP allows one {k} m-line; the offer has {counts[k]}")
    if counts["audio"] + counts["video"] == 0:
        raise SdpError(422, "offer has no active audio or video m-line")

    wanted_dir = _DIRECTIONS[role]
    accepted = WHIP_CODECS if role == "whip" else WHEP_CODECS
    for d, sec in active:
        if sec.kind not in ("audio", "video"):
            continue
        if sec.direction not in wanted_dir:
            raise SdpError(
                422,
                f"{role.upper()} needs {d.label()} to be {' or '.join(wanted_dir)}, "
                f"not {sec.direction}",
            )
        usable = [f for f in sec.formats if f.name in accepted[sec.kind] and _usable(f)]
        if not usable:
            offered = ", ".join(sec.codecs) or "no codec"
            if "h264" in sec.codecs:
                offered += " (h264 only with packetization-mode 0)"
            need = ", ".join(accepted[sec.kind])
            raise SdpError(
                422, f"{role.upper()} needs {sec.kind} in {need}; {d.label()} offers {offered}"
            )


# --------------------------------------------------------------------------- trickle


@dataclass(frozen=True)
class TrickleCandidate:
    mid: str | None
    mline_index: int | None  # index of its m= line within the fragment; None before any m=
    candidate: str  # the value after "a=candidate:"


@dataclass(frozen=True)
class SdpFrag:
    ice_ufrag: str | None
    ice_pwd: str | None
    candidates: tuple[TrickleCandidate, ...]
    end_of_candidates: bool


def parse_sdpfrag(body: bytes) -> SdpFrag:
    """Parse an ``application/trickle-ice-sdpfrag`` body (RFC 8840 §9.1).

    Credentials may sit at session level (RFC 8840) or in the m= sections (the RFC 9725
    examples); they must agree. Raises only :class:`SdpError` for any ``body``.
    """
    what = "sdpfrag"
    lines = _lines(_decode(body, MAX_SDPFRAG_BYTES, what), what)
    if not lines:
        raise SdpError(400, "sdpfrag is empty")
    creds: dict[str, str] = {}
    # Per m= section: its a=mid (which may follow the candidates) and its candidates.
    sections: list[tuple[list[str | None], list[str]]] = []
    loose: list[str] = []
    count = 0
    end = False
    for number, line in lines:
        if line[0] == "m":
            if not re.fullmatch(r"m=\S+(?: \S+)*", line):
                raise SdpError(400, f"sdpfrag line {number} is a malformed m= line")
            sections.append(([None], []))
            continue
        if line[0] != "a":
            continue  # v=, o=, c=... carry nothing a trickle update needs
        name, value = _attr(number, line, what)
        _check_syntax(number, name, value, what)
        if name in ("ice-ufrag", "ice-pwd"):
            assert value is not None
            if creds.setdefault(name, value) != value:
                raise SdpError(400, f"sdpfrag line {number}: conflicting a={name}")
        elif name == "candidate":
            assert value is not None
            count += 1
            if count > MAX_TRICKLE_CANDIDATES:
                raise SdpError(413, f"sdpfrag has more than {MAX_TRICKLE_CANDIDATES} candidates")
            (sections[-1][1] if sections else loose).append(value)
        elif name == "end-of-candidates":
            end = True
        elif name == "mid" and sections:
            mid_box = sections[-1][0]
            if mid_box[0] is not None:
                raise SdpError(400, f"sdpfrag line {number}: second a=mid in one m= section")
            mid_box[0] = value
    candidates = [TrickleCandidate(None, None, c) for c in loose]
    for index, (mid_box, values) in enumerate(sections):
        candidates.extend(TrickleCandidate(mid_box[0], index, c) for c in values)
    return SdpFrag(
        ice_ufrag=creds.get("ice-ufrag"),
        ice_pwd=creds.get("ice-pwd"),
        candidates=tuple(candidates),
        end_of_candidates=end,
    )


# --------------------------------------------------------------------------- HTTP helpers


def check_content_type(value: str | None, expected: str) -> None:
    """Refuse (415) a request whose Content-Type is not ``expected``.

    Media types compare case-insensitively and parameters are allowed, but a charset other
    than UTF-8 (or its subset US-ASCII) is refused: we decode bodies as UTF-8.
    """
    if not value or not value.strip():
        raise SdpError(415, f"Content-Type must be {expected}")
    media_type, _, params = value.partition(";")
    if media_type.strip().lower() != expected.lower():
        raise SdpError(415, f"Content-Type must be {expected}, not {media_type.strip()}")
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset":
            charset = val.strip().strip('"').lower()
            if charset not in ("utf-8", "utf8", "us-ascii"):
                raise SdpError(415, f"charset {charset} is not supported; send UTF-8")


@dataclass(frozen=True)
class IceServer:
    url: str  # stun:host[:port] | turn:host[:port][?transport=udp|tcp] | turns:...
    username: str | None = None
    credential: str | None = None

    @property
    def scheme(self) -> str:
        return self.url.partition(":")[0].lower()


_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.\-]{0,251}[A-Za-z0-9])?")
_SCHEMES = ("stun", "stuns", "turn", "turns")


def _parse_ice_url(url: str) -> str:
    """Check one STUN/TURN URI (RFC 7064 / RFC 7065) and return it with lower-case scheme."""
    scheme, colon, rest = url.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in _SCHEMES:
        raise ValueError(f"ICE server {url!r}: the scheme must be stun, stuns, turn or turns")
    if rest.startswith("//"):
        raise ValueError(f"ICE server {url!r}: write {scheme}:host, without //")
    hostport, qmark, query = rest.partition("?")
    if qmark:
        if scheme in ("stun", "stuns"):
            raise ValueError(f"ICE server {url!r}: a {scheme} URL takes no query")
        key, _, transport = query.partition("=")
        if key.lower() != "transport" or transport.lower() not in ("udp", "tcp"):
            raise ValueError(f"ICE server {url!r}: the only query is ?transport=udp or tcp")
        query = "transport=" + transport.lower()
    if hostport.startswith("["):
        host, bracket, port = hostport[1:].partition("]")
        if not bracket:
            raise ValueError(f"ICE server {url!r}: unclosed [ in the host")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"ICE server {url!r}: {host!r} is not an IPv6 address") from None
        if port and not port.startswith(":"):
            raise ValueError(f"ICE server {url!r}: junk after the IPv6 address")
        port = port[1:]
        host = f"[{host}]"
    else:
        host, _, port = hostport.partition(":")
        if not host.isascii() or not _HOSTNAME.fullmatch(host):
            raise ValueError(f"ICE server {url!r}: {host!r} is not a host name or address")
        if re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"ICE server {url!r}: {host!r} is not an IPv4 address") from None
    if port and not (re.fullmatch(r"[0-9]{1,5}", port) and 1 <= int(port) <= 65535):
        raise ValueError(f"ICE server {url!r}: port {port!r} is not 1-65535")
    out = f"{scheme}:{host}" + (f":{port}" if port else "")
    return out + (f"?{query}" if qmark else "")


def _check_secret(url: str, what: str, value: str) -> None:
    if not value:
        raise ValueError(f"ICE server {url!r}: empty {what}")
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"ICE server {url!r}: the {what} must be printable ASCII")


def parse_ice_servers(text: str) -> tuple[IceServer, ...]:
    """Parse the ICE-servers setting: entries separated by commas or whitespace, each
    ``URL`` or ``URL|USERNAME|CREDENTIAL`` (so neither may contain a comma, space or |).

    turn/turns need a username and credential; stun/stuns take none. Raises ValueError
    with a one-line message.
    """
    servers: list[IceServer] = []
    for entry in re.split(r"[,\s]+", text.strip()):
        if not entry:
            continue
        parts = entry.split("|")
        if len(parts) not in (1, 3):
            raise ValueError(
                f"ICE server {parts[0]!r}: write URL or URL|USERNAME|CREDENTIAL, "
                f"not {len(parts)} |-separated parts"
            )
        url = _parse_ice_url(parts[0])
        scheme = url.partition(":")[0]
        if len(parts) == 1:
            if scheme in ("turn", "turns"):
                raise ValueError(f"ICE server {url!r}: a TURN server needs |USERNAME|CREDENTIAL")
            servers.append(IceServer(url))
            continue
        if scheme in ("stun", "stuns"):
            raise ValueError(f"ICE server {url!r}: a STUN server takes no credentials")
        _check_secret(url, "username", parts[1])
        _check_secret(url, "credential", parts[2])
        servers.append(IceServer(url, parts[1], parts[2]))
    return tuple(servers)


def _quoted(value: str) -> str:
    """An RFC 9110 quoted-string; refuses what cannot be sent in a header value."""
    if not value.isascii() or any(ch < " " or ch == "\x7f" for ch in value):
        raise ValueError("header parameter values must be printable ASCII")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def link_headers(servers: Sequence[IceServer]) -> list[str]:
    """One ``Link`` header value per server, in the WHIP §4.6 form.

    STUN entries never carry credentials, even if the IceServer has some.
    """
    out: list[str] = []
    for server in servers:
        url = server.url
        if not url.isascii() or re.search(r"[\x00-\x20\x7f<>\"]", url):
            raise ValueError(f"ICE server URL {url!r} cannot go in a Link header")
        value = f'<{url}>; rel="ice-server"'
        if server.scheme in ("turn", "turns") and server.username is not None:
            value += f"; username={_quoted(server.username)}"
            if server.credential is not None:
                value += f"; credential={_quoted(server.credential)}"
                value += '; credential-type="password"'
        out.append(value)
    return out


# --------------------------------------------------------------------------- answers

_BITRATE_KEYS = ("x-google-start-bitrate", "x-google-min-bitrate", "x-google-max-bitrate")


def add_bitrate_hints(answer_sdp: str, *, start_kbps: int, min_kbps: int, max_kbps: int) -> str:
    """Add Chromium's x-google-{start,min,max}-bitrate to every video codec of an answer.

    Without them Chromium starts a WHIP publish at ~300 kbit/s and ramps up over seconds.
    Repair formats (rtx, red, ulpfec, flexfec) are left alone; a codec without an a=fmtp
    gets one after its a=rtpmap. Existing hints are replaced, so applying twice is harmless.
    Line endings are kept (CRLF unless the answer uses bare LF).
    """
    if not 0 < min_kbps <= start_kbps <= max_kbps:
        raise ValueError("bitrate hints need 0 < min_kbps <= start_kbps <= max_kbps")
    hints = (
        f"x-google-start-bitrate={start_kbps};x-google-min-bitrate={min_kbps};"
        f"x-google-max-bitrate={max_kbps}"
    )
    eol = "\r\n" if "\r\n" in answer_sdp or "\n" not in answer_sdp else "\n"
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in answer_sdp.split("\n")]

    # Group line indices by m-section (section -1 is the session part).
    starts = [i for i, ln in enumerate(lines) if ln.startswith("m=")]
    bounds = list(zip(starts, starts[1:] + [len(lines)], strict=True))
    insert_after: dict[int, str] = {}
    for begin, end in bounds:
        m = _M_LINE.fullmatch(lines[begin])
        if m is None or m.group(1) != "video" or m.group(2) == "0":
            continue
        names: dict[str, str] = {}
        rtpmap_line: dict[str, int] = {}
        fmtp_line: dict[str, int] = {}
        for i in range(begin + 1, end):
            rm = re.match(r"a=rtpmap:([0-9]+) ([^/\s]+)/", lines[i])
            if rm:
                names[rm.group(1)] = rm.group(2).lower()
                rtpmap_line[rm.group(1)] = i
            fm = re.match(r"a=fmtp:([0-9]+) ", lines[i])
            if fm:
                fmtp_line[fm.group(1)] = i
        for pt in m.group(4).split(" "):
            if pt not in names or names[pt] in _REPAIR_CODECS:
                continue
            if pt in fmtp_line:
                i = fmtp_line[pt]
                prefix, _, params = lines[i].partition(" ")
                kept = [
                    p
                    for p in params.split(";")
                    if p and p.partition("=")[0].strip().lower() not in _BITRATE_KEYS
                ]
                lines[i] = f"{prefix} {';'.join([*kept, hints])}"
            else:
                insert_after[rtpmap_line[pt]] = f"a=fmtp:{pt} {hints}"

    out: list[str] = []
    for i, line in enumerate(lines):
        out.append(line)
        if i in insert_after:
            out.append(insert_after[i])
    return eol.join(out)


def session_url_token() -> str:
    """An unguessable session id (32 random bytes, URL-safe base64, no padding): a guessed
    session URL would let anyone DELETE someone else's stream (RFC 9725 §5)."""
    return secrets.token_urlsafe(32)


def etag(value: str) -> str:
    """A strong entity tag for a session (RFC 9110 §8.8.3), e.g. from its ICE ufrag."""
    if not value.isascii() or re.search(r'[\x00-\x20\x7f"]', value):
        raise ValueError("an entity tag may hold only visible ASCII other than '\"'")
    return f'"{value}"'
