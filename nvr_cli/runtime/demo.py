"""The demo: a generated scene recorded as a camera would be, no camera needed (`nvr-cli demo`)."""

from __future__ import annotations

import logging
from pathlib import Path

import nvr_cli.storage.paths as storage
from nvr_cli.config import Settings
from nvr_cli.core.geometry import parse_polygon
from nvr_cli.ffmpeg.binary import find_ffmpeg
from nvr_cli.output.sinks import ClipSink
from nvr_cli.runtime.pipeline import Pipeline
from nvr_cli.runtime.synthetic import NUMBER_MASK, Scene
from nvr_cli.source.capture import parse_source

log = logging.getLogger(__name__)


def demo_settings(out: Path) -> Settings:
    """Settings that make the scene's walkers events quickly: clips under ``out``/demo."""
    return Settings().replace(
        CAMERA_NAME="demo",
        PATH_FOR_VIDEO=str(out),
        MASKS=(parse_polygon(NUMBER_MASK),),
        PRE_ALARM_RECORDING_SECONDS=3.0,
        MINIMAL_MOTION_DURATION=2.0,
        POST_CAPTURE_SECONDS=1.0,
        INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS=2.0,
    )


def run_demo(s: Settings, out: Path) -> list:
    """Write the scene to ``out``/demo_scene.mp4 and record it with ``s``: the clips' EventRecords."""
    storage.make_dirs(out)
    ffmpeg = find_ffmpeg(required=False)
    scene = Scene()
    src_file = scene.write(out / "demo_scene.mp4", ffmpeg)
    log.info(
        "generated %s: %.0f s with people walking through at %s s",
        src_file,
        scene.seconds,
        ", ".join(f"{a:g}-{b:g}" for a, b in scene.walkers),
    )
    sink = ClipSink.for_camera(s, ffmpeg=ffmpeg)
    Pipeline(s, parse_source(str(src_file)), sink).run()
    return list(sink.records)
