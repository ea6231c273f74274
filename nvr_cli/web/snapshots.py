"""``latest.jpg``: a camera's newest frame, from its recorder (the frame it analysed last: no decode
of its own) or, with no recorder, one frame ffmpeg grabs from the camera when the server may open
it. The frame is made in a thread; requests wait for it in the event loop, holding no thread."""

from __future__ import annotations

import asyncio
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional, Union

from nvr_cli.core import processes
from nvr_cli.core.errors import NvrError
from nvr_cli.core.redact import redact
from nvr_cli.ffmpeg.binary import find_ffmpeg
from nvr_cli.ffmpeg.process import base, why
from nvr_cli.source.spec import RTSP_ANALYZE_US, ffmpeg_input_args, parse_source
from nvr_cli.web.config import LiveSource
from nvr_cli.web.worker_link import WorkerBusy, WorkerRefused, snapshot

FRESH = 1.0  # seconds a frame is served again: a grid of tiles refreshing together costs one grab
FAILED_FRESH = 5.0  # seconds a failure is answered again: a camera that is down costs one grab per 5 s
GRAB_TIMEOUT = 20.0
# a thread per camera at most (a grab can take GRAB_TIMEOUT), in a pool of their own: in asyncio's
# default one (6 threads on 2 cores) six cameras that are down would hold up every other camera
THREADS = 64


class NoFrame(Exception):
    """No frame can be had now (say why)."""


class Snapshots:
    """The newest frame of each camera: made in a thread at most once at a time per camera, its
    result (a frame or why there is none) shared with every request waiting for it and kept
    ``FRESH`` (a failure ``failed_fresh``). Used from the event loop only."""

    def __init__(self, source_of: Callable[[str], Optional[LiveSource]], failed_fresh: float = FAILED_FRESH):
        self.source_of = source_of
        self.failed_fresh = failed_fresh
        self._making: dict = {}  # camera -> the future of the frame being made
        self._kept: dict = {}  # camera -> (monotonic time, JPEG bytes or NoFrame)
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="nvr-snapshot")

    async def latest(self, camera: str) -> bytes:
        """JPEG bytes of ``camera``'s newest frame; NoFrame with the reason."""
        kept = self._kept.get(camera)
        if kept is not None:
            at, got = kept
            if time.monotonic() - at < (self.failed_fresh if isinstance(got, NoFrame) else FRESH):
                return _result(got)
        fut = self._making.get(camera)
        if fut is None:
            fut = self._making[camera] = asyncio.get_running_loop().run_in_executor(
                self._pool, self._result, camera
            )
            fut.add_done_callback(lambda f: self._made(camera, f))
        # shielded: a browser that leaves does not take the frame from the others waiting for it
        return _result(await asyncio.shield(fut))

    def _made(self, camera: str, fut: asyncio.Future) -> None:
        self._making.pop(camera, None)
        if not fut.cancelled():
            self._kept[camera] = (time.monotonic(), fut.result())

    def _result(self, camera: str) -> Union[bytes, NoFrame]:
        try:
            return self._make(camera)
        except NoFrame as e:
            return e

    def _make(self, camera: str) -> bytes:
        source = self.source_of(camera)
        if source is None:
            raise NoFrame("the server knows no way to this camera")
        try:
            jpeg = snapshot(source.socket)
        except WorkerRefused as e:
            raise NoFrame(f"the recorder has no frame: {e}") from None
        except WorkerBusy as e:  # the recorder is there: never open its camera beside it
            raise NoFrame(f"the recorder has no frame now: {e}") from None
        if jpeg is not None:
            return jpeg
        if source.url is None:
            raise NoFrame(
                "no recorder runs for this camera, and the server may not open it itself "
                "(not an RTSP camera, or WEB_LIVE_DIRECT = False)"
            )
        return grab(source)


def _result(got: Union[bytes, NoFrame]) -> bytes:
    if isinstance(got, NoFrame):
        raise NoFrame(str(got))
    return got


def grab(source: LiveSource) -> bytes:
    """One frame of the camera at ``source.url`` as JPEG, by ffmpeg; NoFrame with ffmpeg's reason."""
    try:
        ffmpeg = find_ffmpeg(source.ffmpeg)
    except NvrError as e:
        raise NoFrame(str(e)) from None
    spec = parse_source(source.url)
    cmd = [
        *base(ffmpeg),
        "-analyzeduration",
        str(RTSP_ANALYZE_US),
        # keyframes only: joined mid-GOP, an H.265 decoder hands out a picture without its references
        # (grey smears); H.264's waits for a keyframe anyway
        "-skip_frame",
        "nokey",
        *ffmpeg_input_args(spec, transport=source.transport, timeout=min(source.timeout, GRAB_TIMEOUT / 2)),
        "-map",
        "0:v:0",
        "-frames:v",
        "1",
        "-q:v",
        "4",
        "-f",
        "image2pipe",
        "-c:v",
        "mjpeg",
        "pipe:1",
    ]
    try:
        done = processes.run(cmd, timeout=GRAB_TIMEOUT, text=False)
    except subprocess.TimeoutExpired:
        raise NoFrame(f"no frame from the camera within {GRAB_TIMEOUT:.0f} s") from None
    except OSError as e:
        raise NoFrame(f"ffmpeg could not start: {e.strerror or e}") from None
    if done.returncode != 0 or not done.stdout.startswith(b"\xff\xd8"):
        lines = done.stderr.decode("utf-8", "replace").splitlines()
        raise NoFrame(f"no frame from the camera: {redact(why(lines, done.returncode))}")
    return done.stdout
