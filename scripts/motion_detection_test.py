#!/usr/bin/env python3
"""Print the motion score of every frame of SOURCE (a thin wrapper over nvr_cli.analysis.motion).

python scripts/motion_detection_test.py SOURCE [--every N]
"""

import argparse
import signal
import sys

from nvr_cli.analysis.motion import MotionDetector
from nvr_cli.config import load_settings
from nvr_cli.core.errors import NvrError
from nvr_cli.source.capture import VideoSource, parse_source


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source")
    ap.add_argument("--every", type=int, default=1, help="print every Nth frame")
    args = ap.parse_args()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into head
    try:
        s = load_settings().settings
        src = VideoSource(parse_source(args.source)).open()
    except NvrError as e:
        sys.exit(f"error: {e}")
    det = MotionDetector(s.motion, src.size)
    print("frame\ttime\tscore\tmotion\tlighting\tboxes")
    try:
        for f in src.frames():
            r = det.process(f.image)
            if f.index % args.every == 0:
                print(f"{f.index}\t{f.ts:.3f}\t{r.score:.5f}\t{int(r.motion)}\t{int(r.lighting)}\t{r.boxes}")
    finally:
        src.close()


if __name__ == "__main__":
    main()
