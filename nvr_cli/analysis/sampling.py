"""Which frames of an image or video `detect` and `qr` look at, and which one `detect` keeps."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional

import numpy as np

from nvr_cli.source.capture import VideoSource, parse_source


def sample_frames(
    path: str, every: float, max_frames: int = 0
) -> Iterator[tuple[Optional[float], np.ndarray]]:
    """(time, BGR image) of an image file (time None), or of a video every ``every`` seconds
    (at most ``max_frames`` of them, if not 0). Raises SourceError if it cannot be read."""
    import cv2

    spec = parse_source(path)
    if spec.kind == "file":
        image = cv2.imread(path)
        if image is not None:
            yield None, image
            return
    src = VideoSource(spec).open()
    try:
        last, n = float("-inf"), 0
        for frame in src.frames():
            if frame.ts - last >= every:
                last = frame.ts
                n += 1
                yield frame.ts, frame.image
                if max_frames and n >= max_frames:
                    break
    finally:
        src.close()


class BestFrame:
    """The frame with the highest-scoring detection so far (the first frame while none has any)."""

    def __init__(self):
        self.score = -1.0
        self.image: Optional[np.ndarray] = None
        self.detections: list = []

    def offer(self, image: np.ndarray, detections: list) -> None:
        top = max((d.score for d in detections), default=None)
        if top is not None and top > self.score:
            self.score, self.image, self.detections = top, image, detections
        if self.image is None:
            self.image, self.detections = image, detections


def unique_qr_codes(
    decode: Callable[[np.ndarray], list], frames: Iterable[tuple[Optional[float], np.ndarray]]
) -> Iterator[dict]:
    """Each QR code in ``frames`` ((time, image) pairs) once, when first seen:
    {"payload", "box"[, "time"]}. ``decode``: pyzbar's (see ``load_zbar``)."""
    from nvr_cli.analysis.qr import decode_qr

    seen = set()
    for t, image in frames:
        for payload, box in decode_qr(decode, image):
            if payload in seen:
                continue
            seen.add(payload)
            code = {"payload": payload, "box": list(box)}
            if t is not None:
                code["time"] = round(t, 3)
            yield code
