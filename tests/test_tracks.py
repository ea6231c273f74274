"""Motion tracks: what persists and moves counts; flashes, jumps, flicker and swaying do not."""

import json
import math
import random

import numpy as np
import pytest
from helpers import run_cli, shared

from nvr_cli.analysis.motion import MotionDetector, MotionResult
from nvr_cli.analysis.tracks import BRIEF, FLICKER, IN_PLACE, MOVING, MotionTracker
from nvr_cli.config import Settings

FPS = 15.0
# frame by frame, as before motion tracks
PREVIOUS = ("--no-tracking", "--blur", "21", "--threshold", "25", "--compare-seconds", "0")


def feed(boxes_per_frame, **settings):
    """Run the tracker over frames at FPS; (motion per frame, every track seen, alive or ended)."""
    tracker = MotionTracker(Settings(MOTION_TRACKING=True, **settings).tracks)
    motion, seen = [], {}
    for i, boxes in enumerate(boxes_per_frame):
        r = tracker.update(i / FPS, MotionResult(boxes=list(boxes), motion=bool(boxes)))
        motion.append(r.motion)
        for t in [*r.tracks, *tracker.take_ended()]:
            seen[t.id] = t
    tracker.reset()
    for t in tracker.take_ended():
        seen[t.id] = t
    return motion, list(seen.values())


def test_a_walker_seen_in_every_frame_counts_after_the_steady_life_and_keeps_one_track():
    frames = [[(100 + 4 * i, 200, 40, 90)] for i in range(60)]  # 60 px a second, 4 s
    motion, tracks = feed(frames)
    assert len(tracks) == 1 and tracks[0].verdict == MOVING
    first = motion.index(True)
    assert first == math.ceil(Settings().TRACK_STEADY_SECONDS * FPS)  # once it has lived that long
    assert all(motion[first:])
    assert tracks[0].travel == pytest.approx(4 * 59)
    assert tracks[0].as_dict()["path"][0] == [0.0, 120, 245]
    # without the steady rule it takes the minimum life
    motion, _ = feed(frames, TRACK_STEADY_SECONDS=0)
    assert motion.index(True) == math.ceil(Settings().TRACK_MIN_SECONDS * FPS)


def test_a_walker_seen_in_every_other_frame_counts_after_the_minimum_life():
    frames = [[(100 + 4 * i, 200, 40, 90)] if i % 2 == 0 else [] for i in range(60)]
    motion, tracks = feed(frames)
    assert tracks[0].verdict == MOVING
    # seen in half its frames: not steady, so it waits out TRACK_MIN_SECONDS (from the next sighting)
    assert Settings().TRACK_MIN_SECONDS * FPS <= motion.index(True) <= Settings().TRACK_MIN_SECONDS * FPS + 2


def test_insects_jumping_about_are_never_motion():
    rnd = random.Random(7)
    # a blob somewhere else in every frame (an insect near the lens, rain): each jump starts a new track
    frames = [[(rnd.randrange(0, 1800), rnd.randrange(0, 1000), 50, 50)] for _ in range(150)]
    motion, tracks = feed(frames)
    assert not any(motion)
    verdicts = [t.verdict for t in tracks]
    assert MOVING not in verdicts and verdicts.count(BRIEF) > 0.8 * len(verdicts)


def test_leaves_swaying_in_place_are_never_motion():
    frames = [[(300 + round(6 * math.sin(i / 3)), 300, 60, 60)] for i in range(150)]
    motion, tracks = feed(frames)
    assert not any(motion)
    assert [t.verdict for t in tracks] == [IN_PLACE]


def test_a_blob_seen_too_seldom_is_flicker():
    # moving like a walker but seen in one frame of four (a moth in the IR light, snow)
    frames = [[(100 + 4 * i, 200, 40, 90)] if i % 4 == 0 else [] for i in range(90)]
    motion, tracks = feed(frames)
    assert not any(motion)
    assert tracks[0].verdict == FLICKER
    # with a lower bar the same track counts: the knob works
    motion, tracks = feed(frames, TRACK_MIN_HIT_RATE=0.2)
    assert any(motion) and tracks[0].verdict == MOVING


def test_a_track_ends_after_the_gap_and_a_lighting_change_forgets_all():
    walk = [[(100 + 4 * i, 200, 40, 90)] for i in range(50)]
    motion, tracks = feed(walk + [[]] * 20 + walk)  # away 1.3 s > TRACK_MAX_GAP_SECONDS
    assert len(tracks) == 2
    tracker = MotionTracker(Settings(MOTION_TRACKING=True).tracks)
    for i in range(50):
        tracker.update(i / FPS, MotionResult(boxes=[(100 + 4 * i, 200, 40, 90)], motion=True))
    assert tracker.tracks and tracker.tracks[0].moving
    r = tracker.update(4.0, MotionResult(lighting=True))
    assert not r.motion and not tracker.tracks and tracker.take_ended()[0].verdict == MOVING


def faint_slow_walker(n=45, w=320, h=180):
    """Frames of a dim (contrast 60) figure creeping 1 px a frame over noise-free grey."""
    out = []
    for i in range(n):
        img = np.full((h, w, 3), 90, np.uint8)
        img[60:120, 100 + i : 116 + i] = 150
        out.append(img)
    return out


def test_comparing_with_half_a_second_back_sees_a_slow_faint_mover():
    frames = faint_slow_walker()
    s = Settings(MOTION_FRAME_WIDTH=320, MOTION_BLUR_SIZE=21, MOTION_PIXEL_THRESHOLD=25)
    before = MotionDetector(s.replace(MOTION_COMPARE_SECONDS=0).motion, (320, 180))
    assert not any(before.process(img, i / FPS).motion for i, img in enumerate(frames))
    lagged = MotionDetector(s.replace(MOTION_COMPARE_SECONDS=0.5).motion, (320, 180))
    results = [lagged.process(img, i / FPS) for i, img in enumerate(frames)]
    # compared with the oldest frame kept until one is half a second old, then always with that one
    assert not any(r.motion for r in results[:3])
    assert all(r.motion for r in results[8:])


def test_tracking_options_reach_the_settings_and_bad_values_are_one_line():
    proc = run_cli("scan", "x.mp4", "--tracking", "--track-min-hit-rate", "1.5")
    assert proc.returncode != 0 and "TRACK_MIN_HIT_RATE" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


@pytest.mark.slow
def test_night_insects_record_without_tracks_and_not_with_them():
    clip = shared("video", "night_ir.mp4")

    def events(*extra):
        proc = run_cli("scan", clip, "--json", *extra)
        assert proc.returncode == 0, proc.stderr
        return [e for e in json.loads(proc.stdout)["events"] if e["kept"]]

    # after ~115 s only insects and noise (bench/quality/night_ir.mp4.json): frame by frame (no tracks,
    # blur 21, threshold 25, the previous frame) they keep being recorded
    previous = events(*PREVIOUS)
    assert any(e["end"] > 130 for e in previous)
    now = events()  # the defaults
    assert not any(e["end"] > 130 for e in now)
    # ... and the faint person with a torch at the fence (about 1.5-44.5 and 50-101.5 s) is still found
    assert any(e["start"] < 40 for e in now) and any(50 < e["end"] and e["start"] < 90 for e in now)
