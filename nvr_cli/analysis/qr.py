"""QR codes in analysed frames (pyzbar on Debian's libzbar0): at most every QR_EVERY_SECONDS, each
payload reported once per QR_REPEAT_WINDOW_SECS; also the decoder `nvr-cli qr` uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from nvr_cli.analysis.motion import MotionResult
from nvr_cli.config import QrSettings
from nvr_cli.core.errors import NvrError
from nvr_cli.core.frames import Frame
from nvr_cli.core.geometry import union_box

log = logging.getLogger(__name__)


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
            image, ox, oy = image[y : y + h, x : x + w], x, y
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
