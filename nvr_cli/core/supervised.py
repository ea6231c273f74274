"""Long-lived threads that never die silently.

Every background component of a recorder (segmenter, packet ring, event cutter, status writer,
reaper) runs under ``Supervised``: an unexpected exception is logged with its traceback (through
the redacting log formatter), the component is restarted after a backoff, and a component that
keeps failing is declared fatal, so the recorder exits non-zero and its own supervisor (``run``,
systemd) restarts the whole camera instead of it recording nothing for months.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable, Optional

from nvr_cli.core.backoff import Backoff

log = logging.getLogger(__name__)


class Supervised:
    """Runs ``target()`` on a daemon thread until it returns or ``stop`` is set; restarts it on crashes.

    ``on_fatal(why)`` is called (once) when it crashed more than ``max_failures`` times within
    ``window`` seconds: the failure is not one that waiting cures.
    """

    def __init__(
        self,
        name: str,
        target: Callable[[], None],
        stop: threading.Event,
        *,
        on_fatal: Optional[Callable[[str], None]] = None,
        max_failures: int = 5,
        window: float = 600.0,
        first_delay: float = 1.0,
        max_delay: float = 30.0,
    ):
        self.name, self.target, self.stop, self.on_fatal = name, target, stop, on_fatal
        self.max_failures, self.window = max_failures, window
        self.first_delay, self.max_delay = first_delay, max_delay
        self.crashes = 0
        self.fatal: Optional[str] = None
        self.thread = threading.Thread(target=self._run, name=f"nvr-{name}", daemon=True)

    def start(self) -> "Supervised":
        self.thread.start()
        return self

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: Optional[float] = None) -> None:
        self.thread.join(timeout)

    def _run(self):
        recent: collections.deque = collections.deque()
        backoff = Backoff(self.first_delay, self.max_delay)
        while True:
            try:
                self.target()
                return
            except Exception as e:  # noqa: BLE001 - the whole point: nothing may end this thread unseen
                now = time.monotonic()
                self.crashes += 1
                recent.append(now)
                while recent and now - recent[0] > self.window:
                    recent.popleft()
                why = f"{type(e).__name__}: {e}"
                if len(recent) > self.max_failures:
                    self.fatal = f"{self.name} failed {len(recent)} times in {self.window / 60:g} min ({why})"
                    log.critical(
                        "%s; giving up on this camera so that it is restarted whole",
                        self.fatal,
                        exc_info=True,
                    )
                    if self.on_fatal:
                        self.on_fatal(self.fatal)
                    return
                delay = backoff.next()
                log.error("%s crashed (%s); restarting it in %.0f s", self.name, why, delay, exc_info=True)
            if self.stop.wait(delay):
                return


def log_crash(name: str, target: Callable[..., object], *args: object) -> None:
    """Run a one-shot job (a hook), logging any exception with its traceback instead of losing it."""
    try:
        target(*args)
    except Exception as e:  # noqa: BLE001
        log.error("%s failed: %s: %s", name, type(e).__name__, e, exc_info=True)
