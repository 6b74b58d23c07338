"""Media playlists, delivery directives and multivariant playlists (bridge.hls.playlist)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict

from bridge.hls.playlist import (
    Directives,
    MediaPlaylist,
    Variant,
    blocking_decision,
    multivariant,
    parse_directives,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

HEADER_TS = """\
#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
"""


def classic(*, window: int = 3, map_uri: str | None = None, hint: float = 2.0) -> MediaPlaylist:
    return MediaPlaylist(
        target_duration_hint=hint,
        part_target=None,
        window=window,
        low_latency=False,
        map_uri=map_uri,
    )


def low_latency(*, window: int, hint: float = 1.0, part: float = 0.5) -> MediaPlaylist:
    return MediaPlaylist(
        target_duration_hint=hint,
        part_target=part,
        window=window,
        low_latency=True,
        map_uri="init.mp4",
    )


def add(
    playlist: MediaPlaylist,
    duration: float,
    *,
    ext: str = "ts",
    parts: int = 0,
    discontinuity: bool = False,
    at: float | None = None,
) -> int:
    """One complete segment named after its msn, starting ``at`` seconds after T0 (its
    msn x duration by default), with ``parts`` equal parts (the first independent)."""
    msn = playlist._next_msn
    start = T0 + timedelta(seconds=msn * duration if at is None else at)
    assert playlist.start_segment(f"s{msn}.{ext}", start, discontinuity) == msn
    for i in range(parts):
        playlist.add_part(f"s{msn}.{i}.{ext}", duration / parts, i == 0)
    playlist.end_segment(duration)
    return msn


def segment_lines(playlist: MediaPlaylist, **kwargs: object) -> str:
    """The rendered text after the header lines."""
    text = playlist.render(**kwargs)  # type: ignore[arg-type]
    return text.split("#EXT-X-INDEPENDENT-SEGMENTS\n", 1)[1]


# -- classic ---------------------------------------------------------------------------


def test_classic_ts_golden_with_a_sliding_window() -> None:
    playlist = classic(window=3)
    for _ in range(4):
        add(playlist, 2.0)
    playlist.start_segment("s4.ts", T0 + timedelta(seconds=8))  # open: not listed
    assert playlist.render() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:1\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:0\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:02.000Z\n"
        "#EXTINF:2.000,\n"
        "s1.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:04.000Z\n"
        "#EXTINF:2.000,\n"
        "s2.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:06.000Z\n"
        "#EXTINF:2.000,\n"
        "s3.ts\n"
    )
    assert (playlist.last_msn, playlist.last_part, playlist.media_sequence) == (4, -1, 1)


def test_classic_fmp4_golden_with_echoed_query() -> None:
    playlist = classic(window=3, map_uri="init.mp4")
    add(playlist, 2.0, ext="m4s")
    playlist.start_segment("s1.m4s", T0 + timedelta(seconds=2))
    playlist.add_part("s1.0.m4s", 0.5, True)  # parts are never listed in classic HLS
    playlist.set_preload_hint("s1.1.m4s")  # nor hints
    playlist.end_segment(1.5)
    assert playlist.render(query="token=a%20b") == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:6\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:0\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-MAP:URI="init.mp4?token=a%20b"\n'
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.000Z\n"
        "#EXTINF:2.000,\n"
        "s0.m4s?token=a%20b\n"
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:02.000Z\n"
        "#EXTINF:1.500,\n"
        "s1.m4s?token=a%20b\n"
    )
    # A delta update is only for LL playlists (CAN-SKIP-UNTIL): ignored here.
    assert playlist.render(skip=True) == playlist.render()


def test_program_date_time_is_utc_with_milliseconds() -> None:
    playlist = classic()
    paris = timezone(timedelta(hours=2))
    playlist.start_segment("a.ts", datetime(2024, 5, 1, 14, 0, 0, 123999, tzinfo=paris))
    playlist.end_segment(2.0)
    assert "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.123Z\n" in playlist.render()


# -- low latency -----------------------------------------------------------------------

LL_HEADER = (
    "#EXTM3U\n"
    "#EXT-X-VERSION:9\n"
    "#EXT-X-TARGETDURATION:1\n"
    "#EXT-X-MEDIA-SEQUENCE:0\n"
    "#EXT-X-DISCONTINUITY-SEQUENCE:0\n"
    "#EXT-X-INDEPENDENT-SEGMENTS\n"
    "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500,CAN-SKIP-UNTIL=6.000\n"
    "#EXT-X-PART-INF:PART-TARGET=0.500\n"
)


def ll_segment(msn: int, parts: bool, query: str = "") -> str:
    q = f"?{query}" if query else ""
    text = f"#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:{msn:02d}.000Z\n"
    if parts:
        text += (
            f'#EXT-X-PART:DURATION=0.500,URI="s{msn}.0.m4s{q}",INDEPENDENT=YES\n'
            f'#EXT-X-PART:DURATION=0.500,URI="s{msn}.1.m4s{q}"\n'
        )
    return text + f"#EXTINF:1.000,\ns{msn}.m4s{q}\n"


def ll_playlist(complete: int, window: int) -> MediaPlaylist:
    """``complete`` 1 s segments of two 0.5 s parts, then an open one with one part and
    a hint for the next."""
    playlist = low_latency(window=window)
    for _ in range(complete):
        add(playlist, 1.0, ext="m4s", parts=2)
    msn = playlist.start_segment(f"s{complete}.m4s", T0 + timedelta(seconds=complete))
    playlist.add_part(f"s{msn}.0.m4s", 0.5, True)
    playlist.set_preload_hint(f"s{msn}.1.m4s")
    return playlist


def test_low_latency_golden_parts_only_near_the_end() -> None:
    playlist = ll_playlist(5, window=5)
    # Parts are listed for segments ending within 3 x TD (3 s) of the live edge, which
    # is 0.5 s into s5: s2 ends 2.5 s before it, s1 3.5 s (bis §6.2.2).
    assert playlist.render() == (
        LL_HEADER
        + '#EXT-X-MAP:URI="init.mp4"\n'
        + ll_segment(0, False)
        + ll_segment(1, False)
        + ll_segment(2, True)
        + ll_segment(3, True)
        + ll_segment(4, True)
        + "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:05.000Z\n"
        + '#EXT-X-PART:DURATION=0.500,URI="s5.0.m4s",INDEPENDENT=YES\n'
        + '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="s5.1.m4s"\n'
    )
    assert (playlist.last_msn, playlist.last_part) == (5, 0)


def test_low_latency_open_segment_without_parts_lists_only_the_hint() -> None:
    playlist = ll_playlist(1, window=5)
    playlist.add_part("s1.1.m4s", 0.5, False)
    playlist.end_segment(1.0)
    playlist.start_segment("s2.m4s", T0 + timedelta(seconds=2), discontinuity=True)
    playlist.set_preload_hint("s2.0.m4s")
    assert (playlist.last_msn, playlist.last_part) == (2, -1)
    assert segment_lines(playlist).endswith(
        ll_segment(1, True) + '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="s2.0.m4s"\n'
    )


def test_delta_update_skips_segments_older_than_the_skip_boundary() -> None:
    playlist = ll_playlist(9, window=10)
    query = "token=x"
    tail = (
        ll_segment(3, False, query)
        + ll_segment(4, False, query)
        + ll_segment(5, False, query)
        + ll_segment(6, True, query)
        + ll_segment(7, True, query)
        + ll_segment(8, True, query)
        + "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:09.000Z\n"
        + '#EXT-X-PART:DURATION=0.500,URI="s9.0.m4s?token=x",INDEPENDENT=YES\n'
        + '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="s9.1.m4s?token=x"\n'
    )
    # s0..s2 end 8.5, 7.5 and 6.5 s before the live edge: at least 6 x TD, skipped.
    # MEDIA-SEQUENCE stays the one of the full playlist (bis §4.4.5.2).
    assert playlist.render(skip=True, query=query) == (
        LL_HEADER
        + "#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n"
        + '#EXT-X-MAP:URI="init.mp4?token=x"\n'  # for the first segment listed
        + tail
    )
    full = playlist.render(query=query)
    assert full.endswith(
        '#EXT-X-MAP:URI="init.mp4?token=x"\n'
        + ll_segment(0, False, query)
        + ll_segment(1, False, query)
        + ll_segment(2, False, query)
        + tail
    )
    assert "#EXT-X-SKIP" not in full
    # Too little media to skip anything: the full playlist.
    short = ll_playlist(4, window=10)
    assert short.render(skip=True) == short.render()


def test_end_completes_the_open_segment_and_drops_the_hint() -> None:
    playlist = ll_playlist(2, window=5)
    playlist.add_part("s2.1.m4s", 0.25, False)
    playlist.end()
    text = playlist.render()
    assert text.endswith(
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:02.000Z\n"
        '#EXT-X-PART:DURATION=0.500,URI="s2.0.m4s",INDEPENDENT=YES\n'
        '#EXT-X-PART:DURATION=0.250,URI="s2.1.m4s"\n'
        "#EXTINF:0.750,\n"
        "s2.m4s\n"
        "#EXT-X-ENDLIST\n"
    )
    assert "PRELOAD-HINT" not in text
    assert playlist.ended and playlist.last_msn == 2


def test_end_drops_an_open_segment_with_nothing_in_it() -> None:
    playlist = classic()
    add(playlist, 2.0)
    playlist.start_segment("s1.ts", T0 + timedelta(seconds=2))
    playlist.end()
    assert playlist.render() == (
        HEADER_TS
        + "#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        + "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.000Z\n#EXTINF:2.000,\ns0.ts\n"
        + "#EXT-X-ENDLIST\n"
    )
    # The msn is not burnt: a returning publisher continues at 1, as a discontinuity.
    assert playlist.start_segment("s1.ts", T0 + timedelta(seconds=60)) == 1
    playlist.end_segment(2.0)
    assert not playlist.ended
    assert segment_lines(playlist).endswith(
        "#EXT-X-DISCONTINUITY\n"
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:01:00.000Z\n#EXTINF:2.000,\ns1.ts\n"
    )


def test_a_new_init_section_follows_a_discontinuity() -> None:
    playlist = classic(window=5)  # the service learns the init name once muxing starts
    assert playlist.version == 3
    playlist.set_map("init1.mp4")
    assert playlist.version == 6  # EXT-X-MAP needs 6 (RFC 8216 §7)
    add(playlist, 2.0, ext="m4s")
    add(playlist, 2.0, ext="m4s")
    playlist.set_map("init2.mp4")  # new codec configuration: a new muxer
    add(playlist, 2.0, ext="m4s", discontinuity=True)
    assert segment_lines(playlist) == (
        '#EXT-X-MAP:URI="init1.mp4"\n'
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.000Z\n#EXTINF:2.000,\ns0.m4s\n"
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:02.000Z\n#EXTINF:2.000,\ns1.m4s\n"
        "#EXT-X-DISCONTINUITY\n"
        '#EXT-X-MAP:URI="init2.mp4"\n'
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:04.000Z\n#EXTINF:2.000,\ns2.m4s\n"
    )
    assert playlist.resource_names(retain=6.0) == {
        "init1.mp4",
        "init2.mp4",
        "s0.m4s",
        "s1.m4s",
        "s2.m4s",
    }
    # A version given explicitly stays.
    fixed = MediaPlaylist(
        target_duration_hint=2,
        part_target=None,
        window=3,
        low_latency=False,
        map_uri=None,
        version=7,
    )
    fixed.set_map("init.mp4")
    assert fixed.version == 7
    # An init section is kept while segments that left the window may still be fetched.
    for _ in range(4):
        add(playlist, 2.0, ext="m4s")
    assert listed(playlist) == ["s2", "s3", "s4", "s5", "s6"]  # s0 and s1 (init1) left
    assert "init1.mp4" in playlist.resource_names(retain=6.0)
    assert "init1.mp4" not in playlist.removed
    add(playlist, 2.0, ext="m4s")
    add(playlist, 2.0, ext="m4s")
    add(playlist, 2.0, ext="m4s")
    names = playlist.resource_names(retain=6.0)
    assert "init1.mp4" not in names and "s1.m4s" not in names and "init2.mp4" in names


def test_reopen_after_end_marks_a_discontinuity() -> None:
    playlist = classic()
    add(playlist, 2.0)
    playlist.end()
    assert playlist.render().endswith("#EXT-X-ENDLIST\n")
    playlist.reopen()
    assert not playlist.ended and "#EXT-X-ENDLIST" not in playlist.render()
    assert playlist.next_msn == 1
    add(playlist, 2.0, at=30.0)
    add(playlist, 2.0, at=32.0)
    text = playlist.render()
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1
    assert "#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:30.000Z" in text
    # reopen() on a live playlist changes nothing.
    playlist.reopen()
    add(playlist, 2.0, at=34.0)
    assert playlist.render().count("#EXT-X-DISCONTINUITY\n") == 1
    # A new playlist's first segment is no discontinuity, even after end() + reopen().
    fresh = classic()
    fresh.end()
    fresh.reopen()
    add(fresh, 2.0)
    assert "#EXT-X-DISCONTINUITY\n" not in fresh.render()


def test_resources_stay_for_the_retention_time_after_leaving() -> None:
    playlist = ll_playlist(0, window=3)
    assert playlist.is_hinted("s0.1.m4s") and not playlist.is_hinted("s0.0.m4s")
    playlist.end_segment(1.0)
    for _ in range(3):
        add(playlist, 1.0, ext="m4s", parts=2)
    assert listed(playlist) == ["s1", "s2", "s3"]
    # s0 (and its part) left 0 s of media ago: kept for 3 s of media.
    names = playlist.resource_names(retain=3.0)
    assert {"s0.m4s", "s0.0.m4s", "s3.m4s", "s3.1.m4s", "init.mp4"} <= names
    add(playlist, 1.0, ext="m4s", parts=2)
    add(playlist, 1.0, ext="m4s", parts=2)
    assert "s0.m4s" in playlist.resource_names(retain=3.0)
    add(playlist, 1.0, ext="m4s", parts=2)
    names = playlist.resource_names(retain=3.0)
    assert "s0.m4s" not in names and "s0.0.m4s" not in names
    assert {"s1.m4s", "s2.m4s", "s3.m4s"} <= names
    playlist.end()
    assert not playlist.is_hinted("s6.1.m4s")


# -- window, discontinuities, target duration --------------------------------------------


def test_discontinuity_sequence_counts_discontinuities_that_scroll_out() -> None:
    playlist = classic(window=3)
    add(playlist, 2.0)
    add(playlist, 2.0)
    add(playlist, 2.0, discontinuity=True, at=100.0)
    add(playlist, 2.0, at=102.0)
    add(playlist, 2.0, at=104.0)
    assert playlist.render() == (
        HEADER_TS
        + "#EXT-X-MEDIA-SEQUENCE:2\n"
        + "#EXT-X-DISCONTINUITY-SEQUENCE:0\n"
        + "#EXT-X-INDEPENDENT-SEGMENTS\n"
        + "#EXT-X-DISCONTINUITY\n"
        + "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:01:40.000Z\n#EXTINF:2.000,\ns2.ts\n"
        + "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:01:42.000Z\n#EXTINF:2.000,\ns3.ts\n"
        + "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:01:44.000Z\n#EXTINF:2.000,\ns4.ts\n"
    )
    add(playlist, 2.0, at=106.0)
    assert playlist.removed == ["s2.ts"]
    assert playlist.render() == (
        HEADER_TS
        + "#EXT-X-MEDIA-SEQUENCE:3\n"
        + "#EXT-X-DISCONTINUITY-SEQUENCE:1\n"
        + "#EXT-X-INDEPENDENT-SEGMENTS\n"
        + "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:01:42.000Z\n#EXTINF:2.000,\ns3.ts\n"
        + "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:01:44.000Z\n#EXTINF:2.000,\ns4.ts\n"
        + "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:01:46.000Z\n#EXTINF:2.000,\ns5.ts\n"
    )


def listed(playlist: MediaPlaylist) -> list[str]:
    return re.findall(r"^(s\d+)\.", playlist.render(), re.MULTILINE)


def test_window_keeps_three_target_durations_of_media() -> None:
    # 1 s segments with a 2 s target: a window of 3 would be 3 s, under 3 x TD = 6 s.
    playlist = classic(window=3, hint=2.0)
    for _ in range(10):
        add(playlist, 1.0)
    assert listed(playlist) == ["s4", "s5", "s6", "s7", "s8", "s9"]
    assert playlist.media_sequence == 4
    # 2 s segments: the window decides.
    playlist = classic(window=5)
    for _ in range(10):
        add(playlist, 2.0)
    assert listed(playlist) == ["s5", "s6", "s7", "s8", "s9"]
    assert "#EXT-X-MEDIA-SEQUENCE:5\n" in playlist.render()


def test_removed_lists_segments_and_their_parts() -> None:
    playlist = ll_playlist(0, window=3)
    playlist.end_segment(0.5)
    for _ in range(3):
        assert playlist.removed == []
        add(playlist, 1.0, ext="m4s", parts=2)
    assert playlist.removed == ["s0.m4s", "s0.0.m4s"]
    add(playlist, 1.0, ext="m4s", parts=2)
    assert playlist.removed == ["s1.m4s", "s1.0.m4s", "s1.1.m4s"]


def test_empty_segments_cannot_grow_the_playlist_without_end() -> None:
    playlist = classic(window=3)
    for _ in range(1000):
        add(playlist, 0.0)
    assert len(playlist.segments) == 64


def test_target_duration_is_honest_and_never_decreases() -> None:
    playlist = classic(window=3, hint=2.0)
    assert playlist.target_duration == 2
    add(playlist, 2.0)
    add(playlist, 2.002)  # a 29.97 fps GOP: rounds to 2 (RFC 8216 §4.3.3.1)
    assert playlist.target_duration == 2
    add(playlist, 3.4)  # a long GOP
    assert playlist.target_duration == 4
    for _ in range(10):
        add(playlist, 2.0)
    assert playlist.target_duration == 4
    assert "#EXT-X-TARGETDURATION:4\n" in playlist.render()
    # The window keeps 3 x 4 s of media although it holds 3 segments.
    assert len(listed(playlist)) == 6
    assert classic(hint=1.5).target_duration == 2
    assert classic(hint=0.2).target_duration == 1


def test_ll_skip_boundary_follows_the_target_duration() -> None:
    playlist = low_latency(window=5, hint=2.0, part=0.2)
    playlist.start_segment("a.m4s", T0)
    playlist.add_part("a.0.m4s", 0.2, True)
    playlist.end_segment(3.5)
    assert (
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,CAN-SKIP-UNTIL=24.000\n"
        "#EXT-X-PART-INF:PART-TARGET=0.200\n"
    ) in playlist.render()
    odd = low_latency(window=5, part=1 / 3)
    assert "PART-HOLD-BACK=1.000," in odd.render()
    assert "PART-TARGET=0.334\n" in odd.render()


@pytest.mark.parametrize(
    "call",
    [
        lambda p: p.add_part("a", 1.0, True),  # no open segment
        lambda p: p.end_segment(1.0),
        lambda p: (p.start_segment("a", T0), p.start_segment("b", T0)),
        lambda p: p.start_segment("a", datetime(2024, 1, 1)),  # naive
        lambda p: p.start_segment("a\nb", T0),
        lambda p: p.start_segment('a"b', T0),
        lambda p: p.start_segment("", T0),
        lambda p: (p.start_segment("a", T0), p.end_segment(float("nan"))),
        lambda p: (p.start_segment("a", T0), p.add_part("p", -1.0, True)),
        lambda p: p.set_preload_hint("x\r"),
        lambda p: p.render(query='a="b"'),
    ],
)
def test_misuse_raises_value_error(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        call(classic())


@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 7.0, allow_nan=False),  # duration
            st.booleans(),  # discontinuity
            st.integers(0, 12),  # parts
        ),
        max_size=60,
    ),
    st.integers(1, 8),
    st.booleans(),
)
def test_random_streams_keep_playlist_invariants(
    specs: list[tuple[float, bool, int]], window: int, ll: bool
) -> None:
    playlist = MediaPlaylist(
        target_duration_hint=2.0,
        part_target=0.5 if ll else None,
        window=window,
        low_latency=ll,
        map_uri="init.mp4" if ll else None,
    )
    previous_td = playlist.target_duration
    discontinuities = 0
    for duration, discontinuity, parts in specs:
        playlist.start_segment("s.m4s", T0, discontinuity)
        discontinuities += discontinuity
        for _ in range(parts):
            playlist.add_part("p.m4s", duration / max(parts, 1), False)
        playlist.end_segment(duration)
        td = playlist.target_duration
        assert td >= previous_td
        previous_td = td
        text = playlist.render()
        extinfs = [float(x) for x in re.findall(r"^#EXTINF:([0-9.]+),$", text, re.MULTILINE)]
        assert len(extinfs) == len(playlist.segments)
        assert all(round(value) <= td for value in extinfs)
        assert f"#EXT-X-TARGETDURATION:{td}\n" in text
        # Either the window rules, or there is no more than needed for 3 x TD.
        assert len(extinfs) <= window or sum(extinfs[1:]) < 3 * td
        # Discontinuities are either listed or counted.
        listed_discontinuities = text.count("#EXT-X-DISCONTINUITY\n")
        assert playlist.discontinuity_sequence + listed_discontinuities == discontinuities
        assert playlist.media_sequence + len(playlist.segments) == playlist.last_msn + 1
        assert (playlist.render(skip=True) == text) or "#EXT-X-SKIP:SKIPPED-SEGMENTS=" in (
            playlist.render(skip=True)
        )


# -- blocking reload -----------------------------------------------------------------------


def blocking_playlist() -> MediaPlaylist:
    """s0..s2 complete with two parts each; s3 open with part 0. TD 1, part target 0.5:
    the Advance Part Limit is 3 / 0.5 = 6 parts."""
    return ll_playlist(3, window=10)


@pytest.mark.parametrize(
    ("msn", "part", "expected"),
    [
        (None, None, "ready"),  # no directive: no blocking
        (None, 1, 400),  # _HLS_part without _HLS_msn
        (2, None, "ready"),  # complete
        (3, None, "wait"),  # open
        (4, None, "wait"),
        (5, None, "wait"),  # last + 2 is still allowed
        (6, None, 400),  # last + 3
        (10**9, None, 400),
        (3, 0, "ready"),
        (3, 1, "wait"),
        (2, 1, "ready"),
        (2, 2, "ready"),  # past the end of s2: part 0 of s3, which exists
        (2, 40, "ready"),
        (1, 5, "ready"),  # past the end of s1: part 0 of s2
        (0, None, "ready"),
        (3, 6, "wait"),  # 6 parts ahead: at the limit
        (3, 7, 400),  # 7 ahead
        (4, 0, "wait"),
        (4, 5, "wait"),  # at least 6 ahead
        (4, 6, 400),
        (5, 4, "wait"),
        (5, 5, 400),
    ],
)
def test_blocking_decision_table(msn: int | None, part: int | None, expected: object) -> None:
    result = blocking_decision(blocking_playlist(), msn, part, None, part_target=0.5)
    if expected == 400:
        assert isinstance(result, tuple) and result[0] == 400 and result[1]
    else:
        assert result == expected


def test_blocking_part_past_the_end_waits_for_the_next_segment() -> None:
    playlist = ll_playlist(1, window=10)
    playlist.add_part("s1.1.m4s", 0.5, False)
    playlist.end_segment(1.0)
    assert blocking_decision(playlist, 1, 2, None, part_target=0.5) == "wait"
    playlist.start_segment("s2.m4s", T0)  # no part yet
    assert blocking_decision(playlist, 1, 2, None, part_target=0.5) == "wait"
    playlist.add_part("s2.0.m4s", 0.5, True)
    assert blocking_decision(playlist, 1, 2, None, part_target=0.5) == "ready"
    # From a complete last segment the next segment's parts count from zero.
    assert blocking_decision(playlist, 2, 6, None, part_target=0.5) == "wait"


def test_blocking_on_segments_gone_from_the_window_is_ready() -> None:
    playlist = classic(window=3)
    for _ in range(6):
        add(playlist, 2.0)
    assert playlist.media_sequence == 3
    assert blocking_decision(playlist, 0, None, None, part_target=None) == "ready"
    assert blocking_decision(playlist, 6, None, None, part_target=None) == "wait"
    # Without parts (or with a part target >= 1 s) the Advance Part Limit is 3.
    assert blocking_decision(playlist, 6, 2, None, part_target=None) == "wait"
    assert blocking_decision(playlist, 6, 3, None, part_target=None)[0] == 400
    assert blocking_decision(playlist, 6, 3, "YES", part_target=2.0)[0] == 400


def test_directives_are_ignored_once_ended() -> None:
    playlist = blocking_playlist()
    playlist.end()
    for msn, part in [(5, None), (4, 3), (3, 99), (2, None)]:
        assert blocking_decision(playlist, msn, part, None, part_target=0.5) == "ready"
    assert blocking_decision(playlist, None, 1, None, part_target=0.5)[0] == 400


# -- delivery directive parsing ------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, Directives(None, None, None, "")),
        ({"_HLS_msn": "12"}, Directives(12, None, None, "")),
        ({"_HLS_msn": "12", "_HLS_part": "3"}, Directives(12, 3, None, "")),
        ([("_HLS_part", "3"), ("_HLS_msn", "12")], Directives(12, 3, None, "")),
        ({"_HLS_msn": "0", "_HLS_skip": "YES"}, Directives(0, None, "YES", "")),
        ({"_HLS_skip": "v2"}, Directives(None, None, "v2", "")),
        # The part-without-msn rule is blocking_decision's: parsing keeps it.
        ({"_HLS_part": "1"}, Directives(None, 1, None, "")),
        ({"_HLS_msn": "0000000012"}, Directives(12, None, None, "")),
        ({"_HLS_msn": "9999999999"}, Directives(9999999999, None, None, "")),
        # Other parameters come back URL-encoded, in order; unknown _HLS_ ones go.
        (
            [("token", 'a b&c="d"'), ("_HLS_msn", "1"), ("x", ""), ("_HLS_foo", "1")],
            Directives(1, None, None, "token=a%20b%26c%3D%22d%22&x="),
        ),
        ([("k", "1"), ("k", "2")], Directives(None, None, None, "k=1&k=2")),
        ({"é": "ü\n"}, Directives(None, None, None, "%C3%A9=%C3%BC%0A")),
        ({"": "orphan", "a": "1"}, Directives(None, None, None, "a=1")),
        # Malformed values.
        ({"_HLS_msn": ""}, 400),
        ({"_HLS_msn": "abc"}, 400),
        ({"_HLS_msn": "-1"}, 400),
        ({"_HLS_msn": "+1"}, 400),
        ({"_HLS_msn": " 1"}, 400),
        ({"_HLS_msn": "1.5"}, 400),
        ({"_HLS_msn": "1e3"}, 400),
        ({"_HLS_msn": "0x10"}, 400),
        ({"_HLS_msn": "\u0661\u0662"}, 400),  # Arabic-Indic digits
        ({"_HLS_msn": "1²"}, 400),
        ({"_HLS_msn": str(10**30)}, 400),
        ({"_HLS_msn": "12345678901"}, 400),  # 11 digits
        ({"_HLS_msn": "1", "_HLS_part": "x"}, 400),
        ({"_HLS_skip": "yes"}, 400),
        ({"_HLS_skip": ""}, 400),
        ({"_HLS_skip": "v3"}, 400),
        # Repeated directives.
        ([("_HLS_msn", "1"), ("_HLS_msn", "1")], 400),
        (MultiDict([("_HLS_part", "1"), ("_HLS_msn", "3"), ("_HLS_part", "2")]), 400),
        # Huge queries.
        ({f"p{i}": "1" for i in range(65)}, 400),
        ({"token": "x" * 2000}, 400),
    ],
)
def test_parse_directives_table(query: object, expected: object) -> None:
    result = parse_directives(query)  # type: ignore[arg-type]
    if expected == 400:
        assert not isinstance(result, Directives)
        assert result[0] == 400 and isinstance(result[1], str) and result[1]
    else:
        assert result == expected


def test_parse_directives_reads_a_multidict() -> None:
    query = MultiDict([("token", "t"), ("_HLS_msn", "7"), ("_HLS_part", "2"), ("token", "u")])
    assert parse_directives(query) == Directives(7, 2, None, "token=t&token=u")


@given(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=70))
def test_parse_directives_never_raises_and_echoes_renderable_queries(
    pairs: list[tuple[str, str]],
) -> None:
    result = parse_directives(pairs)
    if isinstance(result, Directives):
        for value in (result.msn, result.part):
            assert value is None or 0 <= value < 10**10
        # Whatever is echoed is safe on a playlist line and in a quoted-string.
        playlist = ll_playlist(1, window=3)
        playlist.render(query=result.query)
        assert re.fullmatch(r"[A-Za-z0-9%._~=&-]*", result.query)
    else:
        assert result[0] == 400


# -- multivariant ------------------------------------------------------------------------


def test_multivariant_golden() -> None:
    variants = [
        Variant(
            "index.m3u8",
            2_500_000,
            ["avc1.64001f", "mp4a.40.2"],
            (1280, 720),
            25.0,
            average_bandwidth=2_000_000,
        ),
        Variant("audio.m3u8", 140_000, ("mp4a.40.2",)),
    ]
    assert multivariant(variants, query="token=t") == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2000000,"
        'CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=25.000\n'
        "index.m3u8?token=t\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=140000,"
        'CODECS="mp4a.40.2"\n'
        "audio.m3u8?token=t\n"
    )


@pytest.mark.parametrize(
    "variant",
    [
        Variant("a.m3u8", 0, ["avc1.64001f"]),
        Variant("a.m3u8", 1000, ['avc1"']),
        Variant("a.m3u8", 1000, ["avc1,mp4a"]),
        Variant("a.m3u8", 1000, ["avc1.64001f"], (0, 720)),
        Variant("a.m3u8", 1000, ["avc1.64001f"], frame_rate=math.inf),
        Variant("a\n.m3u8", 1000, ["avc1.64001f"]),
    ],
)
def test_multivariant_refuses_what_would_break_the_text(variant: Variant) -> None:
    with pytest.raises(ValueError):
        multivariant([variant])
