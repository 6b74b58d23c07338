"""Transcoders (AAC <-> Opus, any video -> H.264 constrained baseline) and their worker thread.

All media is made here with PyAV's encoders (libx264, libx265, libvpx, aac, libopus) and the
transcoders' output is decoded again with PyAV: frequencies, durations, timestamps and the
H.264 bitstream itself are checked, not the transcoders' own account of what they did.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
import pytest

from bridge.media.aac import parse_asc
from bridge.media.errors import CodecConfigError
from bridge.media.h264 import parse_sps
from bridge.transcode.audio import AacToOpus, EncodedAudio, OpusToAac
from bridge.transcode.video import EncodedVideo, VideoTranscoder, fit, split_annexb
from bridge.transcode.worker import Worker

RATE = 48000

# ----------------------------------------------------------------------------- audio helpers


def sine(rate: int, seconds: float, freq: float = 440.0, silence: float = 0.3) -> np.ndarray:
    """A sine followed by silence, so nothing of the sine is left inside a transcoder."""
    t = np.arange(int(rate * seconds)) / rate
    tone = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.concatenate([tone, np.zeros(int(rate * silence), np.float32)])


def encode_audio(
    codec: str, rate: int, channels: int, signal: np.ndarray, frame_size: int
) -> tuple[bytes, list[tuple[bytes, int]]]:
    """(extradata, [(payload, pts in 1/rate)]) for a mono signal copied to every channel."""
    enc = av.CodecContext.create(codec, "w")
    assert isinstance(enc, av.AudioCodecContext)
    enc.sample_rate = rate
    enc.layout = "stereo" if channels == 2 else "mono"
    fmt = "flt" if codec == "libopus" else "fltp"  # libopus takes interleaved samples only
    enc.format = fmt
    enc.bit_rate = 128_000
    enc.time_base = Fraction(1, rate)
    enc.open()
    packets = []
    for start in range(0, len(signal) - frame_size + 1, frame_size):
        chunk = signal[start : start + frame_size]
        planes = np.stack([chunk] * channels)
        data = planes if fmt == "fltp" else planes.T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=enc.layout.name)
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        packets += enc.encode(frame)
    packets += enc.encode(None)
    return bytes(enc.extradata or b""), [(bytes(p), p.pts) for p in packets if p.pts is not None]


def decode_audio(codec: str, frames: list[EncodedAudio], extradata: bytes = b"") -> np.ndarray:
    """The mono mix of the decoded output, at 48 kHz."""
    dec = av.CodecContext.create(codec, "r")
    assert isinstance(dec, av.AudioCodecContext)
    if extradata:
        dec.extradata = extradata
    else:
        dec.sample_rate = RATE
        dec.layout = "stereo"
    pcm = []
    for encoded in frames:
        for frame in dec.decode(av.Packet(encoded.payload)):
            assert frame.sample_rate == RATE
            pcm.append(frame.to_ndarray().astype(np.float32).mean(axis=0))
    return np.concatenate(pcm)


def dominant_frequency(pcm: np.ndarray) -> float:
    middle = pcm[len(pcm) // 4 : len(pcm) // 4 + RATE // 2]
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle))))
    return float(np.argmax(spectrum)) * RATE / len(middle)


def tone_span(pcm: np.ndarray) -> float:
    """Seconds from the first to the last sample of the tone (well above codec noise)."""
    loud = np.flatnonzero(np.abs(pcm) > 0.25)
    return (loud[-1] - loud[0]) / RATE


def assert_continuous(frames: list[EncodedAudio]) -> None:
    for a, b in zip(frames, frames[1:], strict=False):
        assert b.pts == a.pts + a.duration


def feed_all(
    transcoder: AacToOpus | OpusToAac,
    packets: list[tuple[bytes, int]],
    time_base: Fraction,
) -> list[EncodedAudio]:
    out: list[EncodedAudio] = []
    for payload, pts in packets:
        out += transcoder.feed(payload, pts, time_base)
    return out


# ----------------------------------------------------------------------------- AAC -> Opus


@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (44100, 1), (48000, 2)])
def test_aac_to_opus_keeps_tone_duration_and_timeline(rate: int, channels: int) -> None:
    asc, packets = encode_audio("aac", rate, channels, sine(rate, 2.0), 1024)
    transcoder = AacToOpus(asc)
    out = feed_all(transcoder, packets, Fraction(1, rate))

    assert all(f.duration == 960 for f in out)  # 20 ms frames
    assert_continuous(out)
    # The output starts where the input does, on the 48 kHz clock.
    assert out[0].pts == round(Fraction(packets[0][1] * RATE, rate))
    in_span = (packets[-1][1] + 1024 - packets[0][1]) / rate
    out_span = (out[-1].pts + out[-1].duration - out[0].pts) / RATE
    assert abs(out_span - in_span) < 0.04
    pcm = decode_audio("opus", out)
    assert abs(tone_span(pcm) - 2.0) < 0.04
    assert abs(dominant_frequency(pcm) - 440) < 5
    transcoder.close()
    assert transcoder.feed(packets[0][0], 0, Fraction(1, rate)) == []


def test_aac_to_opus_absorbs_millisecond_timestamps_and_jitter() -> None:
    # RTMP gives AAC frames millisecond timestamps (23 or 24 ms apart at 44.1 kHz), some
    # publishers a few ms of jitter on top: neither may show in the output clock.
    asc, packets = encode_audio("aac", 44100, 2, sine(44100, 1.0), 1024)
    jitter = np.random.default_rng(7).integers(-15, 16, len(packets))
    ms = [
        (p, round(pts * 1000 / 44100) + int(j)) for (p, pts), j in zip(packets, jitter, strict=True)
    ]
    out = feed_all(AacToOpus(asc), ms, Fraction(1, 1000))
    assert len(out) > 40
    assert_continuous(out)


@pytest.mark.parametrize("jump", [5.0, -0.9])
def test_aac_to_opus_reanchors_on_a_timestamp_jump(jump: float) -> None:
    asc, packets = encode_audio("aac", 44100, 2, sine(44100, 2.0, silence=0.0), 1024)
    half = len(packets) // 2
    shift = round(jump * 44100)
    moved = packets[:half] + [(p, pts + shift) for p, pts in packets[half:]]
    out = feed_all(AacToOpus(asc), moved, Fraction(1, 44100))

    breaks = [i for i in range(1, len(out)) if out[i].pts != out[i - 1].pts + out[i - 1].duration]
    assert len(breaks) == 1
    after = out[breaks[0]]
    # The new timeline is the input's, from the first frame after the jump.
    assert after.pts == round(Fraction(moved[half][1] * RATE, 44100))
    assert_continuous(out[: breaks[0]])
    assert_continuous(out[breaks[0] :])


def test_aac_to_opus_skips_garbage_and_carries_on() -> None:
    asc, packets = encode_audio("aac", 44100, 2, sine(44100, 2.0), 1024)
    transcoder = AacToOpus(asc)
    tb = Fraction(1, 44100)
    out = feed_all(transcoder, packets[:40], tb)
    garbage = [b"\xde\xad\xbe\xef" * 25, b"\xff" * 64, bytes(range(256)), b"", b"\x00" * 100_000]
    for i, payload in enumerate(garbage):
        assert transcoder.feed(payload, packets[40][1] + i, tb) == []
    # Two frames lost to garbage: within the jitter allowance, the clock runs on.
    out += feed_all(transcoder, packets[42:], tb)
    assert_continuous(out)
    pcm = decode_audio("opus", out)
    assert abs(dominant_frequency(pcm) - 440) < 5


def test_aac_to_opus_rejects_a_broken_config() -> None:
    with pytest.raises(ValueError):
        AacToOpus(b"")


# ----------------------------------------------------------------------------- Opus -> AAC


def test_opus_to_aac_keeps_tone_and_duration() -> None:
    _, packets = encode_audio("libopus", RATE, 2, sine(RATE, 2.0), 960)
    packets = [(p, pts) for p, pts in packets if p]
    transcoder = OpusToAac()
    cfg = parse_asc(transcoder.config)
    assert (cfg.object_type, cfg.sample_rate, cfg.channels) == (2, RATE, 2)
    out = feed_all(transcoder, packets, Fraction(1, RATE))

    assert all(f.duration == 1024 for f in out)
    assert_continuous(out)
    assert out[0].pts == packets[0][1]
    in_span = (packets[-1][1] + 960 - packets[0][1]) / RATE
    out_span = (out[-1].pts + out[-1].duration - out[0].pts) / RATE
    assert abs(out_span - in_span) < 0.04
    pcm = decode_audio("aac", out, transcoder.config)
    assert abs(tone_span(pcm) - 2.0) < 0.04
    assert abs(dominant_frequency(pcm) - 440) < 5


def test_opus_to_aac_mono_and_garbage() -> None:
    _, packets = encode_audio("libopus", RATE, 1, sine(RATE, 1.0), 960)
    transcoder = OpusToAac(channels=1)
    assert parse_asc(transcoder.config).channels == 1
    tb = Fraction(1, RATE)
    out = feed_all(transcoder, packets[:20], tb)
    for payload in (b"\x03\x00", b"\x03\x80", b"\xfc" + b"\xff" * 2000):
        assert transcoder.feed(payload, packets[20][1], tb) == []
    out += feed_all(transcoder, packets[20:], tb)
    assert_continuous(out)
    pcm = decode_audio("aac", out, transcoder.config)
    assert abs(dominant_frequency(pcm) - 440) < 5
    with pytest.raises(ValueError):
        OpusToAac(channels=6)


# ----------------------------------------------------------------------------- video helpers

Packets = list[tuple[bytes, int, int, bool]]  # payload, pts, dts, keyframe


def picture(i: int, width: int, height: int) -> av.VideoFrame:
    """A moving gradient: cheap to make, and real motion for the encoders."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x + 4 * i) % 256, (y + 2 * i) % 256, (x + y + i) % 256], axis=-1)
    return av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")


def mp4_video(codec: str, count: int, options: dict[str, str]) -> tuple[bytes, Fraction, Packets]:
    """Encode into an in-memory MP4 and demux it again: the muxer hands back the avcC/hvcC
    record and length-prefixed (4-byte) NAL units, the bus's canonical form."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream(codec, rate=30)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.codec_context.options = options
        for i in range(count):
            out.mux(stream.encode(picture(i, 320, 240)))
        out.mux(stream.encode(None))
    buf.seek(0)
    with av.open(buf, "r") as inp:
        vs = inp.streams.video[0]
        config = bytes(vs.codec_context.extradata or b"")
        packets = [
            (bytes(p), p.pts, p.dts, bool(p.is_keyframe))
            for p in inp.demux(vs)
            if p.size and p.pts is not None and p.dts is not None
        ]
        assert vs.time_base is not None
        return config, vs.time_base, packets


def vp8_video(count: int, width: int = 320, height: int = 240, start: int = 0) -> Packets:
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = Fraction(1, 90000)
    enc.framerate = Fraction(30)
    enc.bit_rate = 500_000
    enc.gop_size = 10
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    enc.open()
    packets = []
    for i in range(count):
        frame = picture(i, width, height).reformat(format="yuv420p")
        frame.pts = start + i * 3000
        frame.time_base = enc.time_base
        packets += enc.encode(frame)
    packets += enc.encode(None)
    return [(bytes(p), p.pts, p.pts, bool(p.is_keyframe)) for p in packets if p.pts is not None]


def transcode(
    transcoder: VideoTranscoder,
    packets: Packets,
    before: Callable[[int], None] | None = None,
) -> list[EncodedVideo]:
    out: list[EncodedVideo] = []
    for i, (payload, pts, dts, key) in enumerate(packets):
        if before is not None:
            before(i)
        out += transcoder.feed(payload, pts, dts, key)
    return out


def check_baseline(out: list[EncodedVideo]) -> list[int]:
    """Checks every access unit as a browser would meet it; returns the IDR indexes."""
    decoder = av.CodecContext.create("h264", "r")
    decoder.thread_type = "SLICE"
    idrs = []
    for i, unit in enumerate(out):
        types = [nal[0] & 0x1F for nal in split_annexb(unit.annexb)]
        assert types, "empty access unit"
        if 5 in types:
            idrs.append(i)
            first = types.index(5)
            assert 7 in types[:first] and 8 in types[:first], f"IDR {i} without SPS/PPS"
            sps = next(n for n in split_annexb(unit.annexb) if n[0] & 0x1F == 7)
            assert sps[1] == 66 and sps[2] & 0x40, "not constrained baseline"
        assert unit.keyframe == (5 in types)
        # No reordering in the output: every access unit decodes to its own frame at once.
        packet = av.Packet(unit.annexb)
        packet.pts = unit.pts
        frames = decoder.decode(packet)
        assert [f.pts for f in frames] == [unit.pts]
    pts = [u.pts for u in out]
    assert pts == sorted(set(pts)), "pts not strictly increasing"
    assert idrs and idrs[0] == 0
    return idrs


# ----------------------------------------------------------------------------- video


def test_h264_with_b_frames_becomes_constrained_baseline() -> None:
    config, tb, packets = mp4_video(
        "libx264", 90, {"preset": "veryfast", "x264-params": "bframes=3:b-adapt=0:keyint=250"}
    )
    assert config[1] == 100  # High profile input
    assert any(pts != dts for _, pts, dts, _ in packets)  # with B-frames
    transcoder = VideoTranscoder("h264", config, tb, keyframe_interval=1.0)
    requested_at = 50

    def request(i: int) -> None:
        if i == requested_at:
            transcoder.request_keyframe()

    out: list[EncodedVideo] = []
    marks: list[int] = []
    for i, (payload, pts, dts, key) in enumerate(packets):
        request(i)
        got = transcoder.feed(payload, pts, dts, key)
        if i == requested_at:
            marks.append(len(out))
        out += got

    assert (transcoder.width, transcoder.height) == (320, 240)
    # Not flushed: the decoder's reorder delay (2 frames for bframes=3 with a pyramid) stays in.
    assert len(packets) - 3 <= len(out) < len(packets)
    idrs = check_baseline(out)
    assert marks[0] in idrs  # the first output after request_keyframe() is an IDR
    keyframe_pts = [out[i].pts for i in idrs]
    gaps = np.diff(keyframe_pts)
    assert all(gaps <= round(1.0 / tb))
    # About every second, plus the requested one (90 frames: 0, 1 s, 2 s and the request).
    assert len(idrs) == 4
    assert set(u.pts for u in out) <= set(p[1] for p in packets)


def test_hevc_input_transcodes() -> None:
    config, tb, packets = mp4_video(
        "libx265", 20, {"preset": "ultrafast", "x265-params": "log-level=none:bframes=2"}
    )
    assert any(pts != dts for _, pts, dts, _ in packets)  # with B-frames
    transcoder = VideoTranscoder("hevc", config, tb)
    out = transcode(transcoder, packets)
    assert len(packets) - 3 <= len(out) <= len(packets)
    check_baseline(out)


def test_vp8_input_transcodes_frame_in_frame_out_and_follows_size_changes() -> None:
    first = vp8_video(15)
    second = vp8_video(10, 160, 120, start=first[-1][1] + 3000)
    transcoder = VideoTranscoder("vp8", b"", Fraction(1, 90000), keyframe_interval=10.0)
    out = []
    for payload, pts, dts, key in first:
        got = transcoder.feed(payload, pts, dts, key)
        assert [u.pts for u in got] == [pts]  # no decoder delay for VP8
        out += got
    assert (transcoder.width, transcoder.height) == (320, 240)
    out += transcode(transcoder, second)
    assert len(out) == len(first) + len(second)
    idrs = check_baseline(out)
    assert idrs == [0, len(first)]  # the new size starts with an IDR, nothing in between
    sps = next(n for n in split_annexb(out[len(first)].annexb) if n[0] & 0x1F == 7)
    assert (parse_sps(sps).width, parse_sps(sps).height) == (160, 120)
    assert (transcoder.width, transcoder.height) == (160, 120)


def test_video_is_scaled_into_the_box_and_bitrate_follows_size() -> None:
    transcoder = VideoTranscoder("vp8", b"", Fraction(1, 90000), max_width=160, max_height=160)
    out = transcode(transcoder, vp8_video(3))
    assert (transcoder.width, transcoder.height) == (160, 120)
    sps = next(n for n in split_annexb(out[0].annexb) if n[0] & 0x1F == 7)
    assert (parse_sps(sps).width, parse_sps(sps).height) == (160, 120)
    assert fit(1080, 1920, 1920, 1080) == (1080, 1920)  # portrait fits a portrait box
    assert fit(3840, 2160, 1920, 1080) == (1920, 1080)
    assert fit(1281, 721, 1920, 1080) == (1280, 720)  # even sides for 4:2:0


def test_video_waits_for_a_keyframe_and_survives_garbage() -> None:
    packets = vp8_video(25)  # keyframes at 0, 10, 20
    transcoder = VideoTranscoder("vp8", b"", Fraction(1, 90000))
    # Joining mid-GOP: nothing until the keyframe.
    assert transcode(transcoder, packets[1:10]) == []
    out = transcode(transcoder, packets[10:15])
    assert len(out) == 5 and out[0].keyframe
    # Garbage: no exception, nothing out, and the next keyframe starts things again.
    for payload in (b"\x00garbage" * 10, b"\x9d\x01\x2a" * 3):
        assert transcoder.feed(payload, packets[15][1], packets[15][1], True) == []
    after = transcode(transcoder, packets[16:])
    assert [u.pts for u in after] == [p[1] for p in packets[20:]]  # from the next keyframe
    check_baseline(out + after)

    h264 = VideoTranscoder("h264", b"\x01\x64\x00\x1f\xff\xe0\x00", Fraction(1, 1000))
    assert h264.feed(b"\x00\x00\x00\x09\x65garbage!", 0, 0, True) == []
    assert h264.feed(b"\xff\xff\xff\xff", 40, 40, True) == []


def test_video_refuses_frames_over_the_size_bound(caplog: pytest.LogCaptureFixture) -> None:
    huge = vp8_video(2, 4352, 16)  # over 4096 wide, few pixels: cheap to make
    transcoder = VideoTranscoder("vp8", b"", Fraction(1, 90000))
    with caplog.at_level(logging.WARNING, logger="bridge.transcode.video"):
        assert transcode(transcoder, huge) == []
    assert sum("over our bounds" in r.getMessage() for r in caplog.records) == 1
    assert (transcoder.width, transcoder.height) == (0, 0)
    normal = vp8_video(3, start=huge[-1][1] + 3000)
    assert len(transcode(transcoder, normal)) == 3


def test_video_drops_frames_whose_pts_does_not_increase() -> None:
    first = vp8_video(10)  # pts 0 .. 27000
    overlapping = vp8_video(10, start=15000)  # restarts at a keyframe, half of it in the past
    transcoder = VideoTranscoder("vp8", b"", Fraction(1, 90000))
    out = transcode(transcoder, first + overlapping)
    assert [u.pts for u in out] == [i * 3000 for i in range(15)]
    check_baseline(out)


def test_missing_parameter_sets_are_put_back_in_front_of_an_idr() -> None:
    transcoder = VideoTranscoder("vp8", b"", Fraction(1, 90000))
    out = transcode(transcoder, vp8_video(1))
    nals = split_annexb(out[0].annexb)
    bare = b"".join(b"\x00\x00\x00\x01" + n for n in nals if n[0] & 0x1F not in (7, 8))
    fixed = transcoder._with_parameter_sets(bare)
    types = [n[0] & 0x1F for n in split_annexb(fixed)]
    assert types[:2] == [7, 8] and 5 in types
    assert split_annexb(b"\x00\x00\x01\x67\x42\x00\x00\x00\x01\x68\xce") == [
        b"\x67\x42",
        b"\x68\xce",
    ]


def test_video_rejects_unknown_codecs_and_broken_records() -> None:
    with pytest.raises(ValueError):
        VideoTranscoder("mpeg2video", b"", Fraction(1, 90000))
    with pytest.raises(CodecConfigError):
        VideoTranscoder("h264", b"\x00\x00\x00\x01\x67\x42", Fraction(1, 90000))
    with pytest.raises(CodecConfigError):
        VideoTranscoder("hevc", b"\x01" * 10, Fraction(1, 90000))


# ----------------------------------------------------------------------------- worker


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_worker_delivers_in_order_on_the_loop() -> None:
    loop = asyncio.get_running_loop()
    threads: set[str] = set()
    delivered: list[int] = []
    loop_thread = threading.current_thread()

    def results(x: int) -> list[int]:
        return [x, x] if x % 3 == 0 else ([] if x % 3 == 1 else [x])

    def transform(x: int) -> list[int]:
        threads.add(threading.current_thread().name)
        return results(x)

    def deliver(items: list[int]) -> None:
        assert threading.current_thread() is loop_thread
        assert items  # never called with an empty list
        delivered.extend(items)

    worker: Worker[int, int] = Worker("t-order", transform, deliver, loop=loop, max_pending=200)
    for i in range(100):
        assert worker.submit(i)
    expected = [y for i in range(100) for y in results(i)]
    await until(lambda: len(delivered) == len(expected))
    assert delivered == expected
    assert threads == {"t-order"}
    worker.close()


async def test_worker_overflow_drops_until_an_item_that_can_start() -> None:
    loop = asyncio.get_running_loop()
    gate = threading.Event()
    seen: list[object] = []

    def transform(x: int) -> list[int]:
        if x == 0:
            gate.wait(2)
        seen.append(x)
        return [x]

    delivered: list[int] = []
    worker: Worker[int, int] = Worker(
        "t-drop", transform, delivered.extend, loop=loop, max_pending=4
    )
    worker.submit(0)
    await until(lambda: worker.pending == 0)  # the thread holds item 0
    for i in (1, 2):
        assert worker.submit(i, can_start=False)
    worker.call(lambda: seen.append("call"))  # queued between items: survives the overflow
    for i in (3, 4):
        assert worker.submit(i, can_start=False)
    assert worker.pending == 4
    assert not worker.submit(5, can_start=False)  # overflow: 1-4 and 5 dropped
    assert worker.pending == 0 and worker.dropped == 5
    assert not worker.submit(6, can_start=False)  # still waiting for a keyframe
    assert worker.submit(7, can_start=True)
    assert worker.submit(8, can_start=False)
    assert worker.dropped == 6
    gate.set()
    await until(lambda: delivered == [0, 7, 8])
    assert seen == [0, "call", 7, 8]
    worker.close()


async def test_worker_call_runs_in_order_with_items() -> None:
    loop = asyncio.get_running_loop()
    log: list[str] = []

    def transform(x: int) -> list[int]:
        log.append(f"item {x}")
        return [x]

    delivered: list[int] = []
    worker: Worker[int, int] = Worker("t-call", transform, delivered.extend, loop=loop)
    worker.submit(1)
    worker.call(lambda: log.append(f"call in {threading.current_thread().name}"))
    worker.submit(2)
    await until(lambda: delivered == [1, 2])
    assert log == ["item 1", "call in t-call", "item 2"]
    worker.close()


async def test_worker_close_joins_and_delivers_nothing_after() -> None:
    loop = asyncio.get_running_loop()
    done = threading.Event()
    closed_in: list[str] = []
    delivered: list[int] = []

    def transform(x: int) -> list[int]:
        done.set()
        return [x]

    worker: Worker[int, int] = Worker(
        "t-close",
        transform,
        delivered.extend,
        loop=loop,
        on_close=lambda: closed_in.append(threading.current_thread().name),
    )
    worker.submit(1)
    # Block the loop until the result is scheduled on it, then close before it runs.
    assert done.wait(2)
    time.sleep(0.05)  # the worker schedules the delivery meanwhile; the loop cannot run it
    worker.close()
    assert closed_in == ["t-close"]
    assert not worker._thread.is_alive()
    assert not worker.submit(2)
    await asyncio.sleep(0.05)
    assert delivered == []


async def test_worker_survives_an_exception_in_transform(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    delivered: list[int] = []

    def transform(x: int) -> list[int]:
        if x == 1:
            raise RuntimeError("boom")
        return [x]

    worker: Worker[int, int] = Worker("t-exc", transform, delivered.extend, loop=loop)
    with caplog.at_level(logging.WARNING, logger="bridge.transcode.worker"):
        for i in range(4):
            worker.submit(i)
        await until(lambda: delivered == [0, 2, 3])
    failures = [r for r in caplog.records if "transform failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
    worker.close()
