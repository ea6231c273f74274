"""Each camera's status file, and reading them back for `nvr-cli status`.

A recorder keeps one small JSON file per camera, rewritten atomically every STATUS_INTERVAL_SECS
by a thread of its own, so a hung pipeline shows as a status whose frames stopped and a dead
process as one that stopped being rewritten (or whose pid is gone).
"""

from __future__ import annotations

import glob
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import nvr_cli.storage.paths as storage
from nvr_cli.config import LoadedSettings, Settings
from nvr_cli.core.errors import NvrError, StorageError

DOWN_STATES = ("connecting", "lost", "stopped", "failed")


def status_dir(s: Settings) -> Path:
    return Path(s.STATUS_DIR) if s.STATUS_DIR else Path(s.PATH_FOR_VIDEO) / ".status"


def status_path(s: Settings, camera: Optional[str] = None) -> Path:
    return status_dir(s) / f"{camera or s.CAMERA_NAME}.json"


def live_socket_path(s: Settings, camera: Optional[str] = None) -> Path:
    """Where a recording worker offers its camera's live packets and newest frame (docs/web-api.md)."""
    return status_dir(s) / f"{camera or s.CAMERA_NAME}.live.sock"


def kept_events_today(s: Settings) -> int:
    """Events (first clips) this camera kept today, from today's sidecars: a restarted recorder goes
    on counting where it was. Only today's folder is read (a sub-folder scheme finer than a day
    counts its current folder only)."""
    now = time.time()
    day = storage.local_datetime(now, s.LOCAL_TIME).strftime("%Y-%m-%d")  # as sidecars write "start"
    try:
        folder = storage.clip_dir(
            s.PATH_FOR_VIDEO, s.CAMERA_NAME, now, s.LOCAL_TIME, s.subFolderNameGeneratorFunc
        )
        sidecars = list(folder.glob(f"{glob.escape(s.CAMERA_NAME)}_*.json"))
    except (OSError, StorageError):
        return 0
    n = 0
    for p in sidecars:
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("part") == 1 and str(data.get("start", "")).startswith(day):
            n += 1
    return n


class CameraStatus:
    """Counters the recorder updates as things happen; ``snapshot()`` is what goes to the file."""

    def __init__(self, s: Settings, source: str, day_of: Optional[Callable[[float], str]] = None):
        self.s = s
        self.source = source
        self.state = "connecting"
        self.since = time.time()
        self.last_frame: Optional[float] = None
        self.frames = 0
        self.dropped = 0
        self.source_fps = 0.0
        self.event: Optional[dict] = None
        self.last_error: Optional[str] = None
        self.last_error_time: Optional[float] = None
        self._day_of = day_of or (lambda t: time.strftime("%Y-%m-%d", time.localtime(t)))
        self.day = self._day_of(time.time())
        self.events_today = 0
        self.bytes_today = 0
        self._rate = (time.monotonic(), 0, 0)  # for the rates measured between snapshots
        self.fps = 0.0
        self.decoded = 0  # frames read off the camera, analysed or not
        self.decoded_fps = 0.0
        self._last_index = -1
        self._lock = threading.Lock()
        self.detect = True  # motion events armed (MQTT detect/set)
        self.mqtt: Optional[Callable[[], dict]] = None  # the MQTT link's counters, with MQTT_HOST

    def _roll_day(self, now: float):
        day = self._day_of(now)
        if day != self.day:
            self.day, self.events_today, self.bytes_today = day, 0, 0

    def set_state(self, state: str, error: Optional[str] = None) -> None:
        with self._lock:
            if state != self.state:
                self.state, self.since = state, time.time()
            if error:
                self.last_error, self.last_error_time = error, time.time()

    def frame(self, ts: float, dropped: int, index: Optional[int] = None) -> None:
        """An analysed frame; ``index``: its number since the connection opened (frames between two
        analysed ones were decoded only, see MAX_ANALYSIS_FPS)."""
        # called for every analysed frame: plain attribute stores, no lock needed
        self.frames += 1
        if index is None:
            self.decoded += 1
        else:
            self.decoded += index + 1 if index <= self._last_index else index - self._last_index
            self._last_index = index
        self.last_frame = time.time()  # a moment, on the wall clock (frame times are monotonic)
        self.dropped = dropped

    def heartbeat(self, when: float) -> None:
        """A sign of life without decoded frames (continuous-only recording)."""
        self.last_frame = when

    def event_started(self, info: dict) -> None:
        with self._lock:
            self.event = info

    def event_ended(self, number: Optional[int] = None) -> None:
        """The event is over (``number``: only if that is the current one: clips finish in the background)."""
        with self._lock:
            if number is None or (self.event and self.event.get("event") == number):
                self.event = None

    def written(self, nbytes: int, event: bool = False) -> None:
        with self._lock:
            self._roll_day(time.time())
            self.bytes_today += nbytes
            self.events_today += 1 if event else 0

    def snapshot(self) -> dict:
        now, mono = time.time(), time.monotonic()
        with self._lock:
            self._roll_day(now)
            t0, n0, d0 = self._rate
            if mono - t0 >= 0.5:
                self.fps = (self.frames - n0) / (mono - t0)
                self.decoded_fps = (self.decoded - d0) / (mono - t0)
                self._rate = (mono, self.frames, self.decoded)
            return {
                "camera": self.s.CAMERA_NAME,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "source": self.source,
                "state": self.state,
                "connected": self.state == "connected",
                "since": round(self.since, 3),
                "updated": round(now, 3),
                "last_frame": round(self.last_frame, 3) if self.last_frame else None,
                "fps": round(self.fps, 2),
                "decoded_fps": round(self.decoded_fps, 2),
                "source_fps": round(self.source_fps, 3),
                "frames": self.frames,
                "decoded_frames": self.decoded,
                "dropped_frames": self.dropped,
                "event": self.event,
                "day": self.day,
                "events_today": self.events_today,
                "bytes_today": self.bytes_today,
                "last_error": self.last_error,
                "last_error_time": round(self.last_error_time, 3) if self.last_error_time else None,
                "stale_after": self.s.STATUS_STALE_SECS,
                "detect": self.detect,
                **({"mqtt": self.mqtt()} if self.mqtt else {}),
            }


class StatusWriter:
    """Rewrites the status file every STATUS_INTERVAL_SECS until stopped; a last write on close."""

    def __init__(self, status: CameraStatus, path: Optional[Path], stop: threading.Event, every: float):
        self.status, self.path, self.stop, self.every = status, path, stop, every
        self._warned = False
        self.ticks = []  # called each round (the worker's parent watch)

    def write(self) -> None:
        if self.path is None:  # a file played, not a camera: nothing to watch
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            storage.write_json(self.path, self.status.snapshot())
            self._warned = False
        except (OSError, StorageError) as e:
            if not self._warned:  # a full disk must not flood the log, nor stop recording
                import logging

                logging.getLogger(__name__).warning("status file %s not written: %s", self.path, e)
                self._warned = True

    def run(self) -> None:
        while not self.stop.is_set():
            self.write()
            for tick in self.ticks:
                tick()
            self.stop.wait(self.every)

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.run, name="nvr-status", daemon=True)
        t.start()
        return t


# --- reading ----------------------------------------------------------------------------------


@dataclass
class Verdict:
    camera: str
    ok: bool
    why: str  # "ok", "down: lost", "stale: no update for 40 s", "missing", "dead: pid 123 is gone"
    status: Optional[dict]

    def as_dict(self) -> dict:
        return {"camera": self.camera, "ok": self.ok, "verdict": self.why, "status": self.status}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def judge(camera: str, st: Optional[dict], stale_after: float, now: Optional[float] = None) -> Verdict:
    """Whether one camera is recording: up, fresh, and its frames still coming."""
    now = time.time() if now is None else now
    if st is None:
        return Verdict(camera, False, "missing: no status file", None)
    if (
        st.get("host") == socket.gethostname()
        and st.get("state") != "stopped"
        and not _pid_alive(st.get("pid", 0))
    ):
        return Verdict(camera, False, f"dead: its process {st.get('pid')} is gone", st)
    if st.get("state") == "stopped":  # its last word: no newer status is coming, so not "stale"
        return Verdict(camera, False, "down: stopped", st)
    age = now - st.get("updated", 0)
    if age > stale_after:
        return Verdict(camera, False, f"stale: no update for {age:.0f} s", st)
    if st.get("state") != "connected":
        err = f" ({st['last_error']})" if st.get("last_error") and st.get("state") != "stopped" else ""
        return Verdict(camera, False, f"down: {st.get('state')}{err}", st)
    frame_age = now - (st.get("last_frame") or 0)
    if frame_age > stale_after:
        return Verdict(camera, False, f"stale: no frame for {frame_age:.0f} s", st)
    return Verdict(camera, True, "ok", st)


def read_all(folder: Path) -> dict:
    """camera -> status dict, for every readable status file in ``folder``."""
    out = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.glob("*.json")):
        if p.name.startswith("."):
            continue
        try:
            out[p.stem] = json.loads(p.read_text())
        except (OSError, ValueError):
            out[p.stem] = None  # half-written by a dying disk: treated as missing
    return out


def fleet_status(loaded: LoadedSettings, stale_after: Optional[float] = None) -> list:
    """A Verdict for every camera: those of CAMERAS (or `cam`'s CAMERA_NAME) first, then any other
    with a status file. ``stale_after``: seconds without news that make a camera stale
    [STATUS_STALE_SECS]. Raises NvrError if there is no camera at all."""
    s = loaded.settings
    found = read_all(status_dir(s))
    expected = list(loaded.cameras) or ([s.CAMERA_NAME] if s.cam else [])
    for cam in loaded.cameras.values():  # a camera may keep its status elsewhere
        if cam.CAMERA_NAME not in found:
            found.update({k: v for k, v in read_all(status_dir(cam)).items() if k == cam.CAMERA_NAME})
    names = expected + sorted(n for n in found if n not in expected)
    if not names:
        raise NvrError(f"no cameras: no CAMERAS or cam in the config and no status files in {status_dir(s)}")
    limit = stale_after or s.STATUS_STALE_SECS
    return [judge(n, found.get(n), limit) for n in names]
