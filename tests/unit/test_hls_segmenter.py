"""Segment and part boundaries (bridge.hls.segmenter)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.hls.segmenter import Cut, Segmenter

AAC_FRAME = 1024 / 44100  # one AAC frame at 44.1 kHz, in seconds


@dataclass
class Unit:
    dts: float
    video: bool
    keyframe: bool


@dataclass
class Part:
    units: list[Unit] = field(default_factory=list)


@dataclass
class Seg:
    parts: list[Part] = field(default_factory=list)


def run(segmenter: Segmenter, units: list[Unit]) -> tuple[list[Seg], list[Unit]]:
    """Drive the segmenter as a muxer would; returns the segments and the dropped units.
    Also checks that the durations it reports match the units it was given."""
    segments: list[Seg] = []
    dropped: list[Unit] = []
    for unit in units:
        previous_part = segments[-1].parts[-1] if segments else None
        cut = segmenter.before(unit.dts, unit.keyframe, unit.video)
        if cut == Cut.SEGMENT:
            if previous_part is not None:
                ref = [u for u in segments[-1].parts[0].units if u.video or not segmenter.has_video]
                assert segmenter.closed_segment_duration == pytest.approx(unit.dts - ref[0].dts)
            segments.append(Seg([Part()]))
        elif cut == Cut.PART:
            first = reference(previous_part, segmenter.has_video)[0]
            assert segmenter.closed_part_duration == pytest.approx(unit.dts - first.dts)
            segments[-1].parts.append(Part())
        elif not segments:
            assert not segmenter.started
            dropped.append(unit)
            continue
        segments[-1].parts[-1].units.append(unit)
    return segments, dropped


def reference(part: Part | None, has_video: bool) -> list[Unit]:
    assert part is not None
    return [u for u in part.units if u.video or not has_video]


def av_timeline(seconds: float, gop: float, fps: float = 25.0) -> list[Unit]:
    """Video at ``fps`` with a keyframe every ``gop`` seconds, and AAC audio, in dts order
    (video first on a tie, as a publisher sends a keyframe with its audio)."""
    units = []
    frames = round(seconds * fps)
    per_gop = round(gop * fps)
    for n in range(frames):
        units.append(Unit(n / fps, True, n % per_gop == 0))
    n = 0
    while n * AAC_FRAME < seconds:
        units.append(Unit(n * AAC_FRAME, False, True))
        n += 1
    units.sort(key=lambda u: (u.dts, not u.video))
    return units


def starts(segments: list[Seg]) -> list[float]:
    return [round(seg.parts[0].units[0].dts, 6) for seg in segments]


def test_one_second_gop_makes_two_second_segments_of_ten_parts() -> None:
    segments, dropped = run(Segmenter(2.0, 0.2, has_video=True), av_timeline(10.0, 1.0))
    assert dropped == []
    assert starts(segments) == [0.0, 2.0, 4.0, 6.0, 8.0]
    for seg in segments:
        first = seg.parts[0].units[0]
        assert first.video and first.keyframe  # the first part is independent
        assert len(seg.parts) == 10
        for part in seg.parts:
            video = reference(part, True)
            assert len(video) == 5  # 0.2 s of 25 fps
            assert part.units[0].video  # cut on video frames, audio follows
        # The mid-segment keyframe (1 s) opens a part of its own: an independent one.
        assert [p.units[0].keyframe for p in seg.parts] == [True] + [False] * 4 + [True] + [
            False
        ] * 4


def test_three_second_gop_makes_three_second_segments() -> None:
    segments, _ = run(Segmenter(2.0, 0.2, has_video=True), av_timeline(12.0, 3.0))
    assert starts(segments) == [0.0, 3.0, 6.0, 9.0]
    assert all(len(seg.parts) == 15 for seg in segments)


def test_audio_only_segments_and_parts_stay_within_targets() -> None:
    units = [Unit(n * AAC_FRAME, False, True) for n in range(int(10 / AAC_FRAME))]
    segments, _ = run(Segmenter(2.0, 0.2, has_video=False), units)
    bounds = starts(segments)
    assert len(bounds) == 5
    for a, b in zip(bounds, bounds[1:], strict=False):
        # The frame that would take the segment past 2 s starts the next one.
        assert 2.0 - AAC_FRAME < b - a <= 2.0
    for seg in segments[:-1]:
        for part in seg.parts[:-1]:
            assert len(part.units) == 8  # 8 x 23.2 ms = 186 ms; a 9th would make 209
        assert 1 <= len(seg.parts[-1].units) <= 8


def test_millisecond_clocks_at_30_fps_keep_six_frame_parts() -> None:
    """RTMP timestamps are whole milliseconds: 0, 33, 67, 100... The 1 ms noise must not
    cut a part one frame early (5 frames = 167 ms would break the 85% rule)."""
    units = [Unit(round(n * 1000 / 30) / 1000, True, n % 60 == 0) for n in range(600)]
    segments, _ = run(Segmenter(2.0, 0.2, has_video=True), units)
    assert starts(segments) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0]
    for seg in segments:
        assert [len(p.units) for p in seg.parts] == [6] * 10


def test_units_before_the_first_keyframe_are_dropped() -> None:
    segmenter = Segmenter(2.0, 0.2, has_video=True)
    assert segmenter.before(0.0, True, False) == Cut.NONE  # audio first
    assert segmenter.before(0.02, False, True) == Cut.NONE  # a non-key video frame
    assert not segmenter.started
    assert segmenter.before(0.04, True, True) == Cut.SEGMENT
    assert segmenter.started
    assert segmenter.before(0.04, True, False) == Cut.NONE  # audio joins the segment


def test_audio_never_cuts_when_there_is_video() -> None:
    segmenter = Segmenter(2.0, 0.2, has_video=True)
    assert segmenter.before(0.0, True, True) == Cut.SEGMENT
    # Audio far past both targets: still nothing until video says so.
    for t in (0.5, 1.0, 3.0, 5.0):
        assert segmenter.before(t, True, False) == Cut.NONE
    assert segmenter.before(5.0, False, True) == Cut.PART
    assert segmenter.before(5.04, True, True) == Cut.SEGMENT
    assert segmenter.closed_segment_duration == pytest.approx(5.04)
    assert segmenter.closed_part_duration == pytest.approx(0.04)


def test_reset_starts_over_at_the_next_keyframe() -> None:
    segmenter = Segmenter(2.0, 0.2, has_video=True)
    assert segmenter.before(100.0, True, True) == Cut.SEGMENT
    assert segmenter.before(100.04, False, True) == Cut.NONE
    segmenter.reset()
    # A new timeline that starts lower: nothing until a keyframe, then a new segment.
    assert segmenter.before(0.0, False, True) == Cut.NONE
    assert segmenter.before(0.04, True, True) == Cut.SEGMENT
    assert segmenter.segment_start == 0.04 and segmenter.part_start == 0.04


def test_equal_timestamps_never_close_an_empty_part() -> None:
    segmenter = Segmenter(2.0, 0.2, has_video=False)
    assert segmenter.before(0.0, True, False) == Cut.SEGMENT
    assert [segmenter.before(0.0, True, False) for _ in range(5)] == [Cut.NONE] * 5
    # A frame far beyond both targets cuts the segment, then nothing is left to cut.
    assert segmenter.before(10.0, True, False) == Cut.SEGMENT
    assert segmenter.before(10.0, True, False) == Cut.NONE


@pytest.mark.parametrize(
    ("segment_target", "part_target"), [(0, 0.2), (2.0, 0), (-1, 0.2), (float("nan"), 0.2)]
)
def test_targets_must_be_positive(segment_target: float, part_target: float) -> None:
    with pytest.raises(ValueError):
        Segmenter(segment_target, part_target, has_video=True)


def timeline(has_video: bool) -> st.SearchStrategy[list[Unit]]:
    """Monotone timelines: reference frames at random (ms) intervals, random keyframes,
    and, with video, audio frames in between."""
    step = st.tuples(
        st.integers(1, 120),  # ms to the next video/audio frame
        st.booleans(),  # keyframe
        st.integers(0, 3),  # audio frames after it
    )

    def build(steps: list[tuple[int, bool, int]]) -> list[Unit]:
        units: list[Unit] = []
        ms = 0
        for gap, key, audio in steps:
            ms += gap
            units.append(Unit(ms / 1000, has_video, key or not has_video))
            if has_video:
                for i in range(audio):
                    units.append(Unit((ms + i * gap / 4) / 1000, False, True))
        return units

    return st.lists(step, min_size=1, max_size=400).map(build)


@pytest.mark.parametrize("has_video", [True, False])
@given(data=st.data())
def test_random_timelines_keep_the_rules(has_video: bool, data: st.DataObject) -> None:
    units = data.draw(timeline(has_video))
    segment_target = data.draw(st.sampled_from([1.0, 2.0, 4.0]))
    part_target = data.draw(st.sampled_from([0.1, 0.2, 0.5, 1.0]))
    segments, dropped = run(Segmenter(segment_target, part_target, has_video=has_video), units)
    # Only what precedes the first segment's start is dropped.
    assert len(dropped) + sum(len(p.units) for s in segments for p in s.parts) == len(units)
    ref_units = [u for u in units if u.video or not has_video]
    for seg in segments:
        first = seg.parts[0].units[0]
        # Segments start on a unit that may start one: a video keyframe when there is video.
        assert first.keyframe and (first.video or not has_video)
    # Parts, measured on reference dts from their first unit to the next part's first
    # unit, exceed the target by less than the one frame interval that closed them.
    starts_ = [reference(p, has_video)[0].dts for s in segments for p in s.parts]
    for a, b in zip(starts_, starts_[1:], strict=False):
        index = next(i for i, u in enumerate(ref_units) if u.dts == b)
        interval = b - ref_units[index - 1].dts
        assert b - a <= part_target + interval + 1e-9
        assert b > a  # never an empty part
    # Segments last at least the target, less the frame interval that closed them.
    seg_starts = [reference(s.parts[0], has_video)[0].dts for s in segments]
    for a, b in zip(seg_starts, seg_starts[1:], strict=False):
        index = next(i for i, u in enumerate(ref_units) if u.dts == b)
        assert b - a >= segment_target - (b - ref_units[index - 1].dts) - 0.0015
