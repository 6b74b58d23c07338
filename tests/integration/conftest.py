"""Fixtures for integration tests: real clients, generated media, the server process."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .helpers import (
    ProcGroup,
    Server,
    SourceMedia,
    Tools,
    debian_ffmpeg,
    framemd5,
    keyframe_md5s,
    launch_server,
    modern_ffmpeg,
    rtmpdump,
)

FIXTURE_SECONDS = 8
INSTALL_HINT = (
    "install with `apt-get install ffmpeg rtmpdump` and `pip install -e '.[test]'` (or run .ci/run)"
)


@pytest.fixture(scope="session")
def tools() -> Tools:
    missing = []
    ffmpeg = debian_ffmpeg()
    if not shutil.which(ffmpeg):
        missing.append("ffmpeg")
    dump = rtmpdump()
    if not shutil.which(dump):
        missing.append("rtmpdump")
    try:
        modern = modern_ffmpeg()
    except Exception as exc:  # ImportError, or the wheel without its binary
        missing.append(f"imageio-ffmpeg ({exc})")
        modern = ""
    try:
        import av  # noqa: F401  (keyframe flags of the fixtures)
    except ImportError:
        missing.append("av (PyAV)")
    if missing:
        pytest.fail(f"integration tests need {', '.join(missing)}: {INSTALL_HINT}")
    return Tools(ffmpeg=ffmpeg, modern_ffmpeg=modern, rtmpdump=dump)


def _lavfi_inputs() -> list[str]:
    return [
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", str(FIXTURE_SECONDS), "-map", "0:v", "-map", "1:a",
    ]  # fmt: skip


def _encode(exe: str, args: list[str], out: Path) -> None:
    argv = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args, str(out)]
    res = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    if res.returncode != 0 or not out.exists():
        pytest.fail(f"could not generate {out.name}: {res.stderr.decode(errors='replace')}")


def _describe(path: Path, exe: str, video: str, audio: str) -> SourceMedia:
    frames = framemd5(path, exe)
    keyframes = keyframe_md5s(path)
    media = SourceMedia(path, frames, keyframes, video, audio)
    # The fixture must be what the tests assume, or every failure would mislead.
    assert frames.stream_of(video) is not None and frames.stream_of(audio) is not None, (
        frames.codecs
    )
    assert len(media.md5s(video)) >= 20 * FIXTURE_SECONDS, "too few video packets"
    assert len(keyframes.get(video, ())) >= FIXTURE_SECONDS - 1, "expected a keyframe per second"
    assert keyframes[video] <= set(media.md5s(video)), "PyAV and framemd5 disagree on packet bytes"
    for codec in (video, audio):
        assert len(set(media.md5s(codec))) == len(media.md5s(codec)), f"repeated {codec} md5s"
    return media


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def h264_source(tools: Tools, media_dir: Path) -> SourceMedia:
    """~8 s H.264 (High, B-frames, 1 s GOP) + AAC in FLV, made by Debian's ffmpeg."""
    out = media_dir / "h264_aac.flv"
    video = [
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-g", "25", "-keyint_min", "25", "-sc_threshold", "0", "-bf", "2",
    ]  # fmt: skip
    _encode(
        tools.ffmpeg, [*_lavfi_inputs(), *video, "-c:a", "aac", "-b:a", "96k", "-f", "flv"], out
    )
    return _describe(out, tools.ffmpeg, "h264", "aac")


@pytest.fixture(scope="session")
def hevc_source(tools: Tools, media_dir: Path) -> SourceMedia:
    """~8 s HEVC (B-frames, 1 s GOP) + AAC in Enhanced FLV, made by the modern ffmpeg."""
    encoders = subprocess.run(
        [tools.modern_ffmpeg, "-hide_banner", "-encoders"],
        capture_output=True,
        timeout=30,
        check=False,
    ).stdout.decode(errors="replace")
    if " libx265 " not in encoders:
        pytest.fail(f"{tools.modern_ffmpeg} has no libx265 encoder")
    out = media_dir / "hevc_aac.flv"
    video = [
        "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-x265-params", "keyint=25:min-keyint=25:scenecut=0:bframes=2:log-level=error",
    ]  # fmt: skip
    _encode(
        tools.modern_ffmpeg,
        [*_lavfi_inputs(), *video, "-c:a", "aac", "-b:a", "96k", "-f", "flv"],
        out,
    )
    return _describe(out, tools.modern_ffmpeg, "hevc", "aac")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcGroup]:
    """Every process a test starts; all stopped (SIGTERM, then SIGKILL) on teardown."""
    group = ProcGroup(tmp_path / "procs")
    try:
        yield group
    finally:
        group.stop_all()


StartServer = Callable[..., Server]


@pytest.fixture
def start_server(procs: ProcGroup) -> StartServer:
    """Factory: `start_server(*flags, env={...})` runs `bridge serve` on a free loopback
    port with extra flags/environment and waits until it accepts connections."""

    def start(*flags: str, env: dict[str, str] | None = None) -> Server:
        return launch_server(procs, *flags, env=env)

    return start


@pytest.fixture
def server(start_server: StartServer) -> Server:
    """A server with a 1 s unpublish grace period (keeps readers' endings quick)."""
    return start_server("--unpublish-grace-seconds", "1")
