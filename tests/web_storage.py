"""Storage made by real recordings, once per test session, for the review page's tests.

`nvr-cli run` records two cameras streamed by the real RTSP server on 127.0.0.1: "gate" shows the
generated walking scene (quick motion events, continuous recording in 4-s segments), and "lobby"
the shared footage of people walking into a room, with the SSD model confirming persons (skipped,
and said so, when ../shared is absent). The storage, its config file and the camera URLs (one with
a password that no page may show) are what the tests get.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from helpers import NUMBER_MASK, SHARED, LineCollector, RtspServer, rtsp_available, wait_for

from nvr_cli.storage.segments import read_index

CAMERA_PASSWORD = "Gate-pa55word"


@dataclass
class RecordedStorage:
    root: Path  # PATH_FOR_VIDEO
    config: Path  # a config file naming both cameras and the storage
    cameras: list = field(default_factory=list)
    urls: dict = field(default_factory=dict)  # camera -> its RTSP URL (with credentials)

    def clips(self, camera: str) -> list:
        """Kept event clips: those with a sidecar (not segments, nor the lossless cuts beside clips)."""
        return sorted(
            p.with_suffix(".mp4")
            for p in (self.root / camera).rglob("*.json")
            if not p.name.startswith(".") and p.with_suffix(".mp4").exists()
        )

    def segments(self, camera: str) -> list:
        return [e for e in read_index(self.root / camera) if "file" in e]


def write_config(path: Path, root: Path, cameras: dict, extra: str = "") -> None:
    """A config file for `run` and `serve`: the quick-event settings of tests/test_run.py."""
    entries = ",\n".join(f"    {name!r}: {conf!r}" for name, conf in cameras.items())
    path.write_text(f"""
PATH_FOR_VIDEO = {str(root)!r}
MASKS = [{NUMBER_MASK!r}]
INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS = 1
MINIMAL_MOTION_DURATION = 1
PRE_ALARM_RECORDING_SECONDS = 1
POST_CAPTURE_SECONDS = 1
READ_TIMEOUT_SECS = 3
OPEN_TIMEOUT_SECS = 5
STATUS_INTERVAL_SECS = 0.5
CONTINUOUS_RECORDING = True
SEGMENT_SECONDS = 4
CAMERAS = {{
{entries}
}}
{extra}
""")


def wait_past_midnight(margin: float = 900) -> None:
    """The web tests take "today" as the recording's one day: a session that would record within
    ``margin`` seconds before local midnight starts just after it instead."""
    now = time.time()
    local = time.localtime(now)
    to_midnight = 86400 - (local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec)
    if to_midnight < margin:
        time.sleep(to_midnight + 2)


def record_storage(folder: Path, scene: Path) -> RecordedStorage:
    """Record until each camera has at least two events and three segments (about half a minute)."""
    if not rtsp_available():
        raise RuntimeError("GStreamer's RTSP server is not installed: run scripts/install_and_test.sh")
    wait_past_midnight()
    root = folder / "video"
    servers = [RtspServer(scene, user="viewer", password=CAMERA_PASSWORD)]
    cameras = {"gate": {"cam": servers[0].url}}
    footage = SHARED / "video" / "one-by-one-person-detection.mp4"
    model = SHARED / "models" / "ssd_mobilenet_v1_1_metadata_1.tflite"
    if footage.exists() and model.exists():
        servers.append(RtspServer(footage))
        cameras["lobby"] = {
            "cam": servers[1].url,
            "MASKS": [],
            "OBJECT_MODEL": str(model),
            "OBJECT_LABELS": str(SHARED / "models" / "labelmap.txt"),
            "OBJECT_LABELS_OF_INTEREST": ["person"],
        }
    config = folder / "nvr.py"
    write_config(config, root, cameras)
    storage = RecordedStorage(root, config, list(cameras), {n: c["cam"] for n, c in cameras.items()})
    proc = subprocess.Popen(
        [sys.executable, "-m", "nvr_cli", "run", "--config", str(config)],
        env={
            **os.environ,
            "NVR_CLI_HOME": str(folder),
        },  # no machine_specific_configuration.py of the developer's
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = LineCollector(proc.stderr)

    def enough():  # gate: motion-only events; lobby: persons (the footage is empty for its first 6 s)
        return all(len(storage.clips(c)) >= 2 and len(storage.segments(c)) >= 3 for c in cameras)

    try:
        if not wait_for(enough, timeout=120, interval=0.5):
            raise RuntimeError(
                f"the recording did not make two events and three segments per camera:\n{log.text()}"
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
        for s in servers:
            s.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"`nvr-cli run` exited {proc.returncode}:\n{log.text()}")
    return storage
