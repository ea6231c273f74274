#!/usr/bin/env python3
"""CPU of one camera's continuous stream-copy recording against decoding the same stream, side by
side in one run, over GStreamer's RTSP server on 127.0.0.1 (the tests' server, Debian's python3).

    python bench/stream_copy_cpu.py [CLIP] [--seconds N]   (default: ../shared traffic_camera.mp4, 20 s)

Rows: `nvr-cli record --continuous --no-motion` (ffmpeg -c copy into segments, nothing decoded);
plain `ffmpeg -c copy` (the floor); OpenCV decoding every frame (what any motion analysis costs at least);
`nvr-cli record` with motion detection (decode + analysis + clips of the camera's packets), and with
clips re-encoded from the frames. CPU is user+system time of the
process and its children over wall time, in % of one core.
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "tests" / "support" / "rtsp_server.py"
SHARED = ROOT.parent / "shared" / "data" / "video"


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(cmd, seconds):
    before, t = child_cpu(), time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(seconds)
    proc.terminate()
    proc.wait(timeout=30)
    wall = time.monotonic() - t
    return 100 * (child_cpu() - before) / wall


DECODE = """
import os, sys, time, cv2
os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp"
cap = cv2.VideoCapture(sys.argv[1], cv2.CAP_FFMPEG)
while cap.read()[0]:
    pass
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("clip", nargs="?", default=str(SHARED / "traffic_camera.mp4"))
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    if not Path(args.clip).exists():
        sys.exit(f"{args.clip}: not found (needs ../shared beside the project, or a CLIP)")
    port = 18554
    server = subprocess.Popen(
        ["/usr/bin/python3", str(SERVER), "--file", args.clip, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    print(server.stdout.readline().strip())
    url = f"rtsp://127.0.0.1:{port}/cam"
    out = tempfile.mkdtemp()
    ffmpeg = subprocess.run(
        [sys.executable, "-c", "from nvr_cli.ffmpeg.binary import find_ffmpeg; print(find_ffmpeg())"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    rows = [
        (
            "nvr-cli record --continuous --no-motion",
            [
                sys.executable,
                "-m",
                "nvr_cli",
                "record",
                url,
                "--continuous",
                "--no-motion",
                "--output",
                out,
                "--name",
                "a",
            ],
        ),
        (
            "ffmpeg -c copy (floor)",
            [
                ffmpeg,
                "-loglevel",
                "error",
                "-rtsp_transport",
                "tcp",
                "-i",
                url,
                "-c",
                "copy",
                "-f",
                "segment",
                "-segment_time",
                "60",
                f"{out}/raw%03d.mp4",
            ],
        ),
        ("OpenCV decode only", [sys.executable, "-c", DECODE, url]),
        (
            "nvr-cli record (motion events)",
            [sys.executable, "-m", "nvr_cli", "record", url, "--output", out, "--name", "b"],
        ),
        (
            "nvr-cli record --reencode (motion events)",
            [sys.executable, "-m", "nvr_cli", "record", url, "--output", out, "--name", "c", "--reencode"],
        ),
    ]
    try:
        results = [(name, measure(cmd, args.seconds)) for name, cmd in rows]
    finally:
        server.terminate()
    decode = results[2][1]
    print(f"{'what':<42} {'CPU % of a core':>16} {'vs decode':>10}")
    for name, cpu in results:
        print(f"{name:<42} {cpu:>16.1f} {cpu / decode:>10.2f}")


if __name__ == "__main__":
    main()
