"""Continuous recording with no decode and no re-encode: ffmpeg stream-copies the camera into
fixed-length segments, which go into the date folders beside the event clips, each listed in a
per-day index (``segments.jsonl``) with its start, end, size and validity, and every gap too.

Segments are fragmented MP4 while written (in a hidden staging folder), so one cut short by
kill -9, a power cut or a lost camera still plays up to its last fragment; the next start moves
such leftovers into place and indexes them.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import nvr_cli.ffmpeg.process as ffproc
import nvr_cli.storage.paths as storage
from nvr_cli.config import ContinuousSettings, OutputSettings, SourceSettings
from nvr_cli.core.backoff import Backoff
from nvr_cli.core.errors import ConfigError, StorageError
from nvr_cli.core.redact import redact
from nvr_cli.source.packets import PacketBuffer, ts_output_args, ts_unsupported
from nvr_cli.source.spec import SourceSpec, ffmpeg_input_args

log = logging.getLogger(__name__)

INDEX = "segments.jsonl"
STAGING = ".incoming"
SEG_SUFFIX = ".seg.mp4"


@dataclass
class Segment:
    path: Path
    start: float  # wall clock, epoch seconds
    end: float
    size: int
    valid: bool
    partial: bool = False  # cut short (killed, lost camera): plays up to its last fragment

    def as_dict(self) -> dict:
        return {
            "file": self.path.name,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "size": self.size,
            "valid": self.valid,
            "partial": self.partial,
        }


def append_index(folder: Path, entry: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / INDEX, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _read_one(idx: Path, overlapping: Optional[tuple[float, float]] = None) -> list:
    """One index's entries; ``overlapping`` (start, end): only the segments that overlap it. Read line by
    line, so that looking up one event in a day's index does not build the whole day in memory (which
    CPython's allocator would then keep: a worker grew with the size of the day's index)."""
    entries = []
    try:
        with open(idx) as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue  # a line torn by a crash
                if not isinstance(e, dict) or "start" not in e:
                    continue
                if overlapping and not (
                    "file" in e and e["end"] > overlapping[0] and e["start"] < overlapping[1]
                ):
                    continue
                if "file" in e:
                    e["path"] = idx.parent / e["file"]
                entries.append(e)
    except OSError:
        pass
    return entries


def read_index(
    camera_root: Path,
    folders: Optional[Iterable[Path]] = None,
    overlapping: Optional[tuple[float, float]] = None,
) -> list:
    """Index entries under a camera's folder, oldest first; paths made absolute. ``folders``: only
    the indexes in these folders (the days a time range can touch), not the camera's whole history;
    ``overlapping`` (start, end): only the segments that overlap that time range."""
    if folders is None:
        files = sorted(Path(camera_root).rglob(INDEX))
    else:
        files = sorted({Path(f) / INDEX for f in folders if (Path(f) / INDEX).is_file()})
    entries = [e for idx in files for e in _read_one(idx, overlapping)]
    return sorted(entries, key=lambda e: e["start"])


def index_folders(
    root: Union[str, Path],
    camera: str,
    start: float,
    end: float,
    local_time: bool = True,
    subfolder_func: Optional[Callable] = None,
) -> set:
    """The folders whose index can list a segment overlapping [start, end]: a segment lasts at most
    an hour (SEGMENT_SECONDS), so the folders of every hour from an hour before ``start`` on."""
    folders, t = set(), start - 3600
    while t < end + 3600:
        folders.add(storage.clip_dir(root, camera, t, local_time, subfolder_func))
        t += 1800
    folders.add(storage.clip_dir(root, camera, end, local_time, subfolder_func))
    return folders


def last_indexed_end(camera_root: Path) -> Optional[float]:
    """Where the recording last stopped, from the most recently written index (not the whole history)."""
    root = Path(camera_root)
    if not root.is_dir():
        return None
    newest = sorted(root.rglob(INDEX), key=lambda p: p.stat().st_mtime)[-2:]
    ends = [e["end"] for idx in newest for e in _read_one(idx) if "file" in e]
    return max(ends) if ends else None


class Segmenter:
    """Runs (and re-runs) ffmpeg for one camera until ``stop`` is set."""

    def __init__(
        self,
        source: SourceSettings,
        continuous: ContinuousSettings,
        output: OutputSettings,
        spec: SourceSpec,
        ffmpeg: str,
        stop: threading.Event,
        on_disk_full: Optional[Callable[[], None]] = None,
        live_packets: bool = False,
    ):
        """``spec``: the stream recorded (RECORD_SOURCE or cam); ``source``: how to read it, the camera's
        name. ``live_packets``: also keep the newest keyframe group of its video in ``packets`` (a
        second output of the same ffmpeg) for live viewers; ``live_off`` says why not, when not.
        """
        if spec.kind == "usb":
            raise ConfigError(
                "continuous recording stream-copies a network camera or a file; a USB camera "
                "has no encoded stream to copy"
            )
        self.src, self.cont, self.out = source, continuous, output
        self.spec, self.ffmpeg, self.stop = spec, ffmpeg, stop
        self.camera = source.CAMERA_NAME
        self.segment_seconds = continuous.SEGMENT_SECONDS
        self.root = Path(output.PATH_FOR_VIDEO) / self.camera
        self.staging = self.root / STAGING
        self.audio = True
        # the latest segments, for callers (tests); a long run must not grow with its history
        self.segments: collections.deque = collections.deque(maxlen=50)
        self.written = 0  # segments finished this run
        # where the recording stopped last time, so a restart records its gap too
        self.last_end: Optional[float] = last_indexed_end(self.root)
        self._unindexed: collections.deque = collections.deque()  # (folder, entry) a full disk refused
        self._disk_trouble: Optional[str] = None  # logged once until a segment is indexed again
        self.written_cb = None  # called with each finished Segment
        self.running = False
        self.last_beat: Optional[float] = None  # monotonic time ffmpeg last reported progress
        self.on_disk_full = on_disk_full
        self._lock = threading.Lock()
        # the live tap may never cost the recording: without the filter it needs, ffmpeg would refuse
        # every run; a tap that breaks the runs anyway is given up (``_tap_verdict``)
        self.live_off: Optional[str] = ts_unsupported(ffmpeg) if live_packets else None
        # ~0 s: a live viewer starts at the newest keyframe, nothing older is wanted
        self.packets: Optional[PacketBuffer] = (
            PacketBuffer(0.0, max_mb=64) if live_packets and self.live_off is None else None
        )
        if self.live_off:
            log.info("continuous recording of %s without live packets: %s", spec.display, self.live_off)
        self.on_live_off: Optional[Callable[[str], None]] = None  # called once if the tap is given up
        self._tap_failures = 0  # runs with the tap in a row that ended without a segment

    # -- ffmpeg ----------------------------------------------------------------------------------
    def _command(self, packets_fd: Optional[int] = None) -> list:
        """ffmpeg's command line; ``packets_fd``: a pipe that gets the video as MPEG-TS too."""
        spec = self.spec
        # progress lines every second are the heartbeat that tells a stalled camera
        cmd = ffproc.base(self.ffmpeg) + ["-stats_period", "1", "-progress", "pipe:2"]
        if not spec.live:
            cmd += ["-re"]  # a file plays at its own pace, as a camera would
        cmd += ffmpeg_input_args(spec, transport=self.src.RTSP_TRANSPORT, timeout=self.src.READ_TIMEOUT_SECS)
        cmd += ["-map", "0:v:0"]
        if self.audio:
            cmd += ["-map", "0:a:0?"]
        cmd += [
            "-c",
            "copy",
            "-f",
            "segment",
            "-segment_time",
            f"{self.cont.SEGMENT_SECONDS:g}",
            "-reset_timestamps",
            "1",
            "-strftime",
            "1",
            "-segment_format",
            "mp4",
            # each fragment reaches the disk as it is cut: a killed run loses about a second
            "-segment_format_options",
            "movflags=+frag_keyframe+empty_moov+default_base_moof:flush_packets=1",
            "-segment_list",
            "pipe:1",
            "-segment_list_type",
            "csv",
            "-segment_list_flags",
            "live",
            str(self.staging / "seg_%s.mp4"),
        ]
        if packets_fd is not None:
            cmd += ts_output_args(f"pipe:{packets_fd}")
        return cmd

    def run(self) -> None:
        self.running = True
        try:
            self._run()
        finally:
            self.running = False

    def _run(self):
        outage_since = None
        backoff = Backoff(self.src.RECONNECT_DELAY_SECS, self.src.RECONNECT_MAX_DELAY_SECS)
        while not self.stop.is_set():
            self.recover_staging()
            tapped = self._tap_now()
            produced, reason, stderr = self._run_once(tapped)
            if not self.spec.live and reason == "exited" and produced:
                break  # the file has been copied to its end
            if self.stop.is_set():
                break
            self._tap_verdict(tapped, produced, reason, stderr)
            if "not currently supported in container" in stderr or "Could not find tag for codec" in stderr:
                if self.audio:
                    log.warning("the camera's audio cannot go into MP4 segments: recording video only")
                    self.audio = False
                    continue
            why = redact(stderr.strip().splitlines()[-1]) if stderr.strip() else reason
            if "No space left" in stderr and self.on_disk_full:
                self.on_disk_full()
            if produced:  # it had been recording: a new outage begins
                backoff.reset()
                outage_since = None
            if outage_since is None:
                outage_since = time.monotonic()
                log.warning(
                    "continuous recording of %s stopped (%s); restarting with backoff", self.spec.display, why
                )
            else:
                log.debug("continuous recording restart failed (%s)", why)
            self.stop.wait(backoff.next())
        self.recover_staging()

    def _tap_now(self) -> bool:
        """Whether the next run writes the live packets too."""
        return self.packets is not None and self.live_off is None

    def _tap_verdict(self, tapped: bool, produced: int, reason: str, stderr: str) -> None:
        """A run ended unasked. Two in a row with the tap that recorded nothing, and not for the camera's
        sake nor the disk's (ffmpeg names the input it could not read or a storage cause, or it stalled),
        turn the tap off for good: the recording must not pay for live view, which then goes elsewhere
        (``on_live_off``)."""
        if not tapped or self.live_off is not None:
            return
        elsewhere = (
            reason == "stalled"
            or str(self.spec.target) in stderr
            or any(cause in stderr for cause in ffproc.CAUSES)
        )
        self._tap_failures = 0 if produced or elsewhere else self._tap_failures + 1
        if self._tap_failures < 2:
            return
        self.live_off = "the continuous recording's ffmpeg fails with the live packets output"
        log.warning("%s (%s): recording without it", self.live_off, self.spec.display)
        if self.on_live_off is not None:
            self.on_live_off(self.live_off)

    def _run_once(self, tapped: bool = False):
        """One ffmpeg run (``tapped``: with the live packets' output); returns (segments produced, why it
        ended, ffmpeg's stderr)."""
        try:
            self.staging.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            return 0, f"cannot create {self.staging}: {e.strerror}", ""
        lines: queue.Queue = queue.Queue()
        beat = {"t": time.monotonic(), "out": None}

        def progress(line: str) -> bool:
            """ffmpeg's progress is the heartbeat; anything else is an error, kept to say why it ended."""
            key, _, value = line.strip().partition("=")
            if key == "out_time_us":
                if value != beat["out"]:
                    beat["t"], beat["out"] = time.monotonic(), value
                    self.last_beat = time.monotonic()
                return False
            return not (_ and key.replace("_", "").isalnum())

        tap_r, tap_w = os.pipe() if tapped else (None, None)
        try:
            proc = ffproc.FfmpegProcess(
                self._command(tap_w),
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
                on_line=progress,
                pass_fds=() if tap_w is None else (tap_w,),
            )
        except BaseException:
            for fd in (tap_r, tap_w):
                if fd is not None:
                    os.close(fd)
            raise
        drain = None
        if tap_w is not None:
            os.close(tap_w)  # ffmpeg holds the only write end: its exit is our end of file
            drain = threading.Thread(target=self._drain, args=(tap_r,), name="nvr-segmenter-tap", daemon=True)
            drain.start()
        threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout] and None, daemon=True).start()
        produced, t0, reason = 0, None, "exited"
        try:
            while True:
                try:
                    line = lines.get(timeout=0.25)
                except queue.Empty:
                    line = None
                if line:
                    t0 = self._listed(line, t0)
                    produced += 1
                    continue
                if proc.poll() is not None:
                    break
                if self.stop.is_set():
                    reason = "stopped"
                    proc.terminate()  # ffmpeg closes the open segment and lists it
                    continue
                silent = time.monotonic() - beat["t"]
                if silent > self.src.READ_TIMEOUT_SECS + 2:
                    reason = "stalled"
                    log.warning("continuous recording stalled: no data for %.0f s; restarting", silent)
                    proc.kill()
        finally:  # whatever went wrong, this run's ffmpeg ends with it
            proc.end(timeout=10)
            if drain is not None:
                drain.join(timeout=5)
        while not lines.empty():
            line = lines.get()
            if line.strip():
                t0 = self._listed(line, t0)
                produced += 1
        return produced, reason, proc.stderr()

    def _drain(self, fd: int) -> None:
        """Read the live packets' pipe until ffmpeg closes it. Always reads, whatever goes wrong: a full
        pipe would block ffmpeg, and with it the recording. Not restarted by a supervisor for the same
        reason (a pause of its backoff is a stalled recording); one ffmpeg run, one drain."""
        try:
            try:
                _, bad = self.packets.read(fd, threading.Event())
                if bad:
                    log.warning("live packets of %s: %s; none until ffmpeg restarts", self.spec.display, bad)
                    self.packets.reset()  # its viewers end now rather than wait in silence
            except Exception as e:  # noqa: BLE001 - live view may fail, the recording must not
                log.error(
                    "live packets of %s failed: %s: %s", self.spec.display, type(e).__name__, e, exc_info=True
                )
            while os.read(fd, 1 << 16):
                pass
        finally:
            os.close(fd)
            self.packets.reset()  # the next ffmpeg run is a new stream

    def _listed(self, line: str, t0: Optional[float]) -> float:
        """ffmpeg listed a finished segment ("name,start,end" in stream seconds): put it in place.
        Returns the monotonic time of stream time 0, estimated from when lines arrive (latency only
        adds); the wall clock only names the result, so a clock step moves names, never lengths."""
        try:
            name, start, end = line.strip().rsplit(",", 2)
            start, end = float(start), float(end)
        except ValueError:
            log.debug("unexpected segment list line from ffmpeg: %r", line)
            return t0
        guess = time.monotonic() - end
        t0 = guess if t0 is None else min(t0, guess)
        wall = time.time() - time.monotonic()
        self._finish(self.staging / name, wall + t0 + start, wall + t0 + end)
        return t0

    # -- segments --------------------------------------------------------------------------------
    def _finish(self, staged: Path, start: float, end: float, partial: bool = False):
        if not staged.exists():
            return
        folder = storage.clip_dir(
            self.out.PATH_FOR_VIDEO,
            self.camera,
            start,
            self.out.LOCAL_TIME,
            self.out.subFolderNameGeneratorFunc,
        )
        stem = f"{self.camera}_{storage.name_stamp(start, self.out.LOCAL_TIME)}"
        final = folder / f"{stem}{SEG_SUFFIX}"
        n = 1
        while final.exists():
            final = folder / f"{stem}-{n}{SEG_SUFFIX}"
            n += 1
        try:
            storage.make_dirs(folder)
            os.replace(staged, final)
        except (OSError, StorageError) as e:  # a full or read-only disk: it stays staged, tried again later
            self._trouble(f"segment {staged.name} not moved into place: {getattr(e, 'strerror', None) or e}")
            return
        seg = Segment(final, start, end, final.stat().st_size, storage.demux(self.ffmpeg, final).ok, partial)
        with self._lock:
            if self.last_end is not None and start - self.last_end > 1.0:
                gap = {
                    "gap": True,
                    "start": round(self.last_end, 3),
                    "end": round(start, 3),
                    "reason": "recording was interrupted",
                }
                self._index(folder, gap)
                log.warning("gap of %.1f s in the continuous recording", start - self.last_end)
            self._index(folder, seg.as_dict())
            self.last_end = max(end, self.last_end or end)
            self.segments.append(seg)
            self.written += 1
        log.info(
            "segment %s: %.1f s, %.1f MB%s%s",
            final.name,
            end - start,
            seg.size / 2**20,
            "" if seg.valid else " (damaged packets)",
            " (cut short)" if partial else "",
        )
        if self.written_cb:
            self.written_cb(seg)

    def _index(self, folder: Path, entry: dict):
        """Append to the day's index; lines a full disk refuses wait (in order) until it has room."""
        if len(self._unindexed) >= 10000:  # a week of a disk that never empties: say what goes
            lost = self._unindexed.popleft()[1]
            log.error("index line dropped after waiting too long for disk space: %s", json.dumps(lost))
        self._unindexed.append((folder, entry))
        while self._unindexed:
            where, what = self._unindexed[0]
            try:
                append_index(where, what)
            except OSError as e:
                self._trouble(
                    f"index {where / INDEX} not written: {e.strerror}; "
                    f"{len(self._unindexed)} line(s) kept until there is room"
                )
                return
            self._unindexed.popleft()
        if self._disk_trouble:
            log.warning("continuous recording can write again: %s is resolved", self._disk_trouble)
            self._disk_trouble = None

    def _trouble(self, what: str):
        if self._disk_trouble is None:
            log.error("%s", what)
            if self.on_disk_full:
                self.on_disk_full()
        else:
            log.debug("%s", what)
        self._disk_trouble = self._disk_trouble or what

    def recover_staging(self) -> None:
        """Move what a killed or stalled run left in staging into place, as partial segments."""
        if not self.staging.is_dir():
            return
        for staged in sorted(self.staging.glob("seg_*.mp4")):
            try:
                empty = staged.stat().st_size == 0
            except FileNotFoundError:
                continue
            if empty or not storage.plays(staged):
                staged.unlink(missing_ok=True)
                continue
            start = float(staged.stem.split("_", 1)[1])  # whole seconds, from ffmpeg's file name
            if self.last_end is not None and 0 < self.last_end - start < 1.5:
                start = self.last_end  # it continued the previous segment
            duration = storage.demux(self.ffmpeg, staged).seconds
            self._finish(staged, start, start + duration, partial=True)
