"""Object tracks: the detector's wanted objects followed from look to look, and confirmed by more
than one frame.

A single detection proves little: SSD-MobileNet calls a pale tree trunk in IR light "person" at 0.51
once. A track is confirmed once it has OBJECT_CONFIRM_DETECTIONS detections and the median of its
newest scores reaches OBJECT_CONFIRM_SCORE (Frigate's ``threshold``; OBJECT_MIN_SCORE, which lets a
detection start or continue a track, is its ``min_score``). A track that stays in place for
OBJECT_STATIONARY_SECONDS is stationary (a parked car): it is listed, but confirms nothing.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from nvr_cli.analysis.objects import Detection
from nvr_cli.config import ObjectSettings
from nvr_cli.core.geometry import box_centre, box_iou

# A detection continues the track of its label whose box it overlaps best with an IoU of at least
# MATCH_IOU, or whose box holds its centre. At 4 looks a second a walker's box moves a fraction of
# its width between looks (IoU well above 0.3); the centre rule keeps a track across a slower look
# (DETECT_EVERY_SECONDS, a pause in the motion) or a box that changed shape (a person half hidden,
# bending), as long as the object moved less than half its box.
MATCH_IOU = 0.3
# in place: the centre within this fraction of the box's width and height of where it settled
STILL_FRACTION = 0.25
# scores kept for the median: the newest ten, as Frigate's score history
SCORE_HISTORY = 10
# the path keeps a point where the box moved by this fraction of its size, and always the newest;
# beyond PATH_POINTS it is halved, keeping the first and the last
PATH_STEP = 0.125
PATH_POINTS = 100


@dataclass(slots=True)
class ObjectTrack:
    """One followed object. Boxes are (x, y, w, h) in source pixels; times are frame timestamps."""

    id: int
    label: str
    first_seen: float
    last_seen: float
    box: tuple  # the newest
    best_score: float
    best_box: tuple
    detections: int = 1
    scores: list = field(default_factory=list)  # the newest SCORE_HISTORY
    # the median of ``scores``; from OBJECT_CONFIRM_DETECTIONS on, the highest such median so far
    # (Frigate's top score), so a confirmed track keeps saying why it was confirmed
    median_score: float = 0.0
    path: list = field(default_factory=list)  # [t, x, y, w, h], thinned
    confirmed: bool = False  # once confirmed, it stays so
    stationary: bool = False  # in place for OBJECT_STATIONARY_SECONDS as of its newest detection
    settled_box: tuple = ()  # where it has stayed since settled_ts
    settled_ts: float = 0.0
    alive: bool = True  # False once ended: it will never change again


@dataclass(slots=True)
class Sighting:
    """One detection and the track it joined, with the track's state right after it."""

    track: ObjectTrack
    detection: Detection
    confirmed: bool
    stationary: bool

    @property
    def counts(self) -> bool:
        """This sighting confirms an event: its track is confirmed and not standing still."""
        return self.confirmed and not self.stationary


def _in_place(box: tuple, settled: tuple) -> bool:
    (cx, cy), (sx, sy) = box_centre(box), box_centre(settled)
    return abs(cx - sx) < STILL_FRACTION * settled[2] and abs(cy - sy) < STILL_FRACTION * settled[3]


def _moved(box: tuple, point: list) -> bool:
    (cx, cy), (px, py) = box_centre(box), box_centre(point[1:])
    size = max(1.0, min(point[3], point[4]))
    return max(abs(cx - px), abs(cy - py), abs(box[2] - point[3]), abs(box[3] - point[4])) >= PATH_STEP * size


class ObjectTracker:
    """Follows one source's wanted detections (``ObjectAnalyser.process``'s output) from look to look."""

    def __init__(self, settings: ObjectSettings):
        self.s = settings
        # a look every DETECT_EVERY_SECONDS must not end the track of a still object between two looks
        self.max_gap = max(settings.OBJECT_TRACK_MAX_GAP_SECONDS, 2 * settings.DETECT_EVERY_SECONDS)
        self.tracks: list = []  # alive
        self._next_id = 1

    def clear(self) -> None:
        """Forget every track (a reconnect: the old positions mean nothing)."""
        for t in self.tracks:
            t.alive = False
        self.tracks = []

    def confirm_score(self, label: str) -> float:
        return self.s.OBJECT_LABEL_OVERRIDES.get(label, {}).get("confirm_score", self.s.OBJECT_CONFIRM_SCORE)

    def update(self, ts: float, detections: list) -> list:
        """One look of the detector at ``ts`` and what it found: each detection's ``Sighting``."""
        for t in self.tracks:
            t.alive = ts - t.last_seen <= self.max_gap
        self.tracks = [t for t in self.tracks if t.alive]
        pairs = []
        for di, d in enumerate(detections):
            dx, dy = box_centre(d.box)
            for ti, t in enumerate(self.tracks):
                if t.label != d.label:
                    continue
                overlap = box_iou(d.box, t.box)
                tx, ty = box_centre(t.box)
                inside = abs(dx - tx) <= t.box[2] / 2 and abs(dy - ty) <= t.box[3] / 2
                if overlap >= MATCH_IOU or inside:
                    pairs.append((-overlap, abs(dx - tx) + abs(dy - ty), di, ti))
        pairs.sort()  # best overlap first, then the nearest centre
        joined: dict = {}  # detection index -> track
        for _, _, di, ti in pairs:
            t = self.tracks[ti]
            if di in joined or t in joined.values():
                continue
            joined[di] = t
        out = []
        for di, d in enumerate(detections):
            t = joined.get(di)
            if t is None:
                t = self._start(ts, d)
            else:
                self._hit(t, ts, d)
            out.append(Sighting(t, d, t.confirmed, t.stationary))
        return out

    def _start(self, ts: float, d: Detection) -> ObjectTrack:
        box = tuple(d.box)
        t = ObjectTrack(self._next_id, d.label, ts, ts, box, d.score, box, settled_box=box, settled_ts=ts)
        self._next_id += 1
        t.scores.append(d.score)
        t.path.append([ts, *box])
        self.tracks.append(t)
        self._judge(t)
        return t

    def _hit(self, t: ObjectTrack, ts: float, d: Detection) -> None:
        box = tuple(d.box)
        t.box, t.last_seen = box, ts
        t.detections += 1
        t.scores.append(d.score)
        if len(t.scores) > SCORE_HISTORY:
            del t.scores[0]
        if d.score > t.best_score:
            t.best_score, t.best_box = d.score, box
        if not _in_place(box, t.settled_box):
            t.settled_box, t.settled_ts = box, ts
        # the newest point replaces the one before it while neither moved from the point before that
        path = t.path
        if len(path) >= 2 and not _moved(path[-1][1:], path[-2]) and not _moved(box, path[-2]):
            path[-1] = [ts, *box]
        else:
            path.append([ts, *box])
            if len(path) > PATH_POINTS:
                del path[1:-1:2]
        self._judge(t)

    def _judge(self, t: ObjectTrack) -> None:
        s = self.s
        still = s.OBJECT_STATIONARY_SECONDS
        t.stationary = still > 0 and t.last_seen - t.settled_ts >= still
        n = s.OBJECT_CONFIRM_DETECTIONS
        median = statistics.median(t.scores)
        t.median_score = max(t.median_score, median) if t.detections > n else median
        if not t.confirmed and t.detections >= n and t.median_score >= self.confirm_score(t.label):
            t.confirmed = True
