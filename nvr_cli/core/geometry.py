"""Polygons for masks and regions, in source-pixel coordinates."""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence, Union

import numpy as np


class Polygon(NamedTuple):
    points: tuple  # ((x, y), ...) in source pixels

    def __str__(self) -> str:
        return " ".join(f"{x},{y}" for x, y in self.points)


def parse_polygon(spec: Union[str, Sequence[Sequence[float]]]) -> Polygon:
    """``"x1,y1 x2,y2 x3,y3 ..."`` or a sequence of (x, y) pairs -> Polygon (at least 3 points)."""
    if isinstance(spec, str):
        points = []
        for token in spec.replace(";", " ").split():
            parts = token.split(",")
            if len(parts) != 2:
                raise ValueError(f"bad point {token!r} in polygon {spec!r}: expected x,y")
            try:
                points.append((float(parts[0]), float(parts[1])))
            except ValueError:
                raise ValueError(
                    f"bad point {token!r} in polygon {spec!r}: x and y must be numbers"
                ) from None
    elif isinstance(spec, Sequence):
        try:
            points = [(float(x), float(y)) for x, y in spec]
        except (TypeError, ValueError):
            raise ValueError(f"bad polygon {spec!r}: expected (x, y) pairs") from None
    else:
        raise ValueError(f'bad polygon {spec!r}: expected "x1,y1 x2,y2 x3,y3" or a list of (x, y)')
    if len(points) < 3:
        raise ValueError(f"polygon {spec!r} needs at least 3 points, got {len(points)}")
    if any(x < 0 or y < 0 for x, y in points):
        raise ValueError(f"polygon {spec!r} has a negative coordinate")
    pts = tuple((int(x) if x == int(x) else x, int(y) if y == int(y) else y) for x, y in points)
    return Polygon(pts)


def rasterize(polygons: Iterable[Polygon], size: tuple[int, int], scale: tuple[float, float]) -> np.ndarray:
    """Fill ``polygons`` (source pixels) into a uint8 mask of ``size`` (w, h) after scaling by ``scale`` (sx,
    sy).
    """
    import cv2

    w, h = size
    mask = np.zeros((h, w), np.uint8)
    for poly in polygons:
        pts = np.array([[x * scale[0], y * scale[1]] for x, y in poly.points], np.float32)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255)
    return mask


def union_box(boxes: Sequence[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
    """The smallest (x, y, w, h) box holding every (x, y, w, h) box."""
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return x0, y0, x1 - x0, y1 - y0


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes: 0 apart, 1 the same."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def box_centre(box: Sequence[float]) -> tuple[float, float]:
    """The centre (x, y) of an (x, y, w, h) box."""
    return box[0] + box[2] / 2, box[1] + box[3] / 2
