"""The camera's own packets as the pre-alarm buffer and the clip: no re-encode.

An ffmpeg process copies the camera's video into MPEG-TS on a pipe. The last seconds of it stay in
memory, split at keyframes: 5 s of 1080p25 is a few MB of packets where decoded frames take
~780 MB. An event's clip is the groups from the keyframe at or before its start plus everything
that arrives until it ends, remuxed (stream copy) by a second ffmpeg into a fragmented MP4. The
camera is then read twice (this and the decoder); a clip has the camera's own quality and costs
next to no CPU.
"""
from __future__ import annotations

import collections
import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

import nvr_cli.core.processes as procs
from nvr_cli.ffmpeg.process import FfmpegStderr
from nvr_cli.core.errors import StorageError
from nvr_cli.ffmpeg.mpegts import TS, TsError, TsParser
from nvr_cli.core.redact import redact
from nvr_cli.source.capture import SourceSpec
from nvr_cli.core.supervised import Supervised

log = logging.getLogger(__name__)



class PacketClip(FfmpegStderr):
    """One clip being written from packets; looks like a frame writer to the sink (``write`` is a no-op)."""

    # packets waiting for a writer that stopped reading (a hung disk): past this the clip ends with
    # an error rather than the recorder's memory growing until it is killed
    MAX_QUEUED_BYTES = 64 * 2**20

    def __init__(self, ring: "PacketRing", path: Path, start_ts: Optional[float]):
        self.path = Path(path)
        self.ring = ring
        self.start_ts = start_ts  # arrival (monotonic) time of its first keyframe; None until it has one
        self.frames = 0
        self.error: Optional[str] = None  # why the clip stopped taking packets (a stuck writer)
        self._broken = False  # ffmpeg stopped reading: its stderr says why (a full disk ...)
        cmd = [ring.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               # the first keyframe tells all there is to know: don't wait 5 s of stream to start the file
               "-analyzeduration", "1000000", "-f", "mpegts", "-i", "-",
               "-map", "0:v:0", "-c", "copy", "-movflags", "+frag_keyframe+empty_moov+default_base_moof",
               "-flush_packets", "1", "-f", "mp4", str(self.path)]
        try:
            # own session, as for clipwriter's ffmpeg: Ctrl-C must not cut the clip short
            # no death signal: the end of its input (our death included) makes it finish the file
            self.proc = procs.popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, death_signal=None)
        except OSError as e:
            raise StorageError(f"cannot start ffmpeg ({ring.ffmpeg}): {e}") from None
        self._drain_stderr()
        # the reader thread hands packets over; a slow disk must not stall it
        self._queue: collections.deque = collections.deque()
        self._queued = 0  # bytes in the queue
        self.max_queued = self.MAX_QUEUED_BYTES  # the ring adds the pre-alarm it hands over at once
        self._wake = threading.Condition()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="nvr-packet-clip", daemon=True)
        self._writer.start()

    def feed(self, data: bytes):
        with self._wake:
            if self._closed or self.error or self._broken:
                return
            if self._queued + len(data) > self.max_queued:
                self.error = (f"the clip's writer stopped taking packets ({self._queued / 2**20:.0f} MB waiting): "
                              "a hung disk or ffmpeg")
                self._queue.clear()
                self._queued = 0
                self.proc.kill()  # unblocks the writer thread; the sink ends the clip at its next frame
                self._wake.notify()
                return
            self._queue.append(data)
            self._queued += len(data)
            self._wake.notify()

    def _write_loop(self):
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if not self._queue:
                    break
                data = self._queue.popleft()
                self._queued -= len(data)
            if self.error or self._broken:
                continue
            try:
                view = memoryview(data)
                while view:  # unbuffered: one write(2) may take only part of it
                    n = self.proc.stdin.write(view)
                    if not n:
                        raise BrokenPipeError
                    view = view[n:]
            except (BrokenPipeError, OSError):
                self._broken = True
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def write(self, image):
        """Frames are not needed (the clip is the camera's packets); says when ffmpeg failed (a full disk)."""
        if self.error or self._broken or self.proc.poll() is not None:
            raise StorageError(f"writing {self.path.name} failed: {self.error or self._why()}")

    def end_input(self):
        """Take no more packets (the event is over); what is queued is still written. Does not wait."""
        self.ring.detach(self)
        with self._wake:
            self._closed = True
            self._wake.notify()

    def _finish(self):
        self.end_input()
        self._writer.join(timeout=60)

    def close(self):
        self._finish()
        rc = self.proc.wait(timeout=120)
        if rc != 0 or self.error or self._broken:
            raise StorageError(f"finishing {self.path.name} failed: {self.error or self._why()}")

    def abort(self):
        self._finish()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class PacketRing:
    """Keeps the last ``seconds`` of a network camera's packets, and feeds them to clips."""

    def __init__(self, spec: SourceSpec, ffmpeg: str, seconds: float, stop: threading.Event, *,
                 rtsp_transport: str = "tcp", max_mb: float = 512.0, retry_delay: float = 1.0,
                 max_retry_delay: float = 3.0, on_fatal=None):
        if spec.kind != "rtsp":
            raise ValueError("packet pre-alarm needs an RTSP camera")
        self.spec, self.ffmpeg, self.seconds, self.stop = spec, ffmpeg, seconds, stop
        self.rtsp_transport = rtsp_transport
        self.max_bytes = int(max_mb * 2**20)
        self.retry_delay, self.max_retry_delay = retry_delay, max_retry_delay
        self._groups: collections.deque = collections.deque()  # [arrival time, bytearray], each from a keyframe
        self._bytes = 0
        self._header = b""  # PAT + PMT: every cut starts with them
        self._clips: list = []
        self._lock = threading.Lock()
        self.proc: Optional[subprocess.Popen] = None
        self.peak_bytes = 0
        self.connects = 0
        self._thread = Supervised("packet buffer", self.run, stop, on_fatal=on_fatal).start()

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def span(self) -> float:
        with self._lock:
            return time.monotonic() - self._groups[0][0] if self._groups else 0.0

    def open_clip(self, path: Path, start_ts: float) -> PacketClip:
        """A clip from the keyframe at or before ``start_ts`` (monotonic clock), fed live until closed."""
        with self._lock:
            groups = list(self._groups)
            first = 0
            for i, (t, _) in enumerate(groups):
                if t <= start_ts:
                    first = i
            # with no keyframe yet (just connected), the clip starts at the first one to come
            clip = PacketClip(self, path, groups[first][0] if groups else None)
            if groups:
                clip.max_queued += len(self._header) + sum(len(d) for _, d in groups[first:])
                clip.feed(self._header)
                for _, data in groups[first:]:
                    clip.feed(bytes(data))
            self._clips.append(clip)
        return clip

    def detach(self, clip: PacketClip):
        with self._lock:
            if clip in self._clips:
                self._clips.remove(clip)

    def close(self):
        self.stop.set()
        proc = self.proc
        if proc and proc.poll() is None:
            proc.terminate()
        self._thread.join(timeout=10)

    # -- reading ----------------------------------------------------------------------------
    def _command(self) -> list:
        return [self.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-rtsp_transport", self.rtsp_transport,
                "-timeout", "10000000", "-i", self.spec.target, "-map", "0:v:0", "-c", "copy",
                # the first packets off RTSP may carry no timestamp, which the TS muxer refuses
                "-bsf:v", "setts=pts=if(eq(PTS\\,NOPTS)\\,0\\,PTS):dts=if(eq(DTS\\,NOPTS)\\,0\\,DTS)",
                "-f", "mpegts", "-"]

    def run(self):
        """Read the camera until stopped (the recorder runs this under supervision)."""
        delay, failures = self.retry_delay, 0
        while not self.stop.is_set():
            # own session: a Ctrl-C must not end the buffer before the open clip has its last packets
            self.proc = procs.popen(self._command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            self.connects += 1
            err = collections.deque(maxlen=5)
            drain = threading.Thread(target=lambda: err.extend(x.decode(errors="replace").strip()
                                                               for x in self.proc.stderr), daemon=True)
            drain.start()
            try:
                got = self._read(self.proc)
            finally:
                if self.proc.poll() is None:
                    self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                drain.join(timeout=2)
                with self._lock:
                    # a new connection is a new stream: old packets cannot be joined to it
                    self._groups.clear()
                    self._bytes = 0
                    self._header = b""
            if not self.stop.is_set():
                delay, failures = (self.retry_delay, 0) if got else (min(delay * 2, self.max_retry_delay), failures + 1)
                # the decoder's side logs the outage; here once per outage, not per retry
                (log.info if failures <= 1 else log.debug)("packet buffer for %s ended (%s); reconnecting",
                                                           self.spec.display, redact(err[-1]) if err else "stream ended")
                self.stop.wait(delay)

    def _read(self, proc) -> bool:
        """Read ffmpeg's TS until it ends; whether any packet came. Bytes that are not TS end the
        connection (logged), never the thread."""
        fd = proc.stdout.fileno()
        got = False
        parser = TsParser()
        while not self.stop.is_set():
            chunk = os.read(fd, TS * 512)
            if not chunk:
                return got
            got = True
            try:
                data, keys = parser.feed(chunk)
            except TsError as e:
                log.warning("packet buffer for %s: %s; reconnecting", self.spec.display, e)
                return got
            if not data or parser.video_pid is None:
                continue
            if not self._header:
                with self._lock:
                    self._header = parser.header
            self._take(data, keys, time.monotonic())
        return got

    def _take(self, data: bytes, keys: list, now: float):
        with self._lock:
            prev = 0
            for off in keys + [len(data)]:
                piece = data[prev:off]
                if piece and self._groups:
                    self._groups[-1][1].extend(piece)
                    self._bytes += len(piece)
                if off < len(data):
                    self._groups.append([now, bytearray()])
                prev = off
            horizon = now - self.seconds
            # keep the newest group starting at or before the horizon: the buffer spans at least `seconds`
            while len(self._groups) > 1 and (self._groups[1][0] <= horizon or self._bytes > self.max_bytes):
                self._bytes -= len(self._groups.popleft()[1])
            self.peak_bytes = max(self.peak_bytes, self._bytes)
            clips = list(self._clips)
            header = self._header
        for clip in clips:
            if clip.start_ts is not None:
                clip.feed(data)
            elif keys:
                clip.start_ts = now
                clip.feed(header + data[keys[0]:])
