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

from .clipwriter import FfmpegStderr
from .errors import StorageError
from .redact import redact
from .source import SourceSpec

log = logging.getLogger("nvr_cli.packets")

TS = 188  # MPEG-TS packet size
PAT_PID = 0


def ts_keyframe_starts(data: bytes, video_pid: Optional[int]) -> list:
    """Offsets of the TS packets in ``data`` that begin a keyframe of ``video_pid``.

    ffmpeg's muxer sets the random access indicator on the first packet of every keyframe."""
    starts = []
    view = memoryview(data)
    for off in range(0, len(data) - TS + 1, TS):
        b1 = view[off + 1]
        if not b1 & 0x40 or not view[off + 3] & 0x20 or view[off + 4] == 0:
            continue  # not a payload start, or no adaptation field
        pid = ((b1 & 0x1F) << 8) | view[off + 2]
        if pid == video_pid and view[off + 5] & 0x40:
            starts.append(off)
    return starts


def _pmt_pid(pat: bytes) -> Optional[int]:
    """The first program's PMT PID from a PAT packet."""
    off = 4 + pat[4] + 1  # pointer field
    if off + 12 > len(pat):
        return None
    return ((pat[off + 10] & 0x1F) << 8) | pat[off + 11]


def _video_pid(pmt: bytes) -> Optional[int]:
    """The first video elementary stream's PID from a PMT packet (H.264, H.265, MPEG-2/4 video)."""
    off = 4 + pmt[4] + 1
    section_len = ((pmt[off + 1] & 0x0F) << 8) | pmt[off + 2]
    end = min(len(pmt), off + 3 + section_len - 4)
    info_len = ((pmt[off + 10] & 0x0F) << 8) | pmt[off + 11]
    pos = off + 12 + info_len
    while pos + 5 <= end:
        stype, pid = pmt[pos], ((pmt[pos + 1] & 0x1F) << 8) | pmt[pos + 2]
        if stype in (0x01, 0x02, 0x10, 0x1B, 0x24):
            return pid
        pos += 5 + (((pmt[pos + 3] & 0x0F) << 8) | pmt[pos + 4])
    return None


class PacketClip(FfmpegStderr):
    """One clip being written from packets; looks like a frame writer to the sink (``write`` is a no-op)."""

    def __init__(self, ring: "PacketRing", path: Path, start_ts: Optional[float]):
        self.path = Path(path)
        self.ring = ring
        self.start_ts = start_ts  # arrival time of its first keyframe; None until it has one
        self.frames = 0
        self.error: Optional[str] = None
        cmd = [ring.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               # the first keyframe tells all there is to know: don't wait 5 s of stream to start the file
               "-analyzeduration", "1000000", "-f", "mpegts", "-i", "-",
               "-map", "0:v:0", "-c", "copy", "-movflags", "+frag_keyframe+empty_moov+default_base_moof",
               "-flush_packets", "1", "-f", "mp4", str(self.path)]
        try:
            # own session, as for clipwriter's ffmpeg: Ctrl-C must not cut the clip short
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                                         start_new_session=True)
        except OSError as e:
            raise StorageError(f"cannot start ffmpeg ({ring.ffmpeg}): {e}") from None
        self._drain_stderr()
        # the reader thread hands packets over; a slow disk must not stall it
        self._queue: collections.deque = collections.deque()
        self._wake = threading.Condition()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="nvr-packet-clip", daemon=True)
        self._writer.start()

    def feed(self, data: bytes):
        with self._wake:
            if not self._closed:
                self._queue.append(data)
                self._wake.notify()

    def _write_loop(self):
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if not self._queue:
                    break
                data = self._queue.popleft()
            if self.error:
                continue
            try:
                self.proc.stdin.write(data)
            except (BrokenPipeError, OSError):
                self.error = "ffmpeg stopped"
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def write(self, image):
        """Frames are not needed (the clip is the camera's packets); says when ffmpeg failed (a full disk)."""
        if self.error or self.proc.poll() is not None:
            raise StorageError(f"writing {self.path.name} failed: {self._why()}")

    def _finish(self):
        self.ring.detach(self)
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._writer.join(timeout=60)

    def close(self):
        self._finish()
        rc = self.proc.wait(timeout=120)
        if rc != 0 or self.error:
            raise StorageError(f"finishing {self.path.name} failed: {self._why()}")

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
                 max_retry_delay: float = 3.0):
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
        self._thread = threading.Thread(target=self._run, name="nvr-packets", daemon=True)
        self._thread.start()

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def span(self) -> float:
        with self._lock:
            return time.time() - self._groups[0][0] if self._groups else 0.0

    def open_clip(self, path: Path, start_ts: float) -> PacketClip:
        """A clip from the keyframe at or before ``start_ts`` (wall clock), fed live until closed."""
        with self._lock:
            groups = list(self._groups)
            first = 0
            for i, (t, _) in enumerate(groups):
                if t <= start_ts:
                    first = i
            # with no keyframe yet (just connected), the clip starts at the first one to come
            clip = PacketClip(self, path, groups[first][0] if groups else None)
            if groups:
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

    def _run(self):
        delay, failures = self.retry_delay, 0
        while not self.stop.is_set():
            try:
                # own session: a Ctrl-C must not end the buffer before the open clip has its last packets
                # (it exits on its own when we are gone: its next write to the pipe fails)
                self.proc = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, start_new_session=True)
            except OSError as e:
                log.error("cannot start ffmpeg for the packet buffer: %s", e)
                return
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
        """Read ffmpeg's TS until it ends; whether any packet came."""
        fd = proc.stdout.fileno()
        got = False
        pending = b""
        pmt_pid = video_pid = None
        pat = pmt = b""
        while not self.stop.is_set():
            chunk = os.read(fd, TS * 512)
            if not chunk:
                return got
            got = True
            data = pending + chunk
            if data[0] != 0x47:  # lost sync (should not happen on a pipe): find it again
                i = data.find(b"\x47")
                data = data[i:] if i >= 0 else b""
            usable = len(data) - len(data) % TS
            data, pending = data[:usable], data[usable:]
            if not data:
                continue
            if video_pid is None:
                for off in range(0, len(data), TS):
                    pkt = data[off:off + TS]
                    pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
                    if pid == PAT_PID and pkt[1] & 0x40:
                        pat, pmt_pid = pkt, _pmt_pid(pkt)
                    elif pmt_pid is not None and pid == pmt_pid and pkt[1] & 0x40:
                        pmt, video_pid = pkt, _video_pid(pkt)
                        break
                if video_pid is None:
                    continue
                with self._lock:
                    self._header = pat + pmt
            self._take(data, ts_keyframe_starts(data, video_pid), time.time())
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
