"""Object confirmation: when the detector runs (on motion, at most OBJECT_MAX_RATE a second, every
DETECT_EVERY_SECONDS without motion), on which part of the frame, and which detections count.

It returns what it found for the event controller and never touches the clip.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

from nvr_cli.analysis.motion import MotionResult
from nvr_cli.analysis.objects import Detection, ObjectDetector, expand_to_aspect
from nvr_cli.config import ObjectSettings
from nvr_cli.core.errors import ConfigError
from nvr_cli.core.frames import Frame
from nvr_cli.core.geometry import union_box

log = logging.getLogger(__name__)


class ObjectAnalyser:
    """Runs the detector on motion (the motion region grown to the model's shape), at most
    OBJECT_MAX_RATE a second, and every DETECT_EVERY_SECONDS without motion; keeps wanted objects."""

    def __init__(
        self,
        settings: ObjectSettings,
        source_size: tuple[int, int],
        detector: Optional[ObjectDetector] = None,
    ):
        s = self.s = settings
        if not s.OBJECT_LABELS:
            raise ConfigError("OBJECT_MODEL is set but OBJECT_LABELS is not: give --labels")
        self.detector = detector or ObjectDetector(
            s.OBJECT_MODEL,
            s.OBJECT_LABELS,
            threads=s.OBJECT_THREADS,
            color=s.OBJECT_INPUT_COLOR,
            letterbox=s.OBJECT_LETTERBOX,
            scale=s.OBJECT_INPUT_SCALE,
        )
        unknown = [x for x in s.OBJECT_LABELS_OF_INTEREST if x not in self.detector.labels]
        if unknown:
            raise ConfigError(
                f"OBJECT_LABELS_OF_INTEREST: {unknown[0]!r} is not a label of {s.OBJECT_LABELS}"
            )
        self.size = tuple(source_size)
        self.aspect = self.detector.width / self.detector.height
        self.min_gap = 1.0 / s.OBJECT_MAX_RATE
        # ask the model for the lowest score any label may need; `wanted` applies each label's own
        self.floor = min(
            [s.OBJECT_MIN_SCORE] + [o.get("min_score", 1.0) for o in s.OBJECT_LABEL_OVERRIDES.values()]
        )
        self._last = float("-inf")
        self.frames_seen = 0
        self.frames_detected = 0
        self.seconds = 0.0

    def wanted(self, d: Detection) -> bool:
        s = self.s
        if s.OBJECT_LABELS_OF_INTEREST and d.label not in s.OBJECT_LABELS_OF_INTEREST:
            return False
        o = s.OBJECT_LABEL_OVERRIDES.get(d.label, {})
        area = d.box[2] * d.box[3] / (self.size[0] * self.size[1])
        return d.score >= o.get("min_score", s.OBJECT_MIN_SCORE) and o.get(
            "min_area", s.OBJECT_MIN_AREA
        ) <= area <= o.get("max_area", s.OBJECT_MAX_AREA)

    def process(self, frame: Frame, motion: Optional[MotionResult]) -> Optional[list]:
        """Wanted detections in source pixels, or None when this frame was not looked at."""
        self.frames_seen += 1
        ts, s = frame.ts, self.s
        moving = motion is not None and motion.motion
        due = moving and ts - self._last >= self.min_gap
        periodic = s.DETECT_EVERY_SECONDS > 0 and ts - self._last >= s.DETECT_EVERY_SECONDS
        if not (due or periodic):
            return None
        self._last = ts
        self.frames_detected += 1
        image, ox, oy = frame.image, 0, 0
        if moving and motion.boxes:
            x, y, w, h = expand_to_aspect(
                union_box(motion.boxes),
                self.aspect,
                self.size,
                min_size=(self.detector.width, self.detector.height),
            )
            image, ox, oy = image[y : y + h, x : x + w], x, y
        t = time.perf_counter()
        found = self.detector.detect(image, min_score=self.floor)
        self.seconds += time.perf_counter() - t
        out = []
        for d in found:
            d.box = (d.box[0] + ox, d.box[1] + oy, d.box[2], d.box[3])
            if self.wanted(d):
                out.append(d)
        return out
