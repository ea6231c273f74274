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
from nvr_cli.config import OutputSettings, Settings, as_plain
from nvr_cli.core.errors import StorageError
from nvr_cli.core.frames import Frame
from nvr_cli.core.supervised import Supervised
from nvr_cli.events.controller import Event
from nvr_cli.output.clip_writers import ClipState, ClipWriter, choose_clip_writer
from nvr_cli.output.event_cut import EventCutter
from nvr_cli.source.packets import PacketRing

log = logging.getLogger(__name__)

# settings that shape an event, recorded in every sidecar
SIDECAR_SETTINGS = (
    "MOTION_FRAME_WIDTH",
    "scaleFrameTo",
    "MOTION_BLUR_SIZE",
    "MOTION_PIXEL_THRESHOLD",
    "MOTION_DILATE_ITERATIONS",
    "MOTION_ERODE_ITERATIONS",
    "MOTION_MIN_SCORE",
    "MOTION_MIN_CONTOUR_AREA",
    "MOTION_TRIGGER_FRAMES",
    "LIGHTING_REJECT",
    "MASKS",
    "REGIONS",
    "MINIMAL_MOTION_DURATION",
    "PRE_ALARM_RECORDING_SECONDS",
    "POST_CAPTURE_SECONDS",
    "MIN_EVENT_SECONDS",
    "MAX_CLIP_SECONDS",
    "OBJECT_MODEL",
    "OBJECT_CONFIRM",
    "OBJECT_LABELS_OF_INTEREST",
    "OBJECT_MIN_SCORE",
    "OBJECT_CONFIRM_DETECTIONS",
    "OBJECT_CONFIRM_SCORE",
    "QR_ENABLED",
)


def sidecar_settings(s: Settings) -> dict:
    """The settings that shaped a camera's events, as its sidecars record them."""
    return {k: as_plain(getattr(s, k)) for k in SIDECAR_SETTINGS}


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
    """One clip (one part of an event), in source time; at the event's start, what is known then
    (``end``, ``frames``, ``reason`` and ``kept`` are None until the clip ends)."""

    event: int
    part: int
    start: float
    end: Optional[float]
    trigger: float
    frames: Optional[int]
    peak_score: float
    motion_seconds: float
    motion_frames: int
    union_box: Optional[list]
    reason: Optional[str]
    kept: Optional[bool]
    clip: Optional[Path] = None
    kind: str = "motion"
    frames_lost: int = 0  # written but not on disk (a write error found after the fact)
    objects: list = field(default_factory=list)  # ObjectSeen, best score first
    tracks: list = field(default_factory=list)  # TrackSummary, in the order they were first seen
    qr: list = field(default_factory=list)  # QrSighting
    clock_offset: float = 0.0  # add to start/end/trigger for wall-clock time
    live: bool = False  # times are the monotonic clock's (a camera), not the file's
    peak_boxes: list = field(default_factory=list)  # the motion boxes of the peak frame
    motion_start: Optional[float] = None  # when its motion was first seen (None: the trigger)

    @property
    def pre_alarm(self) -> float:
        return max(0.0, self.trigger - self.start) if self.part == 1 else 0.0

    def as_dict(self, origin: float = 0.0, *, local_time: Optional[bool] = None) -> dict:
        """The event's fields, under the one set of names that sidecars, hooks, ``scan --json`` and
        ``record --json`` share (README: "Event fields").

        Times (start, end, trigger, motion_start, an object's first_seen, a track's times, a QR code's
        seen) are ISO 8601 wall-clock times when ``local_time`` is given (True: local, False: UTC),
        else seconds less ``origin``."""

        def when(ts: Optional[float]):
            if ts is None:
                return None
            if local_time is not None:
                return storage.iso(ts + self.clock_offset, local_time)
            return round(ts - origin, 3)

        duration = round(self.end - self.start, 3) if self.end is not None else None
        peak_score = round(self.peak_score, 5)
        return {
            "event": self.event,
            "part": self.part,
            "kind": self.kind,
            "kept": self.kept,
            "start": when(self.start),
            "end": when(self.end),
            "trigger": when(self.trigger),
            "motion_start": when(self.trigger if self.motion_start is None else self.motion_start),
            "duration_seconds": duration,
            "pre_alarm_seconds": round(self.pre_alarm, 3),
            "frames": self.frames,
            "frames_lost": self.frames_lost,
            "peak_score": peak_score,
            "motion_seconds": round(self.motion_seconds, 3),
            "motion_frames": self.motion_frames,
            "motion_box": self.union_box,
            "peak_boxes": [[int(v) for v in b] for b in self.peak_boxes],
            "end_reason": self.reason,
            "labels": [o.label for o in self.objects],
            "objects": [
                {
                    "label": o.label,
                    "score": round(o.score, 4),
                    "box": [int(v) for v in o.box],
                    "first_seen": when(o.first_seen),
                }
                for o in self.objects
            ],
            "tracks": [
                {
                    "label": t.label,
                    "median_score": round(t.median_score, 4),
                    "best_score": round(t.best_score, 4),
                    "detections": t.detections,
                    "first_seen": when(t.first_seen),
                    "last_seen": when(t.last_seen),
                    "confirmed": t.confirmed,
                    "stationary": t.stationary,
                    "path": [[when(p[0]), *(int(v) for v in p[1:])] for p in t.path],
                }
                for t in self.tracks
            ],
            "qr": [{**q.as_dict(), "seen": when(q.ts)} for q in self.qr],
            "clip": str(self.clip) if self.clip else None,
            # older names, which the README promised before these: same values
            "duration": duration,
            "score": peak_score,
        }


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

    def set_source(self, info: SourceInfo) -> None:
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

    def open(self, event: Event, frames: list) -> None:
        self._first, self._count = frames[0], 0
        for f in frames:
            self.write(f)

    def write(self, frame: Frame) -> None:
        self._last = frame
        self._count += 1

    def close(self, event: Event, keep: bool, reason: str) -> None:
        rec = self._record(event, keep, reason)
        if keep:
            self._keep(rec)

    def _record(
        self, event: Event, keep: Optional[bool], reason: Optional[str], *, started: bool = False
    ) -> EventRecord:
        """The event as it is now: at its end (``started``: at its start, before its end is known)."""
        fps = self.source.fps or 15.0
        end = frames = None
        if not started:
            end = self._last.ts + 1.0 / fps
            # frames the event spans: with MAX_ANALYSIS_FPS not all of them came through here
            frames = (
                self._count
                if self.needs_images
                else max(self._count, self._last.index - self._first.index + 1)
            )
        return EventRecord(
            event=event.number,
            part=event.part,
            start=self._first.ts,
            end=end,
            trigger=event.trigger_ts,
            frames=frames,
            peak_score=event.peak_score,
            motion_seconds=event.motion_seconds,
            motion_frames=event.motion_frames,
            union_box=list(event.union_box) if event.union_box else None,
            reason=reason,
            kept=keep,
            kind=event.kind,
            # copies: a long event's next part goes on updating its own
            objects=[dataclasses.replace(o) for o in sorted(event.objects.values(), key=lambda o: -o.score)],
            tracks=[t.summary() for t in event.tracks.values()],
            qr=list(event.qr),
            peak_boxes=list(event.peak_boxes),
            motion_start=event.first_motion_ts,
        )


class ClipSink(EventLogSink):
    """Writes each event as an MP4 with a JSON sidecar and a thumbnail of the peak frame.

    How the clip is made (re-encoded frames, the camera's packets, or cut from the continuous
    segments) is one ClipWriter, chosen here once from what the recorder set up.
    Frames go to the clip's writer on the analysis thread; everything after an event's last frame
    (closing the writer, the remux, sidecar, thumbnail, callbacks) runs on a finisher thread, so
    finishing a long clip never makes the analysis fall behind a live camera."""

    MAX_RECORDS = 200  # live: the latest records only (counters count them all)

    def __init__(
        self,
        settings: OutputSettings,
        *,
        camera: str,
        ffmpeg: Optional[str],
        reencode: Optional[bool] = None,
        shaped_by: Optional[dict] = None,
        on_clip: Optional[Callable] = None,
        on_disk_full: Optional[Callable] = None,
        cutter: Optional[EventCutter] = None,
        on_event_start: Optional[Callable] = None,
        on_event_end: Optional[Callable] = None,
        packets: Optional[PacketRing] = None,
        on_fatal: Optional[Callable[[str], None]] = None,
        on_motion: Optional[Callable[[Event, bool], None]] = None,
    ):
        """``settings``: where clips go and how they are encoded; ``reencode``: EVENT_REENCODE (with a
        ``cutter``, False makes the cut the clip); ``shaped_by``: the settings each sidecar records
        (``sidecar_settings(settings)``)."""
        super().__init__()
        self.s = settings
        self.camera = camera
        self.shaped_by = dict(shaped_by or {})
        self.ffmpeg = ffmpeg
        self.on_clip = on_clip
        # (record, with the planned clip path) when an event starts; (record) when each clip
        # (part) ends, kept or not, written or not
        self.on_event_start = on_event_start
        self.on_event_end = on_event_end
        # (event, True) as an event opens, (event, False) as its last clip closes: on the analysis
        # thread, at once (the others wait their turn on the finisher), so it must be quick
        self.on_motion = on_motion
        self.on_disk_full = on_disk_full
        # cutter (EventCutter): kept events are also cut from the continuous segments;
        # packets (PacketRing): clips can be the camera's own packets, written live
        self.writer: ClipWriter = choose_clip_writer(
            settings, reencode=reencode, ffmpeg=ffmpeg, cutter=cutter, packets=packets
        )
        self.needs_images = self.writer.needs_images
        self.clip = ClipState()
        self._jobs: queue.Queue = queue.Queue(maxsize=16)  # a stuck disk blocks here, not in memory
        self._busy = 0  # jobs queued or running
        self._idle = threading.Condition()
        self._stop = threading.Event()
        self._finisher = Supervised("clip finisher", self._finish_loop, self._stop, on_fatal=on_fatal).start()

    @classmethod
    def for_camera(cls, s: Settings, **kwargs: object) -> "ClipSink":
        """A sink for one camera's settings: it is handed its own slices of them."""
        return cls(
            s.output, camera=s.CAMERA_NAME, reencode=s.EVENT_REENCODE, shaped_by=sidecar_settings(s), **kwargs
        )

    def set_source(self, info: SourceInfo) -> None:
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
        measured = (
            (len(frames) - 1) / (frames[-1].ts - frames[0].ts)
            if len(frames) > 10 and frames[-1].ts > frames[0].ts
            else 0
        )
        # a burst of buffered frames right after a connect reads as a faster camera: only a camera
        # sending fewer frames than it claims overrides what it claims
        if src.fps and (not measured or measured > src.fps or (src.fps - measured) / src.fps < 0.25):
            return src.fps
        return measured or src.fps or 15.0

    def open(self, event: Event, frames: list) -> None:
        c = self.clip = ClipState(
            fps=self._clip_fps(frames), t0=frames[0].ts, offset=self.source.wall_offset()
        )
        self._first, self._count = frames[0], 0
        wall = frames[0].ts + c.offset
        try:
            folder = storage.clip_dir(
                self.s.PATH_FOR_VIDEO, self.camera, wall, self.s.LOCAL_TIME, self.s.subFolderNameGeneratorFunc
            )
            storage.make_dirs(folder)
            c.final = storage.new_clip_path(folder, self.camera, wall, self.s.LOCAL_TIME)
            c.part = storage.part_path(c.final)
            self.writer.open(c, self.source.size, frames[0].ts)
        except StorageError as e:
            self._fail(e)
        log.info(
            "recording %s (event %d part %d, %d pre-alarm frames)",
            c.part.name if c.part else "-",
            event.number,
            event.part,
            len(frames),
        )
        if self.on_motion and event.part == 1:
            self.on_motion(event, True)
        if self.on_event_start and event.part == 1:
            rec = self.record_now(event)
            # through the finisher's queue: an event's start is told after the previous one's end
            self._submit(self.on_event_start, rec)
        for f in frames:
            self.write(f)

    def record_now(self, event: Event) -> EventRecord:
        """The open event as known so far (its end still unknown), with its clip's planned path."""
        rec = self._record(event, None, None, started=True)
        rec.clip, rec.clock_offset, rec.live = self.clip.final, self.clip.offset, self.source.live
        return rec

    def later(self, fn: Callable, *args: object) -> bool:
        """Run ``fn(*args)`` on the finisher after what is queued there; False (not run) if its queue
        is full (a hung disk): for news that may be dropped, never for a clip."""
        with self._idle:
            if self._jobs.full():
                return False
            self._busy += 1
        self._jobs.put((fn, args))  # only the analysis thread adds jobs: the room checked is still there
        return True

    def _fail(self, e: Exception):
        c = self.clip
        c.failed = str(e)
        if "no space left" in c.failed.lower() and self.on_disk_full:
            self.on_disk_full()  # the reaper frees space for the next clip
        log.error("%s: this clip stops here, recording carries on", e)
        if c.writer is not None:
            self.writer.end_input(c)
            self._submit(c.writer.abort)  # a writer stuck on a hung disk must not stall the analysis
        c.writer = None

    def write(self, frame: Frame) -> None:
        super().write(frame)
        c = self.clip
        if c.writer is None:
            return
        try:
            self.writer.write(c, frame, self.source.live)
        except StorageError as e:
            self._fail(e)

    def close(self, event: Event, keep: bool, reason: str) -> None:
        """The event's last frame of this clip: the rest is the finisher's work."""
        rec = self._record(event, keep, reason)
        rec.clock_offset, rec.live = self.clip.offset, self.source.live
        # the controller goes on with the same Event (the next part of a long one): keep this part's view
        snap = copy.copy(event)
        snap.peak_boxes = list(event.peak_boxes)
        clip, self.clip = self.clip, ClipState()
        self.writer.end_input(clip)
        if self.on_motion and reason != "maximum clip length":
            self.on_motion(event, False)
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
                log.error(
                    "%s failed: %s: %s", getattr(fn, "__qualname__", fn), type(e).__name__, e, exc_info=True
                )
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _finish(self, clip: ClipState, event: Event, rec: EventRecord, keep: bool, reason: str):
        try:
            self._close(clip, event, rec, keep, reason)
        finally:
            if self.on_event_end:
                self.on_event_end(rec)

    def _close(self, c: ClipState, event: Event, rec: EventRecord, keep: bool, reason: str):
        final = self.writer.finish(c, rec, keep)
        if final is None:
            rec.kept = False  # nothing kept under a final name (dropped, or failed: a .part at most)
            return
        rec.clip = final
        self._write_sidecar(c, final, event, rec)
        self.writer.submit_cut(c, final, rec)
        self._keep(rec)
        self.writer.log_finished(final, rec, reason)
        if self.on_clip:
            self.on_clip(rec)

    def _write_sidecar(self, c: ClipState, final: Path, event: Event, rec: EventRecord):
        thumb = final.with_suffix(".jpg")
        try:
            if event.best_object is not None:  # the best view of what was wanted, else the peak of motion
                frame, dets = event.best_object
                storage.write_thumbnail(
                    thumb, frame.image, [d.box for d in dets], [f"{d.label} {d.score:.2f}" for d in dets]
                )
            elif event.peak_frame is not None and event.peak_frame.image is not None:
                storage.write_thumbnail(thumb, event.peak_frame.image, event.peak_boxes)
            data = {
                "camera": self.camera,
                "source": self.source.display,
                **rec.as_dict(local_time=self.s.LOCAL_TIME),
                # the files beside this one, by name: the folder can move
                "clip": self.writer.sidecar_clip(final),
                "thumbnail": thumb.name if thumb.exists() else None,
                "fps": round(c.fps, 3),
                "width": self.source.size[0],
                "height": self.source.size[1],
                "error": c.failed,
                "encoding": self.writer.encoding,
                **({"lossless": {"status": "pending"}} if self.writer.cutter is not None else {}),
                "settings": self.shaped_by,
            }
            storage.write_json(final.with_suffix(".json"), data)
        except StorageError as e:
            log.error("%s (the clip itself is complete)", e)
