"""The review page's index: a SQLite cache (WAL) of the events and continuous segments on disk.

The files stay the truth. Event sidecars (``<camera>_<stamp>[-n].json`` beside their clip) and each
day's ``segments.jsonl`` are read into the index; ``build`` brings it up to date incrementally (a
folder is listed again only when its modification time changed, a sidecar read again only when its
own did, an index read on from where the last build stopped), ``rebuild`` starts it afresh, and a
``CatalogWatcher`` keeps it current while recorders write. Deleting the index file loses only the
reviewed marks, which live in their own table that ``rebuild`` keeps.

Ids: an event's id is its clip's file stem (``front_20261129-081502-1``), a segment's its file name
without ``.seg.mp4``; both start with the camera's name, so they are unique in one index. A camera
name may hold characters that ids may not (CAMERA_NAME only forbids / \\ and NUL): such a stem
becomes ``<the stem, other characters made _>.<10 hex digits of its BLAKE2b hash>``, stable from
build to build and never equal to a plain stem (those end with the time stamp). Paths are only ever
read from the index, never made from an id.

What is an event: a sidecar named ``<camera>_<stamp>[-n].json`` (not hidden, not an export's, which
has "requested" and "segments") whose clip exists, or whose "clip" is still null (to be cut from the
segments: ``facts["clip_pending"]``). An event's day is the date of its ISO start as the recorder
wrote it; a clip recovered after a crash has no times, so its start is its name's stamp (``R``: the
second pass of a repeated hour) and its end the same (its length is not known without decoding it:
``duration_seconds`` None). A segment is a ``segments.jsonl`` line whose file still exists; its day
is the local date of its start. Reviewed marks whose event is gone are kept for a year (a disk may be
unmounted and come back), then dropped by a full build.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

from nvr_cli.core.errors import StorageError
from nvr_cli.storage.paths import PART_SUFFIX, iso, local_datetime
from nvr_cli.storage.segments import INDEX, SEG_SUFFIX

if TYPE_CHECKING:
    from nvr_cli.config import LoadedSettings, Settings

log = logging.getLogger(__name__)

INDEX_NAME = ".nvr-index.sqlite3"
SCHEMA_VERSION = "5"
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}")
_STAMP_RE = re.compile(r"_(\d{8})-(\d{2})(R?)(\d{2})(\d{2})(?:-\d+)?")
RACY_NS = 2_000_000_000  # a folder changed this recently may change again within its mtime's tick
POOL_SIZE = 8  # reading connections kept open between calls
MARK_KEEP_SECONDS = 365 * 86400  # a mark whose event is gone is kept this long (a disk may come back)

# The events' two ordered indexes carry the filtered columns: a filter that matches few events is then
# checked inside the index, and only matching rows are read (a label that no event has: 10 ms, not 50,
# for 100,000 events).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS reviewed(id TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS folders(
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, parent INTEGER, camera TEXT NOT NULL,
    mtime_ns INTEGER, idx_size INTEGER, idx_mtime_ns INTEGER, idx_offset INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS folders_camera ON folders(camera);
CREATE TABLE IF NOT EXISTS events(
    id TEXT PRIMARY KEY, camera TEXT NOT NULL, day TEXT NOT NULL,
    start_ts REAL NOT NULL, end_ts REAL NOT NULL, start TEXT NOT NULL, "end" TEXT NOT NULL,
    duration REAL, tags TEXT NOT NULL, labels TEXT NOT NULL, top_score REAL, motion_score REAL,
    qr TEXT NOT NULL, kind TEXT, event INTEGER, part INTEGER, end_reason TEXT, pre_alarm REAL,
    recovered INTEGER NOT NULL, reviewed INTEGER NOT NULL, folder INTEGER NOT NULL, name TEXT NOT NULL,
    clip TEXT NOT NULL, thumbnail TEXT, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS events_start ON events(start_ts, id, camera, tags, top_score, reviewed);
CREATE INDEX IF NOT EXISTS events_camera ON events(camera, start_ts, id, tags, top_score, reviewed);
CREATE INDEX IF NOT EXISTS events_day ON events(day, camera, reviewed);
CREATE INDEX IF NOT EXISTS events_folder ON events(folder);
CREATE TABLE IF NOT EXISTS segments(
    id TEXT PRIMARY KEY, camera TEXT NOT NULL, day TEXT NOT NULL, start_ts REAL NOT NULL,
    end_ts REAL NOT NULL, size INTEGER, valid INTEGER NOT NULL, partial INTEGER NOT NULL,
    folder INTEGER NOT NULL, file TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS segments_camera ON segments(camera, start_ts);
CREATE INDEX IF NOT EXISTS segments_day ON segments(day, camera, start_ts, end_ts);
CREATE INDEX IF NOT EXISTS segments_folder ON segments(folder);
CREATE TABLE IF NOT EXISTS gaps(
    folder INTEGER NOT NULL, camera TEXT NOT NULL, start_ts REAL NOT NULL, end_ts REAL NOT NULL,
    reason TEXT);
CREATE INDEX IF NOT EXISTS gaps_camera ON gaps(camera, start_ts);
CREATE INDEX IF NOT EXISTS gaps_folder ON gaps(folder);
CREATE TABLE IF NOT EXISTS day_events(
    day TEXT NOT NULL, camera TEXT NOT NULL, events INTEGER NOT NULL, unreviewed INTEGER NOT NULL,
    PRIMARY KEY(day, camera)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS day_segments(
    day TEXT NOT NULL, camera TEXT NOT NULL, seconds REAL NOT NULL, PRIMARY KEY(day, camera)) WITHOUT ROWID;
"""
# the calendar's counts per day and camera (day_events, day_segments) are counted again for the days that
# a write touches (_recount), so that the calendar reads 300 rows, not 143,000 (45 -> 1 ms for 100,000
# events); triggers did the same at a fifth more on a cold build
_CACHE_TABLES = ("events", "segments", "gaps", "folders", "day_events", "day_segments")
# the sidecar's fields that an event's page shows as they are
_FACTS = (
    "trigger",
    "frames",
    "frames_lost",
    "fps",
    "width",
    "height",
    "encoding",
    "end_reason",
    "motion_seconds",
    "error",
    "lossless",
)

# the summary's columns, in the order _summary reads them
_COLUMNS = (
    'id camera day start start_ts "end" end_ts duration labels top_score motion_score qr kind event part '
    "end_reason pre_alarm reviewed recovered"
)
_SUMMARY = ", ".join([f"events.{c}" for c in _COLUMNS.split()] + ["events.thumbnail IS NOT NULL"])


def safe_id(stem: str) -> str:
    """``stem`` itself when it is a valid id, else its stable hash-suffixed form (module docstring)."""
    if ID_RE.fullmatch(stem):
        return stem
    digest = hashlib.blake2b(stem.encode("utf-8", "surrogateescape"), digest_size=5).hexdigest()
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:180].lstrip("_.-") or "x"
    if not readable[0].isalnum():
        readable = "x" + readable
    return f"{readable}.{digest}"


def index_file(settings: Settings) -> Path:
    """Where the index of these settings lives: WEB_INDEX_FILE, else PATH_FOR_VIDEO/.nvr-index.sqlite3."""
    if settings.WEB_INDEX_FILE:
        return Path(settings.WEB_INDEX_FILE)
    return Path(settings.PATH_FOR_VIDEO) / INDEX_NAME


def catalog_for(loaded: LoadedSettings) -> Catalog:
    """The index of every camera of ``loaded`` (CAMERAS, else ``cam``'s CAMERA_NAME), each at its own
    PATH_FOR_VIDEO; other camera folders under the main PATH_FOR_VIDEO join them."""
    s = loaded.settings
    if loaded.cameras:
        roots = {name: Path(cs.PATH_FOR_VIDEO) for name, cs in loaded.cameras.items()}
    elif s.cam:
        roots = {s.CAMERA_NAME: Path(s.PATH_FOR_VIDEO)}
    else:
        roots = {}
    return Catalog(
        index_file(s), roots, local_time=s.LOCAL_TIME, cameras=list(roots), more_roots=[s.PATH_FOR_VIDEO]
    )


def _stamp_time(stem: str, camera: str, local_time: bool) -> Optional[float]:
    """Epoch seconds of the stamp in a file name (``R``: the second pass of a repeated hour)."""
    m = _STAMP_RE.fullmatch(stem, len(camera))
    if not m:
        return None
    day, hour, again, minute, second = m.groups()
    try:
        naive = dt.datetime(int(day[:4]), int(day[4:6]), int(day[6:]), int(hour), int(minute), int(second))
    except ValueError:
        return None
    if not local_time:
        return naive.replace(tzinfo=dt.timezone.utc).timestamp()
    return naive.replace(fold=1 if again else 0).timestamp()  # naive: the local zone, fold picks the pass


def _iso_time(value: Any) -> Optional[dt.datetime]:
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.astimezone()


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _integer(value: Any) -> Optional[int]:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _timestamp(value: Any, name: str) -> Optional[float]:
    """A filter's time: epoch seconds, an ISO string (with or without offset) or a datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.astimezone()).timestamp()
    num = _number(value)
    if num is not None:
        return num
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        when = _iso_time(value)
        if when is not None:
            return when.timestamp()
    raise ValueError(f"{name}: not a time: {value!r}")


def encode_cursor(start_ts: float, event_id: str) -> str:
    """The opaque cursor after an event: its (start_ts, id), the events list's sort key."""
    raw = json.dumps([start_ts, event_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The (start_ts, id) of a cursor; ValueError for anything that is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, event_id = json.loads(raw)
    except (ValueError, TypeError) as e:
        raise ValueError("cursor: not a cursor from this server") from e
    if _number(ts) is None or not isinstance(event_id, str):
        raise ValueError("cursor: not a cursor from this server")
    return float(ts), event_id


@dataclass
class _Tally:
    """What one build did."""

    read: int = 0  # files read: sidecars and segment indexes
    events: int = 0  # event rows written
    segments: int = 0  # segment rows written
    dropped: int = 0  # rows whose files are gone
    progress: Optional[Callable[[int], None]] = None
    shown: int = 0

    def one_read(self) -> None:
        self.read += 1
        if self.progress and self.read - self.shown >= 500:
            self.shown = self.read
            self.progress(self.read)


@dataclass
class _Folder:
    id: int
    parent: Optional[int]
    mtime_ns: Optional[int]
    idx_size: Optional[int]
    idx_mtime_ns: Optional[int]
    idx_offset: int
    children: list = field(default_factory=list)


class Catalog:
    """The index of the events and continuous segments under the storage roots (module docstring).

    Thread safe: every call takes a connection from a small pool (WAL: reads never wait for a write);
    one build runs at a time (the watcher's, or a caller's) on a connection of its own and commits
    folder by folder, so a reviewed mark waits for one folder at most, never for a whole build."""

    def __init__(
        self,
        db_path: Path,
        roots: Mapping[str, Path],
        *,
        local_time: bool = True,
        cameras: Sequence[str] = (),
        more_roots: Sequence[Path] = (),
    ):
        """roots: camera name -> that camera's storage root (PATH_FOR_VIDEO); cameras found as folders
        under any root (or under ``more_roots``) that hold recordings join them with that root.
        ``cameras``: names listed first by ``cameras()`` even with nothing recorded yet."""
        self.db_path = Path(db_path)
        # absolute, as the watcher's notifications name them
        self.roots = {name: Path(os.path.abspath(root)) for name, root in roots.items()}
        self.local_time = local_time
        self._configured = list(dict.fromkeys([*cameras, *self.roots]))
        self._all_roots = list(
            dict.fromkeys([*self.roots.values(), *(Path(os.path.abspath(r)) for r in more_roots)])
        )
        self._build_lock = threading.RLock()  # one build at a time; it alone uses the writer connection
        self._idle: list = []  # reading connections not in use
        self._conns: list = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = self._connect()
            self._create()
        except sqlite3.OperationalError as e:  # cannot be opened (a folder, no permission), or locked
            self.close()
            raise StorageError(f"cannot open the index {self.db_path}: {e}") from None
        except sqlite3.DatabaseError as e:  # not a database, or a damaged one: it is only a cache
            self.close()
            self._closed = False
            log.warning("the index %s is unreadable (%s): making it again from the files", self.db_path, e)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.db_path}{suffix}").unlink(missing_ok=True)
            self._writer = self._connect()
            self._create()

    # -- connections -----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=30, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # a cache: a power cut may lose the last commit only
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    @contextlib.contextmanager
    def _using(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A pooled connection in a transaction (a consistent snapshot; ``write``: taking the write lock
        at once, so it never has to upgrade). Pooled, not per thread: a server's worker threads come
        and go, and a connection per thread would leak with them."""
        if self._closed:
            raise RuntimeError("the catalog is closed")
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            if self._closed or len(self._idle) >= POOL_SIZE:
                self._discard(conn)
            else:
                self._idle.append(conn)

    def _discard(self, conn: sqlite3.Connection) -> None:
        with self._conns_lock:
            if conn in self._conns:
                self._conns.remove(conn)
        try:
            conn.close()
        except sqlite3.Error:
            pass

    def _create(self) -> None:
        w = self._writer
        w.executescript(_SCHEMA)
        row = w.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            # another layout of the cache: made again from the files; the marks carry over
            w.execute("BEGIN IMMEDIATE")
            for table in _CACHE_TABLES:
                w.execute(f"DROP TABLE IF EXISTS {table}")
            w.execute("COMMIT")
            w.executescript(_SCHEMA)
            w.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            w.execute("DELETE FROM meta WHERE key = 'built'")

    def close(self) -> None:
        """Close every connection (a watcher must be stopped first)."""
        self._closed = True
        with self._conns_lock:
            conns, self._conns, self._idle = self._conns, [], []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    # -- building --------------------------------------------------------------------------------
    def build(self, progress: Optional[Callable[[int], None]] = None, *, full: bool = False) -> dict:
        """Bring the index up to date with the files: new and changed sidecars (by mtime and size) and
        index lines appended since the last build are read, rows whose files are gone dropped.
        ``full``: list every folder again, not only those whose modification time changed.
        ``progress(files read so far)`` is called every 500 files. Returns {"events", "segments"
        (rows in the index), "seconds" (this build took), "read" (files read)}."""
        return self._build(progress, full=full)

    def rebuild(self, progress: Optional[Callable[[int], None]] = None) -> dict:
        """Drop every event and segment and build afresh; the reviewed marks are kept."""
        with self._build_lock:
            w = self._writer
            w.execute("BEGIN IMMEDIATE")
            for table in _CACHE_TABLES:
                w.execute(f"DELETE FROM {table}")
            w.execute("DELETE FROM meta WHERE key = 'built'")
            w.execute("COMMIT")
            return self._build(progress, full=True)

    def _build(
        self,
        progress: Optional[Callable[[int], None]],
        *,
        full: bool = False,
        force: Iterable[str] = (),
    ) -> dict:
        t0 = time.monotonic()
        tally = _Tally(progress=progress)
        forced = {os.path.normpath(p) for p in force}
        with self._build_lock:
            cams = self._camera_folders()
            for camera, top in cams.items():
                self._sync_camera(camera, top, tally, full, forced)
            w = self._writer
            gone = [
                r[0] for r in w.execute("SELECT DISTINCT camera FROM folders").fetchall() if r[0] not in cams
            ]
            for camera in gone:  # its folder went: so did everything in it
                ids = [r[0] for r in w.execute("SELECT id FROM folders WHERE camera = ?", (camera,))]
                self._drop_folders(ids, tally)
            if full:  # not at every update of the watcher: it reads every mark
                w.execute(
                    "DELETE FROM reviewed WHERE at < ? AND id NOT IN (SELECT id FROM events)",
                    (time.time() - MARK_KEEP_SECONDS,),
                )
            built = dt.datetime.now().astimezone().isoformat(timespec="seconds")
            w.execute("INSERT OR REPLACE INTO meta VALUES ('built', ?)", (built,))
            events = w.execute("SELECT count(*) FROM events").fetchone()[0]
            segments = w.execute("SELECT count(*) FROM segments").fetchone()[0]
        if progress and tally.read != tally.shown:
            progress(tally.read)
        return {
            "events": events,
            "segments": segments,
            "seconds": round(time.monotonic() - t0, 3),
            "read": tally.read,
        }

    def _camera_folders(self) -> dict:
        """camera -> its folder: the configured cameras' and any other non-hidden folder of a root (a
        camera belongs to the root that ``roots`` gives it)."""
        found = {}
        for camera, root in self.roots.items():
            if (root / camera).is_dir():
                found[camera] = root / camera
        for root in self._all_roots:
            try:
                with os.scandir(root) as it:
                    entries = [e for e in it if not e.name.startswith(".") and e.is_dir()]
            except OSError:
                continue
            for e in sorted(entries, key=lambda e: e.name):
                if e.name not in found and e.name not in self.roots:
                    found[e.name] = Path(e.path)
        return found

    def _sync_camera(self, camera: str, top: Path, tally: _Tally, full: bool, forced: set) -> None:
        """Walk one camera's folders, listing again those that changed, reading on appended indexes."""
        w = self._writer
        known: dict[str, _Folder] = {}
        by_id: dict[int, str] = {}
        for fid, path, parent, mtime, isize, imtime, ioff in w.execute(
            "SELECT id, path, parent, mtime_ns, idx_size, idx_mtime_ns, idx_offset FROM folders "
            "WHERE camera = ?",
            (camera,),
        ):
            known[path] = _Folder(fid, parent, mtime, isize, imtime, ioff)
            by_id[fid] = path
        for f in known.values():
            if f.parent in by_id:
                known[by_id[f.parent]].children.append(f.id)
        seen: set[str] = set()
        stack: list[tuple[str, Optional[int]]] = [(str(top), None)]
        while stack:
            path, parent = stack.pop()
            try:
                st = os.stat(path)
            except OSError:
                continue  # gone: dropped below with everything under it
            seen.add(path)
            folder = known.get(path)
            if folder and not full and path not in forced and folder.mtime_ns == st.st_mtime_ns:
                # unchanged: same files, same sub-folders; only its index may have grown
                stack.extend((by_id[c], folder.id) for c in folder.children)
                if folder.idx_size is not None:
                    self._sync_index(camera, path, folder, None, tally)
                continue
            fid, subs = self._list_folder(camera, path, parent, st, folder, tally)
            if subs is None and folder is not None:  # unreadable just now: keep what was known below it
                stack.extend((by_id[c], folder.id) for c in folder.children)
            stack.extend((s, fid) for s in subs or ())
        lost = [f.id for p, f in known.items() if p not in seen]
        if lost:
            self._drop_folders(lost, tally)

    def _list_folder(
        self,
        camera: str,
        path: str,
        parent: Optional[int],
        st: os.stat_result,
        folder: Optional[_Folder],
        tally: _Tally,
    ) -> tuple[Optional[int], Optional[list]]:
        """List one folder: its events and segments brought up to date; returns (its id, its
        sub-folders, or None when it could not be listed)."""
        w = self._writer
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError:
            return (folder.id if folder else None), None
        subs, files = [], {}
        for e in entries:
            if e.name.startswith("."):
                continue  # staging, temporary and our own files
            try:
                if e.is_dir(follow_symlinks=False):
                    subs.append(e.path)
                elif e.is_file():
                    files[e.name] = e
            except OSError:
                continue
        # a folder changed within its mtime's tick may change again unseen: list it again next time
        mtime = None if time.time_ns() - st.st_mtime_ns < RACY_NS else st.st_mtime_ns
        w.execute("BEGIN IMMEDIATE")
        try:
            if folder is None:
                # another process's build (`nvr-cli index` beside a server) may have just added it
                w.execute(
                    "INSERT OR IGNORE INTO folders(path, parent, camera, mtime_ns) VALUES (?, ?, ?, ?)",
                    (path, parent, camera, mtime),
                )
                w.execute("UPDATE folders SET mtime_ns = ? WHERE path = ?", (mtime, path))
                fid, isize, imtime, ioff = w.execute(
                    "SELECT id, idx_size, idx_mtime_ns, idx_offset FROM folders WHERE path = ?", (path,)
                ).fetchone()
                folder = _Folder(fid, parent, mtime, isize, imtime, ioff)
            else:
                w.execute("UPDATE folders SET mtime_ns = ? WHERE id = ?", (mtime, folder.id))
            self._sync_events(camera, path, folder.id, files, tally)
            # segments whose files retention (or anyone) deleted are no longer recordings
            present = [
                (sid, day)
                for sid, name, day in w.execute(
                    "SELECT id, file, day FROM segments WHERE folder = ?", (folder.id,)
                )
                if name not in files
            ]
            if present:
                w.executemany("DELETE FROM segments WHERE id = ?", [(sid,) for sid, _ in present])
                _recount(w, (), {(day, camera) for _, day in present})
                tally.dropped += len(present)
            w.execute("COMMIT")
        except BaseException:
            w.execute("ROLLBACK")
            raise
        if INDEX in files or folder.idx_size is not None:
            self._sync_index(camera, path, folder, files, tally)
        return folder.id, subs

    def _sync_events(self, camera: str, path: str, folder_id: int, files: dict, tally: _Tally) -> None:
        w = self._writer
        stored = {
            name: (eid, mtime, size, clip, thumb, day)
            for eid, name, mtime, size, clip, thumb, day in w.execute(
                "SELECT id, name, mtime_ns, size, clip, thumbnail, day FROM events WHERE folder = ?",
                (folder_id,),
            )
        }
        keep, rows, thumbs = set(), [], []
        prefix = camera + "_"
        for fname, entry in files.items():
            if not fname.endswith(".json") or not fname.startswith(prefix):
                continue
            stem = fname[:-5]
            if not _STAMP_RE.fullmatch(stem, len(camera)):
                continue  # not an event's sidecar (an export's, a user's)
            try:
                st = entry.stat()
            except OSError:
                continue
            old = stored.get(stem)
            if old and old[1] == st.st_mtime_ns and old[2] == st.st_size:
                eid, _, _, clip, thumb, _ = old
                if clip in files or clip == "":  # else its clip was deleted: the event goes
                    keep.add(stem)
                    new_thumb = thumb if thumb in files else self._thumbnail(stem, None, files)
                    if new_thumb != thumb:
                        thumbs.append((new_thumb, eid))
                continue
            tally.one_read()
            try:
                with open(entry.path, "rb") as f:
                    data = json.loads(f.read().decode("utf-8", "replace"))
            except (OSError, ValueError):  # unreadable (sidecars are written whole, by a rename)
                if old:
                    keep.add(stem)  # as it was: read again at the next change
                continue
            row = self._event_row(camera, stem, data, files, folder_id, st)
            if row is not None:
                rows.append(row)
                keep.add(stem)
        gone = [(old[0],) for name, old in stored.items() if name not in keep]
        if gone:
            w.executemany("DELETE FROM events WHERE id = ?", gone)
            tally.dropped += len(gone)
        if thumbs:
            w.executemany("UPDATE events SET thumbnail = ? WHERE id = ?", thumbs)
        if rows:
            # a mark outlives the row: a re-read (or rebuilt) event keeps it
            w.executemany(
                'INSERT OR REPLACE INTO events(id, camera, day, start_ts, end_ts, start, "end", duration, '
                "tags, labels, top_score, motion_score, qr, kind, event, part, end_reason, pre_alarm, "
                "recovered, folder, name, clip, thumbnail, mtime_ns, size, reviewed) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "EXISTS(SELECT 1 FROM reviewed WHERE id = ?1))",
                rows,
            )
            tally.events += len(rows)
        if rows or gone:  # the days it was on, and is on now
            days = {(old[5], camera) for old in stored.values()} | {(r[2], camera) for r in rows}
            _recount(w, days, ())

    @staticmethod
    def _thumbnail(stem: str, named: Any, files: dict) -> Optional[str]:
        if isinstance(named, str) and os.path.basename(named) in files:
            return os.path.basename(named)
        return stem + ".jpg" if stem + ".jpg" in files else None

    def _event_row(
        self, camera: str, stem: str, data: Any, files: dict, folder_id: int, st: os.stat_result
    ) -> Optional[tuple]:
        """The events row of a sidecar, or None when it is not an event with a clip (or one to come)."""
        if type(data) is not dict or "requested" in data or "segments" in data:
            return None  # an export's sidecar
        get = data.get
        recovered = get("recovered") is True
        start_iso = get("start")
        start = _iso_time(start_iso)
        if start is not None:
            start_ts, day = start.timestamp(), start_iso[:10]
        elif recovered:  # finished after a crash: the name's stamp is all there is
            start_ts = _stamp_time(stem, camera, self.local_time)
            if start_ts is None:
                return None
            start_iso = iso(start_ts, self.local_time)
            day = start_iso[:10]
        else:
            return None
        end_iso = get("end")
        end = _iso_time(end_iso)
        end_ts = end.timestamp() if end is not None else None
        if end_ts is None or end_ts < start_ts:  # not known without decoding the clip
            end_ts, end_iso = start_ts, start_iso
        duration = _number(get("duration_seconds"))
        if duration is None and end is not None:
            duration = round(end_ts - start_ts, 3)
        named = get("clip")
        if named and isinstance(named, str):
            clip = os.path.basename(named)  # a name, never a path out of the folder
            if clip not in files:
                return None  # its clip was deleted: no longer an event to show
        else:
            clip = ""  # still to be cut from the segments
        objects = [o for o in get("objects") or () if type(o) is dict]
        labels = [x for x in get("labels") or () if type(x) is str]
        top = None
        for o in objects:
            label, score = o.get("label"), _number(o.get("score"))
            if type(label) is str and label not in labels:
                labels.append(label)
            if score is not None and (top is None or score > top):
                top = score
        qr_list = [q for q in get("qr") or () if type(q) is dict]
        payloads = [str(q.get("payload", q.get("data", ""))) for q in qr_list]
        # "|person|car|qr|": a label with a bar in it could not be told apart, so it loses the bar
        tags = (
            "|".join(x.replace("|", "") for x in labels)
            + ("|qr" if payloads else "")
            + ("" if labels else "|motion")
        )
        kind, reason = get("kind"), get("end_reason")
        return (
            safe_id(stem),
            camera,
            day,
            start_ts,
            end_ts,
            start_iso,
            end_iso,
            duration,
            "|" + tags.lstrip("|") + "|",
            json.dumps(labels) if labels else "[]",
            top,
            _number(get("peak_score", get("score"))),
            json.dumps(payloads) if payloads else "[]",
            kind if type(kind) is str else None,
            _integer(get("event")),
            _integer(get("part")),
            reason if type(reason) is str else None,
            _number(get("pre_alarm_seconds")),
            int(recovered),
            folder_id,
            stem,
            clip,
            self._thumbnail(stem, get("thumbnail"), files),
            st.st_mtime_ns,
            st.st_size,
        )

    def _sync_index(
        self, camera: str, path: str, folder: _Folder, files: Optional[dict], tally: _Tally
    ) -> None:
        """Read the lines appended to a folder's segments.jsonl since the last build."""
        w = self._writer
        idx = os.path.join(path, INDEX)
        try:
            st = os.stat(idx)
        except OSError:
            st = None
        if st is None:
            if folder.idx_size is not None:  # the index went: so did what it listed
                w.execute("BEGIN IMMEDIATE")
                days = set(
                    w.execute("SELECT DISTINCT day, camera FROM segments WHERE folder = ?", (folder.id,))
                )
                w.execute("DELETE FROM segments WHERE folder = ?", (folder.id,))
                w.execute("DELETE FROM gaps WHERE folder = ?", (folder.id,))
                _recount(w, (), days)
                w.execute(
                    "UPDATE folders SET idx_size = NULL, idx_mtime_ns = NULL, idx_offset = 0 WHERE id = ?",
                    (folder.id,),
                )
                w.execute("COMMIT")
                folder.idx_size, folder.idx_mtime_ns, folder.idx_offset = None, None, 0
            return
        if st.st_size == folder.idx_size and st.st_mtime_ns == folder.idx_mtime_ns:
            return
        offset = folder.idx_offset
        restart = st.st_size < offset  # rewritten shorter: read it again from the start
        if restart:
            offset = 0
        tally.one_read()
        try:
            with open(idx, "rb") as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            return
        done = data.rfind(b"\n") + 1  # a last line without its newline is still being written
        segs, gaps = [], []
        for line in data[:done].splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line torn by a crash
            if not isinstance(e, dict):
                continue
            start, end = _number(e.get("start")), _number(e.get("end"))
            if start is None or end is None:
                continue
            if e.get("gap"):
                reason = e.get("reason") if isinstance(e.get("reason"), str) else None
                gaps.append((folder.id, camera, start, end, reason))
                continue
            name = e.get("file")
            if not isinstance(name, str) or not name:
                continue
            name = os.path.basename(name)
            # the listing may predate the file: the recorder puts a segment in place, then lists it
            there = (files is not None and name in files) or os.path.isfile(os.path.join(path, name))
            if not there or name.startswith(".") or name.endswith(PART_SUFFIX):
                continue  # retention deleted it, or it never was a finished segment
            stem = name[: -len(SEG_SUFFIX)] if name.endswith(SEG_SUFFIX) else os.path.splitext(name)[0]
            day = local_datetime(start, self.local_time).date().isoformat()
            segs.append(
                (
                    safe_id(stem),
                    camera,
                    day,
                    start,
                    max(start, end),
                    _number(e.get("size")),
                    int(e.get("valid", True) is not False),
                    int(bool(e.get("partial"))),
                    folder.id,
                    name,
                )
            )
        w.execute("BEGIN IMMEDIATE")
        try:
            now = w.execute("SELECT idx_offset FROM folders WHERE id = ?", (folder.id,)).fetchone()
            if now is None or now[0] != folder.idx_offset:  # another process read these lines meanwhile
                w.execute("ROLLBACK")
                return
            days = {(s[2], camera) for s in segs}
            if restart:
                days |= set(
                    w.execute("SELECT DISTINCT day, camera FROM segments WHERE folder = ?", (folder.id,))
                )
                w.execute("DELETE FROM segments WHERE folder = ?", (folder.id,))
                w.execute("DELETE FROM gaps WHERE folder = ?", (folder.id,))
            w.executemany("INSERT OR REPLACE INTO segments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", segs)
            _recount(w, (), days)
            w.executemany("INSERT INTO gaps VALUES (?, ?, ?, ?, ?)", gaps)
            w.execute(
                "UPDATE folders SET idx_size = ?, idx_mtime_ns = ?, idx_offset = ? WHERE id = ?",
                (st.st_size, st.st_mtime_ns, offset + done, folder.id),
            )
            w.execute("COMMIT")
        except BaseException:
            w.execute("ROLLBACK")
            raise
        folder.idx_size, folder.idx_mtime_ns, folder.idx_offset = st.st_size, st.st_mtime_ns, offset + done
        tally.segments += len(segs)

    def _drop_folders(self, ids: list, tally: _Tally) -> None:
        """Forget folders that are gone, with every row that came from them."""
        w = self._writer
        w.execute("BEGIN IMMEDIATE")
        try:
            event_days, segment_days = set(), set()
            for fid in ids:
                event_days |= set(
                    w.execute("SELECT DISTINCT day, camera FROM events WHERE folder = ?", (fid,))
                )
                segment_days |= set(
                    w.execute("SELECT DISTINCT day, camera FROM segments WHERE folder = ?", (fid,))
                )
                tally.dropped += w.execute("DELETE FROM events WHERE folder = ?", (fid,)).rowcount
                tally.dropped += w.execute("DELETE FROM segments WHERE folder = ?", (fid,)).rowcount
                w.execute("DELETE FROM gaps WHERE folder = ?", (fid,))
                w.execute("DELETE FROM folders WHERE id = ?", (fid,))
            _recount(w, event_days, segment_days)
            w.execute("COMMIT")
        except BaseException:
            w.execute("ROLLBACK")
            raise

    # -- watching --------------------------------------------------------------------------------
    def watch(self, *, resync_seconds: float = 60.0, debounce: float = 0.3) -> CatalogWatcher:
        """Keep the index current while recorders write: a started ``CatalogWatcher`` (``.stop()``),
        whose first act is an incremental build (on its own thread: the caller need not wait; the
        index fills folder by folder, readable all along)."""
        watcher = CatalogWatcher(self, resync_seconds=resync_seconds, debounce=debounce)
        watcher.start()
        return watcher

    # -- queries ---------------------------------------------------------------------------------
    def cameras(self) -> list[str]:
        """The configured cameras, then any other with recordings in the index."""
        with self._using() as db:
            found = [r[0] for r in db.execute("SELECT DISTINCT camera FROM folders ORDER BY camera")]
            have = {
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT camera FROM events UNION SELECT DISTINCT camera FROM segments"
                )
            }
        return self._configured + [c for c in found if c in have and c not in self._configured]

    def _filters(
        self,
        *,
        cameras: Sequence[str] = (),
        day: Optional[str] = None,
        start: Any = None,
        end: Any = None,
        labels: Sequence[str] = (),
        min_score: Optional[float] = None,
        reviewed: Optional[bool] = None,
    ) -> tuple[list, list]:
        """(SQL conditions, their arguments) of the events filters; ValueError for a bad value."""
        where, args = [], []
        if isinstance(cameras, str):
            cameras = [cameras]
        if cameras:
            where.append(f"camera IN ({','.join('?' * len(cameras))})")
            args += list(cameras)
        if day:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
                raise ValueError(f"day: not YYYY-MM-DD: {day!r}")
            where.append("day = ?")
            args.append(day)
        t0, t1 = _timestamp(start, "start"), _timestamp(end, "end")
        if t0 is not None:
            where.append("start_ts >= ?")
            args.append(t0)
        if t1 is not None:
            where.append("start_ts < ?")
            args.append(t1)
        if isinstance(labels, str):
            labels = [labels]
        if labels:
            where.append("(" + " OR ".join("instr(tags, ?) > 0" for _ in labels) + ")")
            args += [f"|{str(label).replace('|', '')}|" for label in labels]
        if min_score is not None:
            where.append("top_score >= ?")
            args.append(float(min_score))
        if reviewed is not None:
            where.append("reviewed = ?")
            args.append(int(bool(reviewed)))
        return where, args

    def events(
        self,
        *,
        cameras: Sequence[str] = (),
        day: Optional[str] = None,
        start: Any = None,
        end: Any = None,
        labels: Sequence[str] = (),
        min_score: Optional[float] = None,
        reviewed: Optional[bool] = None,
        limit: int = 50,
        cursor: Optional[str] = None,
    ) -> tuple[list[dict], Optional[str]]:
        """A page of event summaries, newest first (start, then id, descending), and the cursor of the
        next page (None: no more). ``labels``: any of them (an object label, ``qr``: has a QR code,
        ``motion``: no object); ``min_score``: the best object's score; ``start``/``end``: the events
        starting in [start, end) (epoch seconds or ISO). The cursor names the last event shown, so
        events that arrive meanwhile neither repeat nor hide one. ValueError for a bad filter."""
        where, args = self._filters(
            cameras=cameras,
            day=day,
            start=start,
            end=end,
            labels=labels,
            min_score=min_score,
            reviewed=reviewed,
        )
        if cursor:
            ts, last = decode_cursor(cursor)
            where.append("(start_ts < ? OR (start_ts = ? AND id < ?))")
            args += [ts, ts, last]
        limit = max(1, int(limit))
        sql = (
            f"SELECT {_SUMMARY} FROM events WHERE {' AND '.join(where) or '1'} "
            "ORDER BY start_ts DESC, id DESC LIMIT ?"
        )
        with self._using() as db:
            rows = db.execute(sql, [*args, limit + 1]).fetchall()
        page = [_summary(r) for r in rows[:limit]]
        more = len(rows) > limit
        return page, (encode_cursor(page[-1]["start_ts"], page[-1]["id"]) if more else None)

    def event(self, event_id: str) -> Optional[dict]:
        """One event's summary with its ``facts``, read from its sidecar now (objects with scores and
        first_seen, QR codes with payload and seen, trigger, pre_alarm, frames, fps, width, height,
        encoding, end_reason, clip_pending, ...) and, for the server only, its ``paths``: {"clip",
        "thumbnail" (or None), "sidecar"}. While a clip is still to be cut from the segments
        (``facts["clip_pending"]``) its file does not exist yet."""
        if not isinstance(event_id, str) or not ID_RE.fullmatch(event_id):
            return None
        with self._using() as db:
            row = db.execute(
                f"SELECT {_SUMMARY}, events.name, events.clip, events.thumbnail, f.path "
                "FROM events JOIN folders f ON f.id = events.folder WHERE events.id = ?",
                (event_id,),
            ).fetchone()
        if row is None:
            return None
        stem, clip, thumb, folder = row[-4:]
        out = _summary(row[:-4])
        base = Path(folder)
        out["paths"] = {
            "clip": base / (clip or stem + ".mp4"),
            "thumbnail": base / thumb if thumb else None,
            "sidecar": base / (stem + ".json"),
        }
        out["facts"] = _facts(out["paths"]["sidecar"], out, pending=not clip)
        return out

    def set_reviewed(self, ids: Iterable[str], reviewed: bool = True) -> int:
        """Mark events (un)reviewed; returns how many changed. Ids not in the index are ignored."""
        ids = [i for i in dict.fromkeys(ids) if isinstance(i, str)]
        changed = 0
        with self._using(write=True) as db:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                todo = db.execute(
                    f"SELECT id, day, camera FROM events WHERE id IN ({marks}) AND reviewed != ?",
                    (*chunk, int(reviewed)),
                ).fetchall()
                changed += _mark(db, todo, reviewed)
        return changed

    def set_reviewed_matching(self, reviewed: bool = True, **filters: Any) -> int:
        """Mark every event that ``events(**filters)`` would list (all pages); returns how many changed."""
        filters.pop("limit", None)
        filters.pop("cursor", None)
        where, args = self._filters(**filters)
        where.append("reviewed != ?")
        args.append(int(reviewed))
        cond = " AND ".join(where)
        with self._using(write=True) as db:
            # set-wise, not id by id (all of 100,000 events: 1.5 s, not 2.2; one day of them: 0.06 s)
            days = db.execute(f"SELECT DISTINCT day, camera FROM events WHERE {cond}", args).fetchall()
            if reviewed:
                db.execute(
                    f"INSERT OR REPLACE INTO reviewed SELECT id, ? FROM events WHERE {cond}",
                    [time.time(), *args],
                )
            else:
                db.execute(f"DELETE FROM reviewed WHERE id IN (SELECT id FROM events WHERE {cond})", args)
            changed = db.execute(f"UPDATE events SET reviewed = {int(reviewed)} WHERE {cond}", args).rowcount
            _recount(db, days, ())
            return changed

    def day_bounds(self, day: str) -> tuple[float, float]:
        """Epoch seconds of the day's midnight and the next (local: 23 or 25 hours apart on DST days)."""
        d = dt.date.fromisoformat(day)
        a, b = dt.datetime.combine(d, dt.time()), dt.datetime.combine(d + dt.timedelta(days=1), dt.time())
        if not self.local_time:
            a, b = a.replace(tzinfo=dt.timezone.utc), b.replace(tzinfo=dt.timezone.utc)
        return a.timestamp(), b.timestamp()

    def days(self, *, cameras: Sequence[str] = (), month: Optional[str] = None) -> list[dict]:
        """[{"day", "events", "unreviewed", "recorded_seconds", "cameras"}], newest first: the days that
        have events or continuous recording (a segment counts on the day it starts)."""
        where, args = [], []
        if isinstance(cameras, str):
            cameras = [cameras]
        if cameras:
            where.append(f"camera IN ({','.join('?' * len(cameras))})")
            args += list(cameras)
        if month:
            if not re.fullmatch(r"\d{4}-\d{2}", month):
                raise ValueError(f"month: not YYYY-MM: {month!r}")
            where.append("day BETWEEN ? AND ?")
            args += [month + "-00", month + "-99"]
        cond = " AND ".join(where) or "1"
        with self._using() as db:
            per_event = db.execute(
                f"SELECT day, camera, events, unreviewed FROM day_events WHERE {cond}", args
            ).fetchall()
            per_segment = db.execute(
                f"SELECT day, camera, seconds FROM day_segments WHERE {cond}", args
            ).fetchall()
        out: dict[str, dict] = {}
        for day, camera, n, unreviewed in per_event:
            d = out.setdefault(day, {"day": day, "events": 0, "unreviewed": 0, "recorded_seconds": 0.0})
            d["events"] += n
            d["unreviewed"] += unreviewed
            d.setdefault("_cams", set()).add(camera)
        for day, camera, seconds in per_segment:
            d = out.setdefault(day, {"day": day, "events": 0, "unreviewed": 0, "recorded_seconds": 0.0})
            d["recorded_seconds"] += seconds
            d.setdefault("_cams", set()).add(camera)
        for d in out.values():
            d["recorded_seconds"] = round(d["recorded_seconds"], 3)
            d["cameras"] = sorted(d.pop("_cams"))
        return sorted(out.values(), key=lambda d: d["day"], reverse=True)

    def timeline(self, camera: str, day: str) -> dict:
        """One camera's day: its bounds (local midnights), the segments overlapping it in time order, the
        gaps (holes of over a second between two segments, clipped to the day, with the recorder's
        reason when its index gives one) and the events overlapping it, in time order."""
        t0, t1 = self.day_bounds(day)
        with self._using() as db:
            # a segment lasts at most an hour and an event's clip is bounded too: a day's margin is ample
            segs = db.execute(
                "SELECT id, start_ts, end_ts, partial, valid FROM segments "
                "WHERE camera = ? AND start_ts >= ? AND start_ts < ? AND end_ts > ? ORDER BY start_ts",
                (camera, t0 - 86400, t1, t0),
            ).fetchall()
            before = db.execute(
                "SELECT end_ts FROM segments WHERE camera = ? AND start_ts < ? "
                "ORDER BY start_ts DESC LIMIT 1",
                (camera, t0),
            ).fetchone()
            after = db.execute(
                "SELECT start_ts FROM segments WHERE camera = ? AND start_ts >= ? ORDER BY start_ts LIMIT 1",
                (camera, t1),
            ).fetchone()
            reasons = db.execute(
                "SELECT start_ts, end_ts, reason FROM gaps WHERE camera = ? AND start_ts < ? AND end_ts > ? "
                "AND start_ts >= ? ORDER BY start_ts",
                (camera, t1 + 1, t0 - 1, t0 - 40 * 86400),
            ).fetchall()
            events = db.execute(
                f"SELECT {_SUMMARY} FROM events WHERE camera = ? AND start_ts >= ? AND start_ts < ? "
                "AND end_ts >= ? ORDER BY start_ts, id",
                (camera, t0 - 86400, t1, t0),
            ).fetchall()
        spans = [(s[1], s[2]) for s in segs]
        if before:
            spans.insert(0, (before[0], before[0]))
        if after:
            spans.append((after[0], after[0]))
        gaps = []
        covered = None
        for a, b in sorted(spans):
            if covered is not None and a - covered > 1.0:
                lo, hi = max(covered, t0), min(a, t1)
                if hi > lo:
                    why = next((r for s, e, r in reasons if s < a + 1 and e > covered - 1), None)
                    gaps.append({"start_ts": lo, "end_ts": hi, "reason": why})
            covered = b if covered is None else max(covered, b)
        return {
            "camera": camera,
            "day": day,
            "start_ts": t0,
            "end_ts": t1,
            "segments": [
                {"id": s[0], "start_ts": s[1], "end_ts": s[2], "partial": bool(s[3]), "valid": bool(s[4])}
                for s in segs
            ],
            "gaps": gaps,
            "events": [_summary(r) for r in events],
        }

    def segment(self, segment_id: str) -> Optional[dict]:
        """One continuous segment: {"id", "camera", "day", "start_ts", "end_ts", "size", "valid",
        "partial", "path"} (the path for the server only)."""
        if not isinstance(segment_id, str) or not ID_RE.fullmatch(segment_id):
            return None
        with self._using() as db:
            row = db.execute(
                "SELECT s.id, s.camera, s.day, s.start_ts, s.end_ts, s.size, s.valid, s.partial, f.path, "
                "s.file FROM segments s JOIN folders f ON f.id = s.folder WHERE s.id = ?",
                (segment_id,),
            ).fetchone()
        if row is None:
            return None
        sid, camera, day, a, b, size, valid, partial, folder, name = row
        return {
            "id": sid,
            "camera": camera,
            "day": day,
            "start_ts": a,
            "end_ts": b,
            "size": int(size) if size is not None else None,
            "valid": bool(valid),
            "partial": bool(partial),
            "path": Path(folder) / name,
        }

    def camera_summary(self, camera: str, day: str) -> dict:
        """{"last_event" (its newest event's summary, or None), "events_today" and "unreviewed_today"
        (on ``day``), "has_recordings" (it has continuous recording in the index)}."""
        with self._using() as db:
            last = db.execute(
                f"SELECT {_SUMMARY} FROM events WHERE camera = ? ORDER BY start_ts DESC, id DESC LIMIT 1",
                (camera,),
            ).fetchone()
            n, unreviewed = db.execute(
                "SELECT count(*), coalesce(sum(reviewed = 0), 0) FROM events WHERE day = ? AND camera = ?",
                (day, camera),
            ).fetchone()
            has = db.execute("SELECT EXISTS(SELECT 1 FROM segments WHERE camera = ?)", (camera,)).fetchone()[
                0
            ]
        return {
            "last_event": _summary(last) if last else None,
            "events_today": n,
            "unreviewed_today": unreviewed,
            "has_recordings": bool(has),
        }

    def stats(self) -> dict:
        """{"events", "segments" (rows in the index), "built" (ISO time of the last build, or None)}."""
        with self._using() as db:
            built = db.execute("SELECT value FROM meta WHERE key = 'built'").fetchone()
            return {
                "events": db.execute("SELECT count(*) FROM events").fetchone()[0],
                "segments": db.execute("SELECT count(*) FROM segments").fetchone()[0],
                "built": built[0] if built else None,
            }


def _mark(db: sqlite3.Connection, todo: list, reviewed: bool) -> int:
    """Set the marks of ``todo`` [(id, day, camera)]: in the table that outlives rebuilds, in the events'
    copy that filters, in the calendar's counts."""
    ids = [(i,) for i, _, _ in todo]
    if reviewed:
        now = time.time()
        db.executemany("INSERT OR REPLACE INTO reviewed VALUES (?, ?)", [(i, now) for i, _, _ in todo])
    else:
        db.executemany("DELETE FROM reviewed WHERE id = ?", ids)
    db.executemany(f"UPDATE events SET reviewed = {int(reviewed)} WHERE id = ?", ids)
    _recount(db, {(day, camera) for _, day, camera in todo}, ())
    return len(todo)


def _recount(db: sqlite3.Connection, event_days: Iterable[tuple], segment_days: Iterable[tuple]) -> None:
    """Count again the calendar's figures of these (day, camera) pairs (each from a covering index)."""
    for day, camera in event_days:
        n, unreviewed = db.execute(
            "SELECT count(*), coalesce(sum(reviewed = 0), 0) FROM events WHERE day = ? AND camera = ?",
            (day, camera),
        ).fetchone()
        if n:
            db.execute("INSERT OR REPLACE INTO day_events VALUES (?, ?, ?, ?)", (day, camera, n, unreviewed))
        else:
            db.execute("DELETE FROM day_events WHERE day = ? AND camera = ?", (day, camera))
    for day, camera in segment_days:
        n, seconds = db.execute(
            "SELECT count(*), coalesce(sum(end_ts - start_ts), 0) FROM segments WHERE day = ? AND camera = ?",
            (day, camera),
        ).fetchone()
        if n:
            db.execute("INSERT OR REPLACE INTO day_segments VALUES (?, ?, ?)", (day, camera, seconds))
        else:
            db.execute("DELETE FROM day_segments WHERE day = ? AND camera = ?", (day, camera))


def _facts(sidecar: Path, summary: dict, pending: bool) -> dict:
    """What an event's page shows beside the clip, from its sidecar (the summary's where it is gone)."""
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        data = {}
    if type(data) is not dict:
        data = {}
    objects = [o for o in data.get("objects") or () if type(o) is dict]
    qr_list = [q for q in data.get("qr") or () if type(q) is dict]
    return {
        "objects": [{k: o.get(k) for k in ("label", "score", "box", "first_seen")} for o in objects],
        "qr": [
            {"payload": str(q.get("payload", q.get("data", ""))), "seen": q.get("seen"), "box": q.get("box")}
            for q in qr_list
        ],
        **{k: data.get(k) for k in _FACTS},
        "end_reason": data.get("end_reason", summary["end_reason"]),
        "pre_alarm": summary["pre_alarm_seconds"],
        "clip_pending": pending,
    }


def _summary(r: tuple) -> dict:
    """An event summary (docs/web-api.md) from a row of the _SUMMARY columns; the server adds URLs."""
    return {
        "id": r[0],
        "camera": r[1],
        "day": r[2],
        "start": r[3],
        "start_ts": r[4],
        "end": r[5],
        "end_ts": r[6],
        "duration_seconds": r[7],
        "labels": json.loads(r[8]),
        "top_score": r[9],
        "motion_score": r[10],
        "qr": json.loads(r[11]),
        "kind": r[12],
        "event": r[13],
        "part": r[14],
        "end_reason": r[15],
        "pre_alarm_seconds": r[16],
        "reviewed": bool(r[17]),
        "recovered": bool(r[18]),
        "has_thumbnail": bool(r[19]),
    }


# what a change notification can be about: sidecars, clips, thumbnails, segments, the day's index
# ("closed": a file written in place, as segments.jsonl is appended to, once per append)
_WATCHED_TYPES = ("created", "deleted", "moved", "modified", "closed")


class CatalogWatcher:
    """Keeps a catalog current: a watchdog observer on the storage roots notes which folders changed;
    one thread applies them (after ``debounce`` seconds without news, so a burst is one update) as an
    incremental build that lists those folders again. Every ``resync_seconds`` a plain incremental
    build runs as well, the safety net for a missed notification (a full inotify queue, a network
    file system): cheap, as it lists only the folders whose modification time changed."""

    def __init__(self, catalog: Catalog, *, resync_seconds: float = 60.0, debounce: float = 0.3):
        self.catalog = catalog
        self.resync_seconds = resync_seconds
        self.debounce = debounce
        self.updates = 0  # builds applied, the first one included (for tests and the status page)
        self.last_error: Optional[str] = None
        self._pending: set[str] = set()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._observer: Any = None
        self._thread = threading.Thread(target=self._run, name="catalog-watcher", daemon=True)

    def start(self) -> None:
        """Start watching (roots that do not exist yet are found by the periodic resync)."""
        from watchdog import events as ev
        from watchdog.observers import Observer

        watcher = self

        class Handler(ev.FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                watcher._noted(event)

        # watchdog 7 warns when a folder tree appears faster than it adds watches ("Callback with id
        # ... already exists"): harmless (the watch is replaced), and it would fill the server's log
        warnings.filterwarnings("ignore", "Callback with id", RuntimeWarning, "watchdog")
        self._observer = Observer()
        handler = Handler()
        # not modifications: ffmpeg writes its segments and clips a packet at a time, hundreds of
        # notifications a second for ten cameras (9 % of a core here); a file written in place tells
        # by its close instead, and the kernel then never sends the rest (watchdog >= 4)
        wanted = [
            ev.FileCreatedEvent,
            ev.DirCreatedEvent,
            ev.FileDeletedEvent,
            ev.DirDeletedEvent,
            ev.FileMovedEvent,
            ev.DirMovedEvent,
            ev.FileClosedEvent,
        ]
        for root in self.catalog._all_roots:
            if root.is_dir():
                try:
                    try:
                        self._observer.schedule(handler, str(root), recursive=True, event_filter=wanted)
                    except TypeError:  # watchdog 3: every notification, sorted out in _noted
                        self._observer.schedule(handler, str(root), recursive=True)
                except OSError as e:  # e.g. the inotify watch limit: the resync still keeps it current
                    log.warning(
                        "cannot watch %s (%s): the index follows it every %g s", root, e, self.resync_seconds
                    )
        self._observer.daemon = True
        self._observer.start()
        self._thread.start()

    @property
    def alive(self) -> bool:
        """The observer and the thread that applies its news are running."""
        return bool(self._observer and self._observer.is_alive() and self._thread.is_alive())

    def stop(self, timeout: float = 10.0) -> None:
        """Stop watching; an update under way finishes first."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _noted(self, event: Any) -> None:
        """A change notification: the folders it touches wait for the next update."""
        if event.event_type not in _WATCHED_TYPES:
            return  # opened, closed without writing: our own reads would otherwise wake us up forever
        folders = []
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            where = os.fsdecode(raw) if raw else ""
            if not where:
                continue
            name = os.path.basename(where)
            if name.startswith(".") or (f"{os.sep}." in where and self._hidden(where)):
                continue  # staging, temporary files, status files, this index itself
            if name.endswith(PART_SUFFIX):
                continue  # a clip being written: its completion is a rename, noticed then
            if event.event_type in ("modified", "closed") and not event.is_directory:
                if not (name.endswith(".json") or name == INDEX):
                    continue  # a file being written in place; what matters comes with its sidecar
            folders.append(where if event.is_directory else os.path.dirname(where))
            if event.is_directory:
                folders.append(os.path.dirname(where))
        if folders:
            with self._cond:
                self._pending.update(folders)
                self._cond.notify_all()

    def _hidden(self, where: str) -> bool:
        """Whether ``where`` lies in a hidden folder below a root (staging, exports in progress)."""
        for root in self.catalog._all_roots:
            try:
                rel = Path(where).relative_to(root)
            except ValueError:
                continue
            return any(part.startswith(".") for part in rel.parts)
        return False

    def _run(self) -> None:
        # the observer is already watching: whatever changes during this first build is noted too
        next_resync = 0.0
        while not self._stop.is_set():
            with self._cond:
                while not self._pending and not self._stop.is_set():
                    left = next_resync - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                # a burst of notifications (a clip, its sidecar, its thumbnail) becomes one update
                while self._pending and not self._stop.is_set():
                    before = len(self._pending)
                    self._cond.wait(self.debounce)
                    if len(self._pending) == before:
                        break
                pending, self._pending = self._pending, set()
            if self._stop.is_set():
                break
            if not pending:
                next_resync = time.monotonic() + self.resync_seconds
            try:
                self.catalog._build(None, force=pending)
                self.updates += 1
                self.last_error = None
            except Exception as e:  # noqa: BLE001 - the watcher must outlive a bad file or a busy disk
                if self.catalog._closed:
                    break
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning("index update failed (tried again at the next change): %s", self.last_error)
