"""When an event starts, goes on, splits and ends. Pure logic: frames in, calls to a sink out."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Protocol, Sequence

from nvr_cli.analysis.motion import MotionResult
from nvr_cli.analysis.object_tracks import ObjectTrack
from nvr_cli.config import EventSettings
from nvr_cli.core.frames import Frame
from nvr_cli.events.prealarm import PreAlarmBuffer

if TYPE_CHECKING:
    from nvr_cli.analysis.qr import QrSighting

log = logging.getLogger(__name__)


@dataclass
class Event:
    """One motion event; a long one is written as several parts."""

    number: int
    trigger_ts: float
    first_motion_ts: float
    last_motion_ts: float
    part: int = 1
    peak_score: float = 0.0
    peak_frame: Optional[Frame] = None
    peak_boxes: list = field(default_factory=list)
    motion_frames: int = 0
    union_box: Optional[list] = None  # [x0, y0, x1, y1] over all motion boxes
    kind: str = "motion"  # or "qr": started by a new QR code
    objects: dict = field(default_factory=dict)  # label -> ObjectSeen, labels with a confirmed track only
    best_object: Optional[tuple] = None  # (frame, [detections]): the best view of a confirmed object
    tracks: dict = field(default_factory=dict)  # track id -> TrackSeen: every object track seen in it
    qr: list = field(default_factory=list)  # QrSighting

    @property
    def motion_seconds(self) -> float:
        return self.last_motion_ts - self.first_motion_ts

    def note_motion(self, frame: Frame, result: MotionResult) -> None:
        self.motion_frames += 1
        self.last_motion_ts = max(self.last_motion_ts, frame.ts)
        for x, y, w, h in result.boxes:
            if self.union_box is None:
                self.union_box = [x, y, x + w, y + h]
            else:
                u = self.union_box
                u[0], u[1], u[2], u[3] = min(u[0], x), min(u[1], y), max(u[2], x + w), max(u[3], y + h)
        if result.score > self.peak_score:
            self.peak_score, self.peak_frame, self.peak_boxes = result.score, frame, list(result.boxes)

    @property
    def confirmed(self) -> bool:
        """A track confirmed the event: confirmed and not stationary when it was seen in it."""
        return any(t.counted for t in self.tracks.values())

    def note_objects(self, frame: Frame, sightings: list) -> None:
        """One look of the detector: its wanted objects, each with its track (``ObjectTracker.update``)."""
        for s in sightings:
            seen = self.tracks.get(s.track.id)
            if seen is None:
                self.tracks[s.track.id] = seen = TrackSeen(s.track, frame.ts)
            seen.moving = seen.moving or not s.stationary
            seen.counted = seen.counted or s.counts
            if s.detection.score > seen.score:
                seen.score, seen.box, seen.view = s.detection.score, s.detection.box, (frame, list(sightings))
        # a track may be confirmed by this look after its earlier ones: the summary is made afresh
        objects: dict = {}
        best = None
        for seen in self.tracks.values():
            if not seen.track.confirmed:
                continue
            o = objects.get(seen.track.label)
            if o is None:
                objects[seen.track.label] = ObjectSeen(
                    seen.track.label, seen.score, seen.box, seen.first_seen
                )
            else:
                o.first_seen = min(o.first_seen, seen.first_seen)
                if seen.score > o.score:
                    o.score, o.box = seen.score, seen.box
            if best is None or seen.score > best.score:
                best = seen
        self.objects = objects
        if best is not None and best.view is not None:
            frame, look = best.view
            self.best_object = (frame, [s.detection for s in look if s.track.confirmed])
        # frames are large: keep only the views that may yet be the best (a track that is still
        # followed and may be confirmed, with a better score than the best confirmed one)
        for seen in self.tracks.values():
            if seen is not best and (
                seen.track.confirmed
                or not seen.track.alive
                or (best is not None and seen.score <= best.score)
            ):
                seen.view = None


@dataclass
class ObjectSeen:
    label: str
    score: float  # best score
    box: tuple  # where it had that score, (x, y, w, h) source pixels
    first_seen: float  # ts


@dataclass
class TrackSeen:
    """An object track as one event saw it; ``track`` is the tracker's own, which goes on changing."""

    track: ObjectTrack
    first_seen: float  # its first sighting in this event (the pre-alarm part included)
    score: float = 0.0  # its best score in this event
    box: tuple = ()  # where it had that score
    view: Optional[tuple] = None  # (frame, [sightings]) of the look where it had that score
    moving: bool = False  # not stationary at one of its sightings in this event at least
    counted: bool = False  # confirmed and not stationary at one of its sightings in this event

    def summary(self) -> "TrackSummary":
        t = self.track
        return TrackSummary(
            label=t.label,
            median_score=t.median_score,
            best_score=t.best_score,
            detections=t.detections,
            first_seen=t.first_seen,
            last_seen=t.last_seen,
            confirmed=t.confirmed,
            stationary=not self.moving,
            path=[list(p) for p in t.path],
        )


@dataclass
class TrackSummary:
    """What an event's record says of one of its object tracks (a copy: the track goes on)."""

    label: str
    median_score: float  # the highest median of its newest scores (ObjectTrack.median_score)
    best_score: float
    detections: int
    first_seen: float  # ts
    last_seen: float
    confirmed: bool
    stationary: bool  # stood still at every sighting in this event: it confirmed nothing
    path: list  # [ts, x, y, w, h], thinned


class Sink(Protocol):
    def open(self, event: Event, frames: list) -> None: ...
    def write(self, frame: Frame) -> None: ...
    def close(self, event: Event, keep: bool, reason: str) -> None: ...


class EventController:
    """Feeds every frame either to the pre-alarm buffer or to the open clip."""

    def __init__(
        self,
        settings: EventSettings,
        sink: Sink,
        *,
        require_object: bool = False,
        wanted: tuple = ("person",),
        qr_starts_events: bool = False,
    ):
        """``require_object``: keep only events that one of their object tracks confirmed (OBJECT_CONFIRM
        = require; the tracks are of ``wanted`` labels only); ``qr_starts_events``: a new QR code
        starts an event without motion (QR_STARTS_EVENT)."""
        self.s = settings
        self.sink = sink
        self.confirm_required = require_object
        self.wanted = tuple(wanted)
        self.qr_starts_events = qr_starts_events
        self.unconfirmed_events = 0
        self._recent: list = []  # (ts, frame, sightings, qr) while idle, for the next event
        self.buffer = PreAlarmBuffer(
            settings.PRE_ALARM_RECORDING_SECONDS,
            settings.PRE_ALARM_MAX_MB,
            keep_images=getattr(sink, "needs_images", True),
        )
        self.event: Optional[Event] = None
        self.events_started = 0
        self.dropped_events = 0
        self._armed_at = float("-inf")
        self._run: list = []  # consecutive motion frames with their results, before a trigger
        self._clip_start = 0.0
        # disarmed (MQTT detect/set OFF): no event starts; an open one ends as its motion is no longer counted
        self.detecting = True

    @property
    def recording(self) -> bool:
        return self.event is not None

    def connected(self, ts: float) -> None:
        """A (re)connect at ``ts``: start the settle-down wait and forget the old pre-alarm frames."""
        self._armed_at = ts + self.s.INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS
        self._run.clear()
        self._recent.clear()
        self.buffer.clear()

    def armed(self, ts: float) -> bool:
        return ts >= self._armed_at

    def step(
        self,
        frame: Frame,
        result: Optional[MotionResult],
        sightings: Optional[list] = None,
        qr: Sequence[QrSighting] = (),
    ) -> None:
        """One analysed frame: its motion, what the object detector saw in it (``Sighting`` from
        ``ObjectTracker.update``; None: not looked at) and its new QR codes."""
        motion = result is not None and result.motion and frame.ts >= self._armed_at and self.detecting
        ev = self.event
        if ev is None:
            self.buffer.push(frame)
            if sightings or qr:
                self._remember(frame, sightings, qr)
            if qr and self.qr_starts_events and frame.ts >= self._armed_at and self.detecting:
                self._start(frame, kind="qr")
                return
            if result is not None and result.duplicate:
                return  # a repeated frame neither continues nor breaks a run of motion
            if not motion:
                self._run.clear()
                return
            self._run.append((frame, result))
            # a counting motion track (``since``) has already lived its TRACK_STEADY_SECONDS or
            # TRACK_MIN_SECONDS: more frames would only delay, and miss a car that crosses a region
            if len(self._run) >= self.s.MOTION_TRIGGER_FRAMES or result.since is not None:
                self._start(frame)
            return
        if motion:
            ev.note_motion(frame, result)
        if sightings:
            ev.note_objects(frame, sightings)
        if qr:
            ev.qr.extend(qr)
        if frame.ts > ev.last_motion_ts + self.s.MINIMAL_MOTION_DURATION + self.s.POST_CAPTURE_SECONDS:
            self._finish("motion ended")
            self.buffer.push(frame)  # not part of this clip: it may be pre-alarm of the next one
        elif frame.ts - self._clip_start >= self.s.MAX_CLIP_SECONDS:
            self.sink.close(ev, True, "maximum clip length")
            ev.part += 1
            self._clip_start = frame.ts
            self.sink.open(ev, [frame])
        else:
            self.sink.write(frame)

    def _remember(self, frame, sightings, qr):
        horizon = frame.ts - max(self.s.PRE_ALARM_RECORDING_SECONDS, 1.0)
        self._recent = [r for r in self._recent if r[0] >= horizon]
        self._recent.append((frame.ts, frame, sightings or [], list(qr)))

    def _start(self, frame: Frame, kind: str = "motion"):
        self.events_started += 1
        first = self._run[0][0].ts if self._run else frame.ts
        # a track counts only once it has lived a while: its motion began when it was first seen
        first = min([first] + [r.since for _, r in self._run if r.since is not None])
        ev = Event(
            number=self.events_started,
            trigger_ts=frame.ts,
            first_motion_ts=first,
            last_motion_ts=first,
            kind=kind,
        )
        for f, r in self._run:
            ev.note_motion(f, r)
        self._run.clear()
        frames = self.buffer.drain()
        self._clip_start = frames[0].ts if frames else frame.ts
        # by number: a buffer that keeps times only holds a copy of the frame, not the frame
        if not frames or frames[-1].index != frame.index:
            frames.append(frame)
        for ts, f, sightings, qr in self._recent:  # seen in what is now the pre-alarm part of the clip
            if ts >= self._clip_start:
                if sightings:
                    ev.note_objects(f, sightings)
                ev.qr.extend(qr)
        self._recent.clear()
        self.event = ev
        log.info(
            "event %d triggered by %s (score %.4f, %d boxes)",
            ev.number,
            kind,
            ev.peak_score,
            len(ev.peak_boxes),
        )
        self.sink.open(ev, frames)

    def _finish(self, reason: str):
        ev, self.event = self.event, None
        keep = ev.kind != "motion" or ev.motion_seconds >= self.s.MIN_EVENT_SECONDS
        if not keep:
            self.dropped_events += 1
            log.info(
                "event %d dropped: motion lasted %.2f s, less than MIN_EVENT_SECONDS %.2f",
                ev.number,
                ev.motion_seconds,
                self.s.MIN_EVENT_SECONDS,
            )
        elif self.confirm_required and ev.kind == "motion" and not ev.confirmed:
            keep = False
            self.unconfirmed_events += 1
            log.info(
                "event %d not kept: no moving %s confirmed (OBJECT_CONFIRM = require; %d object tracks)",
                ev.number,
                " or ".join(self.wanted) or "object",
                len(ev.tracks),
            )
        self.sink.close(ev, keep, reason)

    def finish(self, reason: str) -> None:
        """The source ended or was lost, or we were asked to stop: close the open clip."""
        if self.event is not None:
            self._finish(reason)
        self._run.clear()
        self._recent.clear()
        self.buffer.clear()
