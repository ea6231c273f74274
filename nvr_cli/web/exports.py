"""Exports asked for in the page: a queue and one worker thread running the lossless export
(``storage.export``), each job's file and sidecar in a hidden folder beside the index, deleted after
WEB_EXPORT_KEEP_HOURS. Jobs finished before a restart are found again from their files."""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from nvr_cli.config import OutputSettings
from nvr_cli.core.errors import NvrError
from nvr_cli.core.redact import redact
from nvr_cli.storage.export import export, plan
from nvr_cli.storage.paths import iso, write_json
from nvr_cli.storage.segments import index_folders

log = logging.getLogger(__name__)

FOLDER_NAME = ".nvr-exports"
MAX_SECONDS = 24 * 3600.0  # one export: at most a day (a longer one is `nvr-cli export`'s job)
MAX_WAITING = 20  # jobs queued at once; more are refused (409)
_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{8}")


class ExportError(Exception):
    """A request the export cannot take: ``status`` is the HTTP answer (400, 404, 409)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    id: str
    camera: str
    start: float
    end: float
    allow_gaps: bool
    local_time: bool
    created: float = field(default_factory=time.time)
    state: str = "queued"  # queued, running, done, failed
    progress: float = 0.0
    error: Optional[str] = None
    size: Optional[int] = None

    def as_dict(self) -> dict:
        """The job as docs/web-api.md shows it (URLs, no paths)."""
        done = self.state == "done"
        return {
            "id": self.id,
            "camera": self.camera,
            "from": iso(self.start, self.local_time),
            "to": iso(self.end, self.local_time),
            "from_ts": self.start,
            "to_ts": self.end,
            "allow_gaps": self.allow_gaps,
            "created": iso(self.created, self.local_time),
            "state": self.state,
            "progress": round(self.progress, 3),
            "error": self.error,
            "file": f"/api/exports/{self.id}/file.mp4" if done else None,
            "sidecar": f"/api/exports/{self.id}/sidecar.json" if done else None,
            "size": self.size,
        }


class ExportJobs:
    """The page's export jobs. ``output_of(camera)``: that camera's output settings (storage root,
    local time, subfolders), None for a camera it does not know; ``ffmpeg()``: the binary (looked up
    when the first job runs, so a server without ffmpeg still shows recordings)."""

    def __init__(
        self,
        folder: Path,
        output_of: Callable[[str], Optional[OutputSettings]],
        ffmpeg: Callable[[], str],
        keep_hours: float,
    ):
        self.folder = Path(folder)
        self.output_of = output_of
        self.ffmpeg = ffmpeg
        self.keep_seconds = keep_hours * 3600
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nvr-web-export", daemon=True)
        self._found_again()

    # -- files -----------------------------------------------------------------------------------
    def file(self, job_id: str) -> Optional[Path]:
        """The MP4 of a finished job, else None."""
        job = self._jobs.get(job_id)
        return self.folder / f"{job_id}.mp4" if job and job.state == "done" else None

    def sidecar(self, job_id: str) -> Optional[dict]:
        """The sidecar of a finished job, with segment file names instead of the server's paths."""
        job = self._jobs.get(job_id)
        if not job or job.state != "done":
            return None
        try:
            info = json.loads((self.folder / f"{job_id}.json").read_text())
        except (OSError, ValueError):
            return None
        info.pop("job", None)
        for seg in info.get("segments", []):
            if isinstance(seg, dict) and isinstance(seg.get("file"), str):
                seg["file"] = os.path.basename(seg["file"])
        return info

    def _found_again(self) -> None:
        """Register the exports a previous server finished (from the job record in their sidecar);
        what a crash left half-written goes at the next expiry."""
        if not self.folder.is_dir():
            return
        for p in self.folder.glob("*.json"):
            if not _ID.fullmatch(p.stem) or not p.with_suffix(".mp4").is_file():
                continue
            try:
                rec = json.loads(p.read_text())["job"]
                job = Job(
                    p.stem,
                    str(rec["camera"]),
                    float(rec["from_ts"]),
                    float(rec["to_ts"]),
                    bool(rec["allow_gaps"]),
                    bool(rec["local_time"]),
                    created=float(rec["created"]),
                    state="done",
                    progress=1.0,
                    size=p.with_suffix(".mp4").stat().st_size,
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue
            self._jobs[job.id] = job
        self.expire()

    def expire(self) -> None:
        """Delete the finished jobs (and their files) older than WEB_EXPORT_KEEP_HOURS; files of no
        known job left by a crash, too."""
        now = time.time()
        with self._lock:
            old = [
                j
                for j in self._jobs.values()
                if j.state in ("done", "failed") and now - j.created > self.keep_seconds
            ]
            for j in old:
                del self._jobs[j.id]
            known = set(self._jobs)
        for j in old:
            for suffix in (".mp4", ".json"):
                (self.folder / f"{j.id}{suffix}").unlink(missing_ok=True)
        if self.folder.is_dir():
            for p in self.folder.iterdir():
                stem = p.name.lstrip(".").split(".")[0]
                if stem not in known and now - _mtime(p) > 3600:
                    p.unlink(missing_ok=True)

    # -- jobs ------------------------------------------------------------------------------------
    def submit(self, camera: str, start: float, end: float, allow_gaps: bool = False) -> dict:
        """Queue an export of ``camera`` from ``start`` to ``end`` (epoch seconds); ExportError if the
        range is bad (400), nothing was recorded then (404), or it has a gap and ``allow_gaps`` is
        false, or too many jobs wait (409)."""
        out = self.output_of(camera)
        if out is None:
            raise ExportError(f"no camera {camera!r}", 404)
        if not end > start:
            raise ExportError("'to' must be after 'from'", 400)
        if end - start > MAX_SECONDS:
            raise ExportError(f"a range of at most {MAX_SECONDS / 3600:.0f} hours, please", 400)
        lt = out.LOCAL_TIME
        folders = index_folders(out.PATH_FOR_VIDEO, camera, start, end, lt, out.subFolderNameGeneratorFunc)
        chosen, gaps = plan(out.PATH_FOR_VIDEO, camera, start, end, folders)
        when = f"from {iso(start, lt)} to {iso(end, lt)}"
        if not chosen:
            raise ExportError(f"nothing of {camera} was recorded {when}", 404)
        if gaps and not allow_gaps:
            a, b = gaps[0]
            raise ExportError(
                f"the recording has a gap from {iso(a, lt)} to {iso(b, lt)} ({b - a:.1f} s)"
                f"{' and more' if len(gaps) > 1 else ''}: allow gaps to export what there is",
                409,
            )
        with self._lock:
            if sum(j.state in ("queued", "running") for j in self._jobs.values()) >= MAX_WAITING:
                raise ExportError(f"{MAX_WAITING} exports are waiting already: try again later", 409)
            job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
            job = Job(job_id, camera, start, end, allow_gaps, lt)
            self._jobs[job_id] = job
            self._queue.put(job_id)
        return job.as_dict()

    def get(self, job_id: str) -> Optional[dict]:
        job = self._jobs.get(job_id)
        return job.as_dict() if job else None

    def all(self) -> list[dict]:
        """Every job, newest first."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: (j.created, j.id), reverse=True)
        return [j.as_dict() for j in jobs]

    # -- the worker ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking jobs; one under way is left to finish (its ffmpeg dies with this process)."""
        self._stop.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = self._queue.get(timeout=600)
            except queue.Empty:
                job_id = None
            if job_id is None:
                self.expire()
                continue
            job = self._jobs.get(job_id)
            if job is not None:
                self._do(job)

    def _do(self, job: Job) -> None:
        out = self.output_of(job.camera)
        job.state = "running"
        length = job.end - job.start

        def progress(seconds: float) -> None:
            job.progress = min(0.99, max(0.0, seconds / length))

        try:
            if out is None:
                raise NvrError(f"no camera {job.camera!r}")
            self.folder.mkdir(parents=True, exist_ok=True)
            target = self.folder / f"{job.id}.mp4"
            folders = index_folders(
                out.PATH_FOR_VIDEO,
                job.camera,
                job.start,
                job.end,
                out.LOCAL_TIME,
                out.subFolderNameGeneratorFunc,
            )
            info, _ = export(
                out.PATH_FOR_VIDEO,
                job.camera,
                job.start,
                job.end,
                target,
                ffmpeg=self.ffmpeg(),
                allow_gaps=job.allow_gaps,
                local_time=out.LOCAL_TIME,
                progress=progress,
                folders=folders,
                write_sidecar=False,
            )
            # the job's own record rides in the sidecar: a restarted server lists the export again
            record = {
                "camera": job.camera,
                "from_ts": job.start,
                "to_ts": job.end,
                "allow_gaps": job.allow_gaps,
                "local_time": job.local_time,
                "created": job.created,
            }
            write_json(self.folder / f"{job.id}.json", {**info, "job": record})
            job.size = target.stat().st_size
            job.progress, job.state = 1.0, "done"
            log.info(
                "export %s of %s done: %.1f s, %d bytes",
                job.id,
                job.camera,
                info["duration_seconds"],
                job.size,
            )
        except Exception as e:  # noqa: BLE001 - a failed job says why; the worker goes on
            job.error = redact(str(e)).splitlines()[0] if str(e).strip() else type(e).__name__
            job.state = "failed"
            log.warning("export %s of %s failed: %s", job.id, job.camera, job.error)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0
