"""Audio transcoding between AAC (RTMP/HLS) and Opus (WebRTC), once per channel.

Each transcoder is a decoder, a resampler that also cuts the audio into the encoder's frame
size, and an encoder. The timestamps are ours, not FFmpeg's: the input is mapped to a 48 kHz
clock once (the anchor) and from then on every output frame starts where the previous one ended,
so the resampler and the re-chunking (1024-sample AAC frames against 960-sample Opus frames)
cannot make the output jitter. Only when the input strays from that clock by more than
``MAX_DRIFT`` (a publisher paused, restarted or lost packets) is the clock re-anchored.

Each output frame carries the time of the first sample that entered the encoder with it. The
encoder's priming delay (312 samples for Opus, 1024 for AAC) is therefore not subtracted: the
audio plays 7 or 21 ms late, well within lip-sync tolerance, and a stream that starts at 0 never
produces a negative timestamp.

Synchronous and not thread-safe: one transcoder is used from one worker thread.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
import numpy as np

from bridge.media.aac import parse_asc
from bridge.transcode.worker import LogThrottle

log = logging.getLogger(__name__)

RATE = 48000
TIME_BASE = Fraction(1, RATE)
# A jump of the input against the continuous output clock beyond this is a new timeline,
# below it timestamp jitter (RTMP millisecond rounding, a lost frame or two).
MAX_DRIFT = RATE // 10
MAX_PAYLOAD = 64 * 1024  # an AAC frame is under 6 KiB per channel, an Opus packet under 1276 B
# Frames between the encoder's input and its output: a few at most (priming), the bound is
# only a guard.
_MAX_IN_FLIGHT = 64


@dataclass(frozen=True, slots=True)
class EncodedAudio:
    payload: bytes  # one encoded frame (raw Opus packet, or raw AAC frame without ADTS)
    pts: int  # in the transcoder's output time_base (1/48000 for both directions)
    duration: int  # in the same time base


class _AudioTranscoder:
    """Decoder -> resampler/re-chunker -> encoder, on a continuous 48 kHz clock."""

    time_base: Fraction = TIME_BASE

    def __init__(
        self,
        label: str,
        decoder: av.AudioCodecContext,
        encoder: av.AudioCodecContext,
    ) -> None:
        self._label = label
        self._decoder: av.AudioCodecContext | None = decoder
        self._encoder: av.AudioCodecContext | None = encoder
        self._frame_size = encoder.frame_size
        self._format = encoder.format.name
        self._layout = encoder.layout.name
        self._resampler: av.AudioResampler | None = None
        self._source: tuple[str, str, int] | None = None  # the resampler's input format
        self._next_pts = 0  # output clock: where the next encoder frame starts
        self._expected: Fraction | None = None  # input clock: where the next input should be
        self._in_flight: deque[int] = deque()  # pts of frames inside the encoder
        self._errors = LogThrottle(log)

    def feed(self, payload: bytes, pts: int, time_base: Fraction) -> list[EncodedAudio]:
        """Decode one input frame and return whatever encoded frames it completes."""
        decoder = self._decoder
        if decoder is None:
            return []
        if not payload or len(payload) > MAX_PAYLOAD:
            self._errors.warning("%s: %d-byte payload ignored", self._label, len(payload))
            return []
        packet = av.Packet(payload)
        packet.pts = packet.dts = pts
        packet.time_base = time_base
        try:
            frames = decoder.decode(packet)
        except av.error.FFmpegError as exc:
            self._errors.warning("%s: undecodable frame dropped: %s", self._label, exc)
            return []
        at = Fraction(pts) * time_base * RATE
        out: list[EncodedAudio] = []
        try:
            for frame in frames:
                out += self._push(frame, at)
                at += Fraction(frame.samples * RATE, frame.sample_rate)
        except (av.error.FFmpegError, ValueError) as exc:
            # A decoder that reports a new format mid-frame or an encoder that refuses a frame:
            # start the pipeline over at the next frame rather than wedge it.
            self._errors.warning("%s: frame dropped, pipeline restarted: %s", self._label, exc)
            self._resampler = None
            self._source = None
            self._expected = None
        return out

    def close(self) -> None:
        """Release the codecs; later feeds return nothing. Frames still inside are dropped."""
        self._decoder = self._encoder = None
        self._resampler = None
        self._in_flight.clear()

    def _push(self, frame: av.AudioFrame, at: Fraction) -> list[EncodedAudio]:
        out: list[EncodedAudio] = []
        source = (frame.format.name, frame.layout.name, frame.sample_rate)
        if source != self._source:
            # The decoder changed its output (implicit SBR found late, a new channel layout):
            # a resampler is configured for one input format only.
            out += self._drain()
            self._source = source
        if self._expected is None or abs(at - self._expected) > MAX_DRIFT:
            if self._expected is not None:
                log.info(
                    "%s: input %+.0f ms off the output clock, re-anchored",
                    self._label,
                    float(at - self._expected) * 1000 / RATE,
                )
                out += self._drain()
            self._next_pts = round(at)
            self._expected = at
        self._expected += Fraction(frame.samples * RATE, frame.sample_rate)
        if self._resampler is None:
            self._resampler = av.AudioResampler(
                format=self._format, layout=self._layout, rate=RATE, frame_size=self._frame_size
            )
        frame.pts = None  # the clock is ours: keep the filter graph from acting on timestamps
        for chunk in self._resampler.resample(frame):
            out += self._encode(chunk)
        return out

    def _drain(self) -> list[EncodedAudio]:
        """End the current timeline: what the resampler holds goes out, padded with silence to
        a whole encoder frame (an encoder takes a short frame only as its very last)."""
        resampler, self._resampler = self._resampler, None
        if resampler is None:
            return []
        out: list[EncodedAudio] = []
        for chunk in resampler.resample(None):
            if chunk.samples < self._frame_size:
                chunk = self._pad(chunk)
            out += self._encode(chunk)
        return out

    def _pad(self, chunk: av.AudioFrame) -> av.AudioFrame:
        data = chunk.to_ndarray()
        missing = self._frame_size - chunk.samples
        if not chunk.format.is_planar:
            missing *= len(chunk.layout.channels)
        # Both encoders take 32-bit float samples (flt for libopus, fltp for aac).
        silence = np.pad(data, ((0, 0), (0, missing))).astype(np.float32)
        padded = av.AudioFrame.from_ndarray(silence, format=self._format, layout=self._layout)
        padded.sample_rate = RATE
        return padded

    def _encode(self, chunk: av.AudioFrame) -> list[EncodedAudio]:
        encoder = self._encoder
        if encoder is None:
            return []
        chunk.pts = self._next_pts
        chunk.time_base = TIME_BASE
        self._next_pts += chunk.samples
        if len(self._in_flight) >= _MAX_IN_FLIGHT:  # never expected: the encoder keeps 1-2
            self._in_flight.popleft()
        self._in_flight.append(chunk.pts)
        try:
            packets = encoder.encode(chunk)
        except av.error.FFmpegError:
            self._in_flight.pop()  # refused: it is not inside the encoder
            raise
        out = []
        for packet in packets:
            # One frame in, one packet out, in order (both encoders work on whole frames), so
            # each packet takes the timestamp of the oldest frame not yet matched.
            if self._in_flight:
                pts = self._in_flight.popleft()
            else:  # not expected; the encoder's own count is the best guess left
                pts = packet.pts if packet.pts is not None else chunk.pts
            duration = packet.duration or self._frame_size
            out.append(EncodedAudio(bytes(packet), pts, duration))
        return out


class AacToOpus(_AudioTranscoder):
    """AAC (any rate/channels, from its AudioSpecificConfig) -> Opus 48 kHz stereo, 20 ms frames."""

    def __init__(self, audio_specific_config: bytes, *, bitrate: int = 96_000) -> None:
        parse_asc(audio_specific_config)  # CodecConfigError now rather than garbage later
        decoder = av.CodecContext.create("aac", "r")
        decoder.extradata = audio_specific_config
        encoder = av.CodecContext.create("libopus", "w")
        encoder.sample_rate = RATE
        encoder.layout = "stereo"
        encoder.format = "flt"
        encoder.bit_rate = bitrate
        encoder.time_base = TIME_BASE
        encoder.open()
        super().__init__("aac->opus", decoder, encoder)


class OpusToAac(_AudioTranscoder):
    """Opus (as WebRTC carries it, 48 kHz) -> AAC-LC 48 kHz stereo."""

    config: bytes

    def __init__(self, *, channels: int = 2, bitrate: int = 128_000) -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, not {channels}")
        layout = "stereo" if channels == 2 else "mono"
        # WebRTC signals opus/48000/2 whatever the sender codes; the decoder mixes to our
        # layout, and without an OpusHead there is no pre-skip to apply.
        decoder = av.CodecContext.create("opus", "r")
        decoder.sample_rate = RATE
        decoder.layout = layout
        encoder = av.CodecContext.create("aac", "w")
        encoder.sample_rate = RATE
        encoder.layout = layout
        encoder.format = "fltp"
        encoder.bit_rate = bitrate
        encoder.time_base = TIME_BASE
        encoder.open()
        self.config = bytes(encoder.extradata or b"")
        super().__init__("opus->aac", decoder, encoder)
