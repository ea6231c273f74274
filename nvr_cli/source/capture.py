"""Video sources through OpenCV: RTSP, HTTP (MJPEG), USB cameras and files.

Frames are read on their own thread. For live sources the queue between reader and
analysis drops its oldest frame when full, so a slow step never makes us fall behind
the camera; for files it blocks, so no frame is ever skipped.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import queue
import re
import subprocess
import threading
import time
from typing import Iterator, Optional

import cv2

import nvr_cli.ffmpeg.process as ffproc
from nvr_cli.core.errors import SourceError
from nvr_cli.core.frames import Frame
from nvr_cli.core.redact import redact
from nvr_cli.ffmpeg.binary import find_ffmpeg
from nvr_cli.source.spec import (
    SourceSpec,
    ffmpeg_input_args,
    opencv_capture_options,
    parse_source,  # noqa: F401  (the command line imports it from here)
)

log = logging.getLogger(__name__)

# OpenCV's ffmpeg takes its options (the RTSP transport among them) from this process-wide
# variable, read while a capture opens. Two sources opening at once (threads) would each set it and one could
# open
# with the other's options; this lock makes set-open-restore one step. It is held only for
# the open of an ffmpeg-backed source (files open in milliseconds; a camera at most
# OPEN_TIMEOUT_SECS), and a worker opens one camera, so nothing waits on it in practice.
_CAPTURE_OPTIONS_LOCK = threading.Lock()
CAPTURE_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


def open_capture(spec: SourceSpec, params: list, *, transport: str) -> "cv2.VideoCapture":
    """``cv2.VideoCapture`` for a file or network ``spec`` with its own capture options (see above)."""
    options = opencv_capture_options(spec, transport=transport)
    with _CAPTURE_OPTIONS_LOCK:
        before = os.environ.get(CAPTURE_OPTIONS_ENV)
        if options:
            os.environ[CAPTURE_OPTIONS_ENV] = options
        try:
            return cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, params)
        finally:  # the next open (a file, say) must not inherit a camera's options
            if options:
                if before is None:
                    os.environ.pop(CAPTURE_OPTIONS_ENV, None)
                else:
                    os.environ[CAPTURE_OPTIONS_ENV] = before


def diagnose_command(ffmpeg: str, spec: SourceSpec, timeout: float, transport: str = "tcp") -> list:
    """ffmpeg reading one frame of ``spec``, as the decoder would open it."""
    return (
        ffproc.base(ffmpeg)
        + ffmpeg_input_args(spec, transport=transport, timeout=timeout)
        + ["-frames:v", "1", "-f", "null", "-"]
    )


def diagnose(spec: SourceSpec, timeout: float, transport: str = "tcp") -> str:
    """Why a network source failed to open, in words a user can act on (asks ffmpeg, opening it
    with the decoder's ``transport`` and open ``timeout``)."""
    ffmpeg = find_ffmpeg(required=False)
    if spec.kind not in ("rtsp", "http") or not ffmpeg:
        return "cannot open"
    try:
        out = ffproc.run(diagnose_command(ffmpeg, spec, timeout, transport), timeout=timeout + 5).stderr
    except subprocess.TimeoutExpired:
        return "timed out (host unreachable or not answering)"
    # ffmpeg's lines start "[rtsp @ 0x55d0401...]": a status code must be a word of its own
    low = re.sub(r"\[[^\]]* @ 0x[0-9a-f]+\]", "", out.lower())
    for needle, words in (
        (" 401 ", "wrong user name or password (401 Unauthorized)"),
        (" 403 ", "access forbidden (403)"),
        (" 404 ", "no such stream on the server (404 Not Found): check the path"),
        ("connection refused", "connection refused: nothing listens on that host and port"),
        ("name or service not known", "unknown host"),
        ("failed to resolve", "unknown host"),
        ("temporary failure in name resolution", "unknown host"),
        ("no route to host", "no route to host"),
        ("timed out", "timed out (host unreachable or not answering)"),
        ("invalid data", "the server's data is not a video stream"),
    ):
        if needle in low:
            return words
    lines = [line for line in out.strip().splitlines() if line.strip()]
    return redact(lines[-1]) if lines else "cannot open (no frames)"


def file_start_time(path: str, duration: float) -> float:
    """When a recording began (epoch seconds): its creation_time tag, else its mtime less its duration."""
    ffmpeg = find_ffmpeg(required=False)
    if ffmpeg:
        try:
            # no output: ffmpeg lists the input's metadata (on stderr) and exits with an error
            out = ffproc.run([ffmpeg, "-hide_banner", "-nostdin", "-i", path], timeout=20).stderr
        except subprocess.TimeoutExpired:
            out = ""
        m = re.search(r"creation_time\s*:\s*(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z?", out)
        if m:
            stamp = dt.datetime.fromisoformat(m.group(1)).replace(tzinfo=dt.timezone.utc).timestamp()
            if stamp > 86400:  # 1970-01-01 is the "unset" value of some muxers
                return stamp
    return os.stat(path).st_mtime - duration


class VideoSource:
    """An opened source yielding ``Frame`` objects; ``close()`` always safe to call."""

    def __init__(
        self,
        spec: SourceSpec,
        *,
        rtsp_transport: str = "tcp",
        open_timeout: float = 10.0,
        read_timeout: float = 10.0,
        realtime: bool = False,
        queue_seconds: float = 2.0,
        diagnose_errors: bool = True,
        max_fps: float = 0.0,
    ):
        self.spec = spec
        self.max_fps = max_fps  # hand out at most this many frames a second (0: all)
        self.stride = 1  # every stride-th frame is handed out; the others are decoded only
        self.skipped = 0
        self.decoded = 0  # frames read off the source so far, handed out or not
        self.rtsp_transport = rtsp_transport
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.realtime = realtime
        self.queue_seconds = queue_seconds
        self.diagnose_errors = diagnose_errors
        self.cap = None
        self.fps = 0.0
        self.size = (0, 0)
        self.codec = ""
        self.frame_count = 0  # files only, 0 when unknown
        self.dropped = 0
        self.end_reason = ""
        self.truncated = False
        self._first_pos = None
        self._last_ts = None
        self._thread = None
        self._stop = threading.Event()
        self._queue: Optional[queue.Queue] = None

    # -- opening -----------------------------------------------------------------------------
    def open(self) -> "VideoSource":
        spec = self.spec
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.read_timeout * 1000),
        ]
        if spec.kind == "usb":
            cap = cv2.VideoCapture(spec.target, cv2.CAP_V4L2)
        else:
            cap = open_capture(spec, params, transport=self.rtsp_transport)
        if not cap.isOpened():
            cap.release()
            if spec.kind == "file":
                raise SourceError(
                    f"{spec.display}: not a video file OpenCV can decode (unsupported format or corrupt)"
                )
            if spec.kind == "usb":
                raise SourceError(f"camera {spec.display}: cannot open (no such device, or busy)")
            why = (
                diagnose(spec, self.open_timeout, self.rtsp_transport)
                if self.diagnose_errors
                else "cannot open"
            )
            raise SourceError(f"{spec.display}: {why}")
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            what = (
                "no frame could be decoded (corrupt file or unsupported codec)"
                if spec.kind == "file"
                else "opened but sent no frame"
            )
            raise SourceError(f"{spec.display}: {what}")
        self.cap = cap
        self.size = (first.shape[1], first.shape[0])
        fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.fps = fps if 0.5 <= fps <= 240 else 0.0
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC) or 0)
        self.codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\0 ") if fourcc else ""
        if spec.kind == "file":
            self.frame_count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        if self.max_fps and self.fps > self.max_fps * 1.01:
            self.stride = math.ceil(self.fps / self.max_fps - 0.01)
        depth = max(4, int((self.fps or 15) * self.queue_seconds))
        self._queue = queue.Queue(maxsize=depth)
        self._queue.put(self._stamp(first, 0))
        self._thread = threading.Thread(target=self._read_loop, name="nvr-reader", daemon=True)
        self._thread.start()
        return self

    def _stamp(self, image, index) -> Frame:
        if self.spec.live:
            # monotonic: durations, splits and the pre-alarm must not follow an NTP step
            return Frame(image, time.monotonic(), index)
        # OpenCV's position runs a few frames ahead in some AVIs (the decoder's delay) and drops
        # to 0 for the frames flushed at the end: count from the first frame, never go back.
        raw = self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if self._first_pos is None:
            self._first_pos = raw
        ts = raw - self._first_pos
        if self._last_ts is not None and ts <= self._last_ts:
            ts = self._last_ts + 1.0 / (self.fps or 25.0)
        self._last_ts = ts
        return Frame(image, ts, index)

    # -- reading -----------------------------------------------------------------------------
    def _read_loop(self):
        index = 1
        live = self.spec.live
        start_wall = time.monotonic()
        first_ts = None
        try:
            while not self._stop.is_set():
                t = time.monotonic()
                ok = self.cap.grab()
                if live and ok and time.monotonic() - t >= self.read_timeout * 0.9:
                    # OpenCV's read timeout fired, yet read() hands out a frame the decoder still
                    # held, one per timeout: a stalled camera would trickle on for many seconds.
                    self.end_reason = f"no data for {self.read_timeout:g} s (stalled)"
                    break
                if ok and index % self.stride:
                    # decoded (later frames depend on it) but not converted to BGR: that conversion
                    # costs as much as the decoding; nothing looks at this frame
                    index += 1
                    self.skipped += 1
                    continue
                ok, image = self.cap.retrieve() if ok else (False, None)
                if not ok or image is None:
                    self.end_reason = "connection lost" if live else self._file_end(index)
                    break
                frame = self._stamp(image, index)
                index += 1
                if self.realtime and not live:
                    first_ts = frame.ts if first_ts is None else first_ts
                    delay = (frame.ts - first_ts) - (time.monotonic() - start_wall)
                    if delay > 0:
                        self._stop.wait(delay)
                self._put(frame, live)
        except Exception as e:  # noqa: BLE001 - a decoder failure ends the source, it must not vanish silently
            self.end_reason = f"read error: {type(e).__name__}: {e}"
            log.error("reading %s failed: %s", self.spec.display, self.end_reason, exc_info=True)
        finally:
            self.decoded = index
            self._put(None, False)

    def _file_end(self, frames_read: int) -> str:
        """ "end", or why a file stopped decoding well before its last frame."""
        expected = self.frame_count
        if expected and frames_read < expected - max(2, expected // 100):
            self.truncated = True
            fps = self.fps or 25.0
            return (
                f"decoding stopped at {frames_read / fps:.1f} s of {expected / fps:.1f} s "
                f"(frame {frames_read} of {expected}): the file is truncated or corrupt"
            )
        return "end"

    def _put(self, item, drop_oldest):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                if drop_oldest:
                    try:
                        self._queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass

    def frames(self, stop: Optional[threading.Event] = None) -> Iterator[Frame]:
        """Yield frames until the source ends, is lost or goes silent, or ``stop`` is set."""
        silent_limit = self.read_timeout + 2.0
        waited = 0.0
        while not (stop and stop.is_set()):
            try:
                item = self._queue.get(timeout=0.25)
            except queue.Empty:
                if self.spec.live:
                    waited += 0.25
                    if waited >= silent_limit:
                        self.end_reason = f"no frame for {silent_limit:.0f} s (stalled)"
                        return
                continue
            waited = 0.0
            if item is None:
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.read_timeout + 2)
        if self.cap is not None:
            self.cap.release()
            self.cap = None
