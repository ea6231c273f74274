"""One reaper for continuous segments and event clips.

Limits: maximum age in days (per kind), maximum total size per camera and for the whole storage
root, and a floor of free space on the disk. Oldest first; continuous footage goes before event
clips (events are kept longer by default); never a file still being written (staging folders,
``*.part.mp4``). Every deletion is logged.
"""

from __future__ import annotations

import fcntl
import gc
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from nvr_cli.config import RetentionSettings
from nvr_cli.storage.paths import PART_SUFFIX
from nvr_cli.storage.segments import SEG_SUFFIX, STAGING

log = logging.getLogger(__name__)
GB = 1024**3


@dataclass(slots=True)
class Item:
    where: str  # the path, as a string: a pass lists every file kept, so an item is kept small
    camera: str
    kind: str  # "segment" or "event"
    mtime: float
    size: int  # with its sidecar and thumbnail

    @property
    def path(self) -> Path:
        return Path(self.where)

    def files(self) -> list[Path]:
        if self.kind == "event":
            return [self.path, self.path.with_suffix(".json"), self.path.with_suffix(".jpg")]
        return [self.path]


def release_pass_memory() -> None:
    """After a pass: a full collection empties CPython's free lists (up to 2000 freed tuples of each
    size), which otherwise stay scattered through the memory the pass took and pin it, so that a
    long-running process keeps its largest pass for good, and that grows with the footage kept
    (measured with bench/soak.py: +1.2 MB/h in `run`'s supervisor, linear in the files on disk)."""
    gc.collect()


def _folders(folder: str) -> Iterator[str]:
    """``folder`` and every folder below it, parents first, not through symbolic links (as rglob)."""
    yield folder
    try:
        with os.scandir(folder) as it:
            subs = [e.path for e in it if e.is_dir() and not e.is_symlink()]
    except OSError:
        return
    for sub in subs:
        yield from _folders(sub)


def inventory(root: Path) -> list:
    """Every finished clip and segment under ``root``, segments first, then oldest first.

    A pass lists every file kept, so it is lean (scandir, paths as strings, slots): its transient
    memory is what the long-running process keeps afterwards (see ``Reaper.run``)."""
    items = []
    root = Path(root)
    if not root.is_dir():
        return items
    for cam in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for folder in _folders(str(cam)):
            if STAGING in Path(folder).parts:
                continue  # being written
            try:
                with os.scandir(folder) as it:
                    names = [e.name for e in it if e.name.endswith(".mp4")]
            except OSError:
                continue
            for name in names:
                if name.endswith(PART_SUFFIX) or name.startswith("."):
                    continue  # being written
                where = os.path.join(folder, name)
                kind = "segment" if name.endswith(SEG_SUFFIX) else "event"
                try:
                    st = os.stat(where)
                except FileNotFoundError:
                    continue
                size = st.st_size
                if kind == "event":
                    stem = where[: -len(".mp4")]
                    size += sum(
                        os.stat(p).st_size for p in (stem + ".json", stem + ".jpg") if os.path.exists(p)
                    )
                items.append(Item(where, cam.name, kind, st.st_mtime, size))
    items.sort(key=lambda i: (i.kind == "event", i.mtime))  # segments first, then oldest first
    return items


def plan(root: Path, s: RetentionSettings, now: float | None = None, free_bytes: int | None = None) -> list:
    """(Item, reason) to delete, in order, to meet every limit."""
    now = time.time() if now is None else now
    items = inventory(root)
    doomed, gone = [], set()

    def take(item, reason):
        doomed.append((item, reason))
        gone.add(item.where)

    for item in items:
        days = s.RETENTION_SEGMENT_DAYS if item.kind == "segment" else s.RETENTION_EVENT_DAYS
        if days and now - item.mtime > days * 86400:
            take(item, f"older than {days:g} days")
    if s.RETENTION_MAX_GB_PER_CAMERA:
        for cam in sorted({i.camera for i in items}):
            mine = [i for i in items if i.camera == cam and i.where not in gone]
            total = sum(i.size for i in mine)
            for item in mine:
                if total <= s.RETENTION_MAX_GB_PER_CAMERA * GB:
                    break
                take(item, f"camera {cam} over {s.RETENTION_MAX_GB_PER_CAMERA:g} GB")
                total -= item.size
    rest = [i for i in items if i.where not in gone]
    if s.RETENTION_MAX_GB_TOTAL:
        total = sum(i.size for i in rest)
        for item in list(rest):
            if total <= s.RETENTION_MAX_GB_TOTAL * GB:
                break
            take(item, f"storage over {s.RETENTION_MAX_GB_TOTAL:g} GB")
            total -= item.size
            rest.remove(item)
    if s.RETENTION_MIN_FREE_GB:
        free = shutil.disk_usage(root).free if free_bytes is None else free_bytes
        for item in list(rest):
            if free >= s.RETENTION_MIN_FREE_GB * GB:
                break
            take(item, f"less than {s.RETENTION_MIN_FREE_GB:g} GB free")
            free += item.size
    return doomed


LOCK = ".reaper.lock"


def prune(root: Path, s: RetentionSettings, *, dry_run: bool = False, wait: bool = True) -> list:
    """Delete what ``plan`` says; returns the plan. Logs each deletion (or would-be deletion).
    Processes that share a storage root (workers, cron's `prune`) take turns: one plans and
    deletes at a time, so two never count or delete the same files. ``wait=False``: if another
    is at it (freeing space already), return [] at once rather than wait."""
    root = Path(root)
    if not root.is_dir():
        return []
    if dry_run:
        return _prune(root, s, dry_run)
    try:
        fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a full or read-only disk: deleting is what it needs, so go on without the lock
        return _prune(root, s, dry_run)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return []
        return _prune(root, s, dry_run)
    finally:
        os.close(fd)


def _prune(root: Path, s: RetentionSettings, dry_run: bool) -> list:
    doomed = plan(root, s)
    for item, reason in doomed:
        if dry_run:
            log.info("would delete %s (%s)", item.path, reason)
            continue
        for f in item.files():
            try:
                f.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                log.error("cannot delete %s: %s", f, e.strerror)
        log.info("deleted %s %s (%s, %.1f MB)", item.kind, item.path, reason, item.size / 2**20)
        _remove_empty_dirs(item.path.parent, root)
    return doomed


def _remove_empty_dirs(folder: Path, root: Path):
    while folder != root and root in folder.parents:
        try:
            if any(p for p in folder.iterdir() if p.name != "segments.jsonl"):
                return
            idx = folder / "segments.jsonl"
            if idx.exists():
                return  # the index keeps the day's history, gaps included
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


class Reaper:
    """Runs the retention limits every RETENTION_CHECK_SECONDS, and at once when asked (a full disk)."""

    FULL_LOG_EVERY = 3600.0  # a disk that stays full is said once an hour, not at every retry

    def __init__(self, root: Path, s: RetentionSettings, stop: threading.Event):
        self.root, self.s, self.stop = root, s, stop
        self._lock = threading.Lock()
        self._full_said = float("-inf")

    def now(self, disk_full: bool = True) -> int:
        """Apply the limits now (called by a writer that hit a full disk, before its next clip)."""
        with self._lock:
            try:
                # on a full disk (from a writer's thread): never wait for another process's prune
                done = prune(self.root, self.s, wait=not disk_full)
            except Exception as e:  # noqa: BLE001 - the reaper must never take recording down
                log.error("retention check failed: %s", e)
                return 0
        if disk_full and not done:
            now = time.monotonic()
            if now - self._full_said >= self.FULL_LOG_EVERY:
                self._full_said = now
                log.error(
                    "the disk is full and the retention limits allow deleting nothing: "
                    "lower RETENTION_* or free space; recording keeps trying"
                )
            else:
                log.debug("the disk is still full; nothing to delete")
        return len(done)

    def run(self) -> None:
        while not self.stop.is_set():
            self.now(disk_full=False)
            release_pass_memory()
            self.stop.wait(self.s.RETENTION_CHECK_SECONDS)
