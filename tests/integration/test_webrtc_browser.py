"""WebRTC in headless Chromium (Debian's chromium) against the real server (issue 6, "Proof"):

- a bare WHEP page (plain RTCPeerConnection + fetch) and the play page watch an RTMP stream
  published by ffmpeg: at least 95% of the frames sent are decoded over 10 s, no freezes,
  audio packets arrive; the same for a source with B-frames (the transcoded path);
- Chromium's fake camera publishes over WHIP from the publish page, and ffmpeg reads the
  channel back over RTMP and HLS.

ICE stays on loopback: the server offers 127.0.0.1 only and ignores the browser's other
candidates; the pages configure no STUN server.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.browser import CHROMIUM, Browser, Page, chromium_available

from .helpers import ProcGroup, Tools, wait_until
from .test_webrtc import CHANNEL, KEY, ffprobe_packets, hls_codecs, make_offer, wait_live
from .webrtc_helpers import FPS, api_channel, base_url, live_publisher, request, webrtc_server

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        not chromium_available(),
        reason=f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run's apt line)",
    ),
]

WATCH_SECONDS = 10.0
# Fake devices give the page a media permission, without which Chromium offers no loopback
# candidate of its own (it still works through peer-reflexive ones; this is the publish
# page's camera anyway).
FAKE_MEDIA = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")

BARE_WHEP = """
(async (url) => {
  const pc = new RTCPeerConnection({iceServers: []});
  pc.addTransceiver('video', {direction: 'recvonly'});
  pc.addTransceiver('audio', {direction: 'recvonly'});
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true;
  document.body.appendChild(video);
  const stream = new MediaStream();
  pc.ontrack = (event) => { stream.addTrack(event.track); video.srcObject = stream; };
  await pc.setLocalDescription(await pc.createOffer());
  const response = await fetch(url, {method: 'POST', body: pc.localDescription.sdp,
                                     headers: {'Content-Type': 'application/sdp'}});
  const answer = await response.text();
  if (response.status !== 201) return {status: response.status, answer};
  await pc.setRemoteDescription({type: 'answer', sdp: answer});
  window.bare = {pc, location: response.headers.get('Location')};
  return {status: response.status};
})
"""

BARE_STATS = """
(async () => {
  const out = {state: window.bare.pc.connectionState};
  (await window.bare.pc.getStats()).forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') {
      out.framesDecoded = r.framesDecoded; out.freezeCount = r.freezeCount;
      out.keyFramesDecoded = r.keyFramesDecoded; out.frameWidth = r.frameWidth;
    }
    if (r.type === 'inbound-rtp' && r.kind === 'audio') out.audioPackets = r.packetsReceived;
    if (r.type === 'codec' && r.mimeType.startsWith('video/')) out.videoCodec = r.mimeType;
  });
  return out;
})()
"""

PLAY_STATS = """
(() => { const s = window.bridgeStats; return {
  mode: s.mode, framesDecoded: s.framesDecoded, freezeCount: s.freezeCount,
  audioPackets: s.audioPacketsReceived, videoCodec: s.videoCodec, frameWidth: s.frameWidth,
  firstFrameMs: s.firstFrameMs, fallbackReason: s.fallbackReason, playing: s.playing}; })()
"""


async def watch(pages: dict[str, tuple[Page, str]], seconds: float) -> dict[str, Any]:
    """Sample every page's stats now and ``seconds`` later; return both per page."""
    before = {name: await page.evaluate(js) for name, (page, js) in pages.items()}
    await asyncio.sleep(seconds)
    after = {name: await page.evaluate(js) for name, (page, js) in pages.items()}
    return {name: (before[name], after[name]) for name in pages}


def check_window(name: str, before: dict[str, Any], after: dict[str, Any]) -> None:
    decoded = after["framesDecoded"] - before["framesDecoded"]
    sent = FPS * WATCH_SECONDS
    assert decoded >= 0.95 * sent, f"{name}: {decoded} of {sent:.0f} frames decoded"
    assert after["freezeCount"] == before["freezeCount"], f"{name}: froze {after}"
    assert after["audioPackets"] - before["audioPackets"] >= 0.8 * 50 * WATCH_SECONDS, (
        name,
        before,
        after,
    )
    assert after["videoCodec"] == "video/H264", after


def page_errors(page: Page) -> list[Any]:
    # Chromium logs every non-2xx fetch (a 409 while a channel is not live) as a network error.
    return [e for e in page.errors if getattr(e, "source", "") != "network"]


async def open_both_pages(browser: Browser, base: str, play_query: str) -> tuple[Page, Page]:
    """The bare WHEP page and the play page, both playing the channel over WebRTC."""
    bare = await browser.open(f"{base}/")
    started = await bare.evaluate(f"({BARE_WHEP})({json.dumps(base + '/whep/' + CHANNEL)})")
    assert started["status"] == 201, started
    play = await browser.open(f"{base}/play.html?channel={CHANNEL}{play_query}")
    await play.wait_for(
        "window.bridgeStats.mode === 'webrtc' && window.bridgeStats.playing"
        " && window.bridgeStats.audioPacketsReceived > 0",
        timeout=15,
    )
    await bare.wait_for(
        f"({BARE_STATS}).then(s => s.framesDecoded > 0 && s.audioPackets > 0)", timeout=10
    )
    return bare, play


async def test_bare_page_and_play_page_watch_rtmp_stream(
    procs: ProcGroup, tools: Tools, tmp_path: Path
) -> None:
    server = webrtc_server(procs)
    base = base_url(server)
    live_publisher(procs, tools, server.url(CHANNEL, KEY), seconds=80)
    await asyncio.to_thread(wait_live, server)
    async with Browser.launch(tmp_path) as browser:
        try:
            # The play page's default: WebRTC first (no player= parameter).
            bare, play = await open_both_pages(browser, base, "")
            first = await play.evaluate("window.bridgeStats.firstFrameMs")
            assert first is not None and first < 1500, first
            assert (api_channel(server, CHANNEL)["webrtc"] or {}).get("viewers") == 2

            windows = await watch({"bare": (bare, BARE_STATS), "play": (play, PLAY_STATS)}, 10)
            for name, (before, after) in windows.items():
                check_window(name, before, after)
            assert windows["play"][1]["mode"] == "webrtc"
            assert windows["play"][1]["fallbackReason"] is None
            assert api_channel(server, CHANNEL)["webrtc"]["video"] == "passthrough"

            # Closing the bare session with DELETE frees it on the server.
            status = await bare.evaluate(
                "fetch(window.bare.location, {method: 'DELETE'}).then(r => r.status)"
            )
            assert status == 200
            assert await asyncio.to_thread(
                wait_until,
                lambda: (api_channel(server, CHANNEL)["webrtc"] or {}).get("viewers") == 1,
                5,
                0.1,
            )
            assert page_errors(bare) == [] and page_errors(play) == []
        except BaseException:
            print(browser.diagnostics())
            raise
    assert "Traceback" not in server.stderr_text(), server.diagnostics()


async def test_play_page_watches_b_frames_through_the_transcoder(
    procs: ProcGroup, tools: Tools, tmp_path: Path
) -> None:
    server = webrtc_server(procs)
    base = base_url(server)
    live_publisher(procs, tools, server.url(CHANNEL, KEY), bframes=3, seconds=80)
    await asyncio.to_thread(wait_live, server)
    async with Browser.launch(tmp_path) as browser:
        try:
            bare, play = await open_both_pages(browser, base, "&player=webrtc")
            assert api_channel(server, CHANNEL)["webrtc"]["video"] == "transcode"
            windows = await watch(
                {"bare": (bare, BARE_STATS), "play": (play, PLAY_STATS)}, WATCH_SECONDS
            )
            for name, (before, after) in windows.items():
                check_window(f"transcoded, {name} page", before, after)
            assert page_errors(play) == [] and page_errors(bare) == []
        except BaseException:
            print(browser.diagnostics())
            raise
    assert "Traceback" not in server.stderr_text(), server.diagnostics()


async def test_fake_camera_publishes_over_whip(
    procs: ProcGroup, tools: Tools, tmp_path: Path
) -> None:
    server = webrtc_server(procs)
    base = base_url(server)
    async with Browser.launch(tmp_path, args=FAKE_MEDIA) as browser:
        try:
            page = await browser.open(
                f"{base}/publish.html?channel={CHANNEL}&key={KEY}&codec=h264&autostart=1"
            )
            await page.wait_for(
                "window.bridgePublishStats && window.bridgePublishStats.state === 'publishing'",
                timeout=15,
            )
            await asyncio.to_thread(wait_live, server)
            [probe] = await asyncio.to_thread(ffprobe_packets, tools, server.url(CHANNEL, KEY), 4)
            codecs = {s["codec_type"]: s["codec_name"] for s in probe["streams"]}
            assert codecs == {"video": "h264", "audio": "aac"}, codecs
            video = [p for p in probe["packets"] if p["codec_type"] == "video"]
            keyframes = [float(p["pts_time"]) for p in video if "K" in p["flags"]]
            assert len(video) >= 15 * 3, len(video)  # the fake camera sends 30 fps at best
            assert keyframes, "no keyframe reached the RTMP reader"
            stats = await page.evaluate("window.bridgePublishStats")
            assert stats["videoCodec"] == "video/H264", stats

            codecs = await asyncio.to_thread(hls_codecs, tools, base)
            assert codecs == ["aac", "h264"], codecs

            await page.evaluate("document.getElementById('stop').click()")
            assert await asyncio.to_thread(
                wait_until, lambda: not api_channel(server, CHANNEL)["live"], 5, 0.1
            ), server.diagnostics()
            assert page_errors(page) == []
        except BaseException:
            print(browser.diagnostics())
            raise
    assert "Traceback" not in server.stderr_text(), server.diagnostics()


async def test_play_page_falls_back_to_ll_hls(
    procs: ProcGroup, tools: Tools, tmp_path: Path
) -> None:
    # One WebRTC session at most, taken by a client that never connects: the page's WHEP
    # POST gets 503, and it plays the channel over LL-HLS instead.
    server = webrtc_server(procs, "--webrtc-max-sessions", "1", "--hls-segment-seconds", "1")
    base = base_url(server)
    live_publisher(procs, tools, server.url(CHANNEL, KEY), seconds=60)
    await asyncio.to_thread(wait_live, server)
    offer = await make_offer()
    taken = await asyncio.to_thread(
        request,
        f"{base}/whep/{CHANNEL}",
        "POST",
        offer.encode(),
        {"Content-Type": "application/sdp"},
    )
    assert taken.status == 201, taken.text
    async with Browser.launch(tmp_path) as browser:
        try:
            play = await browser.open(f"{base}/play.html?channel={CHANNEL}")
            await play.wait_for(
                "window.bridgeStats.mode === 'hls.js' && window.bridgeStats.playing", timeout=20
            )
            reason = await play.evaluate("window.bridgeStats.fallbackReason")
            assert reason and "503" in reason, reason
        except BaseException:
            print(browser.diagnostics())
            raise
