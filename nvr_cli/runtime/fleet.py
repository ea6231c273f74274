"""`nvr-cli run`: one worker process per camera of CAMERAS, kept alive, reloaded on config edits.

Workers are ``nvr-cli run --camera NAME`` processes in sessions of their own, so a Ctrl-C in the
terminal reaches only the supervisor, which then stops each worker once (SIGTERM: it finishes its
open clip) and kills what is still running after STOP_TIMEOUT_SECS.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import nvr_cli.core.processes as procs
from nvr_cli.config import FIELDS, MACHINE_FILE, LoadedSettings, Settings, as_plain, home_dir, load_settings
from nvr_cli.core.backoff import Backoff
from nvr_cli.core.errors import ConfigError
from nvr_cli.core.supervised import Supervised
from nvr_cli.runtime.recorder import ENV_SHARED_REAPER
from nvr_cli.runtime.status import status_path
from nvr_cli.storage.retention import prune, release_pass_memory

log = logging.getLogger(__name__)

ENV_PARENT = "NVR_CLI_SUPERVISOR_PID"
# glibc gives each thread that allocates an arena of its own (up to 8 per core), and a worker starts
# threads for every clip: over weeks the arenas fragment and the worker's memory creeps up. Two
# arenas keep it flat (a worker's heavy lifting is in ffmpeg and OpenCV's own threads anyway).
WORKER_ENV = {"MALLOC_ARENA_MAX": "2"}
RESET_AFTER_SECS = 60.0  # a worker that ran this long without dying starts its backoff afresh


def changed(old: Settings, new: Settings) -> list:
    """Names of the settings that differ: what decides (and explains) a restart on reload."""

    def plain(s, k):
        return json.dumps(as_plain(getattr(s, k)), sort_keys=True, default=repr)

    # CAMERAS itself changes with any camera's entry: what matters is this camera's result
    return [k for k in FIELDS if k != "CAMERAS" and plain(old, k) != plain(new, k)]


class Worker:
    """One camera's process and its restart bookkeeping."""

    def __init__(self, name: str, settings: Settings):
        self.name, self.settings = name, settings
        self.proc: Optional[subprocess.Popen] = None
        self.started = 0.0
        self.next_start = 0.0  # monotonic time of the next (re)start; 0: now
        self.backoff = Backoff(settings.RESTART_DELAY_SECS, settings.RESTART_MAX_DELAY_SECS)
        self.restarts: collections.deque = collections.deque()  # monotonic times, last hour
        self.stop_deadline: Optional[float] = None
        self.then: Optional[str] = None  # after stopping: "start" (a changed camera) or "remove"
        self.planned = False  # the next start was asked for (a reload), not a death: not counted

    def reset_backoff(self) -> None:
        """The next restart comes after the first delay (of the current settings: a reload may change
        them).
        """
        self.backoff = Backoff(self.settings.RESTART_DELAY_SECS, self.settings.RESTART_MAX_DELAY_SECS)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    def __init__(self, config_path: Optional[str], loaded: LoadedSettings, stop: threading.Event):
        if not loaded.cameras:
            raise ConfigError(
                "no CAMERAS in the config: add CAMERAS = {'name': {'cam': 'rtsp://...'}, ...} "
                "(see config.py), or record one camera with `nvr-cli record`"
            )
        self.config_path = str(Path(config_path).resolve()) if config_path else None
        self.loaded = loaded
        self.stop = stop
        self.workers: dict = {}
        self.reload_wanted = threading.Event()
        self._changed_at = 0.0
        self.reloads = 0

    # -- workers ---------------------------------------------------------------------------------
    def _command(self, name: str) -> list:
        cmd = [sys.executable, "-m", "nvr_cli", "run", "--camera", name]
        if self.config_path:
            cmd += ["--config", self.config_path]
        return cmd

    def _spawn(self, w: Worker):
        env = {
            **WORKER_ENV,
            **os.environ,
            ENV_PARENT: str(os.getpid()),
            "NVR_CLI_HOME": str(home_dir()),
            ENV_SHARED_REAPER: "1",
        }
        try:
            w.proc = subprocess.Popen(
                self._command(w.name), env=env, stdin=subprocess.DEVNULL, start_new_session=True
            )
        except OSError as e:
            log.error("camera %s: cannot start a worker: %s", w.name, e)
            self._schedule(w, "could not start")
            return
        w.started = time.monotonic()
        log.info("camera %s: worker %d started", w.name, w.proc.pid)

    def _schedule(self, w: Worker, why: str):
        now = time.monotonic()
        if now - w.started > RESET_AFTER_SECS:
            w.reset_backoff()
        while w.restarts and now - w.restarts[0] > 3600:
            w.restarts.popleft()
        limit = w.settings.RESTARTS_PER_HOUR
        if len(w.restarts) >= limit:
            w.next_start = w.restarts[0] + 3600
            log.critical(
                "camera %s: %s, and it was restarted %d times in the last hour (RESTARTS_PER_HOUR): "
                "not restarting it for %.0f min; look at its log",
                w.name,
                why,
                len(w.restarts),
                (w.next_start - now) / 60,
            )
            return
        delay = w.backoff.next()
        w.next_start = now + delay
        log.error("camera %s: %s; restarting in %.1f s", w.name, why, delay)

    def _check(self, w: Worker):
        now = time.monotonic()
        if w.proc is not None and not w.alive:
            code, pid, w.proc = w.proc.returncode, w.proc.pid, None
            # whatever it started and did not end (it was SIGKILLed, or a hook outlived it) ends with it
            left = procs.kill_owned_by(pid)
            if left:
                log.warning("camera %s: ended %d process(es) its worker %d left behind", w.name, left, pid)
            if w.stop_deadline is not None:  # we asked it to stop
                w.stop_deadline = None
                log.info("camera %s: worker stopped (exit %d)", w.name, code)
                if w.then == "start":
                    w.then, w.next_start, w.planned = None, 0.0, True
                    w.reset_backoff()
                return
            if code == 0:  # a file source played to its end: nothing to restart
                log.info("camera %s: worker finished", w.name)
                w.next_start = float("inf")
                return
            why = f"worker died ({_describe(code)})"
            self._schedule(w, why)
            return
        if w.proc is None and w.then is None and now >= w.next_start:
            if w.started and not w.planned:
                w.restarts.append(now)
            w.planned = False
            self._spawn(w)
            return
        if w.stop_deadline is not None and now > w.stop_deadline and w.alive:
            log.error(
                "camera %s: worker %d still running %g s after SIGTERM: killed",
                w.name,
                w.proc.pid,
                w.settings.STOP_TIMEOUT_SECS,
            )
            _kill(w.proc)
            w.stop_deadline = now + 5

    def _ask_to_stop(self, w: Worker, then: Optional[str]):
        w.then = then
        if not w.alive and then == "start":  # it was waiting to be restarted: start it now
            w.proc, w.then, w.next_start, w.planned = None, None, 0.0, True
            w.reset_backoff()
            return
        if w.alive and w.stop_deadline is None:
            w.proc.send_signal(signal.SIGTERM)
            w.stop_deadline = time.monotonic() + w.settings.STOP_TIMEOUT_SECS

    # -- reload ----------------------------------------------------------------------------------
    def watched_files(self) -> list:
        files = list(self.loaded.files)
        home = home_dir()
        for candidate in (home / "config.py", home / MACHINE_FILE):
            if candidate not in files and not self.config_path:
                files.append(candidate)
        if self.config_path:
            files.append(Path(self.config_path))
        return sorted({Path(f).resolve() for f in files})

    def file_changed(self) -> None:
        self._changed_at = time.monotonic()
        self.reload_wanted.set()

    def reload(self) -> None:
        """Apply an edit of the config files: only cameras whose settings changed are restarted."""
        self.reload_wanted.clear()
        try:
            loaded = load_settings(self.config_path)
        except ConfigError as e:
            log.error("config change rejected, cameras keep running with the previous settings: %s", e)
            return
        if not loaded.cameras:
            log.error("config change rejected: it leaves CAMERAS empty; cameras keep running")
            return
        self.reloads += 1
        self.loaded = loaded
        started, restarted, stopped = [], [], []
        for name, w in self.workers.items():
            if name not in loaded.cameras:
                self._ask_to_stop(w, "remove")
                stopped.append(name)
            else:
                diff = changed(w.settings, loaded.cameras[name])
                if diff:
                    w.settings = loaded.cameras[name]
                    self._ask_to_stop(w, "start")
                    restarted.append(f"{name} ({', '.join(diff[:3])}{' ...' if len(diff) > 3 else ''})")
        for name, s in loaded.cameras.items():
            if name not in self.workers:
                self.workers[name] = Worker(name, s)
                started.append(name)
        unchanged = [
            n
            for n in loaded.cameras
            if n not in started and not any(r.startswith(n + " (") for r in restarted)
        ]
        log.info(
            "config reloaded: %s",
            "; ".join(
                f"{what} {', '.join(names)}"
                for what, names in (
                    ("restarting", restarted),
                    ("starting", started),
                    ("stopping", stopped),
                    ("unchanged", unchanged),
                )
                if names
            )
            or "no cameras",
        )

    # -- the loop --------------------------------------------------------------------------------
    def reap(self) -> None:
        """Retention, from one thread for every storage root (workers do not run their own): each
        root with each of its cameras' limits in turn, so the strictest applies, as when every
        worker pruned."""
        while not self.stop.is_set():
            passes = {}
            for s in self.loaded.cameras.values():
                passes.setdefault((str(Path(s.PATH_FOR_VIDEO).resolve()), s.retention), s.retention)
            for (root, _), limits in passes.items():
                try:
                    prune(Path(root), limits)
                except Exception as e:  # noqa: BLE001 - retention must never take recording down
                    log.error("retention check of %s failed: %s", root, e)
            release_pass_memory()
            every = min(s.RETENTION_CHECK_SECONDS for s in self.loaded.cameras.values())
            self.stop.wait(every)

    def run(self) -> int:
        for name, s in self.loaded.cameras.items():
            self.workers[name] = Worker(name, s)
        Supervised("reaper", self.reap, self.stop).start()
        observer = _watch(self.watched_files(), self.file_changed)
        log.info(
            "running %d camera(s): %s; watching %s for changes",
            len(self.workers),
            ", ".join(self.workers),
            ", ".join(str(p) for p in self.watched_files()),
        )
        try:
            while not self.stop.is_set():
                # editors write a file in several steps: wait for it to settle
                if self.reload_wanted.is_set() and time.monotonic() - self._changed_at > 0.5:
                    self.reload()
                for name, w in list(self.workers.items()):
                    self._check(w)
                    if w.then == "remove" and w.proc is None:
                        del self.workers[name]
                        status_path(w.settings).unlink(missing_ok=True)
                self.stop.wait(0.2)
        finally:
            if observer is not None:
                observer.stop()
            self._stop_all()
        return 0

    def _stop_all(self):
        for w in self.workers.values():
            self._ask_to_stop(w, "remove")
        log.info(
            "stopping %d worker(s): open clips are finished first",
            sum(w.alive for w in self.workers.values()),
        )
        while any(w.proc is not None for w in self.workers.values()):
            for w in self.workers.values():
                if w.proc is not None:
                    self._check(w)
            time.sleep(0.1)
        log.info("all workers stopped")


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}" + (": its settings are invalid" if code == 2 else "")


def _kill(proc: subprocess.Popen):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _watch(files: list, callback):
    """watchdog observers on the folders of ``files``; a change to any of them calls ``callback``."""
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:
        log.warning("watchdog is not installed: config edits need a restart (pip install watchdog)")
        return None
    wanted = {str(f) for f in files}

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event):
            paths = {str(Path(p).resolve()) for p in (event.src_path, getattr(event, "dest_path", "")) if p}
            if paths & wanted and event.event_type not in ("opened", "closed_no_write"):
                callback()

    observer = Observer()
    for folder in sorted({str(Path(f).parent) for f in files}):
        if Path(folder).is_dir():
            observer.schedule(Handler(), folder, recursive=False)
    observer.daemon = True
    observer.start()
    return observer
