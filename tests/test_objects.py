"""Object confirmation with the real TFLite models from ../shared on real footage."""

import json
import subprocess

import cv2
import numpy as np
import pytest
from helpers import NUMBER_MASK, clips, run_cli, shared

from nvr_cli.analysis.confirmation import ObjectAnalyser
from nvr_cli.analysis.motion import MotionResult
from nvr_cli.analysis.objects import ObjectDetector, expand_to_aspect, load_labels, model_kind
from nvr_cli.config import Settings
from nvr_cli.core.errors import ConfigError
from nvr_cli.core.frames import Frame


def ssd():
    return shared("models", "ssd_mobilenet_v1_1_metadata_1.tflite"), shared("models", "labelmap.txt")


def with_ssd(command, path, *args, timeout=300):
    """``nvr-cli COMMAND PATH --model SSD --labels L ARGS...``, which must succeed."""
    model, labels = ssd()
    return run_cli(command, path, "--model", model, "--labels", labels, *args, check=0, timeout=timeout)


def yolo():
    return shared("models", "yolox_nano.tflite"), shared("models", "yolox_coco80_labels.txt")


def frame_of(name, seconds):
    cap = cv2.VideoCapture(str(shared("video", name)))
    cap.set(cv2.CAP_PROP_POS_MSEC, seconds * 1000)
    ok, img = cap.read()
    assert ok
    return img


def iou(a, b):
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_label_layouts(tmp_path):
    with_placeholder = load_labels(shared("models", "labelmap.txt"))
    by_id = load_labels(shared("models", "coco_labels.txt"))
    assert with_placeholder[:90] == by_id[:90] and by_id[0] == "person" and by_id[11] == "n/a"
    crlf = load_labels(shared("models", "yolox_coco80_labels.txt"))
    assert len(crlf) == 80 and crlf[0] == "person" and all("\r" not in x for x in crlf)
    numbered = tmp_path / "n.txt"
    numbered.write_text("0 person\n2 car\n")
    assert load_labels(numbered) == ["person", "n/a", "car"]
    empty = tmp_path / "e.txt"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        load_labels(empty)


def test_both_model_kinds_find_the_same_people():
    img = frame_of("vtest_480x360.avi", 10)
    a = ObjectDetector(*ssd())
    b = ObjectDetector(*yolo())
    assert (a.kind, b.kind) == ("ssd", "yolo")
    pa = [d for d in a.detect(img, 0.5) if d.label == "person"]
    pb = [d for d in b.detect(img, 0.5) if d.label == "person"]
    assert len(pa) >= 3 and len(pb) >= 3
    # two unrelated models agree on where (most of) the people are
    matched = sum(1 for d in pa if max(iou(d.box, e.box) for e in pb) > 0.4)
    assert matched >= 0.6 * len(pa)
    h, w = img.shape[:2]
    assert all(0 <= d.box[0] and d.box[0] + d.box[2] <= w and d.box[1] + d.box[3] <= h for d in pa + pb)


def test_unsupported_models_and_files_are_clear_errors(tmp_path):
    def details(*shapes):
        return [{"name": f"out{i}", "shape": np.array(s), "dtype": np.float32} for i, s in enumerate(shapes)]

    assert model_kind("m", details((1, 10, 4), (1, 10), (1, 10), (1,)), 90) == "ssd"
    assert model_kind("m", details((1, 3549, 85)), 80) == "yolo"
    with pytest.raises(ConfigError, match=r"unsupported detector outputs \(out0 \[1, 1001\] float32\)"):
        model_kind("m", details((1, 1001)), 1000)  # an image classifier
    with pytest.raises(ConfigError, match="YOLO output has 80 classes but the labels file has 90"):
        model_kind("m", details((1, 3549, 85)), 90)
    with pytest.raises(ConfigError, match="not a TFLite model"):
        ObjectDetector(shared("models", "labelmap.txt"), shared("models", "labelmap.txt"))
    proc = run_cli(
        "detect",
        shared("qr", "zxing_qrcode-2_5.png"),
        "--model",
        tmp_path / "none.tflite",
        "--labels",
        shared("models", "labelmap.txt"),
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "model file not found" in proc.stderr


def test_expand_to_aspect_keeps_the_box_and_the_shape():
    for box in [(100, 100, 20, 80), (0, 0, 300, 10), (600, 300, 40, 40)]:
        x, y, w, h = expand_to_aspect(box, 1.0, (640, 360))
        assert (
            x <= box[0]
            and y <= box[1]
            and x + w >= min(640, box[0] + box[2])
            and y + h >= min(360, box[1] + box[3])
        )
        assert 0 <= x and 0 <= y and x + w <= 640 and y + h <= 360
        assert abs(w / h - 1.0) < 0.05 or w == 640 or h == 360


def test_crops_are_never_smaller_than_the_model_input():
    # a small box far from the edges: grown to 300 x 300 source pixels (the SSD's input), centred on it
    assert expand_to_aspect((500, 500, 20, 40), 1.0, (1920, 1080), min_size=(300, 300)) == (
        360,
        370,
        300,
        300,
    )
    # near an edge it is shifted inside the picture, still full size
    x, y, w, h = expand_to_aspect((0, 1060, 10, 20), 1.0, (1920, 1080), min_size=(300, 300))
    assert (x, y, w, h) == (0, 780, 300, 300)
    # a picture smaller than the input: the whole picture, no more
    assert expand_to_aspect((10, 10, 5, 5), 1.0, (200, 150), min_size=(300, 300))[2:] == (200, 150)


def test_the_analyser_gives_the_model_at_least_its_input_size_around_small_motion():
    model, labels = ssd()
    analyser = ObjectAnalyser(
        Settings(OBJECT_MODEL=str(model), OBJECT_LABELS=str(labels)).objects, (1280, 720)
    )
    shapes = []
    real = analyser.detector.detect
    analyser.detector.detect = lambda image, **kw: shapes.append(image.shape[:2]) or real(image, **kw)
    frame = Frame(np.full((720, 1280, 3), 80, np.uint8), 1.0, 0)
    analyser.process(frame, MotionResult(motion=True, boxes=[(600, 300, 12, 30)]))
    assert shapes == [(300, 300)]


def test_detect_command_json_and_annotation(tmp_path):
    img = tmp_path / "street.png"
    cv2.imwrite(str(img), frame_of("vtest_480x360.avi", 10))
    model, labels = yolo()
    out = tmp_path / "ann.jpg"
    proc = run_cli("detect", img, "--model", model, "--labels", labels, "--json", "--annotate", out, check=0)
    (line,) = [json.loads(x) for x in proc.stdout.splitlines()]
    people = [d for d in line["detections"] if d["label"] == "person"]
    assert len(people) >= 3 and all(0.3 <= d["score"] <= 1 for d in people)
    drawn = cv2.imread(str(out))
    assert drawn.shape == cv2.imread(str(img)).shape
    assert np.sum((drawn[..., 2] > 200) & (drawn[..., 1] < 50) & (drawn[..., 0] < 50)) > 100  # red boxes
    proc = run_cli(
        "detect",
        shared("video", "vtest_480x360.avi"),
        "--model",
        model,
        "--labels",
        labels,
        "--every",
        "2",
        "--max-frames",
        "3",
        "--objects",
        "car",
        check=0,
    )
    rows = proc.stdout.strip().splitlines()
    assert rows and all(" s  " in r for r in rows) and all("person" not in r for r in rows)


def test_person_is_confirmed_and_thumbnail_shows_it(tmp_path):
    model, labels = ssd()
    proc = run_cli(
        "scan",
        shared("video", "one-by-one-person-detection.mp4"),
        "--model",
        model,
        "--labels",
        labels,
        "--confirm",
        "require",
        "--motion-duration",
        "2",
        "--post-capture",
        "0",
        "--json",
        "--extract",
        "--output",
        tmp_path,
        "--name",
        "room",
        check=0,
        timeout=300,
    )
    (result,) = [json.loads(x) for x in proc.stdout.splitlines()]
    events = result["events"]
    assert events and all(e["labels"] == ["person"] for e in events)
    # the room is empty for the first 6 s: nobody is seen before
    assert min(o["first_seen"] for e in events for o in e["objects"]) >= 6.0
    # each kept event was confirmed by a moving "person" track of at least three detections
    for e in events:
        confirmed = [t for t in e["tracks"] if t["confirmed"] and not t["stationary"]]
        assert confirmed and all(t["label"] == "person" for t in e["tracks"]), e["tracks"]
        for t in confirmed:
            assert set(t) == TRACK_FIELDS
            assert t["detections"] >= 3 and 0.7 <= t["median_score"] <= t["best_score"] <= 1
            # a track's whole life: it may have begun before the event (in the one before it)
            assert t["first_seen"] <= t["last_seen"] <= e["end"] and t["last_seen"] >= e["start"]
            assert t["path"][0][0] == t["first_seen"] and t["path"][-1][0] == t["last_seen"]
            assert all(len(p) == 5 and p[3] > 0 and p[4] > 0 for p in t["path"])
    side = json.loads(clips(tmp_path / "room")[0].with_suffix(".json").read_text())
    obj = side["objects"][0]
    assert obj["label"] == "person" and obj["score"] >= 0.5 and side["labels"] == ["person"]
    assert side["objects"][0]["first_seen"][:4].isdigit()  # an ISO time
    thumb = cv2.imread(str(clips(tmp_path / "room")[0].with_suffix(".jpg")))
    x, y, w, h = obj["box"]
    assert thumb is not None and w * h > 0


TRACK_FIELDS = {
    "label",
    "median_score",
    "best_score",
    "detections",
    "first_seen",
    "last_seen",
    "confirmed",
    "stationary",
    "path",
}


# motion as it was judged before motion tracks: every insect is motion, and confirmation alone must
# tell the events apart (with motion tracks the insects make no event to confirm)
FRAME_MOTION = ("--no-tracking", "--blur", "21", "--threshold", "25", "--compare-seconds", "0")


def test_one_lone_detection_no_longer_keeps_a_night_ir_insect_event():
    """After ~115 s night_ir.mp4 shows only insects; SSD-MobileNet calls the pale tree trunk "person"
    at 0.5-0.59 a few times, never three times in one place with a median of 0.7."""
    night = shared("video", "night_ir.mp4")
    required = with_ssd("scan", night, *FRAME_MOTION, "--confirm", "require", "--json", timeout=600)
    events = json.loads(required.stdout)["events"]
    print(f"\nnight_ir.mp4, require person (SSD): kept {[(e['start'], e['end']) for e in events]}")
    assert not [e for e in events if e["trigger"] > 115], events
    assert all(any(t["confirmed"] and not t["stationary"] for t in e["tracks"]) for e in events)
    # tag keeps the events and lists the trunk's tracks, unconfirmed, under no label
    tagged = json.loads(with_ssd("scan", night, *FRAME_MOTION, "--json", timeout=600).stdout)["events"]
    late = [e for e in tagged if e["trigger"] > 115]
    assert late and all(e["labels"] == [] and e["objects"] == [] for e in late)
    tracks = [t for e in late for t in e["tracks"]]
    assert tracks and not any(t["confirmed"] for t in tracks) and all(t["label"] == "person" for t in tracks)


@pytest.fixture(scope="module")
def room_30s(tmp_path_factory):
    """The first 30 s of one-by-one-person-detection.mp4: someone walks in at 6 s, again at 18 s and 23 s."""
    from nvr_cli.ffmpeg.binary import find_ffmpeg

    src = shared("video", "one-by-one-person-detection.mp4")
    out = tmp_path_factory.mktemp("room") / "room_30s.mp4"
    subprocess.run(
        [find_ffmpeg(), "-v", "error", "-i", str(src), "-t", "30", "-c", "copy", str(out)],
        check=True,
        timeout=60,
    )
    return out


def test_a_recorded_sidecar_lists_the_tracks(room_30s, tmp_path):
    proc = with_ssd(
        "record", room_30s, "--confirm", "require", "--output", tmp_path, "--name", "room", "--json"
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    (clip,) = clips(tmp_path / "room")
    side = json.loads(clip.with_suffix(".json").read_text())
    (line,) = lines
    assert side["labels"] == ["person"] and side["tracks"] and len(side["tracks"]) == len(line["tracks"])
    for t, u in zip(side["tracks"], line["tracks"]):
        assert set(t) == TRACK_FIELDS and t["label"] == "person"
        # the same track: ISO times in the sidecar, seconds into the file in --json
        same = {k for k in TRACK_FIELDS if k not in ("first_seen", "last_seen", "path")}
        assert {k: t[k] for k in same} == {k: u[k] for k in same}
        assert t["first_seen"][:4].isdigit() and isinstance(u["first_seen"], float)
        assert [p[1:] for p in t["path"]] == [p[1:] for p in u["path"]] and t["path"][0][0] == t["first_seen"]
    walked_in = [t for t in line["tracks"] if t["confirmed"] and not t["stationary"]]
    assert walked_in and min(t["first_seen"] for t in walked_in) >= 6.0
    assert side["settings"]["OBJECT_CONFIRM_SCORE"] == 0.7


@pytest.mark.slow
def test_require_keeps_fewer_night_ir_insect_events_than_motion_alone(tmp_path):
    model, labels = ssd()
    counts = {}
    for mode in ("off", "require"):
        proc = run_cli(
            "scan",
            shared("video", "night_ir.mp4"),
            "--model",
            model,
            "--labels",
            labels,
            "--confirm",
            mode,
            "--motion-duration",
            "2",
            "--post-capture",
            "0",
            "--json",
            check=0,
            timeout=600,
        )
        counts[mode] = len(json.loads(proc.stdout)["events"])
    print(f"\nnight_ir.mp4 events: motion alone {counts['off']}, require person (SSD) {counts['require']}")
    assert counts["require"] < counts["off"]


def test_confirm_settings_errors():
    model, labels = ssd()
    proc = run_cli("scan", shared("video", "car-detection.mp4"), "--confirm", "require")
    assert proc.returncode == 2 and "needs a model" in proc.stderr and proc.stderr.count("\n") == 1
    proc = run_cli(
        "scan",
        shared("video", "car-detection.mp4"),
        "--model",
        model,
        "--labels",
        labels,
        "--objects",
        "unicorn",
    )
    assert proc.returncode == 2 and "'unicorn' is not a label" in proc.stderr
    proc = run_cli("scan", shared("video", "car-detection.mp4"), "--model", model)
    assert proc.returncode == 2 and "--labels" in proc.stderr


def test_tag_mode_records_everything_and_lists_labels(scene_cache):
    """The generated scene has no real objects: tag keeps its motion events, require keeps none."""
    model, labels = ssd()
    base = [
        "scan",
        scene_cache(),
        "--mask",
        NUMBER_MASK,
        "--motion-duration",
        "1",
        "--model",
        model,
        "--labels",
        labels,
        "--json",
    ]
    tagged = json.loads(run_cli(*base, "--confirm", "tag", check=0).stdout)["events"]
    required = json.loads(run_cli(*base, "--confirm", "require", check=0).stdout)["events"]
    assert len(tagged) == 2 and all(e["labels"] == [] for e in tagged)
    assert required == []


@pytest.fixture(scope="module")
def still_person(tmp_path_factory):
    """A real frame with a person standing still, and a small square moving far from them."""
    from nvr_cli.ffmpeg.binary import find_ffmpeg
    from nvr_cli.output.encoders import FfmpegWriter

    base = frame_of("one-by-one-person-detection.mp4", 9.0)  # someone stands at the right (SSD: 0.67)
    path = tmp_path_factory.mktemp("still") / "still_person.mp4"
    w = FfmpegWriter(path, (base.shape[1], base.shape[0]), 10, ffmpeg=find_ffmpeg(), fragmented=False)
    for i in range(100):
        img = base.copy()
        if 20 <= i < 80:  # 2-8 s: something small moves in the bottom-left corner
            x = 10 + (i - 20) * 4  # ends at x=310, the person stands at x>340
            cv2.rectangle(img, (x, 400), (x + 60, 416), (40, 200, 240), -1)  # a flat bar: nothing COCO knows
        w.write(img)
    w.close()
    return path


def scan_events(path, *args):
    # the still person scores 0.67: confirmed by a median of 0.6 (in place 9 s, not yet stationary)
    extra = ("--confirm", "require", "--json", "--motion-duration", "1", "--confirm-score", "0.6")
    return json.loads(with_ssd("scan", path, *extra, *args, timeout=120).stdout)["events"]


def test_motion_region_crop_misses_a_still_person_that_periodic_detection_finds(still_person, isolated_home):
    # 0.6: SSD-MobileNet calls bits of the upscaled corner crop "person" at up to 0.54
    assert scan_events(still_person, "--object-min-score", "0.6") == []  # only the moving corner is looked at
    (event,) = scan_events(still_person, "--detect-every", "1", "--object-min-score", "0.6")
    assert (
        event["labels"] == ["person"] and event["objects"][0]["box"][0] > 250
    )  # at the right, not the corner


def test_area_limits_and_per_label_overrides(still_person, isolated_home):
    cfg = isolated_home / "machine_specific_configuration.py"
    cfg.write_text("OBJECT_MAX_AREA = 0.01\n")  # the person fills far more of the picture
    assert scan_events(still_person, "--detect-every", "1") == []
    cfg.write_text("OBJECT_LABEL_OVERRIDES = {'person': {'min_score': 0.99}}\n")
    assert scan_events(still_person, "--detect-every", "1") == []
    cfg.write_text("OBJECT_LABEL_OVERRIDES = {'person': {'min_score': 0.3}}\nOBJECT_MIN_SCORE = 0.99\n")
    assert len(scan_events(still_person, "--detect-every", "1")) == 1


def test_input_overrides_change_what_the_model_is_fed():
    img = frame_of("vtest_480x360.avi", 10)
    model, labels = yolo()

    def people(**kw):
        return sorted(
            round(d.score, 3)
            for d in ObjectDetector(model, labels, **kw).detect(img, 0.3)
            if d.label == "person"
        )

    auto = people()
    assert people(color="bgr", letterbox="on", scale="0-255") == auto  # what auto means for YOLO
    assert people(color="rgb") != auto and people(letterbox="off") != auto and people(scale="0-1") != auto
