"""One camera, from its settings to clips, segments, status file and hooks, until stopped.

What ``nvr-cli record`` and each worker of ``nvr-cli run`` do; the CLI only parses and calls.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import nvr_cli.storage.paths as storage
from nvr_cli.config import Settings
from nvr_cli.core.errors import ConfigError, NvrError, SourceError
from nvr_cli.core.supervised import Supervised
from nvr_cli.ffmpeg.binary import find_ffmpeg
from nvr_cli.output.sinks import ClipSink, EventRecord
from nvr_cli.runtime.hooks import HookRunner
from nvr_cli.runtime.live_tap import LiveTap, OnDemandPackets
from nvr_cli.runtime.pipeline import Observer, Pipeline, RunStats
from nvr_cli.runtime.status import (
    CameraStatus,
    StatusWriter,
    kept_events_today,
    live_socket_path,
    status_path,
)
from nvr_cli.source.capture import VideoSource
from nvr_cli.source.packets import PacketRing, ts_unsupported
from nvr_cli.source.spec import SourceSpec, parse_source
from nvr_cli.storage.retention import Reaper

ENV_SHARED_REAPER = "NVR_CLI_SHARED_REAPER"  # set by `run`: it reaps each storage root once for all workers

log = logging.getLogger(__name__)


class _Watch(Observer):
    """Pipeline news -> status counters and camera hooks."""

    def __init__(self, rec: "Recorder"):
        self.rec = rec
        self.qr_news = False

    def connected(self, src: VideoSource, after_outage):
        st = self.rec.status
        st.source_fps = src.fps
        st.set_state("connected")
        if self.rec.mqtt:
            self.rec.mqtt.camera_up()
        if after_outage is not None:
            self.rec.hooks.fire(
                "camera_found", {"source": src.spec.display, "away_seconds": round(after_outage, 3)}
            )

    def lost(self, why: str, first_connect: bool):
        self.rec.status.set_state("connecting" if first_connect else "lost", error=why)
        self.rec.status.event_ended()
        if self.rec.mqtt:
            self.rec.mqtt.camera_down()
        self.rec.hooks.fire(
            "camera_lost",
            {
                "source": self.rec.spec.display,
                "reason": why,
                "never_connected": first_connect,
                "time": storage.iso(time.time(), self.rec.s.LOCAL_TIME),
            },
        )

    def frame(self, ts: float, dropped: int, index: Optional[int] = None):
        self.rec.status.frame(ts, dropped, index)
        if self.qr_news:
            self.qr_news = False
            self._news()

    def qr(self, sightings: list):
        s, rec = self.rec.s, self.rec
        off = rec.sink.clock_offset if rec.sink else 0.0
        for q in sightings:
            rec.hooks.fire(
                "qr_code",
                {
                    "payload": q.payload,
                    "box": [int(v) for v in q.box],
                    "time": storage.iso(q.ts + off, s.LOCAL_TIME),
                    "event": rec.status.event["event"] if rec.status.event else None,
                },
            )
            if rec.mqtt:
                rec.mqtt.qr(q.payload)
                self.qr_news = True  # told after the frame's step, which adds the codes to the event

    def objects(self, ts: float, detections: list):
        if self.rec.mqtt:
            self.rec.mqtt.objects(detections)
            self._news()

    def _news(self):
        """An open event saw something new (a label, a QR code): an MQTT update, made on the finisher."""
        rec = self.rec
        ev = rec.pipeline.controller.event if rec.pipeline else None
        if rec.mqtt is None or ev is None or rec.sink is None or not rec.mqtt.news_due(ev):
            return
        info = rec._event_payload(rec.sink.record_now(ev), rec.sink.clip.final)
        view = None
        if ev.best_object is not None:
            frame, dets = ev.best_object
            view = (frame.image, [d.box for d in dets], [f"{d.label} {d.score:.2f}" for d in dets])
        rec.sink.later(rec.mqtt.event_update, info, view)


class Recorder:
    """Records one camera as its settings say: events, continuous segments or both."""

    def __init__(
        self,
        s: Settings,
        *,
        stop: Optional[threading.Event] = None,
        realtime: bool = False,
        on_clip: Optional[Callable[[EventRecord], None]] = None,
        parent_pid: Optional[int] = None,
    ):
        if not (s.cam or (s.DETECT_SOURCE and s.RECORD_SOURCE)):
            raise ConfigError("no source: give SOURCE or set `cam` in the config")
        if not s.MOTION_DETECTION and not s.CONTINUOUS_RECORDING:
            raise ConfigError("--no-motion without --continuous: nothing to record")
        self.s = s
        self.stop = stop or threading.Event()
        self.realtime = realtime
        self.on_clip = on_clip
        self.parent_pid = parent_pid  # a worker of `run`: stop when that process is gone
        self.spec: SourceSpec = parse_source(s.DETECT_SOURCE or s.cam)
        self.record_spec = parse_source(s.RECORD_SOURCE or s.cam) if s.CONTINUOUS_RECORDING else None
        self.hooks = HookRunner(s.hooks, s.CAMERA_NAME)
        # continuous only: the recorded stream is the camera; otherwise the analysed one
        self.status = CameraStatus(s, (self.spec if s.MOTION_DETECTION else self.record_spec).display)
        self.segmenter = None
        self.ring = None  # the packet buffer of clips made from the camera's packets
        self.pipeline: Optional[Pipeline] = None
        self.live: Optional[LiveTap] = None
        self._live_lock = threading.Lock()  # the segmenter may move live view's source as it starts
        self.sink: Optional[ClipSink] = None
        self.fatal: Optional[str] = None  # a component that could not recover: the camera must restart
        self.mqtt = None  # CameraMqtt, with MQTT_HOST
        self.detecting = True  # motion events armed (MQTT detect/set)
        self.shared_reaper = bool(os.environ.get(ENV_SHARED_REAPER))

    def _fatal(self, why: str):
        """A component keeps failing: stop, and make `record` exit non-zero so it is restarted whole."""
        if self.fatal is None:
            self.fatal = why
            self.status.set_state("failed", error=why)
        self.stop.set()

    # -- callbacks from the sink -----------------------------------------------------------------
    def _event_payload(self, rec: EventRecord, clip: Optional[Path]) -> dict:
        """A hook's event: the fields every event output shares (ISO times), the source, and the
        files by their full paths (the clip's, sidecar's and thumbnail's planned ones at the start)."""
        return {
            **rec.as_dict(local_time=self.s.LOCAL_TIME),
            "source": self.spec.display,
            "clip": str(clip) if clip else None,
            "sidecar": str(clip.with_suffix(".json")) if clip else None,
            "thumbnail": str(clip.with_suffix(".jpg")) if clip else None,
        }

    def _event_started(self, rec: EventRecord):
        info = self._event_payload(rec, rec.clip)
        self.status.event_started({k: info[k] for k in ("event", "kind", "start", "trigger", "clip")})
        self.hooks.fire("event_start", info)
        if self.mqtt:
            self.mqtt.event_started(info)

    def _event_ended(self, rec: EventRecord):
        if rec.reason != "maximum clip length":
            self.status.event_ended(rec.event)
        clip = rec.clip if rec.kept else None
        if clip is not None:
            size = sum(
                p.stat().st_size
                for p in (clip, clip.with_suffix(".json"), clip.with_suffix(".jpg"))
                if p.exists()
            )
            self.status.written(size, event=rec.part == 1)
        info = self._event_payload(rec, clip)
        if clip is not None and not clip.with_suffix(".jpg").exists():
            info["thumbnail"] = None
        self.hooks.fire("event_end", info)
        if self.mqtt:
            self.mqtt.event_ended(info, final=rec.reason != "maximum clip length")

    def _set_detecting(self, on: bool) -> None:
        """Arm or disarm motion events (MQTT detect/set); continuous recording is not touched."""
        self.detecting = on
        self.status.detect = on
        if self.pipeline is not None:
            self.pipeline.controller.detecting = on

    def _segment_written(self, seg):
        self.status.written(seg.size)

    # -- housekeeping ----------------------------------------------------------------------------
    def _tick(self):
        if self.parent_pid and os.getppid() != self.parent_pid:
            log.error("the `nvr-cli run` that started this worker is gone: stopping")
            self.stop.set()
        seg = self.segmenter
        if seg is not None and not self.s.MOTION_DETECTION:  # continuous only: ffmpeg's progress is the pulse
            fresh = seg.last_beat is not None and time.monotonic() - seg.last_beat < self.s.READ_TIMEOUT_SECS
            if fresh:
                self.status.heartbeat(time.time() - (time.monotonic() - seg.last_beat))
            self.status.set_state("connected" if fresh else ("lost" if seg.last_beat else "connecting"))
            if self.mqtt:
                self.mqtt.link.set_available(fresh)

    # -- the run ---------------------------------------------------------------------------------
    def _supervised(self, name: str, target) -> Supervised:
        return Supervised(name, target, self.stop, on_fatal=self._fatal).start()

    # -- live view -------------------------------------------------------------------------------
    def _live_packets(self, ffmpeg: Optional[str]) -> tuple:
        """(where live viewers get the camera's packets, or None; why not): what already reads them,
        else a reader of their own while they watch; never a second reader beside one."""
        seg = self.segmenter
        if seg is not None and seg.packets is not None and seg.live_off is None:
            return seg.packets, ""
        if self.ring is not None:
            return self.ring, ""
        spec = self.record_spec or parse_source(self.s.RECORD_SOURCE or self.s.cam)
        if spec.kind != "rtsp":  # a USB camera gives decoded frames; an HTTP one, JPEGs
            return None, f"a {spec.kind.upper()} camera has no video packets to relay"
        if not ffmpeg:
            return None, "no ffmpeg to read the camera's packets"
        unsupported = ts_unsupported(ffmpeg)
        if unsupported:  # a reader of its own would fail as the segmenter's output would
            return None, unsupported
        s = self.s

        def open_ring() -> PacketRing:
            return PacketRing(
                spec,
                ffmpeg,
                0.0,  # a viewer starts at the newest keyframe: nothing older is kept
                threading.Event(),
                rtsp_transport=s.RTSP_TRANSPORT,
                max_mb=64,
                retry_delay=s.RECONNECT_DELAY_SECS,
                max_retry_delay=s.RECONNECT_MAX_DELAY_SECS,
                read_timeout=s.READ_TIMEOUT_SECS,
            )

        return OnDemandPackets(open_ring), ""

    def _start_live(self, ffmpeg: Optional[str]) -> None:
        """Offer the camera's packets and newest frame to `serve`'s live view, once the readers exist."""
        if not (self.record_spec or self.spec).live:
            return
        frame = (lambda: self.pipeline.latest if self.pipeline else None) if self.s.MOTION_DETECTION else None
        with self._live_lock:
            packets, why = self._live_packets(ffmpeg)
            self.live = LiveTap(
                live_socket_path(self.s),
                packets=packets,
                no_packets=why,
                frame=frame,
                stale_after=self.s.READ_TIMEOUT_SECS,
            ).start()

    def _live_moved(self, ffmpeg: str) -> None:
        """The segmenter gave up its live packets: later viewers get them elsewhere (earlier ones were
        ended with its stream)."""
        with self._live_lock:
            if self.live is not None:  # else _start_live, still to come, sees the segmenter's live_off
                self.live.packets, self.live.no_packets = self._live_packets(ffmpeg)

    def run(self) -> Optional[RunStats]:
        s = self.s
        ffmpeg = find_ffmpeg(s.FFMPEG_PATH, required=False)
        if not ffmpeg:
            log.warning(
                "no ffmpeg found: clips are written by OpenCV as MPEG-4 part 2, which browsers do not play"
            )
        if s.CONTINUOUS_RECORDING and not ffmpeg:
            raise NvrError(
                "continuous recording needs ffmpeg: install Debian's ffmpeg or `pip install imageio-ffmpeg`"
            )
        root = Path(s.PATH_FOR_VIDEO) / s.CAMERA_NAME
        storage.make_dirs(root)
        storage.recover_parts(Path(s.PATH_FOR_VIDEO), s.CAMERA_NAME, ffmpeg)
        live = (self.record_spec or self.spec).live
        writer = StatusWriter(
            self.status, status_path(s) if live else None, self.stop, s.STATUS_INTERVAL_SECS
        )
        writer.ticks.append(self._tick)
        self.status.events_today = kept_events_today(s)
        if s.MQTT_HOST and not live:
            # a file played under a camera's name would speak for the live camera (its client id,
            # its topics, its availability): files are never published
            log.info("MQTT is for cameras: nothing from %s is published", self.spec.display)
        elif s.MQTT_HOST:
            from nvr_cli.runtime.mqtt_camera import CameraMqtt

            self.mqtt = CameraMqtt(s, self.status, self._set_detecting).start()
            self.status.mqtt = self.mqtt.link.stats
            writer.ticks.append(self.mqtt.tick)
        self._supervised("status writer", writer.run)
        reaper = Reaper(Path(s.PATH_FOR_VIDEO), s.retention, self.stop)
        if not self.shared_reaper:  # under `run`, one reaper per storage root runs there
            self._supervised("reaper", reaper.run)
        stats = None
        try:
            stats = self._record(ffmpeg, reaper, root)
        except SourceError as e:
            self.status.set_state("failed", error=str(e))
            raise
        finally:
            ended_by_itself = not self.stop.is_set()
            self.stop.set()
            if self.live is not None:
                self.live.close()
            if self.status.state != "failed":
                self.status.set_state("stopped")
            self.status.event_ended()
            writer.write()
            if self.mqtt:
                self.mqtt.close(timeout=5)  # what is queued (the last end event) goes first
            if not self.hooks.wait(s.HOOK_TIMEOUT_SECS + 1):
                log.warning("hooks still running at exit were left to finish on their own")
        if self.fatal:
            raise NvrError(f"recording of {s.CAMERA_NAME} stopped: {self.fatal}")
        if live and ended_by_itself:
            # a live camera is recorded until we are asked to stop: ending by itself is a failure,
            # and exit 0 would tell `run` and systemd that nothing needs restarting
            raise NvrError(f"recording of {s.CAMERA_NAME} ended without being asked to stop")
        return stats

    def _record(self, ffmpeg, reaper: Reaper, root: Path) -> Optional[RunStats]:
        s = self.s
        worker = None
        if s.CONTINUOUS_RECORDING:
            from nvr_cli.storage.segments import Segmenter

            self.segmenter = Segmenter(
                s.source,
                s.continuous,
                s.output,
                self.record_spec,
                ffmpeg,
                self.stop,
                on_disk_full=reaper.now,
                live_packets=self.record_spec.kind == "rtsp",
            )
            self.segmenter.written_cb = self._segment_written
            self.segmenter.on_live_off = lambda why: self._live_moved(ffmpeg)
            worker = self._supervised("segmenter", self.segmenter.run)
            log.info(
                "continuous recording of %s into %s-second segments",
                self.record_spec.display,
                f"{s.SEGMENT_SECONDS:g}",
            )
        if not s.MOTION_DETECTION:
            self._start_live(ffmpeg)
            while worker.is_alive():
                worker.join(timeout=0.5)
            log.info("done: %d segments", self.segmenter.written)
            return None
        cutter = None
        if self.segmenter is not None and s.LOSSLESS_EVENT_CLIPS:
            from nvr_cli.output.event_cut import EventCutter

            cutter = EventCutter(self.segmenter, ffmpeg, self.stop, on_fatal=self._fatal)
        packets = None
        if s.EVENT_REENCODE is not True and cutter is None:
            spec = parse_source(s.RECORD_SOURCE or s.cam)
            if ffmpeg and spec.kind == "rtsp":
                packets = self.ring = PacketRing(
                    spec,
                    ffmpeg,
                    s.PRE_ALARM_RECORDING_SECONDS,
                    threading.Event(),
                    rtsp_transport=s.RTSP_TRANSPORT,
                    max_mb=s.PRE_ALARM_MAX_MB,
                    retry_delay=s.RECONNECT_DELAY_SECS,
                    max_retry_delay=s.RECONNECT_MAX_DELAY_SECS,
                    on_fatal=self._fatal,
                    read_timeout=s.READ_TIMEOUT_SECS,
                )
                log.info("clips are the camera's own packets (no re-encode); pre-alarm kept as packets")
            elif s.EVENT_REENCODE is False:
                log.warning(
                    "EVENT_REENCODE = False needs an RTSP camera and ffmpeg, or continuous recording: "
                    "clips are re-encoded"
                )
        self._start_live(ffmpeg)
        self.sink = ClipSink.for_camera(
            s,
            ffmpeg=ffmpeg,
            on_clip=self.on_clip,
            on_disk_full=reaper.now,
            cutter=cutter,
            on_event_start=self._event_started,
            on_event_end=self._event_ended,
            packets=packets,
            on_fatal=self._fatal,
            on_motion=self.mqtt.motion if self.mqtt else None,
        )
        log.info("recording %s as %r into %s", self.spec.display, s.CAMERA_NAME, root)
        try:
            self.pipeline = Pipeline(
                s, self.spec, self.sink, stop=self.stop, realtime=self.realtime, observer=_Watch(self)
            )
            self.pipeline.controller.detecting = self.detecting
            stats = self.pipeline.run()
        finally:
            self.sink.shutdown(timeout=120)
            if worker is not None:
                self.stop.set()
                worker.join(timeout=30)  # it writes its last segment first
            if cutter is not None:
                cutter.close(timeout=60)
            if packets is not None:
                packets.close()
        log.info(
            "done: %d frames, %d clips written, %d events dropped (%s)",
            stats.frames,
            self.sink.clips_written,
            stats.dropped_events,
            stats.reason or "stopped",
        )
        if stats.error:
            raise SourceError(stats.error)
        return stats
