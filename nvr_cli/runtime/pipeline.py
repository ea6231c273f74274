"""source -> motion -> events -> sink, with reconnects for live sources."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from nvr_cli.analysis.confirmation import ObjectAnalyser
from nvr_cli.analysis.motion import MotionDetector
from nvr_cli.analysis.object_tracks import ObjectTracker
from nvr_cli.analysis.qr import QrScanner
from nvr_cli.analysis.tracks import MotionTracker
from nvr_cli.config import Settings
from nvr_cli.core.backoff import Backoff
from nvr_cli.core.errors import ConfigError, SourceError
from nvr_cli.core.frames import Frame
from nvr_cli.events.controller import EventController
from nvr_cli.output.sinks import EventLogSink, SourceInfo
from nvr_cli.source.capture import VideoSource, file_start_time
from nvr_cli.source.spec import SourceSpec

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    frames: int = 0  # decoded
    analysed: int = 0  # of which analysed (MAX_ANALYSIS_FPS)
    events: int = 0
    dropped_events: int = 0
    connects: int = 0
    reason: str = ""
    first_ts: Optional[float] = None
    last_ts: Optional[float] = None
    error: str = ""  # a file that could not be read to its end; what came before it still counts
    unconfirmed_events: int = 0  # not kept: OBJECT_CONFIRM = require and no wanted object seen
    frames_detected: int = 0  # frames the object detector looked at
    detect_seconds: float = 0.0


class Observer:
    """What a recorder wants to hear from the pipeline besides events (status, hooks); no-ops here."""

    def connected(self, src: VideoSource, after_outage: Optional[float]) -> None:
        """Frames are flowing; ``after_outage``: seconds the camera was away, None on the first connect."""

    def lost(self, why: str, first_connect: bool) -> None:
        """The camera is lost, or (``first_connect``) could not be opened at all."""

    def frame(self, ts: float, dropped: int, index: Optional[int] = None) -> None:
        """One frame analysed; ``dropped``: frames the source has dropped so far on this connection;
        ``index``: the frame's number on this connection (the ones between were decoded only)."""

    def qr(self, sightings: list) -> None:
        """New QR codes seen."""

    def objects(self, ts: float, detections: list) -> None:
        """The object detector looked at the frame at ``ts`` and saw these wanted objects (maybe none):
        those of confirmed tracks, stationary or not."""


class Pipeline:
    """Runs one source until it ends (files), we are stopped, or reconnects are exhausted (live)."""

    def __init__(
        self,
        settings: Settings,
        spec: SourceSpec,
        sink: EventLogSink,
        *,
        stop: Optional[threading.Event] = None,
        realtime: bool = False,
        on_open: Optional[Callable[[VideoSource], None]] = None,
        on_frame: Optional[Callable[[int], None]] = None,
        observer: Optional[Observer] = None,
    ):
        self.s = settings
        self.spec = spec
        self.sink = sink
        self.stop = stop or threading.Event()
        self.realtime = realtime
        self.on_open = on_open
        self.on_frame = on_frame
        self.observer = observer or Observer()
        self.objects = None  # made on the first open, when the frame size is known
        self.object_tracks = ObjectTracker(settings.objects)
        self.qr = QrScanner(settings.qr) if settings.QR_ENABLED else None
        self.use_objects = bool(settings.OBJECT_MODEL) and settings.OBJECT_CONFIRM != "off"
        if settings.OBJECT_CONFIRM == "require" and not settings.OBJECT_MODEL:
            raise ConfigError("OBJECT_CONFIRM = require needs a model: give --model and --labels")
        self.controller = EventController(
            settings.events,
            sink,
            require_object=self.use_objects and settings.OBJECT_CONFIRM == "require",
            wanted=settings.OBJECT_LABELS_OF_INTEREST,
            qr_starts_events=settings.QR_STARTS_EVENT,
        )
        self.stats = RunStats()
        # the newest analysed frame, for live snapshots: a reference, never a copy (it is not written to)
        self.latest: Optional[Frame] = None

    def _open(self, diagnose: bool) -> VideoSource:
        s = self.s
        # a clip re-encoded from the frames needs every one; otherwise analysis may thin them out
        max_fps = 0.0 if getattr(self.sink, "needs_images", True) else s.MAX_ANALYSIS_FPS
        return VideoSource(
            self.spec,
            rtsp_transport=s.RTSP_TRANSPORT,
            open_timeout=s.OPEN_TIMEOUT_SECS,
            read_timeout=s.READ_TIMEOUT_SECS,
            realtime=self.realtime,
            diagnose_errors=diagnose,
            max_fps=max_fps,
        ).open()

    def run(self) -> RunStats:
        s, spec = self.s, self.spec
        failures, outage_since, why = 0, None, ""
        backoff = Backoff(s.RECONNECT_DELAY_SECS, s.RECONNECT_MAX_DELAY_SECS)
        while not self.stop.is_set():
            try:
                # ask ffmpeg why only once an outage: the reason rarely changes between retries
                src = self._open(diagnose=failures == 0)
            except SourceError as e:
                if not spec.live:
                    raise
                failures += 1
                if failures == 1:
                    why = str(e).split(": ", 1)[-1]
                    if outage_since is None:
                        outage_since = time.monotonic()
                        log.warning("camera %s unavailable: %s; retrying with backoff", spec.display, why)
                        self.observer.lost(why, first_connect=self.stats.connects == 0)
                    else:
                        log.info("reopening %s failed: %s; retrying with backoff", spec.display, why)
                else:
                    log.debug("reconnect attempt %d to %s failed", failures, spec.display)
                if s.RECONNECT_ATTEMPTS and failures >= s.RECONNECT_ATTEMPTS:
                    raise SourceError(f"{spec.display}: {why} (gave up after {failures} attempts)") from None
                self.stop.wait(backoff.next())
                continue
            away = None if outage_since is None else time.monotonic() - outage_since
            if away is not None:
                log.warning("camera %s is back after %.1f s", spec.display, away)
            failures, outage_since = 0, None
            backoff.reset()
            self.stats.connects += 1
            try:
                self._consume(src, away)
            finally:
                src.close()
            if not spec.live:
                if src.truncated:
                    self.stats.error = f"{spec.display}: {src.end_reason}"
                break
            if not self.stop.is_set():
                outage_since = time.monotonic()
                why = src.end_reason or "stream ended"
                log.warning("camera %s lost: %s; reconnecting", spec.display, why)
                self.observer.lost(why, first_connect=False)
        # a sink serves one run: its last clip is finished before the run counts as done
        if not self.sink.shutdown(timeout=600):
            log.error("clips were still being finished after 10 minutes (a hung disk?)")
        self.stats.events = self.sink.kept_events
        self.stats.dropped_events = self.controller.dropped_events
        self.stats.unconfirmed_events = self.controller.unconfirmed_events
        if self.objects:
            self.stats.frames_detected = self.objects.frames_detected
            self.stats.detect_seconds = self.objects.seconds
        return self.stats

    def _clock_offset(self, src: VideoSource, first) -> float:
        """What to add to a frame's ts for wall-clock time: live frames carry the monotonic clock
        (the sink asks the wall clock afresh for each clip); a file played in real time is a camera
        starting now; otherwise a file keeps its own time."""
        if src.spec.live:
            return time.time() - time.monotonic()
        if self.realtime:
            return time.time() - first.ts
        duration = src.frame_count / src.fps if src.fps and src.frame_count else 0.0
        return file_start_time(src.spec.target, duration) - first.ts

    def _consume(self, src: VideoSource, away: Optional[float] = None):
        log.info(
            "opened %s: %dx%d, %.3g fps, codec %s%s",
            src.spec.display,
            src.size[0],
            src.size[1],
            src.fps,
            src.codec or "?",
            f"; analysing every {src.stride} frames" if src.stride > 1 else "",
        )
        if self.on_open:
            self.on_open(src)
        detector = MotionDetector(self.s.motion, src.size)
        tracker = MotionTracker(self.s.tracks) if self.s.MOTION_TRACKING else None
        if self.use_objects and (self.objects is None or self.objects.size != tuple(src.size)):
            self.objects = ObjectAnalyser(
                self.s.objects, src.size, self.objects.detector if self.objects else None
            )
        objects, qr, object_tracks = self.objects, self.qr, self.object_tracks
        controller, observer = self.controller, self.observer
        started = False
        last_index = -1
        for frame in src.frames(self.stop):
            if not started:
                started = True
                offset = self._clock_offset(src, frame)
                if self.stats.first_ts is None:
                    self.stats.first_ts = frame.ts
                self.sink.set_source(SourceInfo(src.spec.display, src.size, src.fps, src.spec.live, offset))
                controller.connected(frame.ts)
                object_tracks.clear()
                observer.connected(src, away)
            result = detector.process(frame.image, frame.ts)
            if tracker is not None:
                tracker.update(frame.ts, result)
            found = objects.process(frame, result) if objects else None
            sightings = object_tracks.update(frame.ts, found) if found is not None else None
            codes = qr.process(frame, result) if qr else ()
            if codes:
                observer.qr(codes)
            controller.step(frame, result, sightings, codes)
            if sightings is not None:
                observer.objects(frame.ts, [x.detection for x in sightings if x.confirmed])
            self.latest = frame
            observer.frame(frame.ts, src.dropped, frame.index)
            self.stats.frames += frame.index - last_index
            self.stats.analysed += 1
            last_index = frame.index
            self.stats.last_ts = frame.ts
            if self.on_frame:
                self.on_frame(frame.index)
        tail = src.decoded - 1 - last_index  # decoded after the last analysed frame
        if last_index >= 0 and tail > 0:
            self.stats.frames += tail
            if not src.spec.live and src.fps:
                self.stats.last_ts += tail / src.fps
        reason = "stopped" if self.stop.is_set() else (src.end_reason or "source ended")
        self.stats.reason = reason
        if src.dropped:
            log.warning("%d frames dropped because analysis fell behind the camera", src.dropped)
        controller.finish(reason)
