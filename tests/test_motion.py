"""The motion detector on generated frames."""

import numpy as np
import pytest

from nvr_cli.analysis.motion import MotionDetector
from nvr_cli.config import Settings
from nvr_cli.core.geometry import parse_polygon
from nvr_cli.runtime.synthetic import Scene

W, H = 640, 360


def frames(seconds=3.0, **scene):
    sc = Scene(size=(W, H), fps=10, seconds=seconds, **scene)
    bg, rng = sc.background(), np.random.default_rng(1)
    return [sc.frame(n, bg, rng) for n in range(int(seconds * 10))]


def run(det, imgs):
    return [det.process(img) for img in imgs]


MASK = (parse_polygon("0,0 330,0 330,26 0,26"),)


def test_noise_alone_is_not_motion_but_the_number_strip_is_without_its_mask():
    imgs = frames(walkers=[])
    assert not any(r.motion for r in run(MotionDetector(Settings(MASKS=MASK).motion, (W, H)), imgs))
    # the strip changes every frame: unmasked it is (correctly) motion
    assert any(r.motion for r in run(MotionDetector(Settings().motion, (W, H)), imgs))


def test_walker_is_motion_with_a_box_around_it():
    imgs = frames(walkers=[(0.5, 2.5)])
    res = run(MotionDetector(Settings(MASKS=MASK).motion, (W, H)), imgs)
    moving = [r for r in res[8:22] if r.motion]
    assert len(moving) >= 12
    r = max(moving, key=lambda r: r.score)
    x, y, w, h = max(r.boxes, key=lambda b: b[2] * b[3])
    assert 100 <= y + h / 2 <= 260  # the walker's vertical centre is H/2 - 50 + 55 = 185
    assert w >= 40 and h >= 100
    assert 0 < r.score < 0.5


def test_lighting_change_is_not_motion():
    imgs = frames(walkers=[], lighting=[(1.5, 3.0, 40)])
    res = run(MotionDetector(Settings(MASKS=MASK).motion, (W, H)), imgs)
    assert res[15].lighting and not res[15].motion
    assert not any(r.motion for r in res)
    # without rejection the same jump is (wrongly) motion
    res = run(MotionDetector(Settings(MASKS=MASK, LIGHTING_REJECT=False).motion, (W, H)), imgs)
    assert res[15].motion


def test_mask_and_region_limit_where_motion_counts():
    imgs = frames(walkers=[(0.0, 3.0)])  # walks across the whole width
    left = parse_polygon(f"0,0 {W // 2},0 {W // 2},{H} 0,{H}")
    masked = run(MotionDetector(Settings(MASKS=MASK + (left,)).motion, (W, H)), imgs)
    region = run(MotionDetector(Settings(MASKS=MASK, REGIONS=(left,)).motion, (W, H)), imgs)
    for res, inside in ((masked, lambda x: x >= W // 2 - 40), (region, lambda x: x + 0 <= W // 2 + 40)):
        boxes = [b for r in res for b in r.boxes]
        assert boxes and all(inside(b[0]) for b in boxes)
    first_half = sum(r.motion for r in masked[:14])
    second_half = sum(r.motion for r in masked[16:])
    assert second_half > first_half


def test_analysis_size_follows_scaleFrameTo_or_width():
    assert MotionDetector(Settings().motion, (1920, 1080)).size == (500, 281)
    assert MotionDetector(Settings(scaleFrameTo=(320, 240)).motion, (1920, 1080)).size == (320, 240)
    assert MotionDetector(Settings(MOTION_FRAME_WIDTH=800).motion, (640, 360)).size == (640, 360)


def test_everything_masked_is_an_error():
    with pytest.raises(ValueError):
        MotionDetector(Settings(MASKS=(parse_polygon(f"0,0 {W},0 {W},{H} 0,{H}"),)).motion, (W, H))


def test_regions_are_analysed_cropped_with_the_same_result():
    """With REGIONS only their bounding box is analysed: same motion, boxes in source pixels."""
    import cv2
    from helpers import shared

    path = shared("video", "traffic_camera.mp4")
    s = Settings(REGIONS=(parse_polygon("631,532 841,532 841,659 631,659"),))
    cropped = MotionDetector(s.motion, (1280, 720))
    whole = MotionDetector(s.motion, (1280, 720), keep_stages=True)  # the debug view needs whole frames
    assert cropped.crop is not None and whole.crop is None
    cap = cv2.VideoCapture(str(path))
    agree = moving = 0
    for _ in range(300):
        ok, img = cap.read()
        if not ok:
            break
        a, b = cropped.process(img), whole.process(img)
        agree += a.motion == b.motion
        moving += a.motion
        if a.duplicate or b.duplicate:
            # judged on the whole frame uncropped, on the region cropped: a static road repeats
            continue
        assert abs(a.score - b.score) <= 0.02 + 0.1 * b.score
        for x, y, w, h in a.boxes:
            assert 631 - 25 <= x and x + w <= 841 + 25 and 532 - 25 <= y and y + h <= 659 + 25
    assert moving > 20 and agree >= 0.97 * 300
