"""Over a real RTSP server on 127.0.0.1 (GStreamer's gst-rtsp-server, started by the test)."""

import json
import signal
import subprocess
import sys
import time

import cv2
import pytest
from helpers import NUMBER_MASK, clips, decode_all, ffprobe, run_cli, wait_for

from nvr_cli.runtime.synthetic import read_frame_number

pytestmark = pytest.mark.rtsp
PASSWORD = "Sup3r-s3cret"
FPS = 15


def start_recorder(url, out, *extra):
    cmd = [
        sys.executable,
        "-m",
        "nvr_cli",
        "record",
        url,
        "--output",
        str(out),
        "--name",
        "door",
        "--mask",
        NUMBER_MASK,
        "--initial-wait",
        "1",
        "--pre-alarm",
        "2",
        "--motion-duration",
        "1",
        "--post-capture",
        "1",
        "--read-timeout",
        "3",
        "--open-timeout",
        "5",
        *map(str, extra),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_record_over_rtsp_then_sigterm_mid_event(tmp_path, scene_cache, rtsp_server):
    server = rtsp_server(scene_cache(), user="admin", password=PASSWORD)
    out = tmp_path / "video"
    proc = start_recorder(server.url, out, "--json")
    try:
        # walkers at 8-12 s and 19-22 s of the looped scene: the first clip is final around 14 s
        assert wait_for(lambda: clips(out), timeout=40), "no clip from the first walker"
        assert wait_for(lambda: list(out.rglob("*.part.mp4")), timeout=20), "second event did not start"
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    files = clips(out)
    assert len(files) == 2 and not list(out.rglob("*.part.mp4"))
    sides = [json.loads(f.with_suffix(".json").read_text()) for f in files]
    assert sides[1]["end_reason"] == "stopped"
    for f, side in zip(files, sides):
        assert ffprobe(f)["streams"][0]["codec_name"] == "h264"
        nums = [read_frame_number(img) for img in decode_all(f)]
        assert len(nums) == side["frames"]
        steps = [b - a for a, b in zip(nums, nums[1:])]
        assert all(s >= 1 for s in steps), "a frame was repeated"
        assert sum(s == 1 for s in steps) >= 0.95 * len(steps), "frames were lost"
        assert side["pre_alarm_seconds"] >= 2.0
        assert side["source"] == server.url.replace(PASSWORD, "***")
    # the first walker enters the picture at frame 120 and triggers once its track counts, within
    # 1.5 s; the clip starts >= 2 s before the trigger, so before the walker
    first = read_frame_number(decode_all(files[0])[0])
    assert first <= 120 + 1.5 * FPS - 2 * FPS
    # the password appears nowhere: not in logs, JSON lines or sidecars
    everything = stdout + stderr + "".join(f.with_suffix(".json").read_text() for f in files)
    assert PASSWORD not in everything
    assert "admin:***@" in stderr
    assert [json.loads(x)["event"] for x in stdout.splitlines()] == [1, 2]


def test_stall_is_detected_clip_finalized_and_camera_reopened(tmp_path, scene_cache, rtsp_server):
    server = rtsp_server(scene_cache())
    out = tmp_path / "video"
    proc = start_recorder(server.url, out)
    try:
        assert wait_for(lambda: list(out.rglob("*.part.mp4")), timeout=40), "no event started"
        server.toggle_stall()
        stalled_at = time.monotonic()
        assert wait_for(lambda: clips(out), timeout=15), "stalled clip was not finalized"
        detected = time.monotonic() - stalled_at
        server.toggle_stall()
        # reopened: motion of the next walker gives another clip
        assert wait_for(lambda: len(clips(out)) >= 2, timeout=45), "recording did not resume"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert detected < 3 + 2 + 3  # read timeout + our margin + finalizing
    side = json.loads(clips(out)[0].with_suffix(".json").read_text())
    assert side["end_reason"] != "motion ended"
    assert "lost" in stderr and "is back" in stderr
    assert len(decode_all(clips(out)[0])) == side["frames"]


def test_probe_rtsp(tmp_path, scene_cache, rtsp_server):
    server = rtsp_server(scene_cache(), user="admin", password=PASSWORD)
    snap = tmp_path / "snap.jpg"
    proc = run_cli("probe", server.url, "--snapshot", snap, "--json", check=0)
    info = json.loads(proc.stdout)
    assert (info["width"], info["height"], info["fps"], info["codec"]) == (640, 360, 15.0, "h264")
    assert cv2.imread(str(snap)).shape == (360, 640, 3)
    assert PASSWORD not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "mangle, words",
    [
        (lambda u: u.replace(PASSWORD, "wrong"), "wrong user name or password"),
        (lambda u: u.replace("/cam", "/nothing-here"), "no such stream"),
    ],
)
def test_probe_rtsp_errors_are_one_line(scene_cache, rtsp_server, mangle, words):
    server = rtsp_server(scene_cache(), user="admin", password=PASSWORD)
    proc = run_cli("probe", mangle(server.url), "--no-snapshot", "--open-timeout", "5")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert PASSWORD not in proc.stderr and "wrong@" not in proc.stderr


def test_unreachable_camera_retries_then_gives_up_with_one_line():
    from helpers import free_port

    url = f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/cam"
    start = time.monotonic()
    proc = run_cli("record", url, "--retries", "3", "--open-timeout", "2", "--output", "/tmp/nvr-never")
    assert proc.returncode == 1
    assert time.monotonic() - start >= 1 + 2  # backed off between attempts (1 s, then 2 s)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("nvr-cli: error:") and "connection refused" in last and "3 attempts" in last
    assert proc.stderr.count("unavailable") == 1  # the outage is logged once, not per retry
    assert PASSWORD not in proc.stderr
