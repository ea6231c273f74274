"""The camera's own packets as the pre-alarm buffer and the clip: no re-encode.

An ffmpeg process copies the camera's video into MPEG-TS on a pipe. The last seconds of it stay in
memory, split at keyframes: 5 s of 1080p25 is a few MB of packets where decoded frames take
~780 MB. An event's clip is the groups from the keyframe at or before its start plus everything
that arrives until it ends, remuxed (stream copy) by a second ffmpeg into a fragmented MP4. The
camera is then read twice (this and the decoder); a clip has the camera's own quality and costs
next to no CPU. The clip's writer is ``nvr_cli.output.packet_clip``; this is the buffer it is fed from.

``PacketBuffer`` is the keyframe-group buffer alone: continuous recording fills one from its own
ffmpeg (no second camera connection), and live viewers (``nvr_cli.runtime.live_tap``) attach to either.
"""

from __future__ import annotations

import collections
import logging
import os
import subprocess
import threading
import time
from typing import Callable, Optional, Protocol

import nvr_cli.ffmpeg.process as ffproc
from nvr_cli.core.backoff import Backoff
from nvr_cli.core.redact import redact
from nvr_cli.core.supervised import Supervised
from nvr_cli.ffmpeg.binary import bitstream_filters
from nvr_cli.ffmpeg.mpegts import TS, TsError, TsParser
from nvr_cli.source.spec import SourceSpec, ffmpeg_input_args

log = logging.getLogger(__name__)


TS_BSF = "setts"  # ts_output_args' bitstream filter: ffmpeg 4.4 and newer


def ts_unsupported(ffmpeg: str) -> Optional[str]:
    """Why ``ffmpeg`` cannot write ``ts_output_args`` (it lacks their filter), or None when it can."""
    if TS_BSF in bitstream_filters(ffmpeg):
        return None
    return f"this ffmpeg lacks the {TS_BSF} filter live packets need (ffmpeg 4.4 or newer)"


def ts_output_args(target: str) -> list:
    """ffmpeg output options: the input's first video stream, stream-copied as MPEG-TS to ``target``."""
    return [
        "-map",
        "0:v:0",
        "-c",
        "copy",
        # the first packets off RTSP may carry no timestamp, which the TS muxer refuses
        "-bsf:v",
        "setts=pts=if(eq(PTS\\,NOPTS)\\,0\\,PTS):dts=if(eq(DTS\\,NOPTS)\\,0\\,DTS)",
        # each packet leaves at once: live viewers read this too
        "-flush_packets",
        "1",
        "-f",
        "mpegts",
        target,
    ]


class PacketFeed(Protocol):
    """What ``PacketBuffer.attach`` feeds: a clip (``output.packet_clip.PacketClip``), a live viewer."""

    start_ts: Optional[float]
    max_queued: int
    interrupted: bool  # set here when the connection ends while the clip is fed

    def feed(self, data: bytes) -> None: ...


class PacketBuffer:
    """The last ``seconds`` of a camera's MPEG-TS, split at keyframes, and the feeds attached to it.

    Filled by whoever reads the camera: ``PacketRing`` (its own ffmpeg) or continuous recording
    (a second output of the segmenter's ffmpeg); read by clips and live viewers through ``attach``.
    """

    def __init__(self, seconds: float, max_mb: float = 512.0):
        self.seconds = seconds
        self.max_bytes = int(max_mb * 2**20)
        self._groups: collections.deque = (
            collections.deque()
        )  # [arrival time, bytearray], each from a keyframe
        self._bytes = 0
        self._header = b""  # PAT + PMT: every cut starts with them
        self._clips: list = []
        self._lock = threading.Lock()
        self.peak_bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def header(self) -> bytes:
        """PAT + PMT of the current stream; b"" until they are known."""
        return self._header

    @property
    def span(self) -> float:
        with self._lock:
            return time.monotonic() - self._groups[0][0] if self._groups else 0.0

    def attach(self, clip: PacketFeed, start_ts: float) -> None:
        """Feed ``clip`` from the keyframe at or before ``start_ts`` (monotonic clock), then live until
        detached. A clip is anything with ``start_ts`` (set here: the arrival time of its first
        keyframe), ``max_queued`` (raised here by the pre-alarm handed over at once) and ``feed(bytes)``."""
        with self._lock:
            groups = list(self._groups)
            first = 0
            for i, (t, _) in enumerate(groups):
                if t <= start_ts:
                    first = i
            # with no keyframe yet (just connected), the clip starts at the first one to come
            clip.start_ts = groups[first][0] if groups else None
            if groups:
                clip.max_queued += len(self._header) + sum(len(d) for _, d in groups[first:])
                clip.feed(self._header)
                for _, data in groups[first:]:
                    clip.feed(bytes(data))
            self._clips.append(clip)

    def detach(self, clip: PacketFeed) -> None:
        with self._lock:
            if clip in self._clips:
                self._clips.remove(clip)

    def reset(self) -> None:
        """The stream ended: the feeds are told, and old packets cannot be joined to the next one."""
        with self._lock:
            for clip in self._clips:
                clip.interrupted = True
            self._groups.clear()
            self._bytes = 0
            self._header = b""

    def read(self, fd: int, stop: threading.Event) -> tuple:
        """Take ffmpeg's TS from ``fd`` until it ends or ``stop`` is set: (whether any bytes came, why
        it stopped early or None). Bytes that are not TS stop it (the caller decides what then)."""
        got = False
        parser = TsParser()
        while not stop.is_set():
            chunk = os.read(fd, TS * 512)
            if not chunk:
                return got, None
            got = True
            try:
                data, keys = parser.feed(chunk)
            except TsError as e:
                return got, str(e)
            if not data or parser.video_pid is None:
                continue
            if not self._header:
                with self._lock:
                    self._header = parser.header
            self._take(data, keys, time.monotonic())
        return got, None

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
                clip.feed(header + data[keys[0] :])


class PacketRing(PacketBuffer):
    """Keeps the last ``seconds`` of a network camera's packets, read by an ffmpeg of its own."""

    def __init__(
        self,
        spec: SourceSpec,
        ffmpeg: str,
        seconds: float,
        stop: threading.Event,
        *,
        rtsp_transport: str = "tcp",
        max_mb: float = 512.0,
        retry_delay: float = 1.0,
        max_retry_delay: float = 3.0,
        on_fatal: Optional[Callable[[str], None]] = None,
        read_timeout: float = 10.0,
    ):
        if spec.kind != "rtsp":
            raise ValueError("packet pre-alarm needs an RTSP camera")
        super().__init__(seconds, max_mb)
        self.spec, self.ffmpeg, self.stop = spec, ffmpeg, stop
        self.rtsp_transport = rtsp_transport
        self.read_timeout = read_timeout  # READ_TIMEOUT_SECS: a camera silent this long is reconnected
        self.retry_delay, self.max_retry_delay = retry_delay, max_retry_delay
        self.proc: Optional[ffproc.FfmpegProcess] = None
        self.connects = 0
        self._thread = Supervised("packet buffer", self.run, stop, on_fatal=on_fatal).start()

    def close(self) -> None:
        self.stop.set()
        proc = self.proc
        if proc and proc.poll() is None:
            proc.terminate()
        self._thread.join(timeout=10)

    # -- reading ----------------------------------------------------------------------------
    def _command(self) -> list:
        return (
            ffproc.base(self.ffmpeg)
            + ffmpeg_input_args(self.spec, transport=self.rtsp_transport, timeout=self.read_timeout)
            + ts_output_args("-")
        )

    def run(self) -> None:
        """Read the camera until stopped (the recorder runs this under supervision)."""
        backoff, failures = Backoff(self.retry_delay, self.max_retry_delay), 0
        while not self.stop.is_set():
            # own session: a Ctrl-C must not end the buffer before the open clip has its last packets
            self.proc = ffproc.FfmpegProcess(self._command(), stdout=subprocess.PIPE, tail=5)
            self.connects += 1
            try:
                got, bad = self.read(self.proc.stdout.fileno(), self.stop)
                if bad:  # not TS: the connection ends (logged), never the thread
                    log.warning("packet buffer for %s: %s; reconnecting", self.spec.display, bad)
            finally:
                self.proc.end(timeout=5)
                self.reset()  # a new connection is a new stream
            if not self.stop.is_set():
                if got:
                    backoff.reset()
                    failures = 0
                else:
                    failures += 1
                err = [x for x in self.proc.lines() if x.strip()]
                # the decoder's side logs the outage; here once per outage, not per retry
                (log.info if failures <= 1 else log.debug)(
                    "packet buffer for %s ended (%s); reconnecting",
                    self.spec.display,
                    redact(err[-1]) if err else "stream ended",
                )
                self.stop.wait(backoff.next())
