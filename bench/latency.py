#!/usr/bin/env python3
"""Motion-to-clip latency over RTSP: from the first moving frame (the wall time it was read off the
camera) to the clip's file existing, and from the last moving frame to the clip being final.

    python3 bench/latency.py

A generated 1280x720 15 fps scene (still, a walker at 8-12 s and another at 19-22 s of each 30 s loop)
is served by the RTSP server; the recorder runs in this process so the frames' own timestamps can be
read, and a thread polls the output folder every 5 ms. Motion window + post-capture are set to 1 + 1 s:
the "final" figure is those 2 s (by design) plus what finishing the file takes.
"""

import sys
import threading
import time
from pathlib import Path
from tempfile import mkdtemp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import Server, ffmpeg, say  # noqa: E402

from nvr_cli import events  # noqa: E402
from nvr_cli.config import Settings  # noqa: E402
from nvr_cli.core.geometry import parse_polygon  # noqa: E402
from nvr_cli.runtime.recorder import Recorder  # noqa: E402
from nvr_cli.runtime.synthetic import NUMBER_MASK, Scene  # noqa: E402

MOTION_WINDOW, POST = 1.0, 1.0


class Probe:
    """Notes, per event, the first and last moving frames' times (wrapping the event controller)."""

    def __init__(self):
        self.first, self.last = [], []
        step, finish = events.EventController.step, events.EventController._finish
        probe = self

        def wrapped_step(ctl, frame, result, *a, **k):
            idle = ctl.event is None
            if idle and result is not None and result.motion and not ctl._run:
                probe._candidate = frame.ts
            step(ctl, frame, result, *a, **k)
            if idle and ctl.event is not None:
                probe.first.append(probe._candidate)

        def wrapped_finish(ctl, reason):
            probe.last.append(ctl.event.last_motion_ts)
            finish(ctl, reason)

        events.EventController.step = wrapped_step
        events.EventController._finish = wrapped_finish


def watch(folder: Path, stop: threading.Event, seen: dict):
    while not stop.is_set():
        for p in folder.rglob("*.mp4"):
            seen.setdefault(p.name, time.time())
        time.sleep(0.005)


def run_mode(url, packets: bool, events_wanted=2) -> list:
    out = Path(mkdtemp(prefix="nvr-bench-"))
    s = Settings(
        cam=url,
        PATH_FOR_VIDEO=str(out),
        CAMERA_NAME="lat",
        MASKS=(parse_polygon(NUMBER_MASK),),
        INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS=1.0,
        PRE_ALARM_RECORDING_SECONDS=2.0,
        MINIMAL_MOTION_DURATION=MOTION_WINDOW,
        POST_CAPTURE_SECONDS=POST,
        EVENT_REENCODE=None if packets else True,
        STATUS_DIR=str(out / ".status"),
    )
    probe = Probe()
    stop, seen = threading.Event(), {}
    threading.Thread(target=watch, args=(out, stop, seen), daemon=True).start()
    done = []
    rec = Recorder(s, stop=stop, on_clip=lambda r: done.append(r))
    t = threading.Thread(target=rec.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 90
    while len(done) < events_wanted and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    stop.set()
    t.join(timeout=60)
    rows = []
    for i, r in enumerate(done[:events_wanted]):
        final = Path(r.clip).name
        part = final.replace(".mp4", ".part.mp4")
        rows.append(
            {
                "mode": "camera packets" if packets else "re-encoded",
                "exists": seen.get(part, float("nan")) - probe.first[i],
                "final": seen.get(final, float("nan")) - probe.last[i],
            }
        )
    return rows


def run():
    from nvr_cli.ffmpeg.binary import find_ffmpeg

    clip = Path(mkdtemp()) / "scene.mp4"
    Scene(seconds=30, fps=15, size=(1280, 720)).write(clip, find_ffmpeg())
    server = Server(clip, 18800)
    try:
        rows = []
        for packets in (False, True):
            say(f"latency: {'camera packets' if packets else 're-encoded clips'} ...")
            rows += run_mode(server.url, packets)
    finally:
        server.stop()
    return rows


def report(rows):
    print("\n## Motion-to-clip latency (RTSP 1280x720 15 fps, recorder in-process)\n")
    print(
        "| clips | event | first moving frame → clip file exists | last moving frame → clip final "
        "| of which motion window + post-capture |"
    )
    print("|---|---|---|---|---|")
    for i, r in enumerate(rows):
        print(
            f"| {r['mode']} | {i % 2 + 1} | {r['exists'] * 1000:.0f} ms | {r['final']:.2f} s | "
            f"{MOTION_WINDOW + POST:.0f} s |"
        )


if __name__ == "__main__":
    ffmpeg()
    report(run())
