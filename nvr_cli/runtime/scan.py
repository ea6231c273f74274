"""Scanning one recorded file for motion events, as fast as the machine allows: `nvr-cli scan`.

The result is typed (``ScanResult``); how it is shown (table, JSON lines, CSV) is the CLI's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol

from nvr_cli.config import Settings
from nvr_cli.core.errors import SourceError
from nvr_cli.output.sinks import ClipSink, EventLogSink
from nvr_cli.runtime.pipeline import Pipeline
from nvr_cli.source.capture import VideoSource, parse_source


class ProgressBar(Protocol):
    """What ``scan_file`` drives while it reads: ``done`` frames so far, ``update(n)`` adds n."""

    done: int

    def update(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


@dataclass
class ScanResult:
    """One file's events; times are seconds from the start of the file, pre-alarm and post-capture
    included.
    """

    file: str
    duration: float = 0.0  # seconds, from the frames' timestamps
    frames: int = 0  # decoded
    analysed_frames: int = 0  # of which analysed (MAX_ANALYSIS_FPS)
    fps: float = 0.0
    events: list = field(default_factory=list)  # one dict per event: see scan_events
    error: str = ""  # the file could not be read to its end: the events before the damage still count

    def as_dict(self) -> dict:
        """The JSON line `scan --json` prints for this file."""
        line = {
            "file": self.file,
            "duration": self.duration,
            "frames": self.frames,
            "analysed_frames": self.analysed_frames,
            "fps": self.fps,
            "events": self.events,
        }
        if self.error:
            line["error"] = self.error
        return line


def scan_events(records: list, origin: float) -> list:
    """The dict of each event of a scan (its JSON, its CSV row, its table line), times from ``origin``."""
    return [r.as_dict(origin) for r in records]


def scan_file(
    s: Settings,
    path: str,
    *,
    extract: bool = False,
    ffmpeg: Optional[str] = None,
    progress: Optional[Callable[[str, int], ProgressBar]] = None,
) -> ScanResult:
    """Find the motion events in the video file ``path``.

    ``extract``: also write each event's clip, sidecar and thumbnail, as `record` does (with
    ``ffmpeg``, if given). ``progress(label, total_frames)``, if given, makes the bar to drive.
    Raises SourceError if the file cannot be opened or is not a file (a camera, say).
    """
    spec = parse_source(path)
    if spec.live:
        raise SourceError(f"{spec.display}: scan takes video files; use `record` for cameras")
    sink = ClipSink.for_camera(s, ffmpeg=ffmpeg) if extract else EventLogSink()
    info = {}
    bar = None

    def on_open(src: VideoSource):
        nonlocal bar
        info.update(fps=src.fps, total=src.frame_count)
        if progress is not None and src.frame_count:
            bar = progress(Path(spec.text).name, src.frame_count)

    def on_frame(index):
        if bar is not None:  # by position: with MAX_ANALYSIS_FPS not every frame comes through here
            bar.update(index + 1 - bar.done)

    stats = Pipeline(s, spec, sink, on_open=on_open, on_frame=on_frame).run()
    if bar is not None:
        bar.close()
    fps = info.get("fps") or 0
    duration = 0.0
    if stats.last_ts is not None:  # from timestamps: right for variable frame rates too
        duration = stats.last_ts + (1.0 / fps if fps else 0.0)
    return ScanResult(
        file=path,
        duration=round(duration, 3),
        frames=stats.frames,
        analysed_frames=stats.analysed,
        fps=round(fps, 3),
        events=scan_events(sink.records, 0.0),
        error=stats.error,
    )
