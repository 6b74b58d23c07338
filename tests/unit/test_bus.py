"""The bus: Reader queues, the GOP cache, Stream rebasing and readers, the Registry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.bus.gop import GopCache
from bridge.bus.reader import Reader
from bridge.bus.registry import PublishRefused, Registry
from bridge.bus.stream import Stream, keys_match
from bridge.media.units import AUDIO, VIDEO, MediaUnit, Metadata, Track, starts_gop

# ------------------------------------------------------------------------------ fakes


@dataclass
class Sink:
    """A ReaderSink that records every call; ``then`` runs after each one (to react)."""

    calls: list[str] = field(default_factory=list)
    then: Callable[[str], None] = lambda call: None

    def on_ready(self) -> None:
        self._record("ready")

    def on_publish_start(self) -> None:
        self._record("start")

    def on_publish_end(self) -> None:
        self._record("end")

    def on_refused(self, reason: str) -> None:
        self._record("refused: " + reason)

    def _record(self, call: str) -> None:
        self.calls.append(call)
        self.then(call)

    def count(self, name: str) -> int:
        return sum(1 for call in self.calls if call.split(":")[0] == name)


@dataclass
class FakeStream:
    """All a Reader looks at on its stream."""

    has_video: bool = True


def video_track() -> Track:
    return Track(VIDEO, "h264", b"avcC")


def audio_track() -> Track:
    return Track(AUDIO, "aac", b"\x11\x90")


VT = video_track()
AT = audio_track()


def vk(dts: int = 0, size: int = 10, cts: int = 0, track: Track = VT) -> MediaUnit:
    return MediaUnit(track, dts, dts + cts, True, bytes(size))


def vd(dts: int = 0, size: int = 10, cts: int = 0, track: Track = VT) -> MediaUnit:
    return MediaUnit(track, dts, dts + cts, False, bytes(size))


def au(dts: int = 0, size: int = 10, track: Track = AT) -> MediaUnit:
    return MediaUnit(track, dts, dts, True, bytes(size))


def drain(reader: Reader) -> list[MediaUnit | Metadata]:
    out = []
    while (item := reader.take()) is not None:
        out.append(item)
    return out


def new_reader(has_video: bool = True, **bounds: int) -> tuple[Reader, Sink]:
    sink = Sink()
    reader = Reader(FakeStream(has_video), sink, "k", **bounds)  # type: ignore[arg-type]
    reader.start([])
    return reader, sink


# ------------------------------------------------------------------------------ units


def test_starts_gop() -> None:
    assert starts_gop(vk(), True)
    assert starts_gop(vk(), False)
    assert not starts_gop(vd(), True)
    assert not starts_gop(au(), True)
    assert starts_gop(au(), False)


def test_keys_match() -> None:
    assert keys_match("abc", "abc")
    assert not keys_match("abc", "abd")
    assert not keys_match("abc", "ab")
    assert not keys_match(None, "abc")
    assert not keys_match("abc", None)
    assert not keys_match(None, None)


# ------------------------------------------------------------------------------ Reader


def test_reader_waits_for_a_keyframe_and_counts_what_it_skips() -> None:
    reader, sink = new_reader()
    reader.offer(vd(0))
    reader.offer(au(5))
    assert reader.take() is None
    assert reader.dropped == 2
    assert sink.calls == []
    key, audio, delta = vk(40), au(45), vd(80)
    reader.offer(key)
    reader.offer(audio)
    reader.offer(delta)
    assert sink.calls == ["ready"]
    assert drain(reader) == [key, audio, delta]
    assert reader.dropped == 2


def test_reader_delivers_in_order_and_counts() -> None:
    reader, _ = new_reader()
    units = [vk(0), au(5), vd(40), au(26), vd(80)]
    for unit in units:
        reader.offer(unit)
    assert reader.queued_bytes == 50
    assert drain(reader) == units
    assert reader.delivered == 5
    assert reader.queued_bytes == 0
    assert reader.dropped == 0


def test_on_ready_only_when_the_queue_goes_from_empty_to_non_empty() -> None:
    reader, sink = new_reader()
    reader.offer(vk(0))
    reader.offer(vd(40))
    reader.offer(vd(80))
    assert sink.calls == ["ready"]
    assert reader.take() is not None
    reader.offer(vd(120))  # still not empty: no call
    assert sink.calls == ["ready"]
    drain(reader)
    reader.offer(vd(160))
    assert sink.calls == ["ready", "ready"]
    reader.offer(Metadata({"a": 1}))
    assert sink.calls == ["ready", "ready"]
    drain(reader)
    reader.offer(Metadata({"a": 2}))
    assert sink.calls == ["ready", "ready", "ready"]


def test_overflow_by_units_clears_counts_and_skips_to_the_next_keyframe() -> None:
    reader, sink = new_reader(max_units=3)
    for unit in (vk(0), vd(40), vd(80)):
        reader.offer(unit)
    assert len(reader.queue) == 3
    reader.offer(vd(120))  # the fourth: overflow
    assert reader.take() is None
    assert reader.queued_bytes == 0
    assert reader.dropped == 4
    reader.offer(vd(160))
    reader.offer(au(170))
    assert reader.dropped == 6
    assert reader.take() is None
    key = vk(200)
    reader.offer(key)
    reader.offer(vd(240))
    assert drain(reader)[0] is key
    assert sink.calls == ["ready", "ready"]


def test_overflow_by_bytes() -> None:
    reader, _ = new_reader(max_bytes=100)
    reader.offer(vk(0, size=40))
    reader.offer(vd(40, size=40))
    reader.offer(vd(80, size=20))  # exactly 100: fits
    assert reader.queued_bytes == 100
    reader.offer(vd(120, size=1))
    assert reader.take() is None
    assert reader.dropped == 4
    assert reader.queued_bytes == 0


def test_a_keyframe_that_arrives_on_overflow_is_kept() -> None:
    reader, sink = new_reader(max_units=3)
    for unit in (vk(0), vd(40), vd(80)):
        reader.offer(unit)
    key = vk(120)
    reader.offer(key)
    assert reader.dropped == 3
    assert not reader.waiting_key
    assert reader.queued_bytes == key.size
    after = vd(160)
    reader.offer(after)
    assert drain(reader) == [key, after]
    assert reader.dropped == 3


def test_an_oversized_keyframe_on_an_empty_queue_is_kept_and_signalled() -> None:
    reader, sink = new_reader(max_bytes=100)
    key = vk(0, size=500)
    reader.offer(key)
    assert sink.calls == ["ready"]
    assert reader.dropped == 0
    assert drain(reader) == [key]


def test_audio_only_overflow_keeps_the_new_audio_unit() -> None:
    reader, _ = new_reader(has_video=False, max_units=2)
    first = au(0)
    reader.offer(first)  # audio starts an audio-only stream
    reader.offer(au(21))
    newest = au(42)
    reader.offer(newest)
    assert reader.dropped == 2
    assert drain(reader) == [newest]


def test_audio_in_a_video_stream_does_not_restart_a_reader_after_overflow() -> None:
    reader, _ = new_reader(max_units=2)
    reader.offer(vk(0))
    reader.offer(vd(40))
    reader.offer(au(45))  # overflow on audio: not a starting point with video around
    assert reader.dropped == 3
    assert reader.waiting_key
    reader.offer(au(66))
    assert reader.take() is None


def test_metadata_items() -> None:
    reader, sink = new_reader(max_units=3)
    meta = Metadata({"width": 320})
    # Metadata is queued even while waiting for a keyframe, and costs no bytes.
    reader.offer(meta)
    assert sink.calls == ["ready"]
    assert reader.queued_bytes == 0
    assert reader.dropped == 0
    reader.offer(vd(0))  # skipped
    key = vk(40)
    reader.offer(key)
    assert drain(reader) == [meta, key]
    assert reader.delivered == 1  # only media units count as delivered
    # A full queue refuses metadata silently.
    for unit in (vk(80), vd(120), vd(160)):
        reader.offer(unit)
    reader.offer(Metadata({"width": 640}))
    assert len(reader.queue) == 3
    assert all(isinstance(item, MediaUnit) for item in reader.queue)


def test_start_with_a_gop_over_the_bound_keeps_it_all_from_a_starting_point() -> None:
    sink = Sink()
    reader = Reader(FakeStream(True), sink, "k", max_units=2, max_bytes=25)  # type: ignore[arg-type]
    meta = Metadata({})
    gop = [vk(0), au(5), vd(40), au(26), vd(80)]
    reader.start([meta, au(-10), vd(-40), *gop])
    assert reader.active
    assert sink.calls == ["ready"]
    assert not reader.waiting_key
    assert reader.queued_bytes == 50
    assert drain(reader) == [meta, *gop]
    assert reader.dropped == 0
    # Once drained, the bound applies as usual: two small units fit, a third overflows.
    first, second = vd(120), vd(160)
    reader.offer(first)
    reader.offer(second)
    assert list(reader.queue) == [first, second]
    reader.offer(vd(200))
    assert reader.take() is None
    assert reader.dropped == 3


def test_start_without_a_starting_point_waits() -> None:
    sink = Sink()
    reader = Reader(FakeStream(True), sink, None)  # type: ignore[arg-type]
    reader.start([vd(0), au(5)])
    assert sink.calls == []
    assert reader.waiting_key
    assert reader.take() is None
    key = vk(40)
    reader.offer(key)
    assert drain(reader) == [key]


def test_start_of_an_audio_only_stream_begins_at_the_first_audio_unit() -> None:
    sink = Sink()
    reader = Reader(FakeStream(False), sink, None)  # type: ignore[arg-type]
    units = [au(0), au(21)]
    reader.start(units)
    assert drain(reader) == units


def test_clear_empties_and_waits_for_a_keyframe_again() -> None:
    reader, _ = new_reader()
    reader.offer(vk(0))
    reader.offer(vd(40))
    reader.clear()
    assert reader.take() is None
    assert reader.queued_bytes == 0
    reader.offer(vd(80))
    assert reader.take() is None


@st.composite
def reader_ops(draw: st.DrawFn) -> tuple[bool, int, int, list[tuple[str, int]]]:
    has_video = draw(st.booleans())
    max_units = draw(st.integers(1, 6))
    max_bytes = draw(st.integers(1, 60))
    kinds = ["key", "delta", "audio", "meta", "take"] if has_video else ["audio", "meta", "take"]
    ops = draw(st.lists(st.tuples(st.sampled_from(kinds), st.integers(1, 30)), max_size=60))
    return has_video, max_units, max_bytes, ops


@settings(max_examples=300, deadline=None)
@given(reader_ops())
def test_reader_invariants(case: tuple[bool, int, int, list[tuple[str, int]]]) -> None:
    """Whatever is offered and taken: bytes are accounted, the bounds hold, every unit is
    delivered, queued or counted as dropped, and after any gap delivery resumes at a
    starting point."""
    has_video, max_units, max_bytes, ops = case
    sink = Sink()
    reader = Reader(FakeStream(has_video), sink, "k", max_units=max_units, max_bytes=max_bytes)  # type: ignore[arg-type]
    reader.start([])
    offered: list[MediaUnit] = []
    delivered: list[MediaUnit] = []
    for op, size in ops:
        if op == "take":
            item = reader.take()
            if isinstance(item, MediaUnit):
                delivered.append(item)
            continue
        before, ready_before = len(reader.queue), sink.count("ready")
        if op == "meta":
            reader.offer(Metadata({}))
        else:
            unit = {"key": vk, "delta": vd, "audio": au}[op](len(offered), size=size)
            offered.append(unit)
            reader.offer(unit)
        became_ready = sink.count("ready") - ready_before
        assert became_ready == (1 if before == 0 and reader.queue else 0)
        media = [item for item in reader.queue if isinstance(item, MediaUnit)]
        assert reader.queued_bytes == sum(unit.size for unit in media)
        assert len(reader.queue) <= max_units
        assert reader.queued_bytes <= max_bytes or len(media) == 1
    delivered += [item for item in drain(reader) if isinstance(item, MediaUnit)]
    assert len(delivered) + reader.dropped == len(offered)
    position = {id(unit): i for i, unit in enumerate(offered)}
    previous = -1
    for unit in delivered:
        index = position[id(unit)]
        assert index > previous
        if previous < 0 or index != previous + 1:
            assert starts_gop(unit, has_video)
        previous = index


# ------------------------------------------------------------------------------ GopCache


def test_gop_cache_resets_on_each_starting_unit() -> None:
    gop = GopCache(1000)
    gop.add(vd(0), False)  # nothing to attach it to yet
    assert gop.units == []
    k1, d1 = vk(0), vd(40)
    gop.add(k1, True)
    gop.add(d1, False)
    assert gop.units == [k1, d1]
    assert gop.bytes == 20
    k2 = vk(80)
    gop.add(k2, True)
    assert gop.units == [k2]
    assert gop.bytes == 10


def test_gop_cache_over_the_bound_drops_the_whole_gop_until_the_next_keyframe() -> None:
    gop = GopCache(35)
    gop.add(vk(0), True)
    gop.add(vd(40), False)
    gop.add(vd(80), False)
    assert gop.bytes == 30
    gop.add(vd(120), False)  # 40 > 35
    assert gop.units == []
    assert gop.bytes == 0
    gop.add(vd(160), False)
    gop.add(vd(200, size=1), False)  # would fit, but the GOP is already broken
    assert gop.units == []
    key = vk(240)
    gop.add(key, True)
    assert gop.units == [key]


def test_gop_cache_keyframe_over_the_bound() -> None:
    gop = GopCache(35)
    gop.add(vk(0), True)
    gop.add(vk(40, size=36), True)
    assert gop.units == []
    gop.add(vd(80), False)
    assert gop.units == []
    key = vk(120, size=35)
    gop.add(key, True)
    assert gop.units == [key]
    assert gop.bytes == 35


@pytest.mark.parametrize("size", [0, -1])
def test_gop_cache_off(size: int) -> None:
    gop = GopCache(size)
    gop.add(vk(0), True)
    gop.add(vd(40), False)
    assert gop.units == []
    assert gop.bytes == 0


# ------------------------------------------------------------------------------ Stream


def live_stream(
    key: str = "key", gop_cache_bytes: int = 1 << 20, now: float = 0.0, **kw: int
) -> tuple[Stream, object]:
    stream = Stream("chan", gop_cache_bytes=gop_cache_bytes, **kw)
    publisher = object()
    stream.start_publish(publisher, key, now)
    return stream, publisher


def test_first_publish_starts_at_zero_whatever_the_first_timestamp() -> None:
    stream, _ = live_stream()
    base = 123456789
    units = [vk(base, cts=80), au(base + 5), vd(base + 40, cts=40), au(base + 26)]
    for unit in units:
        stream.push(unit)
    assert [(u.dts, u.pts) for u in units] == [(0, 80), (5, 5), (40, 80), (26, 26)]
    assert stream.units_in == 4
    assert stream.bytes_in == 40
    assert stream.tracks == {VIDEO: VT, AUDIO: AT}
    assert stream.has_video


def test_first_publish_starting_at_zero_is_unchanged() -> None:
    stream, _ = live_stream()
    units = [vk(0), vd(40), au(20)]
    for unit in units:
        stream.push(unit)
    assert [u.dts for u in units] == [0, 40, 20]


def test_dts_is_monotonic_per_track_and_pts_moves_with_it() -> None:
    stream, _ = live_stream()
    first, second = vk(1000, cts=80), vd(1040, cts=40)
    stream.push(first)
    stream.push(second)
    back = vd(1030, cts=80)  # 10 ms back
    stream.push(back)
    assert (back.dts, back.pts) == (40, 30 + 80 + 10)
    # Audio has its own floor: earlier than video's last DTS is fine...
    a1 = au(1020)
    stream.push(a1)
    assert a1.dts == 20
    # ...but not earlier than its own.
    a2 = au(1010)
    stream.push(a2)
    assert (a2.dts, a2.pts) == (20, 20)
    # Equal DTS is not a step back.
    same = vd(1040)
    stream.push(same)
    assert same.dts == 40


def test_a_track_starting_before_the_first_unit_is_clamped_to_the_start() -> None:
    stream, _ = live_stream()
    a = au(5000)
    v = vk(4900, cts=100)
    stream.push(a)
    stream.push(v)
    assert a.dts == 0
    assert (v.dts, v.pts) == (0, -100 + 100 + 100)


def test_a_second_publish_continues_after_the_last_dts_plus_the_gap() -> None:
    stream, first_publisher = live_stream(now=100.0)
    for unit in (vk(777), au(790), vd(817)):
        stream.push(unit)  # rebased to 0, 13, 40
    assert stream.end_publish(first_publisher, now=101.0)
    assert not stream.live
    second = object()
    stream.start_publish(second, "key", now=103.5)  # 2.5 s later
    units = [vk(123456789, cts=40), au(123456800), vd(123456829)]
    for unit in units:
        stream.push(unit)
    assert [(u.dts, u.pts) for u in units] == [(2540, 2580), (2551, 2551), (2580, 2580)]


def test_a_second_publish_after_no_time_still_moves_forward() -> None:
    stream, first_publisher = live_stream()
    stream.push(vk(0))
    stream.push(vd(40))
    stream.end_publish(first_publisher, now=5.0)
    stream.start_publish(object(), "key", now=5.0)
    unit = vk(0)
    stream.push(unit)
    assert unit.dts > 40


def test_rebasing_a_90khz_track() -> None:
    track = Track(VIDEO, "h264", b"avcC", time_base=Fraction(1, 90000))
    stream, publisher = live_stream()
    units = [vk(900000, cts=3000, track=track), vd(903600, track=track)]
    for unit in units:
        stream.push(unit)
    assert [(u.dts, u.pts) for u in units] == [(0, 3000), (3600, 3600)]
    stream.end_publish(publisher, now=1.0)
    stream.start_publish(object(), "key", now=2.0)  # 1 s later
    unit = vk(630, cts=900, track=track)  # 7 ms, a whole number of ms
    stream.push(unit)
    assert (unit.dts, unit.pts) == ((40 + 1000) * 90, (40 + 1000) * 90 + 900)


@settings(max_examples=200, deadline=None)
@given(
    publishes=st.lists(
        st.tuples(
            st.floats(0, 100),  # seconds the publisher was away before this publish
            st.integers(0, 2**40),  # the publisher's first raw timestamp
            st.lists(
                st.tuples(st.booleans(), st.integers(-500, 500), st.integers(0, 200)),
                min_size=1,
                max_size=30,
            ),  # (video?, raw step, cts)
        ),
        min_size=1,
        max_size=4,
    )
)
def test_rebasing_invariants(
    publishes: list[tuple[float, int, list[tuple[bool, int, int]]]],
) -> None:
    """One timeline per stream: starts at 0, DTS never goes back per track (within or across
    publishes), every publish lands after the previous one, composition offsets survive."""
    stream = Stream("chan", gop_cache_bytes=0)
    now = 0.0
    previous_max = -1
    last: dict[str, int] = {}
    first = True
    for away, raw, steps in publishes:
        now += away
        publisher = object()
        stream.start_publish(publisher, "key", now)
        this_max = -1
        for video, step, cts in steps:
            raw = max(0, raw + step)
            unit = vk(raw, cts=cts) if video else au(raw)
            stream.push(unit)
            if first:
                assert unit.dts == 0
                first = False
            kind = unit.track.kind
            assert unit.dts >= last.get(kind, 0)
            assert unit.dts > previous_max
            assert unit.pts - unit.dts == (cts if video else 0)
            last[kind] = unit.dts
            this_max = max(this_max, unit.dts)
        previous_max = this_max
        now += 1.0
        stream.end_publish(publisher, now)


def test_end_publish_by_someone_else_is_ignored() -> None:
    stream, publisher = live_stream()
    assert not stream.end_publish(object(), now=1.0)
    assert stream.live
    assert stream.end_publish(publisher, now=1.0)
    assert not stream.end_publish(publisher, now=1.0)


def test_attach_to_a_live_stream_gets_metadata_and_the_gop_from_a_keyframe() -> None:
    stream, _ = live_stream()
    stream.push(vk(0))
    stream.push(vd(40))
    stream.set_metadata({"width": 320.0})
    gop = [vk(80), au(85), vd(120), au(106)]
    for unit in gop:
        stream.push(unit)
    sink = Sink()
    reader = stream.attach(sink, "key")
    assert reader is not None
    assert reader.active
    assert sink.calls == ["ready"]
    items = drain(reader)
    assert isinstance(items[0], Metadata)
    assert items[0].values == {"width": 320.0}
    assert items[1:] == gop
    assert items[1].keyframe
    # And it gets what follows.
    nxt = vd(160)
    stream.push(nxt)
    assert drain(reader) == [nxt]


def test_attach_with_the_gop_cache_off_waits_for_the_next_keyframe() -> None:
    stream, _ = live_stream(gop_cache_bytes=0)
    stream.push(vk(0))
    stream.push(vd(40))
    reader = stream.attach(Sink(), "key")
    assert reader is not None
    assert reader.take() is None
    stream.push(vd(80))
    assert reader.take() is None
    key = vk(120)
    stream.push(key)
    assert drain(reader) == [key]


def test_attach_with_a_wrong_key_is_refused_and_none_bypasses() -> None:
    stream, _ = live_stream(key="secret")
    stream.push(vk(0))
    assert stream.attach(Sink(), "wrong") is None
    assert stream.attach(Sink(), "") is None
    assert stream.attach(Sink(), "secre") is None
    assert stream.readers == []
    internal = stream.attach(Sink(), None)
    assert internal is not None
    assert len(drain(internal)) == 1
    assert stream.attach(Sink(), "secret") is not None
    assert len(stream.readers) == 2


def test_readers_attached_before_publish_get_start_and_units() -> None:
    stream = Stream("chan", gop_cache_bytes=1 << 20)
    sink = Sink()
    reader = stream.attach(sink, "key")
    assert reader is not None
    assert not reader.active
    stream.set_metadata({"x": 1.0})  # not live, reader inactive: not offered
    assert reader.take() is None
    stream.start_publish(object(), "key", now=0.0)
    assert reader.active
    assert sink.calls == ["start"]
    stream.push(vd(0))  # no keyframe yet: skipped
    key = vk(40)
    stream.push(key)
    assert sink.calls == ["start", "ready"]
    assert drain(reader) == [key]


def test_a_new_publish_with_another_key_refuses_and_detaches_old_readers() -> None:
    stream = Stream("chan", gop_cache_bytes=1 << 20)
    old, internal, good = Sink(), Sink(), Sink()
    r_old = stream.attach(old, "old-key")
    r_internal = stream.attach(internal, None)
    r_good = stream.attach(good, "new-key")
    stream.start_publish(object(), "new-key", now=0.0)
    assert len(old.calls) == 1 and old.calls[0].startswith("refused: ")
    assert r_old not in stream.readers
    assert r_old is not None and not r_old.active
    assert internal.calls == ["start"]
    assert good.calls == ["start"]
    assert stream.readers == [r_internal, r_good]
    stream.push(vk(0))
    assert r_old.take() is None


def test_readers_of_an_audio_only_stream_start_on_audio() -> None:
    stream = Stream("chan", gop_cache_bytes=1 << 20)
    early = stream.attach(Sink(), "key")
    stream.start_publish(object(), "key", now=0.0)
    units = [au(0), au(21), au(42)]
    for unit in units:
        stream.push(unit)
    assert early is not None
    assert drain(early) == units
    late = stream.attach(Sink(), "key")
    assert late is not None
    assert drain(late) == [units[-1]]  # each audio unit starts a new "GOP"
    assert not stream.has_video


def test_notify_unpublished_clears_and_tells_every_reader() -> None:
    stream, publisher = live_stream()
    sinks = [Sink(), Sink()]
    readers = [stream.attach(sink, "key") for sink in sinks]
    stream.push(vk(0))
    stream.end_publish(publisher, now=1.0)
    stream.notify_unpublished()
    for sink, reader in zip(sinks, readers, strict=True):
        assert sink.calls == ["ready", "end"]
        assert reader is not None and reader.take() is None
    assert stream.gop.units == []


def test_detach() -> None:
    stream, publisher = live_stream()
    reader = stream.attach(Sink(), "key")
    assert reader is not None
    stream.push(vk(0))
    stream.detach(reader)
    assert not reader.active
    assert reader.take() is None
    stream.push(vk(40))
    assert reader.take() is None
    stream.detach(reader)  # twice is harmless
    assert not stream.idle
    stream.end_publish(publisher, now=1.0)
    assert stream.idle


def test_reader_bounds_from_the_stream() -> None:
    stream, _ = live_stream(reader_max_units=2)
    reader = stream.attach(Sink(), "key")
    assert reader is not None
    for unit in (vk(0), vd(40), vd(80)):
        stream.push(unit)
    assert reader.dropped == 3
    assert reader.take() is None


def test_a_sink_may_detach_itself_from_a_callback() -> None:
    """Readers detaching (or being detached) while the stream loops over them must not make
    the stream skip the others."""
    stream = Stream("chan", gop_cache_bytes=1 << 20)
    first, second = Sink(), Sink()
    r1 = stream.attach(first, "key")
    stream.attach(second, "key")
    first.then = lambda call: stream.detach(r1) if call == "start" else None  # type: ignore[arg-type]
    stream.start_publish(object(), "key", now=0.0)
    assert second.calls == ["start"]


# ------------------------------------------------------------------------------ Registry


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_registry_one_publisher_per_channel() -> None:
    registry = Registry(gop_cache_bytes=1 << 20, unpublish_grace=0)
    first = object()
    stream = registry.start_publish("chan", "key", first)
    assert registry.get("chan") is stream
    assert stream.live
    with pytest.raises(PublishRefused):
        registry.start_publish("chan", "key", object())
    with pytest.raises(PublishRefused):
        registry.start_publish("chan", "other", object())
    assert stream.publisher is first
    other = registry.start_publish("other", "key", object())
    assert other is not stream


def test_registry_end_publish_without_readers_forgets_the_stream() -> None:
    registry = Registry(gop_cache_bytes=1 << 20, unpublish_grace=5)
    publisher = object()
    stream = registry.start_publish("chan", "key", publisher)
    registry.end_publish(stream, object())  # not its publisher: ignored
    assert registry.get("chan") is stream
    registry.end_publish(stream, publisher)
    assert registry.get("chan") is None
    # A new publish starts a new timeline at 0.
    again = registry.start_publish("chan", "key", object())
    assert again is not stream
    unit = vk(99999)
    again.push(unit)
    assert unit.dts == 0


def test_registry_grace_zero_ends_at_once_and_the_last_detach_forgets() -> None:
    registry = Registry(gop_cache_bytes=1 << 20, unpublish_grace=0)
    publisher = object()
    stream = registry.start_publish("chan", "key", publisher)
    sinks = [Sink(), Sink()]
    readers = [registry.attach("chan", sink, "key") for sink in sinks]
    registry.end_publish(stream, publisher)
    assert [sink.count("end") for sink in sinks] == [1, 1]
    assert registry.get("chan") is stream  # readers still hold it
    registry.detach(readers[0])  # type: ignore[arg-type]
    assert registry.get("chan") is stream
    registry.detach(readers[1])  # type: ignore[arg-type]
    assert registry.get("chan") is None


def test_registry_attach_before_publish_and_detach_forgets() -> None:
    registry = Registry(gop_cache_bytes=1 << 20, unpublish_grace=0)
    sink = Sink()
    reader = registry.attach("chan", sink, "any-key")
    assert reader is not None
    stream = registry.get("chan")
    assert stream is not None and not stream.live
    published = registry.start_publish("chan", "any-key", object())
    assert published is stream
    assert sink.calls == ["start"]
    registry.detach(reader)
    assert registry.get("chan") is stream  # still live
    registry.end_publish(stream, stream.publisher)
    assert registry.get("chan") is None


def test_registry_attach_with_a_wrong_key_leaves_nothing_behind() -> None:
    registry = Registry(gop_cache_bytes=1 << 20, unpublish_grace=0)
    publisher = object()
    stream = registry.start_publish("chan", "key", publisher)
    assert registry.attach("chan", Sink(), "wrong") is None
    assert stream.readers == []
    assert registry.get("chan") is stream
    registry.end_publish(stream, publisher)
    assert registry.get("chan") is None
    assert registry.streams == {}


def test_registry_waiting_reader_refused_by_a_new_key_then_detached_forgets() -> None:
    registry = Registry(gop_cache_bytes=1 << 20, unpublish_grace=0)
    sink = Sink()
    reader = registry.attach("chan", sink, "old")
    stream = registry.start_publish("chan", "new", object())
    assert sink.calls[0].startswith("refused")
    assert reader is not None
    registry.detach(reader)  # what the adapter does on on_refused: harmless
    assert registry.get("chan") is stream
    registry.end_publish(stream, stream.publisher)
    assert registry.get("chan") is None


async def test_registry_grace_then_publish_end_exactly_once() -> None:
    registry = Registry(gop_cache_bytes=1 << 20, unpublish_grace=0.05)
    publisher = object()
    stream = registry.start_publish("chan", "key", publisher)
    sink = Sink()
    reader = registry.attach("chan", sink, "key")
    stream.push(vk(0))
    registry.end_publish(stream, publisher)
    assert sink.count("end") == 0
    await asyncio.sleep(0.12)
    assert sink.count("end") == 1
    assert reader is not None and reader.take() is None
    await asyncio.sleep(0.06)
    assert sink.count("end") == 1
    assert registry.get("chan") is stream  # the reader still waits on it
    registry.detach(reader)
    assert registry.get("chan") is None
    registry.close()


async def test_registry_publisher_back_within_the_grace() -> None:
    clock = Clock(16.0)
    registry = Registry(gop_cache_bytes=1 << 20, unpublish_grace=0.05, clock=clock)
    first = object()
    stream = registry.start_publish("chan", "key", first)
    sink = Sink()
    reader = registry.attach("chan", sink, "key")
    assert reader is not None
    for unit in (vk(5000), vd(5040)):
        stream.push(unit)
    registry.end_publish(stream, first)
    clock.now = 16.125  # 125 ms later (exact in binary)
    back = registry.start_publish("chan", "key", object())
    assert back is stream
    unit = vk(0)
    stream.push(unit)
    assert unit.dts == 40 + 125  # timestamps continue
    await asyncio.sleep(0.12)
    assert sink.count("end") == 0
    assert sink.count("start") == 1  # the initial start happened before attach
    assert drain(reader)[-1] is unit
    # The second publisher leaving does end it, once.
    registry.end_publish(stream, stream.publisher)
    await asyncio.sleep(0.12)
    assert sink.count("end") == 1
    registry.close()


async def test_registry_reader_sees_start_on_a_return_after_attaching_while_down() -> None:
    registry = Registry(gop_cache_bytes=1 << 20, unpublish_grace=0.05)
    first = object()
    stream = registry.start_publish("chan", "key", first)
    registry.end_publish(stream, first)  # no readers: forgotten at once
    sink = Sink()
    reader = registry.attach("chan", sink, "key")
    assert reader is not None
    stream = registry.start_publish("chan", "key", object())
    assert sink.calls == ["start"]
    registry.end_publish(stream, stream.publisher)
    registry.start_publish("chan", "key", object())
    assert sink.calls == ["start", "start"]
    await asyncio.sleep(0.1)
    assert sink.count("end") == 0
    registry.close()


async def test_registry_last_reader_leaving_during_the_grace() -> None:
    registry = Registry(gop_cache_bytes=1 << 20, unpublish_grace=0.05)
    publisher = object()
    stream = registry.start_publish("chan", "key", publisher)
    sink = Sink()
    reader = registry.attach("chan", sink, "key")
    assert reader is not None
    registry.end_publish(stream, publisher)
    registry.detach(reader)
    # Kept while the grace runs, so a returning publisher continues its timeline...
    assert registry.get("chan") is stream
    await asyncio.sleep(0.12)
    # ...and forgotten after it; the detached reader is not told.
    assert registry.get("chan") is None
    assert sink.count("end") == 0
    registry.close()


async def test_registry_close_cancels_timers() -> None:
    registry = Registry(gop_cache_bytes=1 << 20, unpublish_grace=0.05)
    publisher = object()
    stream = registry.start_publish("chan", "key", publisher)
    sink = Sink()
    registry.attach("chan", sink, "key")
    registry.end_publish(stream, publisher)
    registry.close()
    await asyncio.sleep(0.1)
    assert sink.count("end") == 0


# ------------------------------------------------------------------------------ known bugs


def test_a_gop_over_the_bound_survives_the_next_unit() -> None:
    sink = Sink()
    reader = Reader(FakeStream(True), sink, "k", max_units=4)  # type: ignore[arg-type]
    gop = [vk(0), vd(40), vd(80), vd(120), vd(160), vd(200)]
    reader.start(gop)
    nxt = vd(240)
    reader.offer(nxt)  # the publisher pushes again before the owner got to run
    assert reader.dropped == 0
    assert drain(reader) == [*gop, nxt]


def test_a_returning_publisher_starts_readers_on_a_keyframe() -> None:
    stream, first = live_stream()
    reader = stream.attach(Sink(), "key")
    assert reader is not None
    stream.push(vk(0))
    stream.push(vd(40))
    drain(reader)
    stream.end_publish(first, now=1.0)
    stream.start_publish(object(), "key", now=1.5)
    stream.push(vd(0, track=video_track()))  # new publish, starts mid-GOP
    assert reader.take() is None
    key = vk(40, track=video_track())
    stream.push(key)
    assert drain(reader) == [key]
