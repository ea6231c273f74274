"""User commands run on events: never through a shell, never in the way of recording.

Each hook gets its payload twice: as ``NVR_*`` environment variables (the scalar fields, for a
one-line script) and as a JSON file named by ``NVR_JSON`` (everything, for a real program). The
file is removed when the hook ends.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from typing import Optional

import nvr_cli.core.processes as procs
from nvr_cli.config import HookSettings
from nvr_cli.core.redact import redact
from nvr_cli.core.supervised import log_crash

log = logging.getLogger(__name__)

HOOKS = {
    "event_start": "ON_EVENT_START",
    "event_end": "ON_EVENT_END",
    "camera_lost": "ON_CAMERA_LOST",
    "camera_found": "ON_CAMERA_FOUND",
    "qr_code": "ON_QR_CODE",
}


def hook_env(payload: dict) -> dict:
    """NVR_<KEY> for every scalar (lists comma-joined); nested values only in the JSON file."""
    env = {}
    for key, value in payload.items():
        if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "1" if value else "0"
        elif value is None:
            value = ""
        elif not isinstance(value, (str, int, float)):
            continue
        env[f"NVR_{key.upper()}"] = str(value)
    return env


class HookRunner:
    """Starts the configured command for a hook in the background, with a timeout."""

    def __init__(self, settings: HookSettings, camera: str):
        self.s = settings
        self.camera = camera
        self._running: set = set()
        self._lock = threading.Lock()

    def configured(self, hook: str) -> bool:
        return getattr(self.s, HOOKS[hook]) is not None

    def fire(self, hook: str, payload: dict) -> Optional[threading.Thread]:
        argv = getattr(self.s, HOOKS[hook])
        if argv is None:
            return None
        with self._lock:
            if len(self._running) >= self.s.HOOK_MAX_RUNNING:
                log.warning(
                    "hook %s skipped: %d hooks still running (HOOK_MAX_RUNNING)",
                    HOOKS[hook],
                    len(self._running),
                )
                return None
            t = threading.Thread(
                target=log_crash,
                args=(f"hook {HOOKS[hook]}", self._run, hook, tuple(argv), payload),
                name=f"hook-{hook}",
                daemon=True,
            )
            self._running.add(t)
        t.start()
        return t

    def _run(self, hook: str, argv: tuple, payload: dict):
        name = HOOKS[hook]
        payload = {"hook": hook, "camera": self.camera, **payload}
        fd, path = tempfile.mkstemp(prefix=f"nvr-{hook}-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(payload, f, indent=2, default=str)
            env = {**os.environ, **hook_env(payload), "NVR_JSON": path}
            try:
                # its own session: a timeout kills the hook's children too (a script's curl, sleep ...)
                # tied to this recorder: a SIGKILLed one leaves no hook behind (see procs)
                proc = procs.popen(
                    argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                )
            except OSError as e:
                log.error("hook %s could not start %s: %s", name, argv[0], e.strerror or e)
                return
            try:
                _, err = proc.communicate(timeout=self.s.HOOK_TIMEOUT_SECS)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                log.error(
                    "hook %s (%s) still running after %g s: killed", name, argv[0], self.s.HOOK_TIMEOUT_SECS
                )
                return
            if proc.returncode != 0:
                last = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
                log.warning(
                    "hook %s (%s) exited with %d%s",
                    name,
                    argv[0],
                    proc.returncode,
                    f": {redact(last[0])[:200]}" if last[0] else "",
                )
            else:
                log.debug("hook %s (%s) done", name, argv[0])
        finally:
            os.unlink(path)
            with self._lock:
                self._running.discard(threading.current_thread())

    def wait(self, timeout: float) -> bool:
        """Let running hooks finish (at shutdown); True if none is left."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                running = list(self._running)
            if not running:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            running[0].join(left)


def _kill_group(proc: subprocess.Popen):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()
