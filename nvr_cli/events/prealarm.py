"""Ring buffer of the most recent frames, bounded by seconds and by memory."""

from __future__ import annotations

import logging
from collections import deque

from nvr_cli.core.frames import Frame

log = logging.getLogger(__name__)


class PreAlarmBuffer:
    def __init__(self, seconds: float, max_mb: float, keep_images: bool = True):
        self.seconds = seconds
        self.keep_images = keep_images  # off when clips do not come from decoded frames: times only
        self.max_bytes = int(max_mb * 1024 * 1024)
        self._frames: deque = deque()
        self._bytes = 0
        self._reported = False

    def __len__(self):
        return len(self._frames)

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def span(self) -> float:
        return self._frames[-1].ts - self._frames[0].ts if self._frames else 0.0

    def push(self, frame: Frame) -> None:
        if self.seconds <= 0:
            return
        if not self.keep_images:
            frame = Frame(None, frame.ts, frame.index)
        self._frames.append(frame)
        self._bytes += frame.image.nbytes if frame.image is not None else 0
        horizon = frame.ts - self.seconds
        capped = False
        # keep the newest frame at or before the horizon, so a full buffer spans at least `seconds`
        while len(self._frames) > 1 and (self._frames[1].ts <= horizon or self._bytes > self.max_bytes):
            capped = capped or self._frames[1].ts > horizon
            old = self._frames.popleft()
            self._bytes -= old.image.nbytes if old.image is not None else 0
        if self.keep_images and not self._reported and (capped or self.span >= self.seconds * 0.95):
            self._reported = True
            if capped:
                log.warning(
                    "pre-alarm buffer is bounded by memory: %.0f MB holds %.1f s of the %.1f s asked for "
                    "(raise PRE_ALARM_MAX_MB or lower the resolution)",
                    self._bytes / 2**20,
                    self.span,
                    self.seconds,
                )
            else:
                log.info(
                    "pre-alarm buffer is bounded by time: %.1f s in %.0f MB (memory cap %.0f MB)",
                    self.seconds,
                    self._bytes / 2**20,
                    self.max_bytes / 2**20,
                )

    def drain(self) -> list:
        frames = list(self._frames)
        self.clear()
        return frames

    def clear(self) -> None:

        self._frames.clear()
        self._bytes = 0
