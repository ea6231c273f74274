"""Object detection with TFLite models (LiteRT, else tflite-runtime): SSD-style and YOLO-style.

The model's kind is read off its tensors: four outputs (boxes, classes, scores, count) is an SSD
with built-in post-processing; one [1, N, 5 + classes] output is YOLO-style raw predictions that
need our own NMS. Anything else is a clear error naming what was found.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from nvr_cli.core.errors import ConfigError, NvrError, unreadable_file

PLACEHOLDERS = {"???", "background", "__background__"}


@dataclass(slots=True)
class Detection:
    label: str
    score: float
    box: tuple  # (x, y, w, h) in source pixels

    def as_dict(self) -> dict:
        return {"label": self.label, "score": round(self.score, 4), "box": [int(v) for v in self.box]}


def load_labels(path: Union[str, Path]) -> list:
    """Class index -> name, for the layouts in use: a '???' placeholder first line or not,
    'n/a' in gaps, 'ID name' per line; CRLF or LF."""
    path = Path(path)
    problem = unreadable_file(path, "labels file", "labels file not found")
    if problem:
        raise ConfigError(problem)
    lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ConfigError(f"{path}: labels file is empty")
    numbered = [re.match(r"^(\d+)[\s:,]+(.+)$", line) for line in lines if line]
    if all(numbered):
        out = {}
        for m in numbered:
            out[int(m.group(1))] = m.group(2).strip()
        return [out.get(i, "n/a") for i in range(max(out) + 1)]
    if lines[0].lower() in PLACEHOLDERS:
        lines = lines[1:]
    return ["n/a" if not x or x == "???" else x for x in lines]  # gaps, however a file marks them


@contextlib.contextmanager
def _quiet_native_stderr():
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def load_interpreter(model_path: Union[str, Path], threads: int) -> Any:
    """A TFLite interpreter: ai-edge-litert, else tflite-runtime."""
    problem = unreadable_file(Path(model_path), "model file", "model file not found")
    if problem:
        raise ConfigError(problem)
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise NvrError("no TFLite runtime: `pip install ai-edge-litert` (or tflite-runtime)") from None
    try:
        with _quiet_native_stderr():  # the runtime announces its CPU delegate on fd 2
            it = Interpreter(model_path=str(model_path), num_threads=threads)
            it.allocate_tensors()
    except Exception as e:  # noqa: BLE001 - the runtime raises ValueError/RuntimeError for bad files
        raise ConfigError(f"{model_path}: not a TFLite model this runtime can load ({e})") from None
    return it


def _describe(details) -> str:
    return ", ".join(
        f"{d['name']} {[int(x) for x in d['shape']]} {np.dtype(d['dtype']).name}" for d in details
    )


def model_kind(model_path: Union[str, Path], outputs: list[dict], n_labels: int) -> str:
    """ "ssd" or "yolo" from the output tensors' shapes, or a ConfigError naming what was found."""
    shapes = [tuple(o["shape"]) for o in outputs]
    if (
        len(outputs) == 4
        and sorted(len(s) for s in shapes) == [1, 2, 2, 3]
        and any(s[-1:] == (4,) for s in shapes)
    ):
        return "ssd"
    if len(outputs) == 1 and len(shapes[0]) == 3 and shapes[0][2] >= 6:
        if shapes[0][2] - 5 != n_labels:
            raise ConfigError(
                f"{model_path}: YOLO output has {shapes[0][2] - 5} classes but the labels file has {n_labels}"
            )
        return "yolo"
    raise ConfigError(
        f"{model_path}: unsupported detector outputs ({_describe(outputs)}); expected SSD "
        "post-processed (boxes, classes, scores, count) or YOLO [1, N, 5 + classes]"
    )


class ObjectDetector:
    """Runs one model on BGR images; returns detections in the image's pixels."""

    def __init__(
        self,
        model_path: Union[str, Path],
        labels_path: Union[str, Path],
        *,
        threads: int = 2,
        color: str = "auto",
        letterbox: str = "auto",
        scale: str = "auto",
    ):
        self.interp = load_interpreter(model_path, threads)
        self.labels = load_labels(labels_path)
        inp = self.interp.get_input_details()
        outs = self.interp.get_output_details()
        if len(inp) != 1 or len(inp[0]["shape"]) != 4 or inp[0]["shape"][3] != 3:
            raise ConfigError(f"{model_path}: expected one image input [1, H, W, 3], found {_describe(inp)}")
        self.input = inp[0]
        self.height, self.width = int(self.input["shape"][1]), int(self.input["shape"][2])
        self.float_input = np.dtype(self.input["dtype"]) == np.float32
        self.kind = model_kind(model_path, outs, len(self.labels))
        self.outputs = outs
        yolo = self.kind == "yolo"
        # conventions of the two families, overridable: YOLOX wants BGR 0-255 letterboxed with grey 114,
        # TF object-detection SSDs want RGB stretched, float ones scaled to [-1, 1]
        self.bgr = (color == "bgr") if color != "auto" else yolo
        self.letterbox = (letterbox == "on") if letterbox != "auto" else yolo
        self.scale = scale if scale != "auto" else ("0-255" if yolo else "-1-1")

    # -- input ---------------------------------------------------------------------------------
    def _prepare(self, image):
        h, w = image.shape[:2]
        if self.letterbox:
            r = min(self.width / w, self.height / h)
            nw, nh = max(1, int(round(w * r))), max(1, int(round(h * r)))
            canvas = np.full((self.height, self.width, 3), 114, np.uint8)
            canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
            img, geom = canvas, (r, r, 0, 0)
        else:
            img = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
            geom = (self.width / w, self.height / h, 0, 0)
        if not self.bgr:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if self.float_input:
            img = img.astype(np.float32)
            if self.scale == "0-1":
                img /= 255.0
            elif self.scale == "-1-1":
                img = img / 127.5 - 1.0
        return img[None], geom

    # -- run -------------------------------------------------------------------------------------
    def detect(self, image: np.ndarray, min_score: float = 0.3) -> list:
        tensor, (sx, sy, _, _) = self._prepare(image)
        self.interp.set_tensor(self.input["index"], tensor)
        self.interp.invoke()
        h, w = image.shape[:2]
        raw = self._ssd(min_score) if self.kind == "ssd" else self._yolo(min_score)
        out = []
        for cls, score, x0, y0, x1, y1 in raw:  # x/y in model-input pixels
            x0, x1 = max(0.0, x0 / sx), min(float(w), x1 / sx)
            y0, y1 = max(0.0, y0 / sy), min(float(h), y1 / sy)
            if x1 <= x0 or y1 <= y0:
                continue
            label = self.labels[cls] if 0 <= cls < len(self.labels) else str(cls)
            out.append(
                Detection(label, float(score), (int(x0), int(y0), int(round(x1 - x0)), int(round(y1 - y0))))
            )
        return out

    def _ssd(self, min_score):
        tensors = [self.interp.get_tensor(o["index"]) for o in self.outputs]
        boxes = next(t for t in tensors if t.ndim == 3)[0]
        count = int(next(t for t in tensors if t.ndim == 1)[0])
        pair = [t[0] for t in tensors if t.ndim == 2]
        # classes and scores share a shape; the classes are the whole numbers
        if np.allclose(pair[0], np.round(pair[0])) and not np.allclose(pair[1], np.round(pair[1])):
            classes, scores = pair
        else:
            scores, classes = pair
        res = []
        for i in range(min(count, len(scores))):
            if scores[i] >= min_score:
                y0, x0, y1, x1 = boxes[i]
                res.append(
                    (
                        int(classes[i]),
                        scores[i],
                        x0 * self.width,
                        y0 * self.height,
                        x1 * self.width,
                        y1 * self.height,
                    )
                )
        return res

    def _yolo(self, min_score):
        pred = self.interp.get_tensor(self.outputs[0]["index"])[0]
        cls = pred[:, 5:].argmax(axis=1)
        scores = pred[:, 4] * pred[np.arange(len(pred)), 5 + cls]
        keep = scores >= min_score
        if not keep.any():
            return []
        pred, cls, scores = pred[keep], cls[keep], scores[keep]
        cx, cy, bw, bh = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
        if max(cx.max(), cy.max()) <= 1.5:  # normalised coordinates
            cx, bw, cy, bh = cx * self.width, bw * self.width, cy * self.height, bh * self.height
        x0, y0 = cx - bw / 2, cy - bh / 2
        rects = np.stack([x0, y0, bw, bh], axis=1)
        res = []
        for c in np.unique(cls):  # NMS per class
            idx = np.where(cls == c)[0]
            kept = cv2.dnn.NMSBoxes(rects[idx].tolist(), scores[idx].tolist(), min_score, 0.45)
            for k in np.array(kept).flatten():
                i = idx[int(k)]
                res.append((int(c), scores[i], x0[i], y0[i], x0[i] + bw[i], y0[i] + bh[i]))
        return sorted(res, key=lambda r: -r[1])


def expand_to_aspect(
    box: tuple[int, int, int, int],
    aspect: float,
    size: tuple[int, int],
    margin: float = 0.25,
    min_size: tuple[int, int] = (0, 0),
) -> tuple:
    """Grow ``box`` (x, y, w, h) by ``margin``, to the model's ``aspect`` (w/h) and to at least
    ``min_size`` (w, h), inside ``size``."""
    x, y, w, h = box
    W, H = size
    w, h = w * (1 + margin), h * (1 + margin)
    if w / max(h, 1) < aspect:
        w = h * aspect
    else:
        h = w / aspect
    # never smaller than the model's input: an upscaled small crop shows the model blobs it takes
    # for people (seen: "person" 0.51 on an empty yard at night)
    grow = max(min_size[0] / max(w, 1), min_size[1] / max(h, 1), 1.0)
    w, h = w * grow, h * grow
    w, h = min(w, W), min(h, H)
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    x0 = int(min(max(0, cx - w / 2), W - w))
    y0 = int(min(max(0, cy - h / 2), H - h))
    return x0, y0, int(w), int(h)
