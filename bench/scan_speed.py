#!/usr/bin/env python3
"""Scan speed against the decode-only ceiling, side by side in one run.

    python bench/scan_speed.py [FILE ...]     (default: the footage in ../shared/data/video)

For each file: OpenCV decode-only fps (the ceiling: nothing can scan faster than it decodes),
then `nvr-cli scan`'s fps on the same file (the library pipeline in this process, no clips written),
and their ratio. Absolute numbers on a shared machine mean little; the ratio is the figure.
"""
import sys
import time
from pathlib import Path

import cv2

from nvr_cli.pipeline import Pipeline
from nvr_cli.settings import Settings
from nvr_cli.sinks import EventLogSink
from nvr_cli.source import parse_source

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "video"
DEFAULT = ["traffic_camera.mp4", "car-detection.mp4", "one-by-one-person-detection.mp4"]


def decode_only(path):
    cap = cv2.VideoCapture(str(path))
    n, t = 0, time.perf_counter()
    while cap.read()[0]:
        n += 1
    return n, time.perf_counter() - t


def scan(path):
    s = Settings(INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS=0)
    sink = EventLogSink()
    t = time.perf_counter()
    stats = Pipeline(s, parse_source(str(path)), sink).run()
    return stats.frames, time.perf_counter() - t, len(sink.records)


def main():
    files = [Path(a) for a in sys.argv[1:]] or [SHARED / f for f in DEFAULT if (SHARED / f).exists()]
    if not files:
        sys.exit("no input: pass video files, or put ../shared/data/video beside the project")
    print(f"{'file':<36} {'size':>9} {'decode fps':>11} {'scan fps':>9} {'scan/decode':>12} {'events':>7}")
    for f in files:
        n, dt = decode_only(f)
        m, st, events = scan(f)
        w, h = (int(cv2.VideoCapture(str(f)).get(p)) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
        print(f"{f.name:<36} {w}x{h:<5} {n / dt:>11.0f} {m / st:>9.0f} {(m / st) / (n / dt):>12.2f} {events:>7}")


if __name__ == "__main__":
    main()
