"""Where to cut segments and parts in a live stream (pure: no IO, time passed in).

Facts (/work/shared/reference/hls.md): segment boundaries must be keyframes, part
boundaries need not be (§3 "Typical numbers"); a part lasts at most PART-TARGET and at
least 85% of it, except independent parts and the last part of a segment (bis §4.4.4.9);
segments start with a keyframe so the playlist may say EXT-X-INDEPENDENT-SEGMENTS (§1).
"""

from __future__ import annotations

import math
from enum import IntEnum

# Timestamps are float seconds built from integer clocks, mostly RTMP milliseconds: 30 fps
# becomes 0, 33, 67, 100 ms..., so any difference is off by up to a millisecond (and
# 0.6 - 0.4 is a hair under 0.2 in floats). Comparisons allow that much.
_TOLERANCE = 0.0015


class Cut(IntEnum):
    """What to do before adding a unit to the current part."""

    NONE = 0  # add it to the current part
    PART = 1  # close the current part; the unit starts the next part of the same segment
    SEGMENT = 2  # close the current part and segment; the unit starts a new segment


class Segmenter:
    """Decides segment and part boundaries from unit timestamps.

    The reference track is video when the stream has video (audio units never cut, so
    parts stay aligned on video frames), otherwise audio. Durations are measured on the
    reference track's dts. A part closes before the unit that reaches ``part_target``, or
    would take the part past it (the unit's own length is guessed from the last frame
    interval): parts stay within the target at a regular frame rate (PART-TARGET is a
    maximum, bis §4.4.4.9) and exceed it by less than one frame interval otherwise. A
    segment closes by the same measure, but only before a unit that may start one (a
    video keyframe, or any audio frame without video), so with video a segment lasts
    from the target up to the next keyframe (a 3 s GOP makes 3 s segments), and without
    video it stays within the target (and TARGETDURATION with it).

    Until the first unit that may start a segment arrives, ``before`` returns NONE and
    ``started`` stays False: nothing is open yet and the caller drops those units (audio
    ahead of the first keyframe, say). ``reset()`` does the same after a discontinuity.
    """

    def __init__(self, segment_target: float, part_target: float, *, has_video: bool) -> None:
        if not (math.isfinite(segment_target) and segment_target > 0):
            raise ValueError(f"segment target must be positive: {segment_target!r}")
        if not (math.isfinite(part_target) and part_target > 0):
            raise ValueError(f"part target must be positive: {part_target!r}")
        self.segment_target = segment_target
        self.part_target = part_target
        self.has_video = has_video
        self.started = False
        self.segment_start = 0.0  # reference dts of the open segment's first unit
        self.part_start = 0.0  # reference dts of the open part's first unit
        # Durations of the part / segment closed by the latest PART or SEGMENT cut (for
        # EXT-X-PART and EXTINF), measured as the distance between first dts.
        self.closed_part_duration = 0.0
        self.closed_segment_duration = 0.0
        self._last_dts: float | None = None
        self._interval = 0.0  # last reference frame interval, a guess at the next one

    def reset(self) -> None:
        """Forget the timeline (a publisher returned with new timestamps): the next unit
        that may start a segment returns SEGMENT."""
        self.started = False
        self._last_dts = None
        self._interval = 0.0

    def before(self, dts: float, keyframe: bool, is_video: bool) -> Cut:
        """Call before adding each unit (``dts`` in seconds, non-decreasing per track)."""
        if self.has_video and not is_video:
            return Cut.NONE
        # As bridge.media.units.starts_gop: a video keyframe, or audio without video.
        can_start = keyframe if is_video else not self.has_video
        if not self.started:
            if not can_start:
                return Cut.NONE
            self.started = True
            self._start_segment(dts)
            return Cut.SEGMENT
        if self._last_dts is not None and dts > self._last_dts:
            self._interval = dts - self._last_dts
        self._last_dts = dts

        in_segment = dts - self.segment_start
        if can_start and self._reached(in_segment, self.segment_target):
            self.closed_part_duration = max(0.0, dts - self.part_start)
            self.closed_segment_duration = max(0.0, in_segment)
            self._start_segment(dts)
            return Cut.SEGMENT

        in_part = dts - self.part_start
        if self._reached(in_part, self.part_target):
            self.closed_part_duration = in_part
            self.part_start = dts
            return Cut.PART
        return Cut.NONE

    def _reached(self, elapsed: float, target: float) -> bool:
        # Never close an empty part (a unit with the part's own first dts).
        return elapsed > _TOLERANCE and (
            elapsed >= target - _TOLERANCE or elapsed + self._interval > target + _TOLERANCE
        )

    def _start_segment(self, dts: float) -> None:
        self.segment_start = dts
        self.part_start = dts
        self._last_dts = dts
