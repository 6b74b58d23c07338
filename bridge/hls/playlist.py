"""Live HLS media playlists, LL-HLS delivery directives and multivariant playlists.

Pure: no IO, no clock; the muxer side builds the model as media arrives, the HTTP side
renders it and asks whether a blocking request may be answered. Facts come from
/work/shared/reference/hls.md (RFC 8216 and draft-pantos-hls-rfc8216bis; § as cited).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, NamedTuple
from urllib.parse import quote

# A segment may run this far past a whole second without raising TARGETDURATION. The
# rule is "EXTINF rounded to the nearest integer <= TD" (RFC 8216 §4.3.3.1), so this is
# honest; it keeps millisecond clock noise and 29.97 fps GOPs (2.002 s) from turning a
# 2 s target into 3 (which would push classic players 3 s further back).
_TD_SLACK = 0.01
_EPS = 1e-6
# A hard bound on listed segments, above the 3 x TD rule, for pathological streams that
# only ever produce near-empty segments (a publisher reconnecting over and over).
_MIN_HARD_CAP = 64
# Echoed query parameters are repeated on every URI of every playlist: keep them short.
MAX_ECHO_QUERY = 1024
MAX_QUERY_PARAMS = 64
_NUMBER = re.compile(r"[0-9]{1,10}")  # ten digits: 300 years of 1 s segments
_BAD_URI_CHARS = re.compile(r'["\x00-\x1f\x7f]')


@dataclass
class Part:
    """One partial segment (EXT-X-PART)."""

    uri: str
    duration: float
    independent: bool


@dataclass
class Segment:
    """One media segment; ``complete`` once its duration is known (EXTINF)."""

    msn: int
    uri: str
    duration: float
    program_date_time: datetime
    discontinuity: bool = False
    parts: list[Part] = field(default_factory=list)
    complete: bool = False
    map_uri: str | None = None  # the EXT-X-MAP in force for it (fMP4)


def _check_uri(uri: str) -> str:
    # URIs go into quoted-strings and lines of the playlist (RFC 8216 §4.2).
    if not uri or _BAD_URI_CHARS.search(uri):
        raise ValueError(f"unusable URI in a playlist: {uri!r}")
    return uri


def _check_duration(duration: float) -> float:
    if not (math.isfinite(duration) and duration >= 0):
        raise ValueError(f"bad duration: {duration!r}")
    return duration


def _dec(value: float) -> str:
    return f"{value:.3f}"


def _dec_up(value: float) -> str:
    """Three decimals rounded up, for limits that must not be understated."""
    return f"{math.ceil(value * 1000 - _EPS) / 1000:.3f}"


def _pdt(when: datetime) -> str:
    # ISO 8601 with milliseconds and an offset (bis §4.4.4.6).
    utc = when.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{utc.microsecond // 1000:03d}Z"


def _with_query(uri: str, query: str) -> str:
    if not query:
        return uri
    return f"{uri}{'&' if '?' in uri else '?'}{query}"


class MediaPlaylist:
    """A live media playlist with a sliding window, optionally Low-Latency.

    Classic HLS when ``part_target`` is None or ``low_latency`` is False (no EXT-X-PART,
    PART-INF, SERVER-CONTROL or PRELOAD-HINT). ``map_uri`` set means fMP4 (EXT-X-MAP).
    The version is constant for a configuration: 9 for LL (EXT-X-SKIP may appear,
    bis §7), 6 with EXT-X-MAP, 3 otherwise (float EXTINF), unless given. ``set_map``
    changes the init section for the segments that follow (a new muxer after a
    discontinuity); the first one raises a computed version to 6.
    """

    def __init__(
        self,
        *,
        target_duration_hint: float,
        part_target: float | None,
        window: int,
        low_latency: bool,
        map_uri: str | None,
        version: int | None = None,
    ) -> None:
        if not (math.isfinite(target_duration_hint) and target_duration_hint > 0):
            raise ValueError(f"target duration hint must be positive: {target_duration_hint!r}")
        if part_target is not None and not (math.isfinite(part_target) and part_target > 0):
            raise ValueError(f"part target must be positive: {part_target!r}")
        if window < 1:
            raise ValueError(f"window must hold at least one segment: {window!r}")
        self.low_latency = low_latency and part_target is not None
        self.part_target = part_target
        self.window = window
        self.map_uri = _check_uri(map_uri) if map_uri is not None else None
        self._auto_version = version is None
        if version is None:
            version = 9 if self.low_latency else 6 if map_uri is not None else 3
        self.version = version
        # Honest and never decreasing: at least the configured target, raised by any
        # complete segment that would round above it (RFC 8216 §4.3.3.1, §6.2.1).
        self.target_duration = max(1, math.ceil(target_duration_hint - _EPS))
        self.segments: list[Segment] = []  # complete ones, then at most one open one
        self.discontinuity_sequence = 0
        self.ended = False
        self.preload_hint: str | None = None
        # URIs (segments and their parts) that left the window at the latest
        # end_segment()/end(): the service keeps serving them a while (RFC 8216 §6.2.2:
        # the segment's duration plus the longest playlist that held it).
        self.removed: list[str] = []
        self._next_msn = 0
        self._resume_discontinuity = False
        # Media seconds completed so far: the clock for retaining removed resources.
        self._media_time = 0.0
        self._gone: deque[tuple[float, list[str]]] = deque()

    # -- state --------------------------------------------------------------------------

    @property
    def media_sequence(self) -> int:
        """EXT-X-MEDIA-SEQUENCE: the msn of the first listed segment."""
        return self.segments[0].msn if self.segments else self._next_msn

    @property
    def next_msn(self) -> int:
        """The msn the next start_segment() will get."""
        return self._next_msn

    @property
    def last_msn(self) -> int:
        """The msn of the last segment (complete or open), -1 before the first one."""
        return self.segments[-1].msn if self.segments else -1

    @property
    def last_part(self) -> int:
        """Index of the last completed part of the last segment, -1 if none."""
        return len(self.segments[-1].parts) - 1 if self.segments else -1

    def _open(self) -> Segment | None:
        if self.segments and not self.segments[-1].complete:
            return self.segments[-1]
        return None

    def segment(self, msn: int) -> Segment | None:
        """The listed segment with this msn, if any."""
        index = msn - self.media_sequence
        if 0 <= index < len(self.segments):
            return self.segments[index]
        return None

    def contains(self, msn: int, part: int | None = None) -> bool:
        """Whether the playlist holds segment ``msn`` complete, or part ``part`` of it
        (a part index past the end of a complete segment means part 0 of the next one:
        bis §6.2.5.2). Segments older than the window count as held."""
        if msn < self.media_sequence:
            return True
        segment = self.segment(msn)
        if segment is None:
            return False
        if part is None:
            return segment.complete
        if part < len(segment.parts):
            return True
        if not segment.complete:
            return False
        following = self.segment(msn + 1)
        return following is not None and (following.complete or bool(following.parts))

    # -- building -----------------------------------------------------------------------

    def start_segment(
        self, uri: str, program_date_time: datetime, discontinuity: bool = False
    ) -> int:
        """Open a new segment; returns its msn. After end(), the stream resumes: the
        ENDLIST goes and the new segment is marked as a discontinuity (new timeline)."""
        if self._open() is not None:
            raise ValueError("a segment is already open")
        if program_date_time.tzinfo is None or program_date_time.utcoffset() is None:
            raise ValueError("program_date_time must be timezone-aware")
        if self.ended:
            self.reopen()
        discontinuity = discontinuity or self._resume_discontinuity
        self._resume_discontinuity = False
        msn = self._next_msn
        self._next_msn += 1
        segment = Segment(msn, _check_uri(uri), 0.0, program_date_time, discontinuity)
        segment.map_uri = self.map_uri
        self.segments.append(segment)
        return msn

    def reopen(self) -> None:
        """Resume after end(): the ENDLIST goes and the next segment is marked as a
        discontinuity (a new publish is a new timeline, RFC 8216 §4.3.2.3)."""
        if self.ended:
            self.ended = False
            self._resume_discontinuity = self._next_msn > 0

    def set_map(self, uri: str | None) -> None:
        """The init section (EXT-X-MAP) for the segments started from now on."""
        self.map_uri = _check_uri(uri) if uri is not None else None
        if uri is not None and self._auto_version:
            self.version = max(self.version, 6)

    def add_part(self, uri: str, duration: float, independent: bool) -> None:
        """Append a completed part to the open segment."""
        segment = self._open()
        if segment is None:
            raise ValueError("no open segment")
        segment.parts.append(Part(_check_uri(uri), _check_duration(duration), independent))

    def end_segment(self, duration: float) -> None:
        """Complete the open segment and slide the window."""
        segment = self._open()
        if segment is None:
            raise ValueError("no open segment")
        self._complete(segment, _check_duration(duration))

    def set_preload_hint(self, uri: str | None) -> None:
        """The next part's URI (EXT-X-PRELOAD-HINT, LL only), or None."""
        self.preload_hint = _check_uri(uri) if uri is not None else None

    def end(self) -> None:
        """The stream ended: EXT-X-ENDLIST, no preload hint (bis §4.4.5.3). An open
        segment with parts is completed with their total duration; one without is
        dropped (nothing of it was ever listed)."""
        segment = self._open()
        if segment is not None:
            if segment.parts:
                self._complete(segment, sum(part.duration for part in segment.parts))
            else:
                self.segments.pop()
                self._next_msn -= 1
        self.ended = True
        self.preload_hint = None

    def _complete(self, segment: Segment, duration: float) -> None:
        segment.duration = duration
        segment.complete = True
        self._media_time += duration
        needed = max(1, math.ceil(round(duration, 3) - _TD_SLACK))
        self.target_duration = max(self.target_duration, needed)
        self._slide()

    def _slide(self) -> None:
        """Keep ``window`` complete segments, but never less than 3 x TD of media
        (RFC 8216 §6.2.2); count discontinuities that scroll out (§4.3.3.3)."""
        removed: list[str] = []
        maps: set[str] = set()
        complete = [segment for segment in self.segments if segment.complete]
        count = len(complete)
        total = sum(segment.duration for segment in complete)
        minimum = 3 * self.target_duration
        hard_cap = max(_MIN_HARD_CAP, 4 * self.window)
        while count > self.window and self.segments[0].complete:
            first = self.segments[0]
            if total - first.duration < minimum - _EPS and count <= hard_cap:
                break
            self.segments.pop(0)
            count -= 1
            total -= first.duration
            if first.discontinuity:
                self.discontinuity_sequence += 1
            removed.append(first.uri)
            removed.extend(part.uri for part in first.parts)
            if first.map_uri is not None:
                maps.add(first.map_uri)
        self.removed = removed
        if removed:
            # Their init sections too, for clients still holding an older playlist.
            self._gone.append((self._media_time, removed + sorted(maps)))
            while len(self._gone) > max(_MIN_HARD_CAP, 4 * self.window):
                self._gone.popleft()

    def is_hinted(self, uri: str) -> bool:
        """Whether ``uri`` is the preload hint: requests for it block (bis §6.2.6)."""
        return self.preload_hint is not None and uri == self.preload_hint

    def resource_names(self, *, retain: float) -> set[str]:
        """Every URI a client may still fetch: listed segments, their parts and init
        sections, and what left the window less than ``retain`` seconds of media ago
        (RFC 8216 §6.2.2; bis §6.2.2 asks 3 x TD for parts)."""
        while self._gone and self._media_time - self._gone[0][0] >= retain:
            self._gone.popleft()
        names = {uri for _, uris in self._gone for uri in uris}
        for segment in self.segments:
            names.add(segment.uri)
            names.update(part.uri for part in segment.parts)
            if segment.map_uri is not None:
                names.add(segment.map_uri)
        if self.map_uri is not None:
            names.add(self.map_uri)
        return names

    # -- rendering ----------------------------------------------------------------------

    def skip_boundary(self) -> float:
        """CAN-SKIP-UNTIL: six target durations (bis §4.4.3.8)."""
        return 6.0 * self.target_duration

    def render(self, *, skip: bool = False, query: str = "") -> str:
        """The playlist text. ``skip``: a delta update (bis §6.2.5.1), honoured only when
        LL (CAN-SKIP-UNTIL is advertised). ``query``: extra client parameters, already
        URL-encoded, echoed on every URI (hls.md §3)."""
        if query and _BAD_URI_CHARS.search(query):
            raise ValueError(f"query must be URL-encoded: {query!r}")
        td = self.target_duration
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{self.version}",
            f"#EXT-X-TARGETDURATION:{td}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
        ll = self.low_latency
        if ll:
            assert self.part_target is not None
            # PART-HOLD-BACK: the spec's SHOULD of 3 x PART-TARGET (bis §4.4.3.8).
            lines.append(
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
                f"PART-HOLD-BACK={_dec_up(3 * self.part_target)},"
                f"CAN-SKIP-UNTIL={_dec(self.skip_boundary())}"
            )
            lines.append(f"#EXT-X-PART-INF:PART-TARGET={_dec_up(self.part_target)}")

        # Distance from each segment's end to the live edge (open parts included).
        open_segment = self._open()
        edge = sum(part.duration for part in open_segment.parts) if open_segment else 0.0
        to_edge: list[float] = []
        for segment in reversed(self.segments):
            to_edge.append(edge)
            if segment.complete:
                edge += segment.duration
        to_edge.reverse()

        skipped = 0
        if skip and ll:
            # Segments entirely older than the Skip Boundary (bis §6.2.5.1).
            boundary = self.skip_boundary()
            while (
                skipped < len(self.segments)
                and self.segments[skipped].complete
                and to_edge[skipped] >= boundary - _EPS
            ):
                skipped += 1
            if skipped:
                lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")

        part_horizon = 3 * td  # bis §6.2.2: no EXT-X-PART beyond 3 x TD from the end
        current_map: str | None = None
        for index in range(skipped, len(self.segments)):
            segment = self.segments[index]
            if not segment.complete and not (ll and segment.parts):
                continue  # nothing of it can be listed yet
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if segment.map_uri is not None and segment.map_uri != current_map:
                # Applies to every segment after it, up to the next one (RFC 8216 §4.3.2.5).
                current_map = segment.map_uri
                lines.append(f'#EXT-X-MAP:URI="{_with_query(current_map, query)}"')
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(segment.program_date_time)}")
            if ll and (not segment.complete or to_edge[index] < part_horizon - _EPS):
                for part in segment.parts:
                    lines.append(
                        f"#EXT-X-PART:DURATION={_dec(part.duration)},"
                        f'URI="{_with_query(part.uri, query)}"'
                        + (",INDEPENDENT=YES" if part.independent else "")
                    )
            if segment.complete:
                lines.append(f"#EXTINF:{_dec(segment.duration)},")
                lines.append(_with_query(segment.uri, query))
        if ll and self.preload_hint is not None and not self.ended:
            lines.append(
                f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{_with_query(self.preload_hint, query)}"'
            )
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


# -- delivery directives (bis §6.2.5) ----------------------------------------------------


class Directives(NamedTuple):
    """Parsed delivery directives and the other query parameters, re-encoded to echo."""

    msn: int | None
    part: int | None
    skip: str | None
    query: str


def advance_part_limit(part_target: float | None) -> float:
    """How many parts ahead of the last one a request may ask for (bis §6.2.5.2)."""
    if part_target is not None and 0 < part_target < 1:
        return 3 / part_target
    return 3.0


def blocking_decision(
    playlist: MediaPlaylist,
    msn: int | None,
    part: int | None,
    skip: str | None,
    *,
    part_target: float | None,
) -> Literal["ready", "wait"] | tuple[int, str]:
    """Whether a playlist request may be answered now ("ready"), must block ("wait"),
    or is refused ((400, reason)), by bis §6.2.5.2. ``skip`` does not affect blocking.
    The 503 after 3 x TD of blocking is the caller's timer."""
    del skip  # a delta update blocks exactly like a full one
    if part is not None and msn is None:
        return (400, "_HLS_part without _HLS_msn")
    if playlist.ended or msn is None:
        return "ready"  # directives are ignored once ENDLIST is present
    last_msn = playlist.last_msn
    if msn > last_msn + 2:
        return (400, f"_HLS_msn {msn} is beyond the last segment {last_msn} + 2")
    if part is not None and msn >= last_msn:
        if msn == last_msn:
            ahead = part - playlist.last_part
        else:
            # A lower bound: parts 0..part of msn, and at least one part for every
            # segment in between (the rest of the last one may be empty).
            ahead = part + (msn - last_msn)
        if ahead > advance_part_limit(part_target):
            return (400, f"_HLS_part {part} is too far ahead of the last part")
    return "ready" if playlist.contains(msn, part) else "wait"


def parse_directives(
    query: Mapping[str, str] | Iterable[tuple[str, str]],
) -> Directives | tuple[int, str]:
    """``_HLS_msn``/``_HLS_part``/``_HLS_skip`` from decoded query parameters (a mapping,
    a multidict or pairs; any order), plus the other parameters URL-encoded for echoing
    on generated URIs (hls.md §3). Unknown ``_HLS_`` parameters are reserved and dropped.
    Malformed, repeated or huge values give (400, reason)."""
    items = query.items() if isinstance(query, Mapping) else query
    pairs = list(itertools.islice(items, MAX_QUERY_PARAMS + 1))
    if len(pairs) > MAX_QUERY_PARAMS:
        return (400, "too many query parameters")
    seen: dict[str, str] = {}
    echo: list[str] = []
    for key, value in pairs:
        if key in ("_HLS_msn", "_HLS_part", "_HLS_skip"):
            if key in seen:
                return (400, f"{key} repeated")
            seen[key] = value
        elif key and not key.startswith("_HLS_"):
            echo.append(f"{quote(key, safe='')}={quote(value, safe='')}")
    echoed = "&".join(echo)
    if len(echoed) > MAX_ECHO_QUERY:
        return (400, "query parameters too long")
    numbers: dict[str, int | None] = {}
    for key in ("_HLS_msn", "_HLS_part"):
        raw = seen.get(key)
        if raw is None:
            numbers[key] = None
        elif _NUMBER.fullmatch(raw):
            numbers[key] = int(raw)
        else:
            return (400, f"{key} must be a decimal integer of at most 10 digits")
    skip = seen.get("_HLS_skip")
    if skip is not None and skip not in ("YES", "v2"):
        return (400, "_HLS_skip must be YES or v2")
    return Directives(numbers["_HLS_msn"], numbers["_HLS_part"], skip, echoed)


# -- multivariant playlist (RFC 8216 §4.3.4.2) -------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One EXT-X-STREAM-INF entry. ``bandwidth``: peak bits/s of all its media."""

    uri: str
    bandwidth: int
    codecs: Sequence[str]
    resolution: tuple[int, int] | None = None
    frame_rate: float | None = None
    average_bandwidth: int | None = None


_CODEC = re.compile(r"[A-Za-z0-9.\-]+")


def multivariant(variants: Sequence[Variant], *, version: int = 3, query: str = "") -> str:
    """The multivariant playlist: one EXT-X-STREAM-INF per variant."""
    if query and _BAD_URI_CHARS.search(query):
        raise ValueError(f"query must be URL-encoded: {query!r}")
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{version}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for variant in variants:
        if variant.bandwidth <= 0:
            raise ValueError(f"BANDWIDTH must be positive: {variant.bandwidth!r}")
        attributes = [f"BANDWIDTH={variant.bandwidth}"]
        if variant.average_bandwidth is not None:
            attributes.append(f"AVERAGE-BANDWIDTH={variant.average_bandwidth}")
        if variant.codecs:
            for codec in variant.codecs:
                if not _CODEC.fullmatch(codec):
                    raise ValueError(f"bad codec string: {codec!r}")
            attributes.append(f'CODECS="{",".join(variant.codecs)}"')
        if variant.resolution is not None:
            width, height = variant.resolution
            if width <= 0 or height <= 0:
                raise ValueError(f"bad resolution: {variant.resolution!r}")
            attributes.append(f"RESOLUTION={width}x{height}")
        if variant.frame_rate is not None:
            if not (math.isfinite(variant.frame_rate) and variant.frame_rate > 0):
                raise ValueError(f"bad frame rate: {variant.frame_rate!r}")
            attributes.append(f"FRAME-RATE={_dec(variant.frame_rate)}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(_with_query(_check_uri(variant.uri), query))
    return "\n".join(lines) + "\n"
