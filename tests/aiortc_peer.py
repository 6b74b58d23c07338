"""An aiortc WHIP/WHEP client, run as its own process: the second independent peer of the
WebRTC tests and the viewer of ``bench/webrtc_bench.py``.

    python -m tests.aiortc_peer whep http://127.0.0.1:8080/whep/CH --seconds 5
    python -m tests.aiortc_peer whip http://127.0.0.1:8080/whip/CH --token KEY --codec h264

It prints one JSON object on stdout when done. ICE is loopback only (the same policy hook
the server uses), and no STUN server is configured.
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
from typing import Any

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


async def whep(url: str, seconds: float) -> dict[str, Any]:
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
            frame = await track.recv()
            now = time.monotonic()
            if result["first_frame_ms"] is None:
                result["first_frame_ms"] = (now - started) * 1000
            if last is not None:
                result["max_gap_ms"] = max(result["max_gap_ms"], (now - last) * 1000)
            last = now
            result["video_frames"] += 1
            result["width"], result["height"] = frame.width, frame.height
            if len(result["video_pts"]) < 2000:
                result["video_pts"].append(frame.pts)

    async def read_audio(track: MediaStreamTrack) -> None:
        while True:
            frame = await track.recv()
            result["audio_frames"] += 1
            if "audio_rate" not in result:
                result["audio_rate"] = frame.sample_rate

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        reader = read_video if track.kind == "video" else read_audio
        tasks.append(asyncio.ensure_future(_guard(reader(track))))

    await pc.setLocalDescription(await pc.createOffer())
    status, body, location = await _post(url, pc.localDescription.sdp, None)
    result["status"] = status
    if status != 201:
        result["error"] = body.strip()
        await pc.close()
        return result
    await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
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


async def whip(url: str, token: str, codec: str, seconds: float) -> dict[str, Any]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = pc.addTransceiver(TestPattern(), direction="sendonly")
    pc.addTransceiver(Tone(), direction="sendonly")
    _prefer(video, codec)
    await pc.setLocalDescription(await pc.createOffer())
    status, body, location = await _post(url, pc.localDescription.sdp, token)
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
    args = parser.parse_args(argv)
    aiortc_hooks.install_ice_policy(LOOPBACK)
    if args.mode == "whep":
        result = asyncio.run(whep(args.url, args.seconds))
    else:
        result = asyncio.run(whip(args.url, args.token, args.codec, args.seconds))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
