"""Motion score by frame differencing: grey, blur, difference, threshold, dilate, erode, contours."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from .geometry import rasterize
from .settings import Settings

# Mean grey-level difference below which a frame repeats the previous one. Exports and some
# cameras repeat frames irregularly (seen: 15 fps footage at 29.97 fps): real frames differ by
# 0.2 and more, repeats by under 0.01.
DUPLICATE_MAX_MEAN_DIFF = 0.05


@dataclass(slots=True)
class MotionResult:
    score: float = 0.0  # changed fraction of the analysed area, after dilate/erode
    boxes: list = field(default_factory=list)  # (x, y, w, h) in source pixels
    motion: bool = False
    lighting: bool = False  # a whole-frame change, not counted as motion
    duplicate: bool = False  # (nearly) the previous frame again: no new information
    brightness: float = 0.0


def analysis_size(settings: Settings, source_size) -> tuple:
    """(w, h) the detector works at: scaleFrameTo, else MOTION_FRAME_WIDTH keeping the aspect."""
    if settings.scaleFrameTo:
        return tuple(settings.scaleFrameTo)
    w, h = source_size
    width = min(settings.MOTION_FRAME_WIDTH, w)
    return width, max(1, round(h * width / w))


class MotionDetector:
    """Compares each frame with the previous one; one instance per source."""

    def __init__(self, settings: Settings, source_size, keep_stages: bool = False):
        self.s = settings
        self.source_size = tuple(source_size)
        self.size = analysis_size(settings, source_size)
        self.scale = (self.size[0] / source_size[0], self.size[1] / source_size[1])
        self.kernel = np.ones((3, 3), np.uint8)
        self.blur = (settings.MOTION_BLUR_SIZE, settings.MOTION_BLUR_SIZE)
        self.area_mask = self._build_mask()
        self.area = int(cv2.countNonZero(self.area_mask)) if self.area_mask is not None else self.size[0] * self.size[1]
        if self.area == 0:
            raise ValueError("masks and regions leave nothing of the picture to analyse")
        self.keep_stages = keep_stages
        self.stages: dict = {}
        self._ref: Optional[np.ndarray] = None
        self._gray: Optional[np.ndarray] = None
        self._ref_mean = 0.0

    def _build_mask(self):
        s = self.s
        if not s.MASKS and not s.REGIONS:
            return None
        if s.REGIONS:
            mask = rasterize(s.REGIONS, self.size, self.scale)
        else:
            mask = np.full((self.size[1], self.size[0]), 255, np.uint8)
        if s.MASKS:
            mask[rasterize(s.MASKS, self.size, self.scale) > 0] = 0
        return mask

    def reset(self):
        """Forget the reference, e.g. after a reconnect: the next frame only becomes the reference."""
        self._ref = self._gray = None

    def process(self, image: np.ndarray) -> MotionResult:
        s = self.s
        # grey first: resizing one channel instead of three is 2x faster, and the result is the same
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if (gray.shape[1], gray.shape[0]) != self.size:
            gray = cv2.resize(gray, self.size, interpolation=cv2.INTER_AREA)
        if self._gray is not None and cv2.mean(cv2.absdiff(gray, self._gray))[0] < DUPLICATE_MAX_MEAN_DIFF:
            return MotionResult(duplicate=True, brightness=self._ref_mean)  # keep the reference
        self._gray = gray
        blurred = cv2.GaussianBlur(gray, self.blur, 0)
        mean = cv2.mean(blurred, self.area_mask)[0]
        ref, ref_mean = self._ref, self._ref_mean
        self._ref, self._ref_mean = blurred, mean
        if ref is None:
            return MotionResult(brightness=mean)
        diff = cv2.absdiff(blurred, ref)
        _, changed = cv2.threshold(diff, s.MOTION_PIXEL_THRESHOLD, 255, cv2.THRESH_BINARY)
        if self.area_mask is not None:
            cv2.bitwise_and(changed, self.area_mask, dst=changed)
        dilated = cv2.dilate(changed, self.kernel, iterations=s.MOTION_DILATE_ITERATIONS) if s.MOTION_DILATE_ITERATIONS else changed
        eroded = cv2.erode(dilated, self.kernel, iterations=s.MOTION_ERODE_ITERATIONS) if s.MOTION_ERODE_ITERATIONS else dilated
        if self.area_mask is not None and s.MOTION_DILATE_ITERATIONS:
            # dilation must not grow blobs back into masked-out areas
            cv2.bitwise_and(eroded, self.area_mask, dst=eroded)
        score = cv2.countNonZero(eroded) / self.area
        if self.keep_stages:
            self.stages = {"blurred": blurred, "diff": diff, "threshold": changed, "morph": eroded}
        if s.LIGHTING_REJECT and (score > s.LIGHTING_MAX_CHANGED_FRACTION
                                  or abs(mean - ref_mean) > s.LIGHTING_BRIGHTNESS_JUMP):
            return MotionResult(score=score, lighting=True, brightness=mean)
        boxes = []
        if score >= s.MOTION_MIN_SCORE:
            contours, _ = cv2.findContours(eroded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            sx, sy = self.scale
            for c in contours:
                if cv2.contourArea(c) >= s.MOTION_MIN_CONTOUR_AREA:
                    x, y, w, h = cv2.boundingRect(c)
                    boxes.append((int(x / sx), int(y / sy), int(round(w / sx)), int(round(h / sy))))
        return MotionResult(score=score, boxes=boxes, motion=bool(boxes), brightness=mean)
