"""`nvr-cli run`: one worker process per camera of CAMERAS, kept alive, reloaded on config edits;
with WEB_ENABLED one more, `nvr-cli serve` (the review page), kept alive the same way.

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
from nvr_cli.runtime.status import status_dir, status_path
from nvr_cli.storage.retention import prune, release_pass_memory

log = logging.getLogger(__name__)

ENV_PARENT = "NVR_CLI_SUPERVISOR_PID"
# glibc gives each thread that allocates an arena of its own (up to 8 per core), and a worker starts
# threads for every clip: over weeks the arenas fragment and the worker's memory creeps up. Two
# arenas keep it flat (a worker's heavy lifting is in ffmpeg and OpenCV's own threads anyway).
WORKER_ENV = {"MALLOC_ARENA_MAX": "2"}
RESET_AFTER_SECS = 60.0  # a worker that ran this long without dying starts its backoff afresh
# what `nvr-cli serve` reads besides WEB_*: a change restarts the review page's worker
WEB_ALSO = ("PATH_FOR_VIDEO", "LOCAL_TIME", "STATUS_DIR", "STATUS_STALE_SECS", "FFMPEG_PATH")


def web_changed(old: LoadedSettings, new: LoadedSettings) -> list:
    """Names of what the review page reads that differ (WEB_*, the storage, the cameras)."""
    names = [k for k in changed(old.settings, new.settings) if k.startswith("WEB_") or k in WEB_ALSO]

    def cameras(loaded: LoadedSettings) -> dict:
        return {n: (c.PATH_FOR_VIDEO, str(c.cam)) for n, c in loaded.cameras.items()}

    return names + (["CAMERAS"] if cameras(old) != cameras(new) else [])


def changed(old: Settings, new: Settings) -> list:
    """Names of the settings that differ: what decides (and explains) a restart on reload."""

    def plain(s, k):
        return json.dumps(as_plain(getattr(s, k)), sort_keys=True, default=repr)

    # CAMERAS itself changes with any camera's entry: what matters is this camera's result
    return [k for k in FIELDS if k != "CAMERAS" and plain(old, k) != plain(new, k)]


class Worker:
    """One camera's process (or the review page's: ``web``) and its restart bookkeeping."""

    def __init__(self, name: str, settings: Settings, web: bool = False):
        self.name, self.settings, self.web = name, settings, web
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

    @property
    def label(self) -> str:
        """Who it is, in log lines."""
        return "review page" if self.web else f"camera {self.name}"


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
        self.web: Optional[Worker] = None  # the review page's worker (WEB_ENABLED)
        self.reload_wanted = threading.Event()
        self._changed_at = 0.0
        self.reloads = 0
        self.mqtt = None  # ServiceMqtt, with MQTT_HOST: <prefix>/available and removed cameras' configs

    # -- workers ---------------------------------------------------------------------------------
    def _command(self, w: Worker) -> list:
        cmd = [sys.executable, "-m", "nvr_cli"]
        # the page is a process of its own, started by its command line (runtime never imports web)
        cmd += ["serve"] if w.web else ["run", "--camera", w.name]
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
                self._command(w), env=env, stdin=subprocess.DEVNULL, start_new_session=True
            )
        except OSError as e:
            log.error("%s: cannot start a worker: %s", w.label, e)
            self._schedule(w, "could not start")
            return
        w.started = time.monotonic()
        log.info("%s: worker %d started", w.label, w.proc.pid)

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
                "%s: %s, and it was restarted %d times in the last hour (RESTARTS_PER_HOUR): "
                "not restarting it for %.0f min; look at its log",
                w.label,
                why,
                len(w.restarts),
                (w.next_start - now) / 60,
            )
            return
        delay = w.backoff.next()
        w.next_start = now + delay
        log.error("%s: %s; restarting in %.1f s", w.label, why, delay)

    def _check(self, w: Worker):
        now = time.monotonic()
        if w.proc is not None and not w.alive:
            code, pid, w.proc = w.proc.returncode, w.proc.pid, None
            # whatever it started and did not end (it was SIGKILLed, or a hook outlived it) ends with it
            left = procs.kill_owned_by(pid)
            if left:
                log.warning("%s: ended %d process(es) its worker %d left behind", w.label, left, pid)
            if w.stop_deadline is not None:  # we asked it to stop
                w.stop_deadline = None
                log.info("%s: worker stopped (exit %d)", w.label, code)
                if w.then == "start":
                    w.then, w.next_start, w.planned = None, 0.0, True
                    w.reset_backoff()
                return
            if code == 0 and not w.web:  # a file source played to its end: nothing to restart
                log.info("%s: worker finished", w.label)
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
                "%s: worker %d still running %g s after SIGTERM: killed",
                w.label,
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
        old, self.loaded = self.loaded, loaded
        self._reload_web(old, loaded)
        self._reload_mqtt(old, loaded)
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

    def _start_mqtt(self) -> None:
        s = self.loaded.settings
        if s.MQTT_HOST:
            from nvr_cli.runtime.mqtt_service import ServiceMqtt

            self.mqtt = ServiceMqtt(s.mqtt, status_dir(s), lambda: dict(self.loaded.cameras)).start()

    def _reload_mqtt(self, old: LoadedSettings, new: LoadedSettings) -> None:
        if old.settings.mqtt != new.settings.mqtt or status_dir(old.settings) != status_dir(new.settings):
            if self.mqtt is not None:
                self.mqtt.close(timeout=2)
                self.mqtt = None
            self._start_mqtt()
        elif self.mqtt is not None:
            for name in new.cameras:
                if name not in old.cameras:
                    self.mqtt.camera_added(name)

    def _reload_web(self, old: LoadedSettings, new: LoadedSettings) -> None:
        enabled = new.settings.WEB_ENABLED
        if self.web is not None and not enabled:
            log.info("config reloaded: WEB_ENABLED is off: stopping the review page")
            self._ask_to_stop(self.web, "remove")
        elif self.web is None and enabled:
            log.info("config reloaded: WEB_ENABLED is on: starting the review page")
            self.web = Worker("web", new.settings, web=True)
        elif self.web is not None:
            diff = web_changed(old, new)
            self.web.settings = new.settings
            if diff:
                log.info("config reloaded: restarting the review page (%s)", ", ".join(diff[:3]))
                self._ask_to_stop(self.web, "start")

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
        if self.loaded.settings.WEB_ENABLED:
            self.web = Worker("web", self.loaded.settings, web=True)
        Supervised("reaper", self.reap, self.stop).start()
        self._start_mqtt()
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
                        if self.mqtt is not None and name not in self.loaded.cameras:
                            self.mqtt.camera_gone(name, w.settings)
                if self.web is not None:
                    self._check(self.web)
                    if self.web.then == "remove" and self.web.proc is None:
                        self.web = None
                self.stop.wait(0.2)
        finally:
            if observer is not None:
                observer.stop()
            self._stop_all()
            if self.mqtt is not None:
                self.mqtt.close()
        return 0

    def _stop_all(self):
        every = [*self.workers.values(), *([self.web] if self.web else [])]
        for w in every:
            self._ask_to_stop(w, "remove")
        log.info("stopping %d worker(s): open clips are finished first", sum(w.alive for w in every))
        while any(w.proc is not None for w in every):
            for w in every:
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
