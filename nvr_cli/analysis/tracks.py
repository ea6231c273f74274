"""Motion tracks: motion boxes followed from frame to frame, and judged as tracks, not frames.

Something that persists and moves (a person, a car) makes a track that lives on and travels; an
insect near the lens, rain, snow or sensor noise makes blobs that live a frame or two or jump further
than any track could; leaves, flags and an on-screen clock change in place. Only tracks that have
lived TRACK_MIN_SECONDS and travelled TRACK_MIN_TRAVEL of their own size count as motion.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Optional

from nvr_cli.analysis.motion import MotionResult
from nvr_cli.config import TrackSettings

# the fewest sightings that can make a track: two could be one flash seen twice by the difference
MIN_HITS = 3
# sizes kept for a track's median size, and path points kept for its summary
SIZE_HISTORY = 30
PATH_POINTS = 40

# verdicts
NEW = "new"  # not judged yet: too young
MOVING = "moving"  # lived long enough and travelled: motion
IN_PLACE = "in place"  # lived long enough but stayed where it began (leaves, flags, overlays)
BRIEF = "brief"  # ended before it had lived long enough (insects, rain, noise)
FLICKER = "flicker"  # seen in too few of the frames of its life (insects in IR light, rain)


@dataclass(slots=True)
class MotionTrack:
    """One followed motion region. Boxes are (x, y, w, h) in source pixels."""

    id: int
    first_ts: float
    last_ts: float
    box: tuple
    origin: tuple  # centre where it was first seen
    hits: int = 1
    frames: int = 1  # analysed frames since it began
    travel: float = 0.0  # the farthest its centre has been from ``origin``, source pixels
    sizes: list = field(default_factory=list)
    path: list = field(default_factory=list)  # [ts, cx, cy], thinned to PATH_POINTS
    verdict: str = NEW
    seen_now: bool = True  # hit in the latest frame

    @property
    def size(self) -> float:
        """Its median size: the square root of its boxes' areas (an elongated box counts less)."""
        return statistics.median(self.sizes)

    @property
    def moving(self) -> bool:
        return self.verdict == MOVING

    def as_dict(self, origin: float = 0.0) -> dict:
        return {
            "id": self.id,
            "first_seen": round(self.first_ts - origin, 3),
            "last_seen": round(self.last_ts - origin, 3),
            "verdict": self.verdict,
            "hits": self.hits,
            "travel": round(self.travel, 1),
            "path": [[round(t - origin, 3), int(x), int(y)] for t, x, y in self.path],
        }


def _centre(box: tuple) -> tuple:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def _size(box: tuple) -> float:
    return math.sqrt(max(1, box[2] * box[3]))


def _touch(a: tuple, b: tuple) -> bool:
    return a[0] <= b[0] + b[2] and b[0] <= a[0] + a[2] and a[1] <= b[1] + b[3] and b[1] <= a[1] + a[3]


class MotionTracker:
    """Follows one source's motion boxes; ``update`` turns a frame's result into a tracks' verdict."""

    def __init__(self, settings: TrackSettings):
        self.s = settings
        self.tracks: list = []  # alive
        self.ended: list = []  # ended since the last ``take_ended``
        self._next_id = 1

    def reset(self) -> None:
        """Forget every track (a reconnect: the old positions mean nothing)."""
        self.ended.extend(self.tracks)
        self.tracks = []

    def take_ended(self) -> list:
        out, self.ended = self.ended, []
        return out

    def update(self, ts: float, result: MotionResult) -> MotionResult:
        """Follow ``result``'s boxes; ``result.motion`` then says whether a moving track is seen now,
        ``result.boxes`` are those tracks' latest boxes and ``result.tracks`` every alive track."""
        if result.duplicate:
            result.tracks = self.tracks
            return result
        if result.lighting:
            self.reset()  # the reference starts again: the old boxes mean nothing
        self._follow(ts, result.boxes)
        self._end_lost(ts)
        for t in self.tracks:
            self._judge(t, ts)
        # a moving track not seen in this frame (it left, or stands still) is no motion now
        moving = [t for t in self.tracks if t.moving and t.seen_now]
        result.raw_boxes = result.boxes
        result.boxes = [t.box for t in moving]
        result.motion = bool(moving)
        result.since = min((t.first_ts for t in moving), default=None)
        result.tracks = self.tracks
        return result

    def _follow(self, ts: float, boxes: list) -> None:
        s = self.s
        for t in self.tracks:
            t.seen_now = False
            t.frames += 1
        pairs = []
        centres = [(_centre(b), _size(b)) for b in boxes]
        for ti, t in enumerate(self.tracks):
            tx, ty = _centre(t.box)
            size = t.size  # a median: once per track, not per box
            for bi, b in enumerate(boxes):
                (bx, by), bsize = centres[bi]
                d = math.hypot(bx - tx, by - ty)
                if d <= s.TRACK_MAX_STEP * max(size, bsize) or _touch(t.box, b):
                    pairs.append((d, ti, bi))
        pairs.sort()
        taken: dict = {}  # box index -> track
        for _, ti, bi in pairs:
            t = self.tracks[ti]
            if bi in taken or t.seen_now:
                continue
            taken[bi] = t
            self._hit(t, ts, boxes[bi])
        for bi, b in enumerate(boxes):
            if bi in taken:
                continue
            # a second blob of something already followed (a person's head and legs): the same track
            if any(t.seen_now and _touch(t.box, b) for t in self.tracks):
                continue
            c = _centre(b)
            t = MotionTrack(self._next_id, ts, ts, tuple(b), c, sizes=[_size(b)], path=[[ts, c[0], c[1]]])
            self._next_id += 1
            self.tracks.append(t)

    def _hit(self, t: MotionTrack, ts: float, box: tuple) -> None:
        t.box, t.last_ts, t.seen_now = tuple(box), ts, True
        t.hits += 1
        t.sizes.append(_size(box))
        if len(t.sizes) > SIZE_HISTORY:
            del t.sizes[0]
        cx, cy = _centre(box)
        t.travel = max(t.travel, math.hypot(cx - t.origin[0], cy - t.origin[1]))
        t.path.append([ts, cx, cy])
        if len(t.path) > PATH_POINTS:
            del t.path[1::2]  # halve, keeping the first point

    def _judge(self, t: MotionTrack, ts: float) -> None:
        """Afresh each frame: a track that stops being seen often enough no longer counts."""
        s = self.s
        age = t.last_ts - t.first_ts
        if t.hits < MIN_HITS:
            return
        if age < s.TRACK_MIN_SECONDS:
            # something seen in nearly every frame may count sooner: a runner crossing a close view
            # in two seconds; insects and the night's faint movers are seen in half the frames or less
            steady = s.TRACK_STEADY_SECONDS and age >= s.TRACK_STEADY_SECONDS
            if not (steady and t.hits >= s.TRACK_STEADY_HIT_RATE * t.frames):
                t.verdict = NEW
                return
        if t.hits < s.TRACK_MIN_HIT_RATE * t.frames:
            t.verdict = FLICKER
        elif t.travel < s.TRACK_MIN_TRAVEL * t.size:
            t.verdict = IN_PLACE
        else:
            t.verdict = MOVING

    def _end_lost(self, ts: float) -> None:
        alive = []
        for t in self.tracks:
            if ts - t.last_ts > self.s.TRACK_MAX_GAP_SECONDS:
                if t.verdict == NEW:
                    t.verdict = BRIEF
                self.ended.append(t)
            else:
                alive.append(t)
        self.tracks = alive
        if len(self.ended) > 1000:  # nobody collects them (no renderer, no sidecar): keep memory flat
            del self.ended[:500]


def track_reason(t: MotionTrack) -> Optional[str]:
    """Why a track does not count as motion, for the debug renderer; None when it does."""
    return None if t.moving else t.verdict
