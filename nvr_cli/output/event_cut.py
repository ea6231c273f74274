"""Event clips cut from the continuous segments: the camera's own quality, no re-encode.

A cut waits until the segment holding the event's end is complete (up to SEGMENT_SECONDS after
the event), then joins and trims the segments by stream copy, as `nvr-cli export` does.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import nvr_cli.storage.paths as storage
from nvr_cli.core.errors import NvrError
from nvr_cli.core.supervised import Supervised
from nvr_cli.storage.export import export
from nvr_cli.storage.segments import Segmenter, index_folders

log = logging.getLogger(__name__)


class EventCutter:
    def __init__(
        self,
        segmenter: Segmenter,
        ffmpeg: str,
        stop: threading.Event,
        on_fatal: Optional[Callable[[str], None]] = None,
    ):
        """Cuts from ``segmenter``'s segments, so where they are and how long they run are its settings."""
        self.segmenter, self.ffmpeg, self.stop = segmenter, ffmpeg, stop
        self.out, self.camera = segmenter.out, segmenter.camera
        self.jobs: queue.Queue = queue.Queue()
        self.done = 0
        # its own stop: it finishes the queued cuts after the recorder's stop is set
        self._thread = Supervised("event cutter", self._run, threading.Event(), on_fatal=on_fatal).start()

    def submit(
        self, start: float, end: float, out: Path, sidecar: Optional[Path], on_done: Optional[Callable] = None
    ) -> None:
        """Cut wall-clock [start, end] into ``out``; record the result in ``sidecar`` under "lossless"."""
        self.jobs.put((start, end, Path(out), sidecar, on_done))

    def _covered(self, end: float) -> bool:
        last = self.segmenter.last_end
        return last is not None and last >= end

    def _run(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                self._one(*job)
            except Exception as e:  # noqa: BLE001 - one failed cut must not stop the next ones
                log.error(
                    "lossless event clip %s failed: %s: %s", job[2].name, type(e).__name__, e, exc_info=True
                )
            self.done += 1

    def _one(self, start, end, out, sidecar, on_done):
        deadline = time.monotonic() + self.segmenter.segment_seconds * 2 + 15
        while not self._covered(end) and time.monotonic() < deadline:
            if self.stop.is_set() and not self.segmenter_alive():
                break  # the segmenter has written its last segment
            time.sleep(0.2)
        result = self._cut(start, end, out)
        if sidecar is not None:
            _update_sidecar(sidecar, result)
        if on_done:
            on_done(result)

    def segmenter_alive(self) -> bool:
        return getattr(self.segmenter, "running", False)

    def _cut(self, start, end, out) -> dict:
        lt = self.out.LOCAL_TIME
        req = {"requested_start": storage.iso(start, lt), "requested_end": storage.iso(end, lt)}
        try:
            # only the days the event can touch: a cut must not cost more as the history grows
            days = index_folders(
                self.out.PATH_FOR_VIDEO, self.camera, start, end, lt, self.out.subFolderNameGeneratorFunc
            )
            info, (actual_start, actual_end) = export(
                self.out.PATH_FOR_VIDEO,
                self.camera,
                start,
                end,
                out,
                ffmpeg=self.ffmpeg,
                allow_gaps=True,
                local_time=lt,
                folders=days,
                write_sidecar=False,
            )
        except NvrError as e:
            log.error("lossless event clip %s not cut: %s", out.name, e)
            return {**req, "error": str(e)}
        segs = info["segments"]
        log.info(
            "lossless event clip %s: %.1f s from %d segment(s)", out.name, info["duration_seconds"], len(segs)
        )
        return {
            **req,
            "file": out.name,
            "actual_start": storage.iso(actual_start, lt),
            "actual_end": storage.iso(actual_end, lt),
            "duration_seconds": info["duration_seconds"],
            "segments": [Path(s["file"]).name for s in segs],
            "gaps": info["gaps"],
            "note": "stream copy: packets from the keyframe before the start; players begin at the start",
        }

    def close(self, timeout: float) -> None:
        """Finish the queued cuts (the segmenter has stopped and written its last segment)."""
        self.jobs.put(None)
        self._thread.join(timeout)


def _update_sidecar(path: Path, result: dict):
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data["lossless"] = result
    if result.get("file") and not data.get("clip"):
        data["clip"] = result["file"]
    storage.write_json(path, data)
