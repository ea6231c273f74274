"""A clip written from the camera's own packets (``nvr_cli.source.packets.PacketRing``): no re-encode.

The ring hands over the pre-alarm (from the keyframe at or before the event's start) and then every
packet that arrives until the event ends; a second ffmpeg remuxes them (stream copy) into a
fragmented MP4. The ring's reader must never wait for a disk: packets queue here, bounded, and a
writer that stops taking them ends its clip with an error, not the recorder's memory.
"""

from __future__ import annotations

import collections
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import nvr_cli.ffmpeg.process as ffproc
from nvr_cli.core.errors import StorageError
from nvr_cli.source.packets import PacketRing

if TYPE_CHECKING:
    import numpy as np


def open_packet_clip(ring: PacketRing, path: Path, start_ts: float) -> "PacketClip":
    """A clip from the keyframe at or before ``start_ts`` (monotonic clock), fed live by ``ring`` until
    its input ends (the source layer cannot make output objects: it is handed them)."""
    clip = PacketClip(ring, path)
    ring.attach(clip, start_ts)
    return clip


class PacketClip:
    """One clip being written from packets; looks like a frame writer to the sink (``write`` is a no-op)."""

    # packets waiting for a writer that stopped reading (a hung disk): past this the clip ends with
    # an error rather than the recorder's memory growing until it is killed
    MAX_QUEUED_BYTES = 64 * 2**20

    def __init__(self, ring: PacketRing, path: Path, start_ts: Optional[float] = None):
        self.path = Path(path)
        self.ring = ring
        self.start_ts = start_ts  # arrival (monotonic) time of its first keyframe; None until it has one
        self.frames = 0
        self.error: Optional[str] = None  # why the clip stopped taking packets (a stuck writer)
        # the camera's connection ended while this clip took its packets: its last frame may be cut short
        self.interrupted = False
        self._broken = False  # ffmpeg stopped reading: its stderr says why (a full disk ...)
        cmd = ffproc.base(ring.ffmpeg) + [
            "-y",
            # the first keyframe tells all there is to know: don't wait 5 s of stream to start the file
            "-analyzeduration",
            "1000000",
            "-f",
            "mpegts",
            "-i",
            "-",
            "-map",
            "0:v:0",
            "-c",
            "copy",
            "-movflags",
            "+frag_keyframe+empty_moov+default_base_moof",
            "-flush_packets",
            "1",
            "-f",
            "mp4",
            str(self.path),
        ]
        try:
            # own session, as for clipwriter's ffmpeg: Ctrl-C must not cut the clip short
            # no death signal: the end of its input (our death included) makes it finish the file
            self.proc = ffproc.FfmpegProcess(
                cmd, stdin=subprocess.PIPE, bufsize=0, death_signal=None, tail=20
            )
        except OSError as e:
            raise StorageError(f"cannot start ffmpeg ({ring.ffmpeg}): {e}") from None
        # the reader thread hands packets over; a slow disk must not stall it
        self._queue: collections.deque = collections.deque()
        self._queued = 0  # bytes in the queue
        self.max_queued = self.MAX_QUEUED_BYTES  # the ring adds the pre-alarm it hands over at once
        self._wake = threading.Condition()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="nvr-packet-clip", daemon=True)
        self._writer.start()

    def feed(self, data: bytes) -> None:
        with self._wake:
            if self._closed or self.error or self._broken:
                return
            if self._queued + len(data) > self.max_queued:
                self.error = (
                    f"the clip's writer stopped taking packets ({self._queued / 2**20:.0f} MB waiting): "
                    "a hung disk or ffmpeg"
                )
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

    def write(self, image: Optional[np.ndarray]) -> None:
        """Frames are not needed (the clip is the camera's packets); says when ffmpeg failed (a full disk)."""
        if self.error or self._broken or self.proc.poll() is not None:
            raise StorageError(f"writing {self.path.name} failed: {self.error or self.proc.why()}")

    def end_input(self) -> None:
        """Take no more packets (the event is over); what is queued is still written. Does not wait."""
        self.ring.detach(self)
        with self._wake:
            self._closed = True
            self._wake.notify()

    def _finish(self):
        self.end_input()
        self._writer.join(timeout=60)

    def close(self) -> None:
        self._finish()
        rc = self.proc.wait(timeout=120)
        if rc != 0 or self.error or self._broken:
            raise StorageError(f"finishing {self.path.name} failed: {self.error or self.proc.why()}")

    def abort(self) -> None:
        self._finish()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
