"""ffmpeg child processes: why one failed, from the last lines it wrote to stderr."""
from __future__ import annotations

import collections
import subprocess
import threading


class FfmpegStderr:
    """Keeps the last lines an ffmpeg process wrote to stderr, to say why it failed."""

    proc: subprocess.Popen

    def _drain_stderr(self):
        self._stderr = collections.deque(maxlen=20)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self):
        for line in self.proc.stderr:
            self._stderr.append(line.decode(errors="replace").rstrip())

    def _why(self) -> str:
        self._drain.join(timeout=2)
        lines = [x for x in self._stderr if x]
        for cause in ("No space left on device", "Permission denied", "Disk quota exceeded", "Read-only file system"):
            if any(cause in x for x in lines):
                return cause.lower()
        return lines[0] if lines else f"ffmpeg exited with code {self.proc.poll()}"
