"""An HTTP MJPEG camera (a real HTTP server on 127.0.0.1 that the test starts)."""

import json
import signal
import subprocess
import sys

from helpers import NUMBER_MASK, clips, decode_all, ffprobe, free_port, wait_for

from nvr_cli.runtime.synthetic import read_frame_number

SERVER = __import__("pathlib").Path(__file__).parent / "support" / "mjpeg_server.py"


def test_record_http_mjpeg_uses_the_measured_frame_rate(tmp_path, scene_cache):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(SERVER), "--file", str(scene_cache()), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    rec = None
    try:
        assert server.stdout.readline().startswith("READY")
        out = tmp_path / "video"
        rec = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nvr_cli",
                "record",
                f"http://127.0.0.1:{port}/stream.mjpg",
                "--output",
                str(out),
                "--mask",
                NUMBER_MASK,
                "--initial-wait",
                "1",
                "--pre-alarm",
                "2",
                "--motion-duration",
                "1",
                "--post-capture",
                "0.5",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert wait_for(lambda: clips(out), timeout=40), "no clip from the MJPEG camera"
        rec.send_signal(signal.SIGTERM)
        assert rec.wait(timeout=30) == 0
    finally:
        for p in (rec, server):
            if p is not None and p.poll() is None:
                p.kill()
    f = clips(out)[0]
    side = json.loads(f.with_suffix(".json").read_text())
    # the stream claims 25 fps (the MJPEG demuxer's default); the camera sends 15
    assert 13.5 <= side["fps"] <= 16.5
    duration = float(ffprobe(f)["format"]["duration"])
    assert abs(duration - side["duration_seconds"]) < 0.15 * side["duration_seconds"]
    nums = [read_frame_number(img) for img in decode_all(f)]
    # pre-alarm (the walker's track counts within 1.5 s of frame 120) and the whole walk
    assert nums[0] <= 120 + 1.5 * 15 - 2 * 15 and max(nums) >= 12 * 15
