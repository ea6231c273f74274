"""A recording worker's live view: its camera's packets and newest analysed frame on a Unix socket.

``nvr-cli serve`` relays them to browsers, so ten viewers cost the camera no extra connection. A
client connects, sends one line and reads the answer:

- ``snapshot`` -> ``ok image/jpeg <nbytes>`` + the JPEG of the newest analysed frame (encoded on
  request, at most once per 0.5 s), or ``error <reason>``; then the worker closes.
- ``packets`` -> ``ok video/mp2t <h264|hevc|other>`` + MPEG-TS: PAT and PMT, the newest keyframe group,
  then live; closed when the packet source reconnects (a new stream) or the worker stops. Or
  ``error <reason>`` (a USB camera: no encoded packets).
- anything else -> ``error unknown request``.

``error <reason>`` is for good: asking again gets the same answer. A condition that passes gets
``retry <reason>`` instead, and the client should ask again later: ``packets`` before the camera sent
anything (``no packets from the camera yet``, after HEADER_WAIT: the reader is still connecting, or the
camera is down), and any request while MAX_CLIENTS are connected (``too many clients``).

Nothing here may slow the recorder: each viewer has a bounded queue filled by the packet reader
(never blocked); a viewer too slow for it loses what is queued and resumes at the next keyframe group
(``LiveTap.drops`` counts those overflows).
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import select
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Protocol

import cv2

from nvr_cli.core.frames import Frame
from nvr_cli.core.supervised import Supervised, log_crash
from nvr_cli.core.unix_socket import bind_unix
from nvr_cli.ffmpeg.mpegts import video_codec_of
from nvr_cli.source.packets import PacketFeed, PacketRing

log = logging.getLogger(__name__)

QUEUE_BYTES = 6 * 2**20  # per viewer: a few seconds of 1080p; more waiting means it is too slow
MAX_CLIENTS = 32  # connections at once; `serve` needs one per watched camera and a few snapshots
REQUEST_TIMEOUT = 2.0
REQUEST_MAX = 64
SNAPSHOT_TTL = 0.5  # a grid of viewers polling every second costs one encode per half second
JPEG_QUALITY = 80
HEADER_WAIT = 15.0  # a reader opened for this viewer takes a moment to connect to the camera
SEND_TIMEOUT = 30.0  # a viewer that takes nothing for this long is gone
IDLE_CHECK = 1.0  # how often a waiting viewer is checked for having hung up
BIND_RETRY = 3.0  # an older worker of this camera still answers on the socket while it finishes its clips


class PacketSource(Protocol):
    """Where a viewer's packets come from: a ``PacketBuffer`` (``PacketRing``, continuous recording)."""

    @property
    def header(self) -> bytes: ...

    def attach(self, clip: PacketFeed, start_ts: float) -> None: ...

    def detach(self, clip: PacketFeed) -> None: ...


class OnDemandPackets:
    """A packet reader of its own, open only while a viewer is attached (clips re-encoded, no
    continuous recording: nothing else reads the camera's packets)."""

    def __init__(self, open_ring: Callable[[], PacketRing]):
        self._open_ring = open_ring
        self._ring: Optional[PacketRing] = None
        self._users = 0
        self._lock = threading.Lock()

    @property
    def header(self) -> bytes:
        ring = self._ring
        return ring.header if ring is not None else b""

    def attach(self, clip: PacketFeed, start_ts: float) -> None:
        with self._lock:
            if self._ring is None:
                self._ring = self._open_ring()
            self._users += 1
            self._ring.attach(clip, start_ts)

    def detach(self, clip: PacketFeed) -> None:
        with self._lock:
            ring = self._ring
            if ring is None:
                return
            ring.detach(clip)
            self._users -= 1
            if self._users > 0:
                return
            self._ring = None
        ring.close()  # outside the lock: it waits for its ffmpeg to end

    def close(self) -> None:
        with self._lock:
            ring, self._ring, self._users = self._ring, None, 0
        if ring is not None:
            ring.close()


class _Viewer:
    """One ``packets`` client's queue: fed by the packet reader's thread, emptied by the client's."""

    def __init__(self, on_drop: Optional[Callable[["_Viewer"], None]] = None):
        self.start_ts: Optional[float] = None  # None: waiting for a keyframe (the source sees to it)
        self.max_queued = QUEUE_BYTES  # the source raises it by the backlog it hands over at once
        self.drops = 0
        self._on_drop = on_drop  # called outside the lock, on the packet reader's thread
        self._interrupted = False
        self._closed = False
        self._queue: collections.deque = collections.deque()
        self._queued = 0
        self._wake = threading.Condition()

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    @interrupted.setter
    def interrupted(self, value: bool) -> None:
        """Set by the source when its stream ends: the client is closed once it has what was queued."""
        with self._wake:
            self._interrupted = value
            self._wake.notify()

    @property
    def ended(self) -> bool:
        return self._closed or self._interrupted

    def feed(self, data: bytes) -> None:
        with self._wake:
            if self._closed or self._interrupted:
                return
            dropped = self._queued + len(data) > self.max_queued
            if dropped:
                # too slow: drop what waits; the source resumes this viewer at its next keyframe group
                self._queue.clear()
                self._queued = 0
                self.start_ts = None
                self.drops += 1
            else:
                self._queue.append(data)
                self._queued += len(data)
                self._wake.notify()
        if dropped and self._on_drop is not None:
            self._on_drop(self)

    def take(self, timeout: float) -> Optional[bytes]:
        """What is queued (b"" after ``timeout`` with nothing); None when the stream has ended."""
        with self._wake:
            if not self._queue and not (self._closed or self._interrupted):
                self._wake.wait(timeout)
            if self._queue:
                data = b"".join(self._queue)
                self._queue.clear()
                self._queued = 0
                return data
            return None if self._closed or self._interrupted else b""

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()


class _Refused(Exception):
    """A request that gets ``error <reason>``."""

    answer = "error"


class _NotNow(_Refused):
    """A request that gets ``retry <reason>``: the condition passes, the client asks again later."""

    answer = "retry"


def _gone(conn: socket.socket) -> bool:
    """Whether the client has hung up (its end reads as closed)."""
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (OSError, ValueError):
        return True


class LiveTap:
    """Serves one camera's live packets and snapshots on ``path`` until ``close``.

    ``packets``: the source of packets, or None (then ``no_packets`` says why); ``frame()``: the
    newest analysed frame (its ``ts`` on the monotonic clock), or None when this worker analyses
    nothing; ``stale_after``: seconds after which a frame means the camera is lost.
    """

    def __init__(
        self,
        path: Path,
        *,
        packets: Optional[PacketSource],
        no_packets: str = "no packets to offer",
        frame: Optional[Callable[[], Optional[Frame]]] = None,
        stale_after: float = 10.0,
    ):
        self.path = Path(path)
        self.packets, self.no_packets = packets, no_packets
        self.frame, self.stale_after = frame, stale_after
        self.closed = threading.Event()
        self._listener: Optional[socket.socket] = None
        self._inode: Optional[int] = None
        self._clients: dict = {}  # connection -> its _Viewer (None for other requests)
        self._lock = threading.Lock()
        self._jpeg: tuple = (0.0, b"")  # (monotonic time encoded, bytes)
        self._jpeg_lock = threading.Lock()
        self._thread: Optional[Supervised] = None
        self.drops = 0  # times a viewer's queue overflowed (it lost what waited), all viewers together

    def start(self) -> "LiveTap":
        """Bind the socket and serve; a socket that cannot be had costs the live view, not the recording.
        One an older worker still answers on is tried again every BIND_RETRY seconds until it is free."""
        busy = self._bind()
        if busy is None:
            return self
        if busy:
            log.warning(
                "live view of this camera waits: another process answers on %s (an older worker finishing "
                "its clips?); trying again every %g s",
                self.path,
                BIND_RETRY,
            )
        self._thread = Supervised("live view", self._serve, self.closed).start()
        return self

    def _bind(self) -> Optional[bool]:
        """Listen on the socket: False when done, True when another process holds it, None on any
        other failure (said in a warning: retrying would not help)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            listener = bind_unix(self.path)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return True
            log.warning("no live view of this camera: cannot listen on %s (%s)", self.path, e.strerror or e)
            return None
        listener.settimeout(0.5)  # so that close() is noticed
        with self._lock:  # close() may run meanwhile: the socket file is then ours to remove
            if not self.closed.is_set():
                self._listener = listener
                self._inode = os.stat(self.path).st_ino
                return False
        listener.close()
        self.path.unlink(missing_ok=True)
        return False

    def close(self) -> None:
        """Stop serving: the socket file goes, every client is disconnected, an own reader closed."""
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
            listener = self._listener
        if listener is not None:
            listener.close()
            try:
                if os.stat(self.path).st_ino == self._inode:  # not one a newer worker has bound since
                    self.path.unlink()
            except OSError:
                pass
        with self._lock:
            clients = list(self._clients.items())
        for conn, viewer in clients:
            if viewer is not None:
                viewer.close()
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes a client thread blocked in send
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        if isinstance(self.packets, OnDemandPackets):
            self.packets.close()

    def _dropped(self, viewer: _Viewer) -> None:
        with self._lock:
            self.drops += 1
        if viewer.drops == 1:  # once per viewer: a stalled one overflows again at every keyframe group
            log.info("a live viewer is too slow: what was queued for it is dropped, it resumes at a keyframe")

    # -- connections ------------------------------------------------------------------------------
    def _serve(self) -> None:
        while self._listener is None:
            if self.closed.wait(BIND_RETRY):
                return
            busy = self._bind()
            if busy is None:
                return
            if not busy:
                log.info("live view of this camera: listening on %s", self.path)
        self._accept_loop()

    def _accept_loop(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self.closed.is_set():
                    return
                raise
            with self._lock:
                busy = len(self._clients) >= MAX_CLIENTS
                if not busy:
                    self._clients[conn] = None
            if busy:
                self._answer_and_close(conn, b"retry too many clients\n")
                continue
            threading.Thread(
                target=log_crash,
                args=("live view client", self._client, conn),
                name="nvr-live-client",
                daemon=True,
            ).start()

    @staticmethod
    def _answer_and_close(conn: socket.socket, line: bytes) -> None:
        try:
            conn.settimeout(REQUEST_TIMEOUT)
            conn.sendall(line)
        except OSError:
            pass
        finally:
            conn.close()

    def _client(self, conn: socket.socket) -> None:
        try:
            request = self._request(conn)
            conn.settimeout(SEND_TIMEOUT)
            if request == "snapshot":
                jpeg = self._snapshot()
                conn.sendall(b"ok image/jpeg %d\n" % len(jpeg) + jpeg)
            elif request == "packets":
                self._stream(conn)
            else:
                raise _Refused("unknown request" if request is not None else "no request line")
        except _Refused as e:
            try:
                conn.sendall(f"{e.answer} {e}\n".encode())
            except OSError:
                pass
        except OSError:
            pass  # the client went away: nothing to tell it
        finally:
            with self._lock:
                self._clients.pop(conn, None)
            conn.close()

    @staticmethod
    def _request(conn: socket.socket) -> Optional[str]:
        """The request line (read within REQUEST_TIMEOUT; cut at REQUEST_MAX bytes, so an overlong one is
        unknown); None if no line came."""
        buf = b""
        deadline = time.monotonic() + REQUEST_TIMEOUT
        while b"\n" not in buf and len(buf) <= REQUEST_MAX:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            conn.settimeout(left)
            try:
                chunk = conn.recv(REQUEST_MAX + 1 - len(buf))
            except socket.timeout:
                return None
            if not chunk:
                break
            buf += chunk
        if b"\n" not in buf and len(buf) <= REQUEST_MAX:
            return None  # hung up before a whole line
        return buf.split(b"\n", 1)[0][:REQUEST_MAX].strip().decode("ascii", "replace")

    # -- snapshot ---------------------------------------------------------------------------------
    def _snapshot(self) -> bytes:
        with self._jpeg_lock:  # one encode at a time; the others get its result
            at, jpeg = self._jpeg
            now = time.monotonic()
            if jpeg and now - at < SNAPSHOT_TTL:
                return jpeg
            frame = self.frame() if self.frame is not None else None
            if frame is None:
                raise _Refused("no frame yet" if self.frame is not None else "this worker analyses no frames")
            age = now - frame.ts
            if age > self.stale_after:
                raise _Refused(f"camera lost: the newest frame is {age:.0f} s old")
            ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise _Refused("the frame could not be encoded")
            self._jpeg = (now, buf.tobytes())
            return self._jpeg[1]

    # -- packets ----------------------------------------------------------------------------------
    def _stream(self, conn: socket.socket) -> None:
        source = self.packets
        if source is None:
            raise _Refused(self.no_packets)
        viewer = _Viewer(on_drop=self._dropped)
        with self._lock:
            self._clients[conn] = viewer
        if self.closed.is_set():
            return
        source.attach(viewer, time.monotonic())  # the newest keyframe group it holds, then live
        try:
            deadline = time.monotonic() + HEADER_WAIT
            while not source.header:  # the codec is in the PMT: a new reader has yet to connect
                if viewer.ended or self.closed.is_set() or _gone(conn):
                    return
                if time.monotonic() > deadline:
                    raise _NotNow("no packets from the camera yet")
                time.sleep(0.05)
            conn.sendall(f"ok video/mp2t {video_codec_of(source.header)}\n".encode())
            while not self.closed.is_set():
                data = viewer.take(IDLE_CHECK)
                if data is None:
                    return  # a new stream (the reader reconnected) or we stop: the client starts over
                if data:
                    conn.sendall(data)
                elif _gone(conn):
                    return
        finally:
            viewer.close()
            source.detach(viewer)
