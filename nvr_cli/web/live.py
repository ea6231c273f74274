"""Live view: one relay per watched camera, shared by all its viewers (docs/web-api.md, "Live view").

A relay's input is the recording worker's socket (its camera's packets as MPEG-TS: no extra camera
connection) or, with no worker and when the server may, the camera's RTSP URL. ffmpeg remuxes it
(``-c copy``, never a re-encode) to fragmented MP4, one fragment per frame; the relay cuts that
into the init segment and fragments and hands them to each viewer's bounded queue. A viewer too
slow for its queue loses what is queued and resumes at the next keyframe fragment: it never makes
the relay or the other viewers wait. Everything runs in the server's event loop; ffmpeg is an
asyncio subprocess, the worker's socket is opened in a thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

from nvr_cli.core.backoff import Backoff
from nvr_cli.core.errors import NvrError
from nvr_cli.core.processes import child_command
from nvr_cli.core.redact import redact
from nvr_cli.core.unix_socket import connect_unix
from nvr_cli.ffmpeg.binary import find_ffmpeg
from nvr_cli.ffmpeg.fmp4 import Fmp4Error, Fmp4Reader, Fragment, InitSegment
from nvr_cli.ffmpeg.process import base
from nvr_cli.source.spec import RTSP_ANALYZE_US, ffmpeg_input_args, parse_source
from nvr_cli.web.config import LiveSource
from nvr_cli.web.worker_link import WorkerBusy, WorkerRefused, ask

log = logging.getLogger(__name__)

REAP_TIMEOUT = 10.0  # seconds a killed ffmpeg may take to be gone, pipes and all
LINGER = 2.0  # seconds a relay outlives its last viewer (a page reload keeps the camera open)
QUEUE_BYTES = 4 * 1024 * 1024  # per viewer: seconds of a camera's video; more is a viewer far behind
GOP_BYTES = 16 * 1024 * 1024  # the fragments kept for new viewers: a GOP longer than this is not kept
CHUNK = 1 << 16
# a recorder that was there and is gone is waited for this long before the server opens the camera
# itself: a restarting worker is back within seconds, and a camera allows few sessions
WORKER_GRACE = 20.0
WORKER_CHECK = 5.0  # how often a relay reading the camera itself looks whether a recorder is back
# above the worker's own wait for its camera's first packets (15 s), after which it answers `retry`
PACKETS_TIMEOUT = 20.0
STALL_MIN = 10.0  # no output this long (or 2 x READ_TIMEOUT_SECS) is a hung input: start over
TAIL_MAX = 4096  # characters kept of one line of ffmpeg's stderr
# threads for the relays' blocking calls (asking a recorder waits up to PACKETS_TIMEOUT): their own,
# as asyncio's default pool (6 threads on 2 cores) is taken whole by six cameras that are down, and
# every other camera's live view then waits for them; made only when needed
BLOCKING_THREADS = 64


def output_args(codec: Optional[str] = None) -> list:
    """ffmpeg's output: the video copied as fragmented MP4, one fragment per frame. ``codec``: the
    input's codec when known; H.265 is tagged hvc1 (Safari plays hvc1, not ffmpeg's default hev1)."""
    tag = ["-tag:v", "hvc1"] if codec == "hevc" else []
    return [
        "-map",
        "0:v:0",
        "-c",
        "copy",
        *tag,
        "-f",
        "mp4",
        "-movflags",
        "empty_moov+default_base_moof+frag_every_frame",
        "pipe:1",
    ]


class Unavailable(Exception):
    """Live video of this camera cannot be had (say why): the viewers are told and let go."""


class _NoInputNow(Exception):
    """No input this time (say why), but one may come back: the recorder is restarting."""


def _text(**message: object) -> tuple:
    return ("text", json.dumps(message))


class Viewer:
    """One browser's queue: messages in order; fragments bounded by ``limit`` bytes. ``hub``: counts
    the fragments dropped for being slow (its ``dropped``) as well."""

    def __init__(self, limit: int = QUEUE_BYTES, hub: Optional[LiveHub] = None):
        self.limit = limit
        self.hub = hub
        self.items: collections.deque = collections.deque()
        self.bytes = 0
        self.waiting_key = True  # the next fragment it gets must start with a keyframe
        self.behind = False  # it overflowed and waits for a keyframe: what it misses counts as dropped
        self.greeted = False
        self.closed = False
        self.relay: Optional[Relay] = None
        self.dropped = 0  # fragments it missed by being slow (not those before its first keyframe)
        self._wake = asyncio.Event()

    def _drop(self, n: int) -> None:
        self.dropped += n
        if self.hub is not None:
            self.hub.dropped += n

    def _put(self, item: tuple) -> None:
        self.items.append(item)
        self._wake.set()

    def say(self, **message: object) -> None:
        self._put(_text(**message))

    def init(self, init: InitSegment, via: Optional[str]) -> None:
        self.say(type="init", mime=init.mime, codec=init.codec, width=init.width, height=init.height, via=via)
        self._put(("init", init.data))
        self.waiting_key = True

    def fragment(self, fragment: Fragment) -> None:
        if self.waiting_key and not fragment.key:
            if self.behind:
                self._drop(1)
            return
        if self.bytes + len(fragment.data) > self.limit:
            kept = [item for item in self.items if item[0] != "frag"]
            self._drop(len(self.items) - len(kept))
            self.items, self.bytes = collections.deque(kept), 0
            if not fragment.key:
                self.waiting_key = self.behind = True
                self._drop(1)
                return
        self.waiting_key = self.behind = False
        self.bytes += len(fragment.data)
        self._put(("frag", fragment.data))

    def close(self) -> None:
        """Nothing more comes: ``next()`` returns None once the queue is empty."""
        self.closed = True
        self._wake.set()

    async def next(self) -> Optional[tuple]:
        """The next (kind, data): kind "text", "init" or "frag"; None after ``close()``."""
        while not self.items:
            if self.closed:
                return None
            self._wake.clear()
            await self._wake.wait()
        item = self.items.popleft()
        if item[0] == "frag":
            self.bytes -= len(item[1])
        return item


class Relay:
    """The live stream of one camera for all its viewers, while it has any."""

    def __init__(self, camera: str, source: LiveSource, hub: LiveHub):
        self.camera, self.source, self.hub = camera, source, hub
        self.viewers: set = set()
        self.via: Optional[str] = None
        self.init: Optional[InitSegment] = None
        self.gop: list = []  # the fragments since the newest keyframe fragment
        self.gop_bytes = 0
        self.task: Optional[asyncio.Task] = None
        self.worker_seen: Optional[float] = None  # when the recorder last took a connection (loop time)
        self.had_input = False
        self._linger: Optional[asyncio.TimerHandle] = None

    # -- viewers ------------------------------------------------------------------------------------
    def add(self, viewer: Viewer) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self.viewers.add(viewer)
        viewer.relay = self
        if self.via is not None:
            self._greet(viewer)
        if self.init is not None:
            viewer.init(self.init, self.via)
            for f in self.gop:
                viewer.fragment(f)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(), name=f"live relay {self.camera}")
            self.task.add_done_callback(lambda _: self.hub._ended(self))

    def remove(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        viewer.close()
        if not self.viewers and self._linger is None and self.task is not None and not self.task.done():
            self._linger = asyncio.get_running_loop().call_later(LINGER, self.stop)

    def stop(self) -> None:
        """End the relay now: its ffmpeg and socket are closed by the task as it is cancelled."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self.task is not None:
            self.task.cancel()
        for v in list(self.viewers):
            v.close()
        self.hub._stopped(self)

    def _greet(self, viewer: Viewer) -> None:
        if not viewer.greeted:
            viewer.greeted = True
            viewer.say(type="state", state="connecting", via=self.via)

    def _tell(self, **message: object) -> None:
        for v in self.viewers:
            v.say(**message)

    def _segment(self, seg: object) -> bool:
        """Pass one segment on; whether it was a fragment."""
        if isinstance(seg, InitSegment):
            self.init, self.gop, self.gop_bytes = seg, [], 0
            for v in self.viewers:
                v.init(seg, self.via)
            return False
        assert isinstance(seg, Fragment)
        if seg.key:
            self.gop, self.gop_bytes = [], 0
        if seg.key or self.gop:
            self.gop.append(seg)
            self.gop_bytes += len(seg.data)
            if self.gop_bytes > GOP_BYTES:  # a new viewer waits for the next keyframe instead
                self.gop, self.gop_bytes = [], 0
        for v in self.viewers:
            v.fragment(seg)
        return True

    # -- the input ----------------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = Backoff(1.0, 5.0)
        try:
            while self.viewers:
                try:
                    reason, got = await self._once()
                except _NoInputNow as e:
                    reason, got = str(e), False
                self.init, self.gop, self.gop_bytes = None, [], 0
                if not self.viewers:
                    break
                if got:
                    backoff.reset()
                log.info("live %s: %s; trying again", self.camera, reason)
                self._tell(type="state", state="reconnecting", reason=reason)
                await asyncio.sleep(backoff.next())
        except Unavailable as e:
            log.info("live %s: unavailable: %s", self.camera, e)
            self._tell(type="state", state="unavailable", reason=str(e))
        except Exception as e:  # noqa: BLE001 - a viewer's page must hear of it, not hang
            log.error("live %s failed: %s: %s", self.camera, type(e).__name__, redact(str(e)), exc_info=e)
            self._tell(type="state", state="unavailable", reason="internal error (in the server's log)")

    async def _open(self) -> tuple:
        """(ffmpeg's input arguments, stdin: the worker's socket or None, the codec if known); the
        worker first."""
        try:
            answer = await _ask_packets(self.source, self.hub.pool)
        except WorkerRefused as e:
            raise Unavailable(f"the recorder has no live video: {e}") from None
        except WorkerBusy as e:  # it is there (it took the connection): wait for it, never beside it
            self._from_recorder()
            raise _NoInputNow(f"the recorder: {e}") from None
        if answer is not None:
            sock, words = answer
            if words[1:2] == ["other"]:
                sock.close()
                raise Unavailable("the camera's codec is neither H.264 nor H.265: no browser plays it")
            # ffmpeg gets it as stdin: a non-blocking one (the connect's timeout) would make it spin
            sock.setblocking(True)
            self._from_recorder()
            self.had_input = True
            args = ["-analyzeduration", str(RTSP_ANALYZE_US), "-f", "mpegts", "-i", "pipe:0"]
            return args, sock, words[1] if len(words) > 1 else None
        now = asyncio.get_running_loop().time()
        recently = self.worker_seen is not None and now - self.worker_seen < WORKER_GRACE
        if self.source.url is None or recently:
            if self.had_input or recently:
                raise _NoInputNow("waiting for the recorder to come back")
            raise Unavailable(
                "no recorder offers this camera's video now, and the server may not open the camera "
                "itself (not an RTSP camera, or WEB_LIVE_DIRECT = False)"
            )
        self.via, self.had_input = "camera", True
        spec = parse_source(self.source.url)
        args = ffmpeg_input_args(spec, transport=self.source.transport, timeout=self.source.timeout)
        return ["-analyzeduration", str(RTSP_ANALYZE_US), *args], None, None

    def _from_recorder(self) -> None:
        """The recorder took the connection: it is there (the grace before the server opens the
        camera itself starts again), and the viewers hear that their video comes from it."""
        self.via, self.worker_seen = "recorder", asyncio.get_running_loop().time()
        for v in self.viewers:
            self._greet(v)

    async def _once(self) -> tuple:
        """One input until it ends: (why it ended, whether any fragment came)."""
        try:
            ffmpeg = await self.hub.blocking(find_ffmpeg, self.source.ffmpeg)
        except NvrError as e:
            raise Unavailable(str(e)) from None
        args, sock, codec = await self._open()
        for v in self.viewers:
            self._greet(v)
        proc = back = errors = None
        got = False
        # a hung input (a stopped worker, a camera that stalls without closing) ends here, not never
        stall = max(STALL_MIN, 2 * self.source.timeout)
        try:
            cmd, env = child_command([*base(ffmpeg), *args, *output_args(codec)], death_signal=signal.SIGKILL)
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=sock.fileno() if sock is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
            if sock is not None:  # ffmpeg has its own copy: the worker sees the end when ffmpeg ends
                sock.close()
                sock = None
            tail: collections.deque = collections.deque(maxlen=5)
            loop = asyncio.get_running_loop()
            errors = loop.create_task(_drain(proc.stderr, tail))
            back = loop.create_task(self._recorder_back(proc)) if self.via == "camera" else None
            reader = Fmp4Reader()
            assert proc.stdout is not None
            try:
                while True:
                    try:
                        chunk = await asyncio.wait_for(proc.stdout.read(CHUNK), stall)
                    except asyncio.TimeoutError:
                        return f"no video for {stall:.0f} s", got
                    if not chunk:
                        break
                    for seg in reader.feed(chunk):
                        got = self._segment(seg) or got
            except Fmp4Error as e:
                return f"the stream could not be read ({e})", got
            await proc.wait()
            await errors
            if back is not None and back.done() and back.result():
                return "the recorder is back: its packets instead of a connection of the server's", got
            said = redact(tail[-1]) if tail else ""
            if self.via == "recorder":
                return said or "the recorder's stream ended (it restarted or lost the camera)", got
            return said or "the camera's stream ended", got
        finally:
            if back is not None and not back.done():
                back.cancel()
            if sock is not None:
                sock.close()
            if proc is not None:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                await asyncio.shield(_reaped(proc, errors))

    async def _recorder_back(self, proc: asyncio.subprocess.Process) -> bool:
        """Ends ``proc`` (the server's own connection to the camera) once a recorder answers on the
        camera's socket: the relay then takes the recorder's packets. Whether it did."""
        while True:
            await asyncio.sleep(WORKER_CHECK)
            if not self.source.socket.exists():
                continue
            sock = await self.hub.blocking(connect_unix, self.source.socket, 1.0)
            if sock is not None:
                sock.close()
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                return True


def _close_answer(fut: asyncio.Future) -> None:
    if not fut.cancelled() and fut.exception() is None and fut.result() is not None:
        fut.result()[0].close()


async def _ask_packets(source: LiveSource, pool: ThreadPoolExecutor) -> Optional[tuple]:
    """``ask(source.socket, "packets")`` in a thread of ``pool``; a socket it opens after the relay
    was stopped is closed, not left behind."""
    fut = asyncio.get_running_loop().run_in_executor(pool, ask, source.socket, "packets", PACKETS_TIMEOUT)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        fut.add_done_callback(_close_answer)
        raise


async def _reaped(proc: asyncio.subprocess.Process, errors: Optional[asyncio.Task]) -> None:
    """Wait for a killed ffmpeg to be gone. asyncio's ``Process.wait()`` returns only once its pipes
    have closed as well: a pipe no longer read (its reader paused when its buffer filled) never sees
    its end, and the wait, and the relay, would never end. So both are read to their end first (its
    stderr by ``errors``, still running); bounded, so nothing hangs here for good."""

    async def rest(stream: Optional[asyncio.StreamReader]) -> None:
        while stream is not None and await stream.read(CHUNK):
            pass

    waits = [rest(proc.stdout), proc.wait()]
    if errors is not None:
        waits.append(errors)
    else:
        waits.append(rest(proc.stderr))
    try:
        await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), REAP_TIMEOUT)
    except asyncio.TimeoutError:
        log.error("live: ffmpeg (pid %s) did not end within %g s of being killed", proc.pid, REAP_TIMEOUT)


async def _drain(stream: Optional[asyncio.StreamReader], tail: collections.deque) -> None:
    """ffmpeg's stderr read all the time (a full pipe would stall it), its last lines kept. Read in
    chunks: a line longer than the stream's limit must not end the reading (readline would raise)."""
    if stream is None:
        return
    partial = b""
    while True:
        chunk = await stream.read(CHUNK)
        lines = (partial + chunk).split(b"\n") if chunk else [partial]
        partial = lines.pop()[-TAIL_MAX:] if chunk else b""
        for line in lines:
            text = line[-TAIL_MAX:].decode("utf-8", "replace").strip()
            if text:
                tail.append(text)
        if not chunk:
            return


class LiveHub:
    """The relays of the server: started by a camera's first viewer, ended after its last."""

    def __init__(self, source_of: Callable[[str], Optional[LiveSource]]):
        self.source_of = source_of
        self.relays: dict = {}
        self.ending: set = set()  # relays stopped whose ffmpeg is still being ended
        self.closing = False  # the server is stopping: no new relay (nobody would stop it)
        self.dropped = 0  # fragments dropped for viewers too slow for them, since the server started
        self.pool = ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="nvr-live")

    def blocking(self, fn: Callable, *args: object) -> asyncio.Future:
        """``fn(*args)`` in a thread of the relays' own pool."""
        return asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def join(self, camera: str) -> Optional[Viewer]:
        """A new viewer of ``camera`` (None: the server knows no way to it, or is stopping). In the
        event loop."""
        if self.closing:
            return None
        relay = self.relays.get(camera)
        if relay is None:
            source = self.source_of(camera)
            if source is None:
                return None
            relay = self.relays[camera] = Relay(camera, source, self)
        viewer = Viewer(hub=self)
        relay.add(viewer)
        return viewer

    def leave(self, viewer: Viewer) -> None:
        if viewer.relay is not None:
            viewer.relay.remove(viewer)

    def _stopped(self, relay: Relay) -> None:
        """``relay`` was stopped: a new viewer starts a new one while its ffmpeg ends."""
        if self.relays.get(relay.camera) is relay:
            del self.relays[relay.camera]
        if relay.task is not None and not relay.task.done():
            self.ending.add(relay)

    def _ended(self, relay: Relay) -> None:
        """``relay``'s task is over (stopped, or the camera is unavailable)."""
        if self.relays.get(relay.camera) is relay:
            del self.relays[relay.camera]
        self.ending.discard(relay)
        for v in relay.viewers:
            v.close()

    def stats(self) -> dict:
        """{"relays": N, "viewers": N, "dropped": N}: a relay counts until its ffmpeg has ended;
        ``dropped``: fragments slow viewers missed, all told."""
        relays = list(self.relays.values())
        return {
            "relays": len(relays) + len(self.ending),
            "viewers": sum(len(r.viewers) for r in relays),
            "dropped": self.dropped,
        }

    def of(self, camera: str) -> dict:
        """{"viewers": N, "via": "recorder" | "camera" | None} of one camera."""
        relay = self.relays.get(camera)
        if relay is None:
            return {"viewers": 0, "via": None}
        return {"viewers": len(relay.viewers), "via": relay.via}

    async def close(self) -> None:
        """Stop every relay and wait for their ffmpeg to end (the server is stopping); refuse new ones."""
        self.closing = True
        tasks = [r.task for r in [*self.relays.values(), *self.ending] if r.task is not None]
        for r in list(self.relays.values()):
            r.stop()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self.pool.shutdown(wait=False, cancel_futures=True)
