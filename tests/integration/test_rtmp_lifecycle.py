"""Stream lifecycle with real clients: refusals, publisher restart, shutdown, bad settings."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest

from .helpers import (
    REPO_ROOT,
    Proc,
    ProcGroup,
    SourceMedia,
    Tools,
    explain_run,
    find_run,
    framemd5_argv,
    free_port,
    iter_flv_tags,
    parse_framemd5,
    publish_argv,
    rtmpdump_argv,
    server_command,
    server_env,
    split_runs,
    video_packets,
    video_tag_info,
    wait_for_media,
)

LATE_START_S = 1.5
REFUSAL_BUDGET_S = 5.0
REFUSAL_LOG = re.compile(r"badname|refus|reject|denied", re.IGNORECASE)


def assert_reader_kept_getting_media(reader: Proc, source: SourceMedia, who: str) -> None:
    """A reader we stopped mid-stream: its video is a contiguous run of the source from a
    keyframe, and it spans about as much media time as the reader ran (the GOP cache gives
    up to a GOP more; process start-up costs a little)."""
    result = parse_framemd5(reader.stdout_text())
    video = result.by_codec(source.video_codec)
    md5s = [p.md5 for p in video]
    start = find_run(md5s, source.md5s(source.video_codec))
    assert start is not None, explain_run(md5s, source.md5s(source.video_codec), who)
    assert md5s[0] in source.keyframes[source.video_codec], (
        f"{who}: first video packet not a keyframe"
    )
    ran = reader.end_time - reader.start_time
    covered = (video[-1].dts - video[0].dts) / 1000
    assert covered >= ran - 1.0, f"{who}: ran {ran:.1f} s but got only {covered:.1f} s of video"


@pytest.mark.timeout(60)
def test_wrong_play_key_is_refused(
    tools: Tools, h264_source: SourceMedia, start_server, procs: ProcGroup
) -> None:
    """A play with another key than the publisher's gets NetStream.Play.BadName (ffmpeg
    exits non-zero) while the publish and a right-key reader go on."""
    server = start_server("--unpublish-grace-seconds", "1")
    url = server.url("keys", "right_key")
    publisher = procs.start("publisher", publish_argv(tools.ffmpeg, h264_source.path, url))
    time.sleep(LATE_START_S)
    good = procs.start("reader-right-key", framemd5_argv(tools.ffmpeg, url))
    wait_for_media(good, h264_source)

    bad = procs.start(
        "reader-wrong-key", framemd5_argv(tools.ffmpeg, server.url("keys", "wrong_key"))
    )
    code = bad.wait(REFUSAL_BUDGET_S)
    assert code is not None, f"wrong-key reader still running after {REFUSAL_BUDGET_S} s"
    assert code != 0, bad.diagnostics()
    seen_at_refusal = video_packets(good, h264_source)
    assert not parse_framemd5(bad.stdout_text()).packets, "wrong-key reader got media"
    assert REFUSAL_LOG.search(server.stderr_text()), "server log does not mention the refusal"

    time.sleep(1.0)
    assert publisher.running(), (
        f"publisher stopped after a wrong-key play\n{publisher.diagnostics()}"
    )
    good.stop()
    assert_reader_kept_getting_media(good, h264_source, "right-key reader")
    assert video_packets(good, h264_source) > seen_at_refusal + 10, "media stopped at the refusal"


@pytest.mark.timeout(60)
def test_second_publisher_is_refused(
    tools: Tools, h264_source: SourceMedia, start_server, procs: ProcGroup
) -> None:
    """A second publish of a live channel gets NetStream.Publish.BadName (ffmpeg exits
    non-zero); the first publisher and its reader go on, untouched."""
    server = start_server("--unpublish-grace-seconds", "1")
    url = server.url("twice", "the_key")
    first = procs.start("publisher-1", publish_argv(tools.ffmpeg, h264_source.path, url))
    time.sleep(LATE_START_S)
    reader = procs.start("reader", framemd5_argv(tools.ffmpeg, url))
    wait_for_media(reader, h264_source)

    second = procs.start("publisher-2", publish_argv(tools.ffmpeg, h264_source.path, url))
    code = second.wait(REFUSAL_BUDGET_S)
    assert code is not None, f"second publisher still running after {REFUSAL_BUDGET_S} s"
    assert code != 0, second.diagnostics()
    seen_at_refusal = video_packets(reader, h264_source)

    time.sleep(1.5)
    assert first.running(), f"first publisher stopped\n{first.diagnostics()}"
    reader.stop()
    # Contiguous from start to stop (nothing of the second publish got in), and still
    # flowing after the refusal.
    assert_reader_kept_getting_media(reader, h264_source, "reader")
    assert video_packets(reader, h264_source) > seen_at_refusal + 10, "media stopped at the refusal"


def assert_non_decreasing(values: list[int], what: str) -> None:
    for i in range(1, len(values)):
        assert values[i] >= values[i - 1], f"{what}: {values[i - 1]} then {values[i]} (#{i})"


@pytest.mark.timeout(120)
def test_publisher_restart_within_grace_resumes_readers(
    tools: Tools, h264_source: SourceMedia, start_server, procs: ProcGroup
) -> None:
    """A publisher that comes back within UNPUBLISH_GRACE_SECONDS: readers keep running and
    get both publishes whole, with timestamps that never go back; after the last publish
    they end by themselves."""
    grace = 5.0
    server = start_server("--unpublish-grace-seconds", str(grace))
    url = server.url("restart", "restart_key")
    first = procs.start("publisher-1", publish_argv(tools.ffmpeg, h264_source.path, url))
    time.sleep(LATE_START_S)
    reader = procs.start("ffmpeg-reader", framemd5_argv(tools.ffmpeg, url))
    dump = procs.start("rtmpdump-reader", rtmpdump_argv(url, "-"))
    assert first.wait(30) == 0, first.diagnostics()

    time.sleep(1.0)
    assert reader.running() and dump.running(), "a reader ended although the grace period runs"
    second = procs.start("publisher-2", publish_argv(tools.ffmpeg, h264_source.path, url))
    assert second.wait(30) == 0, second.diagnostics()

    # Publisher gone for good: readers end by themselves after the grace period.
    for r in (reader, dump):
        r.wait(grace + 3.0)
        after = r.duration_after(second.end_time)
        assert after is not None, f"{r.name} still running {grace + 3} s after the last publish"
    assert reader.returncode == 0, reader.diagnostics()

    result = parse_framemd5(reader.stdout_text())
    video = result.md5s(h264_source.video_codec)
    src = h264_source.md5s(h264_source.video_codec)
    runs = split_runs(video, src)
    assert runs is not None and len(runs) == 2, explain_run(video, src, "expected two publishes")
    (start1, len1), (start2, len2) = runs
    assert start1 + len1 == len(src), f"first publish not received to its end: runs {runs}"
    assert video[0] in h264_source.keyframes[h264_source.video_codec], (
        "reader did not start on a keyframe"
    )
    assert (start2, len2) == (0, len(src)), f"second publish not received whole: runs {runs}"
    audio = result.md5s(h264_source.audio_codec)
    asrc = h264_source.md5s(h264_source.audio_codec)
    aruns = split_runs(audio, asrc)
    assert aruns is not None and len(aruns) == 2, explain_run(audio, asrc, "audio")
    assert aruns[0][0] + aruns[0][1] == len(asrc) and aruns[1] == (0, len(asrc)), (
        f"audio runs {aruns}"
    )

    # Timestamps go on: ffmpeg's view (it would rewrite and warn about going back) ...
    for codec in (h264_source.video_codec, h264_source.audio_codec):
        assert_non_decreasing([p.dts for p in result.by_codec(codec)], f"ffmpeg reader {codec} dts")
    assert "Non-monotonous DTS" not in reader.stderr_text(), reader.diagnostics()
    # ... and the raw FLV timestamps the server sent, as rtmpdump wrote them.
    tags = list(iter_flv_tags(dump.stdout_bytes()))
    assert_non_decreasing([t.timestamp for t in tags if t.type == 8], "rtmpdump audio timestamps")
    assert_non_decreasing([t.timestamp for t in tags if t.type == 9], "rtmpdump video timestamps")
    frames = [i for t in tags if t.type == 9 if (i := video_tag_info(t.payload)) and i.coded_frame]
    assert len(frames) > len(src), f"rtmpdump got {len(frames)} video frames: not both publishes"
    assert frames[0].keyframe


@pytest.mark.timeout(60)
def test_sigterm_with_live_sessions(
    tools: Tools, h264_source: SourceMedia, start_server, procs: ProcGroup
) -> None:
    """SIGTERM with a publisher and a reader: exit 0 within 5 s, clients closed, no traceback."""
    server = start_server("--unpublish-grace-seconds", "1")
    url = server.url("bye", "bye_key")
    publisher = procs.start("publisher", publish_argv(tools.ffmpeg, h264_source.path, url))
    time.sleep(LATE_START_S)
    reader = procs.start("reader", framemd5_argv(tools.ffmpeg, url))
    wait_for_media(reader, h264_source)
    assert publisher.running()

    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(5.0)
    assert code is not None, "server still running 5 s after SIGTERM"
    assert code == 0, server.diagnostics()
    for client in (publisher, reader):
        client.wait(max(0.0, t0 + 5.0 - time.monotonic()))
        assert not client.running(), f"{client.name} still running 5 s after the server's SIGTERM"
    err = server.stderr_text()
    assert "Traceback" not in err, server.diagnostics()
    assert f"rtmp://127.0.0.1:{server.port}" in err, "no `listening rtmp://...` line in the log"
    assert parse_framemd5(reader.stdout_text()).md5s(h264_source.video_codec), "reader got no video"


def _run_bad(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*server_command(), "serve", *args],
        cwd=REPO_ROOT,
        env=server_env(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("args", "env", "setting"),
    [
        (["--rtmp-port", "notaport"], {}, ("rtmp-port", "RTMP_PORT")),
        (["--rtmp-port", "70000"], {}, ("rtmp-port", "RTMP_PORT")),
        ([], {"RTMP_CHUNK_SIZE": "0"}, ("rtmp-chunk-size", "RTMP_CHUNK_SIZE")),
    ],
    ids=["port-not-a-number", "port-out-of-range", "chunk-size-zero-env"],
)
def test_bad_setting_exits_2_with_one_line(
    args: list[str], env: dict[str, str], setting: tuple[str, str]
) -> None:
    # A valid free port and address, so only the bad value can stop it.
    base = [] if "--rtmp-port" in args else ["--rtmp-port", str(free_port())]
    try:
        res = _run_bad([*base, "--bind-address", "127.0.0.1", *args], env)
    except subprocess.TimeoutExpired:
        pytest.fail("the server started (or hung) despite a bad setting")
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, f"exit {res.returncode}\n{res.stderr}"
    assert "Traceback" not in res.stderr, res.stderr
    assert len(lines) == 1, f"expected one line on stderr, got:\n{res.stderr}"
    assert any(name.lower() in lines[0].lower() for name in setting), (
        f"the line does not name the setting {setting}: {lines[0]!r}"
    )
