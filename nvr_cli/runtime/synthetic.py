"""A generated scene for the demo and the tests: a still background, sensor noise, objects that
walk across at chosen times, and each frame's number drawn as a row of black/white blocks that
survives H.264 (read it back with ``read_frame_number``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from nvr_cli.output.encoders import FfmpegWriter, OpenCvWriter

BITS, BLOCK, TOP = 16, 16, 4
# The number strip changes every frame: mask it as users mask a camera's clock overlay.
NUMBER_MASK = "0,0 330,0 330,26 0,26"


@dataclass
class Scene:
    seconds: float = 30.0
    fps: float = 15.0
    size: tuple = (640, 360)
    walkers: list = field(default_factory=lambda: [(8.0, 12.0), (19.0, 22.0)])  # (start, end) seconds
    lighting: list = field(default_factory=list)  # (start, end, delta): whole picture brighter by delta
    codes: list = field(default_factory=list)  # (start, end, payload, (x, y)): a QR code shown there
    noise: float = 2.0
    seed: int = 7

    def background(self) -> np.ndarray:
        w, h = self.size
        rng = np.random.default_rng(self.seed)
        x = np.linspace(60, 150, w, dtype=np.float32)
        y = np.linspace(0, 40, h, dtype=np.float32)[:, None]
        img = np.dstack([x + y, x * 0.9 + y, x * 0.8 + y]).astype(np.uint8)
        for _ in range(8):  # some still furniture
            x0, y0 = int(rng.integers(0, w - 80)), int(rng.integers(40, h - 60))
            color = tuple(int(c) for c in rng.integers(30, 220, 3))
            cv2.rectangle(
                img, (x0, y0), (x0 + int(rng.integers(30, 90)), y0 + int(rng.integers(20, 60))), color, -1
            )
        return img

    def frame(self, n: int, background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        t = n / self.fps
        img = background.copy()
        w, h = self.size
        for start, end in self.walkers:
            if start <= t < end:
                p = (t - start) / (end - start)
                x = int(-60 + p * (w + 60))
                y = h // 2 - 50
                cv2.rectangle(img, (x, y), (x + 50, y + 110), (40, 40, 200), -1)
                cv2.circle(img, (x + 25, y - 15), 16, (60, 160, 220), -1)
        for start, end, payload, (qx, qy) in self.codes:
            if start <= t < end:
                code = qr_image(payload)
                img[qy : qy + code.shape[0], qx : qx + code.shape[1]] = code[:, :, None]
        for start, end, delta in self.lighting:
            if start <= t < end:
                img = (
                    cv2.add(img, np.full_like(img, delta))
                    if delta > 0
                    else cv2.subtract(img, np.full_like(img, -delta))
                )
        if self.noise:
            img = cv2.add(img, rng.normal(0, self.noise, img.shape).astype(np.int8), dtype=cv2.CV_8U)
        draw_frame_number(img, n)
        return img

    def write(self, path: Path, ffmpeg: Optional[str] = None) -> Path:
        """Encode the scene to ``path`` (H.264 MP4 through ffmpeg; OpenCV's mp4v without)."""
        path = Path(path)
        cls = FfmpegWriter if ffmpeg else OpenCvWriter
        kwargs = {"ffmpeg": ffmpeg, "crf": 18, "preset": "veryfast", "fragmented": False} if ffmpeg else {}
        writer = cls(path, self.size, self.fps, **kwargs)
        bg, rng = self.background(), np.random.default_rng(self.seed + 1)
        for n in range(int(round(self.seconds * self.fps))):
            writer.write(self.frame(n, bg, rng))
        writer.close()
        return path


def draw_frame_number(img: np.ndarray, n: int) -> None:
    for bit in range(BITS):
        img[TOP : TOP + BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255 if (n >> bit) & 1 else 0
    cv2.putText(
        img, f"#{n}", (BITS * BLOCK + 6, TOP + BLOCK), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1
    )


def read_frame_number(img: np.ndarray) -> int:
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    n = 0
    for bit in range(BITS):
        block = gray[TOP + 4 : TOP + BLOCK - 4, bit * BLOCK + 4 : (bit + 1) * BLOCK - 4]
        if block.mean() > 128:
            n |= 1 << bit
    return n


def qr_image(payload: str, module_px: int = 4) -> np.ndarray:
    """A QR code (with its quiet zone) as a grey image, ``module_px`` pixels per module."""
    code = cv2.QRCodeEncoder.create().encode(payload)
    code = cv2.copyMakeBorder(code, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=255)
    return cv2.resize(
        code, (code.shape[1] * module_px, code.shape[0] * module_px), interpolation=cv2.INTER_NEAREST
    )
