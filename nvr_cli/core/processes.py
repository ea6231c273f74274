"""Child processes (ffmpeg, hooks) that never outlive the recorder that started them.

They run in sessions of their own, so that a terminal's Ctrl-C reaches only the recorder (which
then finishes its clips); the price is that a SIGKILLed recorder would leave them running. So each
child asks the kernel for a signal when its parent dies (``PR_SET_PDEATHSIG``, set by util-linux's
``setpriv`` just before it execs the command: no Python code runs between fork and exec, which
with this many threads can deadlock), and carries the recorder's pid in ``NVR_CLI_OWNER``, by
which ``nvr-cli run`` finds and ends whatever a dead worker left behind, grandchildren of hooks
included.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import shutil
import signal
import subprocess
from typing import Any, Optional, Sequence

log = logging.getLogger(__name__)

ENV_OWNER = "NVR_CLI_OWNER"


@functools.lru_cache(maxsize=None)
def _setpriv() -> Optional[str]:
    path = shutil.which("setpriv")
    if path is None:
        log.warning("setpriv (util-linux) not found: ffmpeg and hooks may outlive a killed recorder")
    return path


def popen(
    cmd: Sequence[object],
    *,
    death_signal: Optional[int] = signal.SIGTERM,
    env: Optional[dict] = None,
    **kwargs: Any,
) -> subprocess.Popen:
    """``subprocess.Popen`` in a session of its own, ended by ``death_signal`` when this process dies.

    The signal follows the *thread* that started the child: call it from a thread that outlives
    the child (the pipeline's, or the component's own), never from a short-lived helper thread.
    SIGTERM lets ffmpeg close the file it writes. ``death_signal=None`` for a child fed through
    its stdin: the end of its input ends it, after it has written all it was given (a signal
    would make ffmpeg drop what is still in the pipe)."""
    cmd, env = child_command(cmd, death_signal=death_signal, env=env)
    kwargs.setdefault("start_new_session", True)
    return subprocess.Popen(cmd, env=env, **kwargs)


def child_command(
    cmd: Sequence[object], *, death_signal: Optional[int] = signal.SIGTERM, env: Optional[dict] = None
) -> tuple:
    """(command line, environment) that ``popen`` starts: for a caller that starts the child itself
    (asyncio's subprocesses), in a session of its own too (``start_new_session=True``)."""
    cmd = [str(c) for c in cmd]
    env = dict(os.environ if env is None else env)
    env[ENV_OWNER] = str(os.getpid())
    if death_signal and _setpriv():
        program = shutil.which(cmd[0], path=env.get("PATH"))
        if program is None:  # as Popen would say, not setpriv's exit code 127
            code = errno.EACCES if os.path.isfile(cmd[0]) else errno.ENOENT
            raise (PermissionError if code == errno.EACCES else FileNotFoundError)(
                code, os.strerror(code), cmd[0]
            )
        name = signal.Signals(death_signal).name[3:]
        cmd = [_setpriv(), "--pdeathsig", name, "--", program, *cmd[1:]]
    return cmd, env


def run(
    cmd: Sequence[object], *, timeout: Optional[float] = None, text: bool = True
) -> subprocess.CompletedProcess:
    """``subprocess.run(capture_output=True)`` through ``popen``."""
    proc = popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def owned_by(owner_pid: int) -> list:
    """Pids of the processes that carry ``owner_pid``'s mark (its children and theirs)."""
    mark = f"{ENV_OWNER}={owner_pid}".encode()
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                if mark in f.read().split(b"\0"):
                    found.append(int(d))
        except OSError:  # gone, or not ours to read
            continue
    return found


def kill_owned_by(owner_pid: int) -> int:
    """SIGKILL what a dead process left running; returns how many were killed."""
    n = 0
    for pid in owned_by(owner_pid):
        try:
            os.kill(pid, signal.SIGKILL)
            n += 1
        except (ProcessLookupError, PermissionError):
            pass
    return n
