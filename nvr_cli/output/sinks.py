"""What happens to an event's frames: written as clips (record, scan --extract) or only listed (scan)."""
from __future__ import annotations

import collections
import copy
import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import nvr_cli.storage.paths as storage
from nvr_cli.output.encoders import open_writer
from nvr_cli.core.errors import StorageError
from nvr_cli.events.controller import Event
from nvr_cli.core.frames import Frame
from nvr_cli.config import Settings, as_plain
from nvr_cli.core.supervised import Supervised

log = logging.getLogger(__name__)

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
    clock_offset: float = 0.0  # add to a frame's ts to get wall-clock time (files; live: see wall_offset)

    def wall_offset(self) -> float:
        """What to add to a frame's ts for wall-clock time now. Live frames carry the monotonic
        clock, which an NTP step does not move: the wall clock is asked afresh for each clip, so it
        only names things and never stretches or cuts one."""
        return time.time() - time.monotonic() if self.live else self.clock_offset


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
    clock_offset: float = 0.0  # add to start/end/trigger for wall-clock time
    live: bool = False  # times are the monotonic clock's (a camera), not the file's

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
        self.kept_events = 0  # events with at least their first part kept
        self.clips_written = 0
        self._first: Optional[Frame] = None
        self._last: Optional[Frame] = None
        self._count = 0

    def set_source(self, info: SourceInfo):
        self.source = info

    def drain(self, timeout: Optional[float] = None) -> bool:
        """Wait until every closed clip is finished (nothing runs in the background here)."""
        return True

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        return True

    def _keep(self, rec: "EventRecord"):
        self.records.append(rec)
        self.kept_events += rec.part == 1
        self.clips_written += 1

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
            self._keep(rec)

    def _record(self, event: Event, keep: bool, reason: str) -> EventRecord:
        fps = self.source.fps or 15.0
        # frames the event spans: with MAX_ANALYSIS_FPS not all of them came through here
        frames = self._count if self.needs_images else max(self._count, self._last.index - self._first.index + 1)
        return EventRecord(event=event.number, part=event.part, start=self._first.ts,
                           end=self._last.ts + 1.0 / fps, trigger=event.trigger_ts, frames=frames,
                           peak_score=event.peak_score, motion_seconds=event.motion_seconds,
                           motion_frames=event.motion_frames,
                           union_box=list(event.union_box) if event.union_box else None, reason=reason, kept=keep,
                           kind=event.kind,
                           # copies: a long event's next part goes on updating its own
                           objects=[dataclasses.replace(o) for o in sorted(event.objects.values(),
                                                                            key=lambda o: -o.score)],
                           qr=list(event.qr))


@dataclass
class _Clip:
    """One clip's state, from open to finished: handed to the finisher when the event closes it."""

    final: Optional[Path] = None
    part: Optional[Path] = None
    writer: object = None
    failed: Optional[str] = None
    fps: float = 0.0
    slots: int = 0  # output frames written, incl. duplicates that keep file time = source time
    t0: float = 0.0
    offset: float = 0.0  # wall-clock offset of this clip's frame times


class ClipSink(EventLogSink):
    """Writes each event as an H.264 MP4 with a JSON sidecar and a thumbnail of the peak frame.

    Frames go to the clip's writer on the analysis thread; everything after an event's last frame
    (closing the writer, the remux, sidecar, thumbnail, callbacks) runs on a finisher thread, so
    finishing a long clip never makes the analysis fall behind a live camera."""

    MAX_RECORDS = 200  # live: the latest records only (counters count them all)

    def __init__(self, settings: Settings, *, ffmpeg: Optional[str], on_clip: Optional[Callable] = None,
                 on_disk_full: Optional[Callable] = None, cutter=None,
                 on_event_start: Optional[Callable] = None, on_event_end: Optional[Callable] = None,
                 packets=None, on_fatal: Optional[Callable[[str], None]] = None):
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
        self.clip = _Clip()
        self._prev: Optional[Frame] = None
        self._jobs: queue.Queue = queue.Queue(maxsize=16)  # a stuck disk blocks here, not in memory
        self._busy = 0  # jobs queued or running
        self._idle = threading.Condition()
        self._stop = threading.Event()
        self._finisher = Supervised("clip finisher", self._finish_loop, self._stop, on_fatal=on_fatal).start()

    def set_source(self, info: SourceInfo):
        super().set_source(info)
        if info.live and not isinstance(self.records, collections.deque):
            self.records = collections.deque(self.records, maxlen=self.MAX_RECORDS)

    @property
    def clock_offset(self) -> float:
        """What to add to a frame time for the wall clock, now."""
        return self.source.wall_offset() if self.source else 0.0

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
        c = self.clip = _Clip(fps=self._clip_fps(frames), t0=frames[0].ts, offset=self.source.wall_offset())
        self._first, self._count = frames[0], 0
        wall = frames[0].ts + c.offset
        try:
            folder = storage.clip_dir(self.s.PATH_FOR_VIDEO, self.s.CAMERA_NAME, wall,
                                      self.s.LOCAL_TIME, self.s.subFolderNameGeneratorFunc)
            storage.make_dirs(folder)
            c.final = storage.new_clip_path(folder, self.s.CAMERA_NAME, wall, self.s.LOCAL_TIME)
            c.part = storage.part_path(c.final)
            if self.packets is not None:
                c.writer = self.packets.open_clip(c.part, frames[0].ts)
            elif self.needs_images:
                c.writer = open_writer(c.part, self.source.size, c.fps, ffmpeg=self.ffmpeg,
                                       crf=self.s.VIDEO_CRF, preset=self.s.VIDEO_PRESET)
            else:
                c.part = None  # the clip will be cut from the segments instead
        except StorageError as e:
            self._fail(e)
        log.info("recording %s (event %d part %d, %d pre-alarm frames)",
                 c.part.name if c.part else "-", event.number, event.part, len(frames))
        if self.on_event_start and event.part == 1:
            # through the finisher's queue: an event's start is told after the previous one's end
            self._submit(self.on_event_start, copy.copy(event), c.final, frames[0].ts, c.offset)
        for f in frames:
            self.write(f)

    def _fail(self, e: Exception):
        c = self.clip
        c.failed = str(e)
        if "no space left" in c.failed.lower() and self.on_disk_full:
            self.on_disk_full()  # the reaper frees space for the next clip
        log.error("%s: this clip stops here, recording carries on", e)
        if c.writer is not None:
            if hasattr(c.writer, "end_input"):
                c.writer.end_input()
            self._submit(c.writer.abort)  # a writer stuck on a hung disk must not stall the analysis
        c.writer = None

    def write(self, frame: Frame):
        super().write(frame)
        c = self.clip
        if c.writer is None:
            return
        try:
            if self.source.live:
                c.writer.write(frame.image)
                c.slots += 1
                return
            # files: place frames by presentation time, so variable-frame-rate footage keeps its timing
            slot = int((frame.ts - c.t0) * c.fps + 0.5)
            if slot < c.slots:
                return
            fill = min(slot - c.slots, int(c.fps * 2))
            for _ in range(fill):
                c.writer.write(self._prev.image)
            c.writer.write(frame.image)
            c.slots += fill + 1
        except StorageError as e:
            self._fail(e)
        finally:
            self._prev = frame

    def close(self, event: Event, keep: bool, reason: str):
        """The event's last frame of this clip: the rest is the finisher's work."""
        rec = self._record(event, keep, reason)
        rec.clock_offset, rec.live = self.clip.offset, self.source.live
        # the controller goes on with the same Event (the next part of a long one): keep this part's view
        snap = copy.copy(event)
        snap.peak_boxes = list(event.peak_boxes)
        clip, self.clip = self.clip, _Clip()
        if hasattr(clip.writer, "end_input"):
            clip.writer.end_input()  # a packet clip takes no more packets from now on
        self._submit(self._finish, clip, snap, rec, keep, reason)

    def _submit(self, fn, *args):
        """Run ``fn(*args)`` on the finisher, in order."""
        with self._idle:
            self._busy += 1
        self._jobs.put((fn, args))

    def drain(self, timeout: Optional[float] = None) -> bool:
        """Wait until every closed clip is finished; then the finisher ends (at the end of a run)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left if left is not None else 1.0)
        return True

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Finish every closed clip, then end the finisher (once; later calls only wait)."""
        done = self.drain(timeout)
        if not self._stop.is_set():
            self._stop.set()
            try:
                self._jobs.put_nowait(None)
            except queue.Full:  # a finisher stuck on a hung disk: it is a daemon, left behind
                pass
        return done

    def _finish_loop(self):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args = job
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001 - one clip's failure must not stop the next ones
                log.error("%s failed: %s: %s", getattr(fn, "__qualname__", fn), type(e).__name__, e, exc_info=True)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _finish(self, clip: _Clip, event: Event, rec: EventRecord, keep: bool, reason: str):
        try:
            self._close(clip, event, rec, keep, reason)
        finally:
            if self.on_event_end:
                self.on_event_end(rec)

    def _close(self, c: _Clip, event: Event, rec: EventRecord, keep: bool, reason: str):
        part, writer = c.part, c.writer
        if writer is not None:
            try:
                writer.close()
            except StorageError as e:
                c.failed = str(e)
                log.error("%s", e)
        if self.cut_only and keep and c.final is not None:
            self._cut_only(c, event, rec)
            return
        if part is None or not part.exists():
            return
        if not keep:
            part.unlink(missing_ok=True)
            return
        if c.failed:
            # Not complete, so it keeps its .part name (the next start finishes it, as after a
            # crash); a file of which nothing plays is not kept at all.
            if storage.plays(part):
                log.error("clip %s is incomplete (%s): kept as written, it plays up to where writing stopped",
                          part, c.failed)
            else:
                part.unlink(missing_ok=True)
                log.error("nothing of clip %s could be saved (%s)", part.name, c.failed)
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
                rec.start = writer.start_ts
            rec.frames = on_disk if on_disk is not None else rec.frames
            if on_disk and c.fps:  # it holds what the camera sent until the event's end reached it
                rec.end = rec.start + on_disk / c.fps
        elif on_disk is not None and on_disk < c.slots:
            # a write error ffmpeg did not report (a disk that filled mid-fragment): say so, never claim it
            c.failed = f"only {on_disk} of {c.slots} frames reached the disk"
            log.error("clip %s: %s", final.name, c.failed)
            rec.frames_lost = c.slots - on_disk
            rec.frames = on_disk
        self._write_sidecar(c, final, event, rec)
        if self.cutter is not None:
            off = c.offset
            self.cutter.submit(rec.start + off, rec.end + off, final.with_name(final.stem + ".lossless.mp4"),
                               final.with_suffix(".json"))
        self._keep(rec)
        log.info("clip %s: %.1f s, %d frames, %.1f s pre-alarm (%s)",
                 final, rec.end - rec.start, rec.frames, rec.pre_alarm, reason)
        if self.on_clip:
            self.on_clip(rec)

    def _cut_only(self, c: _Clip, event: Event, rec: EventRecord):
        """EVENT_REENCODE off: the lossless cut is the clip; sidecar and thumbnail now, the cut when ready."""
        final, off = c.final, c.offset
        rec.clip = final
        self._write_sidecar(c, final, event, rec)
        self.cutter.submit(rec.start + off, rec.end + off, final, final.with_suffix(".json"))
        self._keep(rec)
        log.info("event %d: %.1f s, clip %s will be cut from the segments", event.number, rec.end - rec.start,
                 final.name)
        if self.on_clip:
            self.on_clip(rec)

    def _write_sidecar(self, c: _Clip, final: Path, event: Event, rec: EventRecord):
        off, lt = c.offset, self.s.LOCAL_TIME
        thumb = final.with_suffix(".jpg")
        try:
            if event.best_object is not None:  # the best view of what was wanted, else the peak of motion
                frame, dets = event.best_object
                storage.write_thumbnail(thumb, frame.image, [d.box for d in dets],
                                        [f"{d.label} {d.score:.2f}" for d in dets])
            elif event.peak_frame is not None and event.peak_frame.image is not None:
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
                "frames": rec.frames, "frames_lost": rec.frames_lost, "fps": round(c.fps, 3),
                "width": self.source.size[0], "height": self.source.size[1],
                "peak_score": round(event.peak_score, 5),
                "motion": {"frames": event.motion_frames, "seconds": round(event.motion_seconds, 3),
                           "box": rec.union_box, "peak_boxes": [list(b) for b in event.peak_boxes]},
                "kind": event.kind, "labels": [o.label for o in rec.objects],
                "objects": [{"label": o.label, "score": round(o.score, 4), "box": [int(v) for v in o.box],
                             "first_seen": storage.iso(o.first_seen + off, lt)} for o in rec.objects],
                "qr": [{**q.as_dict(), "seen": storage.iso(q.ts + off, lt)} for q in rec.qr],
                "end_reason": rec.reason, "error": c.failed,
                "encoding": "re-encoded" if self.needs_images else "camera's own (stream copy)",
                **({"lossless": {"status": "pending"}} if self.cutter is not None else {}),
                "settings": {k: as_plain(getattr(self.s, k)) for k in EVENT_SETTINGS},
            }
            storage.write_json(final.with_suffix(".json"), data)
        except StorageError as e:
            log.error("%s (the clip itself is complete)", e)
