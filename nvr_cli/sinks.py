"""What happens to an event's frames: written as clips (record, scan --extract) or only listed (scan)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from . import storage
from .clipwriter import open_writer
from .errors import StorageError
from .events import Event
from .frames import Frame
from .settings import Settings, as_plain

log = logging.getLogger("nvr_cli.sinks")

# settings that shape an event, recorded in every sidecar
EVENT_SETTINGS = ("MOTION_FRAME_WIDTH", "scaleFrameTo", "MOTION_BLUR_SIZE", "MOTION_PIXEL_THRESHOLD",
                  "MOTION_DILATE_ITERATIONS", "MOTION_ERODE_ITERATIONS", "MOTION_MIN_SCORE",
                  "MOTION_MIN_CONTOUR_AREA", "MOTION_TRIGGER_FRAMES", "LIGHTING_REJECT",
                  "MASKS", "REGIONS", "MINIMAL_MOTION_DURATION", "PRE_ALARM_RECORDING_SECONDS",
                  "POST_CAPTURE_SECONDS", "MIN_EVENT_SECONDS", "MAX_CLIP_SECONDS", "OBJECT_MODEL",
                  "OBJECT_CONFIRM", "OBJECT_LABELS_OF_INTEREST", "OBJECT_MIN_SCORE", "QR_ENABLED")


@dataclass
class SourceInfo:
    """What a sink needs to know of the source it records."""

    display: str
    size: tuple
    fps: float
    live: bool
    clock_offset: float = 0.0  # add to a frame's ts to get wall-clock time


@dataclass
class EventRecord:
    """One finished clip (one part of an event), in source time."""

    event: int
    part: int
    start: float
    end: float
    trigger: float
    frames: int
    peak_score: float
    motion_seconds: float
    motion_frames: int
    union_box: Optional[list]
    reason: str
    kept: bool
    clip: Optional[Path] = None
    kind: str = "motion"
    frames_lost: int = 0  # written but not on disk (a write error found after the fact)
    objects: list = field(default_factory=list)  # ObjectSeen, best score first
    qr: list = field(default_factory=list)  # QrSighting

    @property
    def pre_alarm(self) -> float:
        return max(0.0, self.trigger - self.start) if self.part == 1 else 0.0

    def as_dict(self, origin: float = 0.0) -> dict:
        d = {"event": self.event, "part": self.part,
             "start": round(self.start - origin, 3), "end": round(self.end - origin, 3),
             "trigger": round(self.trigger - origin, 3), "duration": round(self.end - self.start, 3),
             "pre_alarm_seconds": round(self.pre_alarm, 3), "frames": self.frames,
             "peak_score": round(self.peak_score, 5), "motion_seconds": round(self.motion_seconds, 3),
             "motion_frames": self.motion_frames, "motion_box": self.union_box, "end_reason": self.reason,
             "kind": self.kind, "labels": [o.label for o in self.objects],
             "objects": [{"label": o.label, "score": round(o.score, 4), "box": [int(v) for v in o.box],
                          "first_seen": round(o.first_seen - origin, 3)} for o in self.objects],
             "qr": [{**q.as_dict(), "seen": round(q.ts - origin, 3)} for q in self.qr]}
        if self.clip:
            d["clip"] = str(self.clip)
        return d


class EventLogSink:
    """Lists events without writing anything: what ``scan`` does by default."""

    needs_images = False  # the pre-alarm buffer need only keep timestamps

    def __init__(self):
        self.source: Optional[SourceInfo] = None
        self.records: list = []
        self._first: Optional[Frame] = None
        self._last: Optional[Frame] = None
        self._count = 0

    def set_source(self, info: SourceInfo):
        self.source = info

    def open(self, event: Event, frames: list):
        self._first, self._count = frames[0], 0
        for f in frames:
            self.write(f)

    def write(self, frame: Frame):
        self._last = frame
        self._count += 1

    def close(self, event: Event, keep: bool, reason: str):
        rec = self._record(event, keep, reason)
        if keep:
            self.records.append(rec)

    def _record(self, event: Event, keep: bool, reason: str) -> EventRecord:
        fps = self.source.fps or 15.0
        # frames the event spans: with MAX_ANALYSIS_FPS not all of them came through here
        frames = self._count if self.needs_images else max(self._count, self._last.index - self._first.index + 1)
        return EventRecord(event=event.number, part=event.part, start=self._first.ts,
                           end=self._last.ts + 1.0 / fps, trigger=event.trigger_ts, frames=frames,
                           peak_score=event.peak_score, motion_seconds=event.motion_seconds,
                           motion_frames=event.motion_frames,
                           union_box=list(event.union_box) if event.union_box else None, reason=reason, kept=keep,
                           kind=event.kind, objects=sorted(event.objects.values(), key=lambda o: -o.score),
                           qr=list(event.qr))


class ClipSink(EventLogSink):
    """Writes each event as an H.264 MP4 with a JSON sidecar and a thumbnail of the peak frame."""

    def __init__(self, settings: Settings, *, ffmpeg: Optional[str], on_clip: Optional[Callable] = None,
                 on_disk_full: Optional[Callable] = None, cutter=None,
                 on_event_start: Optional[Callable] = None, on_event_end: Optional[Callable] = None,
                 packets=None):
        super().__init__()
        self.s = settings
        self.ffmpeg = ffmpeg
        self.on_clip = on_clip
        # (event, planned clip path, wall-clock offset) when an event starts; (record) when each clip
        # (part) ends, kept or not, written or not
        self.on_event_start = on_event_start
        self.on_event_end = on_event_end
        self.on_disk_full = on_disk_full
        self.cutter = cutter  # EventCutter: each kept event is also cut from the continuous segments
        self.packets = packets  # PacketRing: clips are the camera's own packets, written live
        # three ways to a clip: cut later from the continuous segments, the camera's packets copied
        # live, or re-encoded from the decoded frames (the only one that needs them)
        self.cut_only = settings.EVENT_REENCODE is False and cutter is not None
        self.needs_images = not self.cut_only and packets is None
        self.final: Optional[Path] = None
        self.writer = None
        self.part: Optional[Path] = None
        self.failed: Optional[str] = None
        self._fps = 0.0
        self._slots = 0  # output frames written, incl. duplicates that keep file time = source time
        self._t0 = 0.0

    def _clip_fps(self, frames: list) -> float:
        src = self.source
        if not src.live:
            return src.fps or 15.0
        measured = (len(frames) - 1) / (frames[-1].ts - frames[0].ts) if len(frames) > 10 and frames[-1].ts > frames[0].ts else 0
        # a burst of buffered frames right after a connect reads as a faster camera: only a camera
        # sending fewer frames than it claims overrides what it claims
        if src.fps and (not measured or measured > src.fps or (src.fps - measured) / src.fps < 0.25):
            return src.fps
        return measured or src.fps or 15.0

    def open(self, event: Event, frames: list):
        self.failed = None
        self._fps = self._clip_fps(frames)
        self._t0 = frames[0].ts
        self._slots = 0
        self._first, self._count = frames[0], 0
        wall = frames[0].ts + self.source.clock_offset
        try:
            folder = storage.clip_dir(self.s.PATH_FOR_VIDEO, self.s.CAMERA_NAME, wall,
                                      self.s.LOCAL_TIME, self.s.subFolderNameGeneratorFunc)
            storage.make_dirs(folder)
            final = self.final = storage.new_clip_path(folder, self.s.CAMERA_NAME, wall, self.s.LOCAL_TIME)
            self.part = storage.part_path(final)
            if self.packets is not None:
                self.writer = self.packets.open_clip(self.part, wall)
            elif self.needs_images:
                self.writer = open_writer(self.part, self.source.size, self._fps, ffmpeg=self.ffmpeg,
                                          crf=self.s.VIDEO_CRF, preset=self.s.VIDEO_PRESET)
            else:
                self.part = None  # the clip will be cut from the segments instead
        except StorageError as e:
            self._fail(e)
        log.info("recording %s (event %d part %d, %d pre-alarm frames)",
                 self.part.name if self.part else "-", event.number, event.part, len(frames))
        if self.on_event_start and event.part == 1:
            self.on_event_start(event, self.final, frames[0].ts)
        for f in frames:
            self.write(f)

    def _fail(self, e: Exception):
        self.failed = str(e)
        if "no space left" in self.failed.lower() and self.on_disk_full:
            self.on_disk_full()  # the reaper frees space for the next clip
        log.error("%s: this clip stops here, recording carries on", e)
        if self.writer is not None:
            self.writer.abort()
        self.writer = None

    def write(self, frame: Frame):
        super().write(frame)
        if self.writer is None:
            return
        try:
            if self.source.live:
                self.writer.write(frame.image)
                self._slots += 1
                return
            # files: place frames by presentation time, so variable-frame-rate footage keeps its timing
            slot = int((frame.ts - self._t0) * self._fps + 0.5)
            if slot < self._slots:
                return
            fill = min(slot - self._slots, int(self._fps * 2))
            for _ in range(fill):
                self.writer.write(self._prev.image)
            self.writer.write(frame.image)
            self._slots += fill + 1
        except StorageError as e:
            self._fail(e)
        finally:
            self._prev = frame

    def close(self, event: Event, keep: bool, reason: str):
        rec = self._record(event, keep, reason)
        try:
            self._close(event, rec, keep, reason)
        finally:
            if self.on_event_end:
                self.on_event_end(rec)

    def _close(self, event: Event, rec: EventRecord, keep: bool, reason: str):
        part, self.part = self.part, None
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except StorageError as e:
                self.failed = str(e)
                log.error("%s", e)
        if self.cut_only and keep and self.final is not None:
            self._cut_only(event, rec)
            return
        if part is None or not part.exists():
            return
        if not keep:
            part.unlink(missing_ok=True)
            return
        if self.failed:
            # Not complete, so it keeps its .part name (the next start finishes it, as after a
            # crash); a file of which nothing plays is not kept at all.
            if storage.plays(part):
                log.error("clip %s is incomplete (%s): kept as written, it plays up to where writing stopped",
                          part, self.failed)
            else:
                part.unlink(missing_ok=True)
                log.error("nothing of clip %s could be saved (%s)", part.name, self.failed)
            return
        try:
            final, on_disk = storage.finalize(part, self.ffmpeg)
        except OSError as e:
            log.error("cannot finish %s: %s; it stays as %s (playable)", part.name, e.strerror, part.name)
            return
        rec.clip = final
        if self.packets is not None and writer is not None:
            # the clip is what the camera sent from the keyframe at or before the pre-alarm's start
            # (or from the first keyframe after a connect)
            if writer.start_ts is not None:
                rec.start = writer.start_ts - self.source.clock_offset
            rec.frames = on_disk if on_disk is not None else rec.frames
        elif on_disk is not None and on_disk < self._slots:
            # a write error ffmpeg did not report (a disk that filled mid-fragment): say so, never claim it
            self.failed = f"only {on_disk} of {self._slots} frames reached the disk"
            log.error("clip %s: %s", final.name, self.failed)
            rec.frames_lost = self._slots - on_disk
            rec.frames = on_disk
        self._write_sidecar(final, event, rec)
        if self.cutter is not None:
            off = self.source.clock_offset
            self.cutter.submit(rec.start + off, rec.end + off, final.with_name(final.stem + ".lossless.mp4"),
                               final.with_suffix(".json"))
        self.records.append(rec)
        log.info("clip %s: %.1f s, %d frames, %.1f s pre-alarm (%s)",
                 final, rec.end - rec.start, rec.frames, rec.pre_alarm, reason)
        if self.on_clip:
            self.on_clip(rec)

    def _cut_only(self, event: Event, rec: EventRecord):
        """EVENT_REENCODE off: the lossless cut is the clip; sidecar and thumbnail now, the cut when ready."""
        final, off = self.final, self.source.clock_offset
        rec.clip = final
        self._write_sidecar(final, event, rec)
        self.cutter.submit(rec.start + off, rec.end + off, final, final.with_suffix(".json"))
        self.records.append(rec)
        log.info("event %d: %.1f s, clip %s will be cut from the segments", event.number, rec.end - rec.start,
                 final.name)
        if self.on_clip:
            self.on_clip(rec)

    def _write_sidecar(self, final: Path, event: Event, rec: EventRecord):
        off, lt = self.source.clock_offset, self.s.LOCAL_TIME
        thumb = final.with_suffix(".jpg")
        try:
            if event.best_object is not None:  # the best view of what was wanted, else the peak of motion
                frame, dets = event.best_object
                storage.write_thumbnail(thumb, frame.image, [d.box for d in dets],
                                        [f"{d.label} {d.score:.2f}" for d in dets])
            elif event.peak_frame is not None:
                storage.write_thumbnail(thumb, event.peak_frame.image, event.peak_boxes)
            data = {
                "camera": self.s.CAMERA_NAME, "source": self.source.display,
                "clip": None if self.cut_only else final.name,
                "thumbnail": thumb.name if thumb.exists() else None,
                "event": event.number, "part": event.part,
                "start": storage.iso(rec.start + off, lt), "end": storage.iso(rec.end + off, lt),
                "trigger": storage.iso(rec.trigger + off, lt),
                "duration_seconds": round(rec.end - rec.start, 3),
                "pre_alarm_seconds": round(rec.pre_alarm, 3),
                "frames": rec.frames, "frames_lost": rec.frames_lost, "fps": round(self._fps, 3),
                "width": self.source.size[0], "height": self.source.size[1],
                "peak_score": round(event.peak_score, 5),
                "motion": {"frames": event.motion_frames, "seconds": round(event.motion_seconds, 3),
                           "box": rec.union_box, "peak_boxes": [list(b) for b in event.peak_boxes]},
                "kind": event.kind, "labels": [o.label for o in rec.objects],
                "objects": [{"label": o.label, "score": round(o.score, 4), "box": [int(v) for v in o.box],
                             "first_seen": storage.iso(o.first_seen + off, lt)} for o in rec.objects],
                "qr": [{**q.as_dict(), "seen": storage.iso(q.ts + off, lt)} for q in rec.qr],
                "end_reason": rec.reason, "error": self.failed,
                "encoding": "re-encoded" if self.needs_images else "camera's own (stream copy)",
                **({"lossless": {"status": "pending"}} if self.cutter is not None else {}),
                "settings": {k: as_plain(getattr(self.s, k)) for k in EVENT_SETTINGS},
            }
            storage.write_json(final.with_suffix(".json"), data)
        except StorageError as e:
            log.error("%s (the clip itself is complete)", e)
