"""An aiortc WHIP/WHEP client, run as its own process: the second independent peer of the
WebRTC tests and the viewer of ``bench/webrtc_bench.py``.

    python -m tests.aiortc_peer whep http://127.0.0.1:8080/whep/CH --seconds 5
    python -m tests.aiortc_peer whip http://127.0.0.1:8080/whip/CH --token KEY --codec h264

It prints one JSON object on stdout when done. ICE is loopback only (the same policy hook
the server uses), and no STUN server is configured.

For the benchmark, a WHEP run can be made cheap and timed (all optional):

- ``--encoded``: the receivers hand over frames as they came (no H.264/Opus decoding), so a
  viewer costs the machine little more than SRTP and RTP handling;
- ``--viewers K --stagger S``: K viewers (K peer connections) in this one process, joining
  S seconds apart; the JSON object is then ``{"viewers": [one object per viewer]}``;
- ``--frame-log PATH``: one line per event, with ``time.monotonic()`` (the same clock in
  every process of the machine), flushed every half second:
  ``post|answer|connected I T``, ``frame I T SIZE`` (a video frame out of ``recv()``) and
  ``rtp I T_FIRST T_LAST RTP_TS SIZE KEY T_SENT`` (a video frame's packets as they reached
  the receiver: its first and its last (marker) packet, the raw RTP timestamp, the Annex-B
  size, 1 for a keyframe, and when the sender stamped the marker packet, from its
  abs-send-time header extension, on the same monotonic clock, or ``-`` without one).
  aiortc's jitter buffer only releases a frame when the next one's first packet arrives, so
  ``T_LAST`` is the time a frame was complete, not ``frame``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import math
import sys
import time
import urllib.parse
from pathlib import Path
from typing import IO, Any

import aiohttp
import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from bridge.whip import aiortc_hooks

LOOPBACK = aiortc_hooks.IcePolicy(addresses=("127.0.0.1",))


def _prefer(transceiver: Any, name: str) -> None:
    caps = RTCRtpSender.getCapabilities(transceiver.kind).codecs
    chosen = [c for c in caps if c.mimeType.lower() == f"{transceiver.kind}/{name}"]
    chosen += [c for c in caps if c.mimeType.lower().endswith("/rtx")]
    transceiver.setCodecPreferences(chosen)


async def _post(url: str, sdp: str, token: str | None) -> tuple[int, str, str | None]:
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=sdp, headers=headers) as response:
            body = await response.text()
            location = response.headers.get("Location")
            return response.status, body, location


async def _delete(url: str, location: str) -> int:
    target = urllib.parse.urljoin(url, location)
    async with aiohttp.ClientSession() as http:
        async with http.delete(target) as response:
            return response.status


# ---------------------------------------------------------------------------- WHEP


class FrameLog:
    """The ``--frame-log`` file: lines written as events happen, flushed every half second
    (a per-line flush would cost a system call per frame and viewer). Bounded in lines."""

    MAX_LINES = 2_000_000  # ~9 viewer-hours of 30 fps video: far past any bench run

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = open(path, "a", encoding="ascii")  # noqa: SIM115 - closed below
        self._lines = 0
        self._flusher: asyncio.Task[None] | None = None

    def write(self, *fields: object) -> None:
        if self._lines < self.MAX_LINES:
            self._lines += 1
            self._file.write(" ".join(_field(f) for f in fields) + "\n")

    def start(self) -> None:
        self._flusher = asyncio.ensure_future(self._flush_often())

    async def _flush_often(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self._file.flush()

    def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        self._file.close()


def _field(value: object) -> str:
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def _has_keyframe(data: bytes) -> bool:
    """An IDR slice or an SPS among the NAL units that start in this depayloaded piece."""
    at = data.find(b"\x00\x00\x00\x01")
    while 0 <= at < len(data) - 4:
        if data[at + 4] & 0x1F in (5, 7):
            return True
        at = data.find(b"\x00\x00\x00\x01", at + 4)
    return False


def _time_video_packets(receiver: RTCRtpReceiver, log: FrameLog, index: int) -> None:
    """Log when each video frame's packets reach ``receiver`` (after SRTP, before aiortc's
    jitter buffer): one ``rtp`` line per frame, at its marker packet."""
    original = receiver._handle_rtp_packet
    pending: dict[int, list[Any]] = {}  # RTP timestamp -> [first arrival, size, keyframe]

    async def timed(packet: Any, arrival_time_ms: int) -> None:
        now, wall = time.monotonic(), time.time()
        await original(packet, arrival_time_ms)
        data = getattr(packet, "_data", None)  # set by the depayloader; RTX copies have none
        if data is None:
            return
        state = pending.get(packet.timestamp)
        if state is None:
            state = pending[packet.timestamp] = [now, 0, False]
            while len(pending) > 64:  # frames whose marker never came
                del pending[next(iter(pending))]
        state[1] += len(data)
        state[2] = state[2] or _has_keyframe(data)
        if packet.marker:
            del pending[packet.timestamp]
            sent = _sent_at(packet.extensions.abs_send_time, now, wall)
            log.write("rtp", index, state[0], now, packet.timestamp, state[1], int(state[2]), sent)

    receiver._handle_rtp_packet = timed  # type: ignore[method-assign]


NTP_UNIX = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)


def _sent_at(abs_send_time: int | None, now: float, wall: float) -> float | str:
    """The sender's time for a packet, on this process's monotonic clock (``now`` and
    ``wall``: when it arrived, on both clocks). abs-send-time is NTP seconds modulo 64 in 6.18
    fixed point; sender and receiver share the machine's wall clock here, so the difference
    is the packet's one-way delay."""
    if abs_send_time is None:
        return "-"
    delay = ((wall + NTP_UNIX) % 64 - abs_send_time / (1 << 18)) % 64
    if delay > 32:  # stamped "after" it arrived: clock steps, rounding; call it 0
        delay = 0.0
    return now - delay


async def whep(
    url: str,
    seconds: float,
    *,
    encoded: bool = False,
    log: FrameLog | None = None,
    index: int = 0,
) -> dict[str, Any]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    result: dict[str, Any] = {
        "video_frames": 0,
        "audio_frames": 0,
        "first_frame_ms": None,
        "width": 0,
        "height": 0,
        "max_gap_ms": 0.0,
        "video_pts": [],
    }
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()

    async def read_video(track: MediaStreamTrack) -> None:
        last = None
        while True:
            frame: Any = await track.recv()
            now = time.monotonic()
            if result["first_frame_ms"] is None:
                result["first_frame_ms"] = (now - started) * 1000
            if last is not None:
                result["max_gap_ms"] = max(result["max_gap_ms"], (now - last) * 1000)
            last = now
            result["video_frames"] += 1
            if isinstance(frame, aiortc_hooks.EncodedFrame):
                if log is not None:
                    log.write("frame", index, now, len(frame.data))
                pts = frame.timestamp
            else:
                result["width"], result["height"] = frame.width, frame.height
                if log is not None:
                    log.write("frame", index, now, 0)
                pts = frame.pts
            if len(result["video_pts"]) < 2000:
                result["video_pts"].append(pts)

    async def read_audio(track: MediaStreamTrack) -> None:
        while True:
            frame: Any = await track.recv()
            result["audio_frames"] += 1
            if "audio_rate" not in result:
                result["audio_rate"] = getattr(frame, "sample_rate", None) or getattr(
                    frame, "clock_rate", None
                )

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        reader = read_video if track.kind == "video" else read_audio
        tasks.append(asyncio.ensure_future(_guard(reader(track))))

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if pc.connectionState == "connected" and "connected_ms" not in result:
            result["connected_ms"] = (time.monotonic() - started) * 1000
            if log is not None:
                log.write("connected", index, time.monotonic())

    await pc.setLocalDescription(await pc.createOffer())
    result["post_ms"] = (time.monotonic() - started) * 1000
    if log is not None:
        log.write("post", index, time.monotonic())
    status, body, location = await _post(url, pc.localDescription.sdp, None)
    result["status"] = status
    if log is not None:
        log.write("answer", index, time.monotonic(), status)
    if status != 201:
        result["error"] = body.strip()
        await pc.close()
        return result
    await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
    # Nothing has been received yet: aiortc connects (and starts its decoders) only after the
    # next await.
    for transceiver in pc.getTransceivers():
        if encoded:
            aiortc_hooks.want_encoded_frames(transceiver.receiver)
        if log is not None and transceiver.kind == "video":
            _time_video_packets(transceiver.receiver, log, index)
    result["codec"] = _codec_of(body, "video")
    result["audio_codec"] = _codec_of(body, "audio")
    result["answer_hosts"] = _hosts(body)
    await asyncio.sleep(seconds)
    result["connection"] = pc.connectionState
    if location:
        result["delete_status"] = await _delete(url, location)
    for task in tasks:
        task.cancel()
    await pc.close()
    return result


async def whep_viewers(
    url: str, seconds: float, count: int, stagger: float, encoded: bool, log_path: Path | None
) -> dict[str, Any]:
    """``count`` viewers in this process, joining ``stagger`` seconds apart."""
    log = FrameLog(log_path) if log_path is not None else None
    if log is not None:
        log.start()

    async def one(index: int) -> dict[str, Any]:
        await asyncio.sleep(index * stagger)
        return await whep(url, seconds, encoded=encoded, log=log, index=index)

    try:
        results = await asyncio.gather(*(one(i) for i in range(count)))
    finally:
        if log is not None:
            log.close()
    return results[0] if count == 1 else {"viewers": list(results)}


async def _guard(coro: Any) -> None:
    try:
        await coro
    except (MediaStreamError, asyncio.CancelledError):
        pass


def _hosts(sdp: str) -> list[str]:
    return sorted({line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")})


def _codec_of(sdp: str, kind: str) -> str | None:
    section = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            section = line.startswith(f"m={kind}")
        elif section and line.startswith("a=rtpmap:"):
            return line.split(" ", 1)[1].split("/")[0]
    return None


# ---------------------------------------------------------------------------- WHIP


class TestPattern(MediaStreamTrack):
    """Moving bars at 30 fps, 640x360: aiortc encodes them (H.264 or VP8)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._count = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        target = self._start + self._count / 30
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        image = np.zeros((360, 640, 3), np.uint8)
        x = (self._count * 8) % 640
        image[:, x : x + 40] = (255, 255, 255)
        image[:40, : (self._count % 640)] = (0, 200, 0)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self._count * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        self._count += 1
        return frame


class Tone(MediaStreamTrack):
    """A 440 Hz tone in 20 ms frames at 48 kHz stereo: aiortc encodes it to Opus."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._samples = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        target = self._start + self._samples / 48000
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(960) + self._samples) / 48000
        wave = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(wave, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = 48000
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, 48000)
        self._samples += 960
        return frame


async def whip(
    url: str, token: str, codec: str, seconds: float, *, no_candidates: bool = False
) -> dict[str, Any]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = pc.addTransceiver(TestPattern(), direction="sendonly")
    pc.addTransceiver(Tone(), direction="sendonly")
    _prefer(video, codec)
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    if no_candidates:
        # As OBS does: no candidates in the offer and no PATCH; the server learns this peer's
        # address from its connectivity checks (a peer-reflexive candidate).
        offer = "".join(
            line + "\r\n"
            for line in offer.splitlines()
            if not line.startswith(("a=candidate:", "a=end-of-candidates"))
        )
    status, body, location = await _post(url, offer, token)
    result: dict[str, Any] = {"status": status}
    if status != 201:
        result["error"] = body.strip()
        await pc.close()
        return result
    await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
    result["codec"] = _codec_of(body, "video")
    result["answer_hosts"] = _hosts(body)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        result["connection"] = pc.connectionState
        if pc.connectionState in ("failed", "closed"):
            break
    if location:
        result["delete_status"] = await _delete(url, location)
    await pc.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["whep", "whip"])
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--token", default="")
    parser.add_argument("--codec", default="h264", choices=["h264", "vp8"])
    parser.add_argument(
        "--no-candidates", action="store_true", help="WHIP: offer no ICE candidates (as OBS)"
    )
    parser.add_argument(
        "--encoded", action="store_true", help="WHEP: count frames without decoding them"
    )
    parser.add_argument("--viewers", type=int, default=1, help="WHEP: viewers in this process")
    parser.add_argument("--stagger", type=float, default=0.0, help="WHEP: seconds between joins")
    parser.add_argument(
        "--frame-log", type=Path, default=None, help="WHEP: append timed events to this file"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.viewers <= 200 or not 0 <= args.stagger <= 60:
        parser.error("--viewers 1..200, --stagger 0..60")
    aiortc_hooks.install_ice_policy(LOOPBACK)
    if args.mode == "whep":
        result = asyncio.run(
            whep_viewers(
                args.url, args.seconds, args.viewers, args.stagger, args.encoded, args.frame_log
            )
        )
    else:
        result = asyncio.run(
            whip(args.url, args.token, args.codec, args.seconds, no_candidates=args.no_candidates)
        )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
