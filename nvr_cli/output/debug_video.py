"""A four-panel video of what the motion detector sees, for tuning its settings.

Panels: source | blurred difference (amplified) / after threshold, dilate and erode | source
with contour traces and boxes. Every panel is at the analysis size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from nvr_cli.analysis.motion import MotionDetector, MotionResult
from nvr_cli.analysis.tracks import BRIEF, FLICKER, IN_PLACE, MOVING, MotionTracker
from nvr_cli.config import Settings
from nvr_cli.output.encoders import open_writer
from nvr_cli.source.capture import VideoSource
from nvr_cli.source.spec import parse_source


def _label(img, text, color=(255, 255, 255)):
    cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3)
    cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1)
    return img


# BGR per track verdict; a rejected track's label says why
TRACK_COLOURS = {
    MOVING: (0, 0, 255),
    IN_PLACE: (255, 255, 0),
    FLICKER: (255, 0, 255),
    BRIEF: (128, 128, 128),
}
NEW_COLOUR = (0, 255, 255)


def _draw_tracks(img: np.ndarray, tracks: list, scale: tuple) -> None:
    sx, sy = scale
    for t in tracks:
        colour = TRACK_COLOURS.get(t.verdict, NEW_COLOUR)
        x, y, w, h = t.box
        p0, p1 = (int(x * sx), int(y * sy)), (int((x + w) * sx), int((y + h) * sy))
        cv2.rectangle(img, p0, p1, colour, 2 if t.moving else 1)
        pts = np.array([[int(px * sx), int(py * sy)] for _, px, py in t.path], np.int32)
        if len(pts) > 1:
            cv2.polylines(img, [pts], False, colour, 1)
        cv2.putText(
            img, f"{t.id} {t.verdict}", (p0[0], max(10, p0[1] - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1
        )


def render_panels(
    det: MotionDetector, image: np.ndarray, result: MotionResult, ended: tuple = ()
) -> np.ndarray:
    """The four panels of one frame; with tracking, the tracks alive and ``ended`` just now (each
    labelled with its verdict: why it does or does not count as motion) instead of the raw boxes."""
    w, h = det.size
    small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    stages = det.stages if not result.duplicate else {}
    blank = np.zeros((h, w), np.uint8)
    diff = cv2.convertScaleAbs(stages.get("diff", blank), alpha=4.0)
    morph = stages.get("morph", blank)
    traced = small.copy()
    contours, _ = cv2.findContours(morph, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(traced, contours, -1, (0, 255, 255), 1)
    sx, sy = det.scale
    tracked = result.raw_boxes is not None
    for x, y, bw, bh in result.raw_boxes if tracked else result.boxes:
        cv2.rectangle(
            traced,
            (int(x * sx), int(y * sy)),
            (int((x + bw) * sx), int((y + bh) * sy)),
            (90, 90, 90) if tracked else (0, 0, 255),
            1 if tracked else 2,
        )
    if tracked:
        _draw_tracks(traced, [*result.tracks, *ended], det.scale)
    state = (
        "LIGHTING" if result.lighting else "MOTION" if result.motion else "repeat" if result.duplicate else ""
    )
    top = np.hstack(
        [
            _label(small.copy(), "source"),
            _label(cv2.cvtColor(diff, cv2.COLOR_GRAY2BGR), "blurred difference x4"),
        ]
    )
    bottom = np.hstack(
        [
            _label(cv2.cvtColor(morph, cv2.COLOR_GRAY2BGR), "threshold, dilate, erode"),
            _label(
                traced, f"score {result.score:.4f} {state}", (0, 0, 255) if result.motion else (255, 255, 255)
            ),
        ]
    )
    return np.vstack([top, bottom])


def render_debug_video(
    settings: Settings, source: str, out: Path, *, ffmpeg: Optional[str] = None, max_frames: int = 0
) -> int:
    """Write the four-panel video of ``source`` to ``out``; returns the number of frames."""
    src = VideoSource(
        parse_source(source), open_timeout=settings.OPEN_TIMEOUT_SECS, read_timeout=settings.READ_TIMEOUT_SECS
    ).open()
    det = MotionDetector(settings.motion, src.size, keep_stages=True)
    tracker = MotionTracker(settings.tracks) if settings.MOTION_TRACKING else None
    w, h = det.size
    writer = open_writer(Path(out), (2 * w, 2 * h), src.fps or 15.0, ffmpeg=ffmpeg, fragmented=False)
    n = 0
    try:
        for frame in src.frames():
            result = det.process(frame.image, frame.ts)
            ended = ()
            if tracker is not None:
                tracker.update(frame.ts, result)
                ended = tracker.take_ended()
            writer.write(render_panels(det, frame.image, result, ended))
            n += 1
            if max_frames and n >= max_frames:
                break
    finally:
        src.close()
        writer.close()
    return n
