"""ffmpeg child processes: how every one is started, and why one failed.

Every ffmpeg the recorder starts goes through ``FfmpegProcess`` (long-lived: a writer, a reader)
or ``run`` (one-shot: a remux, a probe), both on ``core.processes.popen``: a session of its own
(a terminal's Ctrl-C reaches only the recorder, which then finishes its clips) and the kernel's
signal when the recorder dies (no ffmpeg outlives a SIGKILLed worker), plus the recorder's mark
in NVR_CLI_OWNER. Its stderr is read all the time (a full pipe would stall ffmpeg) into a short
tail: the last lines say why it failed, in words a user can act on.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import threading
from typing import IO, Callable, Iterable, Optional, Sequence, Union

import nvr_cli.core.processes as procs

# what a failed write says; recognised anywhere in the tail, since ffmpeg follows it with lines
# ("Conversion failed!", "Error writing trailer") that say nothing of the cause
CAUSES = ("No space left on device", "Permission denied", "Disk quota exceeded", "Read-only file system")


def why(lines: Iterable[Optional[str]], code: Optional[int] = None, *, last: bool = False) -> str:
    """A failed ffmpeg's reason from its stderr lines: a storage cause it names (lower case), else
    its first line (``last``: its last one), else its exit code."""
    lines = [x.strip() for x in lines if x and x.strip()]
    for cause in CAUSES:
        if any(cause in x for x in lines):
            return cause.lower()
    if lines:
        return lines[-1] if last else lines[0]
    return f"ffmpeg exited with code {code}"


class FfmpegProcess:
    """One running ffmpeg. ``cmd`` is its whole command line (the binary first).

    ``death_signal``: what the kernel sends it when the starting thread dies; None for one fed
    through its stdin, whose end of input (our death included) makes it finish its file (a signal
    would make it drop what is still in the pipe). ``on_line(line)``: sees each stderr line first
    (ffmpeg's -progress output, say) and returns whether it belongs in the tail. ``text``: stdin
    and stdout carry str; stderr lines are str either way. ``pass_fds``: more pipes it writes to,
    as ``pipe:N`` with N the descriptor's number here (it keeps it).
    """

    def __init__(
        self,
        cmd: Sequence[object],
        *,
        stdin: Union[int, IO, None] = subprocess.DEVNULL,
        stdout: Union[int, IO, None] = subprocess.DEVNULL,
        death_signal: Optional[int] = signal.SIGTERM,
        text: bool = False,
        bufsize: int = -1,
        tail: int = 40,
        on_line: Optional[Callable[[str], bool]] = None,
        pass_fds: Sequence[int] = (),
    ):
        self.cmd = [str(c) for c in cmd]
        # OSError (no such binary, not executable) goes to the caller, who knows what failed to start
        self.proc = procs.popen(
            self.cmd,
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            death_signal=death_signal,
            text=text,
            bufsize=bufsize,
            pass_fds=tuple(pass_fds),
        )
        self.tail: collections.deque = collections.deque(maxlen=tail)
        self._on_line = on_line
        self._drain = threading.Thread(target=self._read_stderr, name="nvr-ffmpeg-stderr", daemon=True)
        self._drain.start()

    def _read_stderr(self):
        for line in self.proc.stderr:
            if isinstance(line, bytes):
                line = line.decode(errors="replace")
            line = line.rstrip()
            if self._on_line is None or self._on_line(line):
                self.tail.append(line)

    # -- the process ------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdin(self) -> Optional[IO]:
        return self.proc.stdin

    @property
    def stdout(self) -> Optional[IO]:
        return self.proc.stdout

    @property
    def returncode(self) -> Optional[int]:
        return self.proc.returncode

    def poll(self) -> Optional[int]:
        return self.proc.poll()

    def wait(self, timeout: Optional[float] = None) -> int:
        return self.proc.wait(timeout=timeout)

    def terminate(self) -> None:
        self.proc.terminate()

    def kill(self) -> None:
        self.proc.kill()

    def end(self, timeout: float = 10.0) -> int:
        """SIGTERM (ffmpeg closes its file) if still running, SIGKILL after ``timeout``; its exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    # -- what it said -------------------------------------------------------------------------------
    def lines(self, timeout: float = 2.0) -> list:
        """The tail of its stderr; once it has exited, all of the tail (waits for the reader a moment)."""
        if self.proc.poll() is not None:
            self._drain.join(timeout=timeout)
        return list(self.tail)

    def stderr(self) -> str:
        return "\n".join(self.lines())

    def why(self, *, last: bool = False) -> str:
        """Why it failed: a full disk, a permission, a read-only disk or a quota if it said so, else its
        first line of error (``last``: its last one), else its exit code."""
        return why(self.lines(), self.proc.poll(), last=last)


def run(cmd: Sequence[object], *, timeout: Optional[float] = None) -> subprocess.CompletedProcess:
    """A one-shot ffmpeg (a remux, a probe), text output captured; ``TimeoutExpired`` after ``timeout``
    seconds, the process killed."""
    return procs.run(cmd, timeout=timeout)


def base(ffmpeg: str, loglevel: str = "error") -> list:
    """The start of every command line: no banner, never reads the terminal, errors only."""
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", loglevel]
