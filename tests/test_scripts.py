"""The scripts in scripts/ run against the installed library."""

import subprocess
import sys

import numpy as np
from helpers import NUMBER_MASK, ROOT, decode_all, ffprobe


def script(name, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_four_panel_debug_video(tmp_path, scene_cache):
    out = tmp_path / "debug.mp4"
    # frames 100-160 of the scene: quiet until frame 120, then the walker
    proc = script(
        "motion_detection_test_with_contours.py",
        scene_cache(),
        "-o",
        out,
        "--max-frames",
        160,
        "--mask",
        NUMBER_MASK,
        "--frame-width",
        320,
    )
    assert proc.returncode == 0, proc.stderr
    assert ffprobe(out)["streams"][0]["width"] == 640 and ffprobe(out)["streams"][0]["height"] == 360
    frames = decode_all(out)
    assert len(frames) == 160

    def morph_panel(img):  # bottom-left: after threshold, dilate and erode (below its label)
        return img[180 + 25 :, :320]

    assert np.mean(morph_panel(frames[100]) > 128) < 0.001  # nothing changed yet
    assert np.mean(morph_panel(frames[140]) > 128) > 0.01  # the walker
    # bottom-right has the red box drawn around it
    br = frames[140][180 + 25 :, 320:].astype(int)
    assert np.sum((br[..., 2] > 180) & (br[..., 1] < 60) & (br[..., 0] < 60)) > 50


def test_debug_video_draws_tracks_with_their_verdicts(tmp_path, scene_cache):
    out = tmp_path / "tracks.mp4"
    args = [scene_cache(), "-o", out, "--max-frames", 175, "--mask", NUMBER_MASK, "--frame-width", 320]
    proc = script("motion_detection_test_with_contours.py", *args, "--tracking", "--track-min-seconds", 1)
    assert proc.returncode == 0, proc.stderr
    frames = decode_all(out)

    def drawn(img, bgr):  # pixels of this colour drawn over the source in the bottom-right panel
        source, traced = img[25:180, :320].astype(int), img[180 + 25 :, 320:].astype(int)
        over = np.abs(traced - source).sum(axis=2) > 120
        near = np.abs(traced - np.array(bgr)).sum(axis=2) < 150
        return int(np.sum(over & near))

    # the walker appears at frame 120: a new track (yellow) that counts once it has lived
    # TRACK_MIN_SECONDS, here 1 s (red, with its path)
    assert drawn(frames[122], (0, 255, 255)) > 20 and drawn(frames[122], (0, 0, 255)) < 20
    assert drawn(frames[170], (0, 0, 255)) > 50


def test_debug_script_bad_source_one_line():
    proc = script("motion_detection_test_with_contours.py", "/no/such.mp4")
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and "no such file" in proc.stderr


def test_score_script_and_recorder_wrapper(tmp_path, scene_cache):
    proc = script("motion_detection_test.py", scene_cache("quiet", seconds=6, walkers=[]), "--every", 10)
    rows = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and rows[0].startswith("frame") and len(rows) == 1 + 9
    proc = script(
        "motion_driven_recorder.py",
        scene_cache(),
        "--output",
        tmp_path,
        "--mask",
        NUMBER_MASK,
        "--motion-duration",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list(tmp_path.rglob("*.mp4"))) == 2
