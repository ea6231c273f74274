"""Analysers that run after motion: object confirmation and QR codes.

Each decides for itself which frames are worth its cost (motion, a rate limit, a period) and
returns what it found for the event controller; none of them touches the clip.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from nvr_cli.core.errors import ConfigError, NvrError
from nvr_cli.core.frames import Frame
from nvr_cli.analysis.motion import MotionResult
from nvr_cli.analysis.objects import Detection, ObjectDetector, expand_to_aspect
from nvr_cli.config import ObjectSettings, QrSettings

log = logging.getLogger(__name__)


def union_box(boxes: Sequence[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return x0, y0, x1 - x0, y1 - y0


class ObjectAnalyser:
    """Runs the detector on motion (the motion region grown to the model's shape), at most
    OBJECT_MAX_RATE a second, and every DETECT_EVERY_SECONDS without motion; keeps wanted objects."""

    def __init__(self, settings: ObjectSettings, source_size: tuple[int, int],
                 detector: Optional[ObjectDetector] = None):
        s = self.s = settings
        if not s.OBJECT_LABELS:
            raise ConfigError("OBJECT_MODEL is set but OBJECT_LABELS is not: give --labels")
        self.detector = detector or ObjectDetector(
            s.OBJECT_MODEL, s.OBJECT_LABELS, threads=s.OBJECT_THREADS, color=s.OBJECT_INPUT_COLOR,
            letterbox=s.OBJECT_LETTERBOX, scale=s.OBJECT_INPUT_SCALE)
        unknown = [x for x in s.OBJECT_LABELS_OF_INTEREST if x not in self.detector.labels]
        if unknown:
            raise ConfigError(f"OBJECT_LABELS_OF_INTEREST: {unknown[0]!r} is not a label of {s.OBJECT_LABELS}")
        self.size = tuple(source_size)
        self.aspect = self.detector.width / self.detector.height
        self.min_gap = 1.0 / s.OBJECT_MAX_RATE
        # ask the model for the lowest score any label may need; `wanted` applies each label's own
        self.floor = min([s.OBJECT_MIN_SCORE] + [o.get("min_score", 1.0) for o in s.OBJECT_LABEL_OVERRIDES.values()])
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
        return (d.score >= o.get("min_score", s.OBJECT_MIN_SCORE)
                and o.get("min_area", s.OBJECT_MIN_AREA) <= area <= o.get("max_area", s.OBJECT_MAX_AREA))

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
            x, y, w, h = expand_to_aspect(union_box(motion.boxes), self.aspect, self.size)
            image, ox, oy = image[y:y + h, x:x + w], x, y
        t = time.perf_counter()
        found = self.detector.detect(image, min_score=self.floor)
        self.seconds += time.perf_counter() - t
        out = []
        for d in found:
            d.box = (d.box[0] + ox, d.box[1] + oy, d.box[2], d.box[3])
            if self.wanted(d):
                out.append(d)
        return out


@dataclass
class QrSighting:
    payload: str
    ts: float
    box: tuple  # (x, y, w, h) in source pixels

    def as_dict(self) -> dict:
        return {"payload": self.payload, "box": [int(v) for v in self.box]}


def load_zbar() -> Callable[[np.ndarray], list]:
    """pyzbar's decode, or a one-line error naming the package to install."""
    try:
        from pyzbar import pyzbar
    except ImportError as e:
        if "zbar" in str(e).lower():
            raise NvrError("QR codes need the zbar library: apt-get install libzbar0") from None
        raise NvrError("QR codes need pyzbar: pip install pyzbar") from None
    return pyzbar.decode


def decode_qr(decode: Callable[[np.ndarray], list], image: np.ndarray) -> list:
    """(payload, (x, y, w, h)) for each QR code in a BGR or grey image."""
    import cv2

    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    out = []
    for sym in decode(np.ascontiguousarray(gray)):
        if sym.type == "QRCODE":
            r = sym.rect
            out.append((sym.data.decode("utf-8", errors="replace"), (r.left, r.top, r.width, r.height)))
    return out


class QrScanner:
    """Looks for QR codes at most every QR_EVERY_SECONDS; reports each payload once per window."""

    def __init__(self, settings: QrSettings):
        self.s = settings
        self.decode = load_zbar()
        self._last = float("-inf")
        self._seen: dict = {}  # payload -> last ts

    def process(self, frame: Frame, motion: Optional[MotionResult]) -> list:
        s, ts = self.s, frame.ts
        if ts - self._last < s.QR_EVERY_SECONDS:
            return []
        image, ox, oy = frame.image, 0, 0
        if s.QR_AREA == "motion":
            if motion is None or not motion.boxes:
                return []
            x, y, w, h = union_box(motion.boxes)
            image, ox, oy = image[y:y + h, x:x + w], x, y
        self._last = ts
        if len(self._seen) > 64:  # forget payloads whose window has passed: a long run sees many
            self._seen = {p: t for p, t in self._seen.items() if ts - t <= s.QR_REPEAT_WINDOW_SECS}
        new = []
        for payload, (x, y, w, h) in decode_qr(self.decode, image):
            last = self._seen.get(payload)
            self._seen[payload] = ts
            if last is None or ts - last > s.QR_REPEAT_WINDOW_SECS:
                log.info("QR code: %r", payload)
                new.append(QrSighting(payload, ts, (x + ox, y + oy, w, h)))
        return new
