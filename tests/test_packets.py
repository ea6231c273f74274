"""An RTSP camera's clips are its own packets by default (EVENT_REENCODE None or False, no continuous
recording), the pre-alarm a buffer of packets. Over the real RTSP server on 127.0.0.1."""

import json
import signal
import subprocess
import sys

import pytest
from helpers import NUMBER_MASK, clips, decode_all, ffprobe, video_packets, wait_for

from nvr_cli.runtime.synthetic import read_frame_number

pytestmark = pytest.mark.rtsp
FPS = 15  # the generated scene: 1 keyframe a second, walkers at 8-12 s and 19-22 s


def test_clip_is_the_cameras_own_packets_with_pre_alarm(tmp_path, scene_cache, rtsp_server):
    scene = scene_cache()
    server = rtsp_server(scene)
    out = tmp_path / "video"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nvr_cli",
            "record",
            server.url,
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
            "--log-level",
            "INFO",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: clips(out), timeout=45), "no clip from the first walker"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "pre-alarm kept as packets" in stderr
    first = clips(out)[0]
    side = json.loads(first.with_suffix(".json").read_text())
    assert side["encoding"] == "camera's own (stream copy)"
    assert ffprobe(first)["streams"][0]["codec_name"] == "h264"
    nums = [read_frame_number(img) for img in decode_all(first)]
    assert len(nums) == side["frames"]
    assert all(b - a == 1 for a, b in zip(nums, nums[1:])), "frames lost or repeated"
    # starts at a keyframe at least 2 s before the trigger: the walker enters at frame 120 and
    # triggers once its track counts, within 1.5 s
    source = video_packets(scene)  # frame n is packet n: no B-frames
    assert source[nums[0]][1] and nums[0] <= 120 + 1.5 * FPS - 2 * FPS
    assert nums[-1] >= 12 * FPS, "the clip ends before the walker left"
    assert side["pre_alarm_seconds"] >= 2.0
    # not re-encoded: every frame is the camera's, sizes and all, but for the same few bytes of framing
    # on each (an access unit delimiter; keyframes also gain the parameter sets the payloader repeats)
    expected = [size for size, key in source[nums[0] : nums[-1] + 1] if not key]
    got = [size for size, key in video_packets(first) if not key]
    assert len(got) == len(expected) > 3 * FPS
    assert len({g - e for g, e in zip(got, expected)}) == 1 and 0 <= got[0] - expected[0] <= 16


def test_a_30_fps_camera_is_decoded_whole_and_analysed_15_times_a_second(tmp_path, scene_cache, rtsp_server):
    """MAX_ANALYSIS_FPS on a live camera whose clips need no decoded frames: the status file shows it."""
    server = rtsp_server(scene_cache("fast", fps=30))
    out = tmp_path / "video"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nvr_cli",
            "record",
            server.url,
            "--output",
            str(out),
            "--name",
            "fast",
            "--mask",
            NUMBER_MASK,
            "--initial-wait",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    status = out / ".status" / "fast.json"

    def settled():
        try:
            st = json.loads(status.read_text())
        except (OSError, ValueError):
            return None
        return st if st["decoded_frames"] > 150 and st["fps"] > 0 else None

    try:
        st = wait_for(settled, timeout=30)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert st, "no status with frames"
    assert "analysing every 2 frames" in stderr
    assert 13 <= st["fps"] <= 17 and 27 <= st["decoded_fps"] <= 33, st
    assert st["frames"] * 2 - 4 <= st["decoded_frames"] <= st["frames"] * 2 + 4
    assert st["dropped_frames"] == 0
