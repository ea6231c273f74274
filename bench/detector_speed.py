#!/usr/bin/env python3
"""Object detectors side by side: milliseconds per inference, and in a real clip the share of
frames that reached the detector (motion-gated, rate-limited) and what that cost.

    python bench/detector_speed.py [CLIP]   (default: ../shared/data/video/one-by-one-person-detection.mp4)
"""

import statistics
import sys
import time
from pathlib import Path

import cv2

from nvr_cli.analysis.objects import ObjectDetector
from nvr_cli.config import Settings
from nvr_cli.output.sinks import EventLogSink
from nvr_cli.runtime.pipeline import Pipeline
from nvr_cli.source.capture import parse_source

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
MODELS = [
    ("ssd_mobilenet_v1_1_metadata_1.tflite", "labelmap.txt"),
    ("yolox_nano.tflite", "yolox_coco80_labels.txt"),
]


def main():
    clip = Path(sys.argv[1]) if len(sys.argv) > 1 else SHARED / "video" / "one-by-one-person-detection.mp4"
    if not clip.exists() or not (SHARED / "models").exists():
        sys.exit("needs ../shared/data (models and footage) beside the project, or a CLIP argument")
    cap = cv2.VideoCapture(str(clip))
    cap.set(cv2.CAP_PROP_POS_MSEC, 20000)
    image = cap.read()[1]
    print(f"clip: {clip.name} ({image.shape[1]}x{image.shape[0]})")
    print(
        f"{'model':<40} {'kind':>5} {'input':>9} {'ms/inference':>13} {'frames':>7} {'detected':>9} "
        f"{'share':>6} {'detector s':>11} {'scan s':>7} {'events':>7}"
    )
    for model, labels in MODELS:
        det = ObjectDetector(SHARED / "models" / model, SHARED / "models" / labels, threads=2)
        for _ in range(3):
            det.detect(image)
        times = []
        for _ in range(30):
            t = time.perf_counter()
            det.detect(image)
            times.append((time.perf_counter() - t) * 1000)
        s = Settings(
            OBJECT_MODEL=str(SHARED / "models" / model),
            OBJECT_LABELS=str(SHARED / "models" / labels),
            OBJECT_CONFIRM="require",
            INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS=0,
        )
        sink = EventLogSink()
        t = time.perf_counter()
        stats = Pipeline(s, parse_source(str(clip)), sink).run()
        wall = time.perf_counter() - t
        print(
            f"{model:<40} {det.kind:>5} {det.width}x{det.height:<5} {statistics.median(times):>13.1f} "
            f"{stats.frames:>7} {stats.frames_detected:>9} {stats.frames_detected / stats.frames:>6.1%} "
            f"{stats.detect_seconds:>11.1f} {wall:>7.1f} {len(sink.records):>7}"
        )


if __name__ == "__main__":
    main()
