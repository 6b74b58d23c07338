"""Video transcoding to what every WebRTC browser decodes well: H.264 constrained baseline.

Chromium decodes H.264 with B-frames at about one frame per second over WebRTC, and an encoder
with lookahead adds ~370 ms (shared/reference/measured.md). So the output is constrained
baseline, libx264 with ``tune=zerolatency``: one frame in, that frame out. The decoder is the
only source of delay, and only for input with B-frames (its reorder buffer).

Every IDR carries its SPS and PPS in band (no global header), because a WebRTC viewer joins at
any keyframe and its packetizer sends only what the access unit holds; this is checked on every
IDR rather than trusted.

Not flushed: frames still inside the decoder when the transcoder is closed (its reorder delay,
up to the input's B-frame depth) are dropped. Synchronous and not thread-safe: one transcoder
is used from one worker thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
from av.video.frame import PictureType

from bridge.media import h264, hevc
from bridge.media.errors import CodecConfigError
from bridge.media.h264 import NAL_IDR, NAL_PPS, NAL_SPS, START_CODE, to_annexb
from bridge.transcode.worker import LogThrottle

log = logging.getLogger(__name__)

DECODERS = {"h264": "h264", "hevc": "hevc", "vp8": "vp8", "vp9": "vp9", "av1": "libdav1d"}
# Bounds of what we decode at all: 4096x2304 in either orientation.
MAX_SIDE = 4096
MAX_PIXELS = 4096 * 2304
MAX_PAYLOAD = 16 * 1024 * 1024
THREADS = 2  # per codec: the machines have two cores
FRAMERATE_GUESS = Fraction(30)
# Bitrate when none is given: 2.5 Mbps for 720p, proportional to the pixels, within bounds.
REFERENCE_PIXELS = 1280 * 720
REFERENCE_BITRATE = 2_500_000
MIN_BITRATE = 300_000
MAX_BITRATE = 8_000_000


@dataclass(frozen=True, slots=True)
class EncodedVideo:
    annexb: bytes  # one H.264 access unit, Annex-B, SPS and PPS in front of every IDR
    pts: int  # in the time_base given to the transcoder (dts == pts: no B-frames)
    keyframe: bool


class VideoTranscoder:
    """Decode h264 / hevc / vp8 / vp9 / av1 and re-encode to H.264 constrained baseline,
    libx264 preset veryfast (or ultrafast if you measure it's needed), tune zerolatency, no
    B-frames, no lookahead: a frame in gives that frame out (or nothing while the decoder fills
    its reorder buffer for B-frame input).

    ``max_width`` x ``max_height`` bounds the output in the input's orientation (a portrait
    input fits a portrait box), keeping the aspect ratio.
    """

    def __init__(
        self,
        codec: str,
        config: bytes,
        time_base: Fraction,
        *,
        bitrate: int | None = None,
        keyframe_interval: float = 2.0,
        max_width: int = 1920,
        max_height: int = 1080,
        preset: str = "veryfast",
    ) -> None:
        if codec not in DECODERS:
            raise ValueError(f"cannot transcode {codec!r} video")
        if time_base <= 0 or keyframe_interval <= 0 or max_width < 2 or max_height < 2:
            raise ValueError("time_base, keyframe_interval and the size bounds must be positive")
        self.codec = codec
        self.time_base = Fraction(time_base)
        self._bitrate = bitrate
        self._keyframe_ticks = max(1, round(keyframe_interval / self.time_base))
        self._box = (max_width, max_height)
        self._preset = preset
        # Length-prefixed input needs the record to be framed; without one, the NAL units go
        # to the decoder as Annex-B, where in-band parameter sets are enough. A record that
        # does not parse is refused here (CodecConfigError, a ValueError).
        self._config = _four_byte_lengths(codec, config)
        self._annexb_input = codec in ("h264", "hevc") and not self._config
        self._decoder: av.VideoCodecContext | None = self._open_decoder()
        self._encoder: av.VideoCodecContext | None = None
        self._source: tuple[int, int] | None = None  # decoded size the encoder was opened for
        self._width = 0
        self._height = 0
        self._wait_keyframe = True  # a decoder starts (and restarts) at a keyframe
        self._force_keyframe = False
        self._last_pts: int | None = None
        self._last_keyframe_pts: int | None = None
        self._parameter_sets = b""  # Annex-B SPS + PPS of the current encoder
        self._closed = False
        self._errors = LogThrottle(log)
        self._too_large_logged = False

    @property
    def width(self) -> int:
        """Output width, 0 until the first frame is decoded."""
        return self._width

    @property
    def height(self) -> int:
        return self._height

    def request_keyframe(self) -> None:
        """Make the next output frame an IDR (a new viewer, a PLI)."""
        self._force_keyframe = True

    def close(self) -> None:
        """Release the codecs; later feeds return nothing."""
        self._closed = True
        self._decoder = self._encoder = None

    def feed(self, payload: bytes, pts: int, dts: int, keyframe: bool) -> list[EncodedVideo]:
        """Decode one access unit and return the frames it lets out, encoded."""
        decoder = self._decoder
        if decoder is None or self._closed:
            return []
        if self._wait_keyframe and not keyframe:
            return []
        if not payload or len(payload) > MAX_PAYLOAD:
            self._errors.warning("video: %d-byte access unit ignored", len(payload))
            return []
        data = payload
        if self._annexb_input:
            try:
                data = to_annexb(payload)
            except CodecConfigError as exc:
                self._errors.warning("video: bad NAL framing, access unit dropped: %s", exc)
                return []
        packet = av.Packet(data)
        packet.pts = pts
        packet.dts = dts
        packet.time_base = self.time_base
        packet.is_keyframe = keyframe
        try:
            frames = decoder.decode(packet)
        except av.error.FFmpegError as exc:
            self._errors.warning("video: decode failed, waiting for a keyframe: %s", exc)
            decoder.flush_buffers()
            self._wait_keyframe = True
            return []
        self._wait_keyframe = False
        out: list[EncodedVideo] = []
        for frame in frames:
            encoded = self._encode(frame)
            if encoded is not None:
                out.append(encoded)
        return out

    def _open_decoder(self) -> av.VideoCodecContext:
        decoder = av.CodecContext.create(DECODERS[self.codec], "r")
        assert isinstance(decoder, av.VideoCodecContext)
        if self._config:
            decoder.extradata = self._config
        # Slice threads add no delay; frame threads would hold a frame per thread.
        decoder.thread_type = "SLICE"
        decoder.thread_count = THREADS
        if self.codec == "av1":
            decoder.options = {"max_frame_delay": "1"}
        return decoder

    def _encode(self, frame: av.VideoFrame) -> EncodedVideo | None:
        pts = frame.pts
        if pts is None:
            self._errors.warning("video: decoded frame without a timestamp dropped")
            return None
        if self._last_pts is not None and pts <= self._last_pts:
            self._errors.warning("video: frame pts %d not after %d, dropped", pts, self._last_pts)
            return None
        size = (frame.width, frame.height)
        if max(size) > MAX_SIDE or size[0] * size[1] > MAX_PIXELS:
            if not self._too_large_logged:
                self._too_large_logged = True
                log.warning("video: %dx%d input is over our bounds, not transcoded", *size)
            return None
        encoder = self._encoder
        if encoder is None or size != self._source:
            encoder = self._open_encoder(*size)
        self._last_pts = pts
        due = self._last_keyframe_pts is None or pts - self._last_keyframe_pts >= (
            self._keyframe_ticks
        )
        # The decoded frame still carries its source picture type, which libx264 would obey.
        frame.pict_type = PictureType.I if due or self._force_keyframe else PictureType.NONE
        self._force_keyframe = False
        frame.time_base = self.time_base
        try:
            packets = encoder.encode(frame)
        except av.error.FFmpegError as exc:
            self._errors.warning("video: encode failed, encoder reopened: %s", exc)
            self._encoder = None
            self._force_keyframe = True
            return None
        if not packets:  # zerolatency: never expected, a frame in is that frame out
            return None
        if len(packets) > 1:
            self._errors.warning("video: encoder returned %d packets for a frame", len(packets))
        packet = packets[-1]
        annexb = self._with_parameter_sets(bytes(packet))
        keyframe = bool(packet.is_keyframe)
        if keyframe:
            self._last_keyframe_pts = pts
        return EncodedVideo(annexb, pts, keyframe)

    def _open_encoder(self, width: int, height: int) -> av.VideoCodecContext:
        out_w, out_h = fit(width, height, *self._box)
        bitrate = self._bitrate or auto_bitrate(out_w, out_h)
        encoder = av.CodecContext.create("libx264", "w")
        assert isinstance(encoder, av.VideoCodecContext)
        encoder.width = out_w
        encoder.height = out_h
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = self.time_base
        encoder.framerate = FRAMERATE_GUESS
        encoder.bit_rate = bitrate
        encoder.thread_count = THREADS
        # Our keyframe rule works on timestamps; x264's own (in frames, at a guessed rate) is
        # only a backstop, so it is set well beyond ours.
        encoder.gop_size = max(1, round(4 * self._keyframe_ticks * self.time_base * 30))
        kbps = max(1, bitrate // 1000)
        encoder.options = {
            "preset": self._preset,
            "tune": "zerolatency",
            "profile": "baseline",  # x264 marks it constrained (constraint_set1)
            "forced-idr": "1",  # a forced I frame is an IDR, where a viewer can join
            # One second of VBV: a WebRTC path has no room for long bursts.
            "x264-params": f"vbv-maxrate={kbps}:vbv-bufsize={kbps}",
        }
        encoder.open()
        if self._encoder is not None:
            log.info(
                "video: input now %dx%d, encoder reopened at %dx%d", width, height, out_w, out_h
            )
        self._encoder = encoder
        self._source = (width, height)
        self._width, self._height = out_w, out_h
        self._parameter_sets = b""
        self._last_keyframe_pts = None  # the new encoder starts with an IDR anyway
        return encoder

    def _with_parameter_sets(self, annexb: bytes) -> bytes:
        """Put SPS and PPS in front of an IDR that lacks them (libx264 repeats them without a
        global header, but a viewer that joins there cannot start without them)."""
        nals = split_annexb(annexb)
        types = [nal[0] & 0x1F for nal in nals]
        if NAL_SPS in types and NAL_PPS in types:
            self._parameter_sets = b"".join(
                START_CODE + nal for nal in nals if nal[0] & 0x1F in (NAL_SPS, NAL_PPS)
            )
        if NAL_IDR not in types:
            return annexb
        first_idr = types.index(NAL_IDR)
        if NAL_SPS in types[:first_idr] and NAL_PPS in types[:first_idr]:
            return annexb
        if not self._parameter_sets:
            self._errors.warning("video: IDR without SPS/PPS and none known")
            return annexb
        rest = b"".join(START_CODE + nal for nal in nals if nal[0] & 0x1F not in (NAL_SPS, NAL_PPS))
        return self._parameter_sets + rest


def fit(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """Output size: within the box (turned to the frame's orientation), aspect kept, even
    sides (4:2:0 needs them)."""
    if (height > width) != (max_height > max_width):
        max_width, max_height = max_height, max_width
    scale = min(1.0, max_width / width, max_height / height)
    return max(2, int(width * scale) & ~1), max(2, int(height * scale) & ~1)


def auto_bitrate(width: int, height: int) -> int:
    bitrate = REFERENCE_BITRATE * width * height // REFERENCE_PIXELS
    return min(MAX_BITRATE, max(MIN_BITRATE, bitrate))


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B byte string (3- or 4-byte start codes; bytes before the first
    start code are ignored)."""
    nals = []
    pos = data.find(b"\x00\x00\x01")
    while pos >= 0:
        start = pos + 3
        pos = data.find(b"\x00\x00\x01", start)
        end = len(data) if pos < 0 else pos
        nal = data[start:end].rstrip(b"\x00")  # a 4-byte start code's leading zero, trailing_zero
        if nal:
            nals.append(nal)
    return nals


def _four_byte_lengths(codec: str, config: bytes) -> bytes:
    """The checked record with its NAL length size set to 4, the bus's framing of h264/hevc
    payloads (raises :class:`CodecConfigError` for a record that does not parse)."""
    if not config:
        return config
    if codec == "h264":
        h264.parse_avcc(config)
        return config[:4] + bytes([config[4] | 0x03]) + config[5:]
    if codec == "hevc":
        hevc.parse_hvcc(config)
        return config[:21] + bytes([config[21] | 0x03]) + config[22:]
    return config
