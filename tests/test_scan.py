"""scan over files: JSON/CSV/table output, --extract, real footage from ../shared."""

import csv
import json

import pytest
from helpers import NUMBER_MASK, clips, decode_all, run_cli, shared

from nvr_cli.config import Settings

SHORT = ["--motion-duration", "1", "--post-capture", "0", "--pre-alarm", "0"]


def scan_json(*args):
    proc = run_cli("scan", "--json", *args, check=0)
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_scan_json_events_match_the_walkers(scene_cache):
    scene = scene_cache()
    (result,) = scan_json(
        scene, "--mask", NUMBER_MASK, "--pre-alarm", "2", "--motion-duration", "1", "--post-capture", "0.5"
    )
    assert result["file"] == str(scene) and abs(result["duration"] - 30.0) < 0.1
    events = result["events"]
    assert len(events) == 2
    lag = Settings().MOTION_COMPARE_SECONDS  # a frame that long after the walker left still differs
    for e, (walk_start, walk_end) in zip(events, [(8, 12), (19, 22)]):
        assert walk_start <= e["motion_start"] <= walk_start + 0.7
        # the walker's track counts once it has shown that it moves
        assert e["motion_start"] < e["trigger"] <= e["motion_start"] + 1.5
        assert e["start"] <= e["trigger"] - 2.0  # pre-alarm included
        assert walk_end + 1.0 <= e["end"] <= walk_end + 1.5 + lag + 0.2  # motion window + post-capture
        assert e["pre_alarm_seconds"] >= 2.0 and e["peak_score"] > 0 and e["motion_box"]


def test_scan_without_events_exits_0_and_csv(tmp_path, scene_cache):
    quiet = scene_cache("quiet", seconds=6, walkers=[])
    scene = scene_cache()
    out_csv = tmp_path / "events.csv"
    proc = run_cli("scan", quiet, scene, "--mask", NUMBER_MASK, *SHORT, "--csv", out_csv, check=0)
    assert "0 event(s)" in proc.stdout and "2 event(s)" in proc.stdout
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 2 and {r["file"] for r in rows} == {str(scene)}
    assert float(rows[0]["start"]) <= float(rows[0]["trigger"]) < float(rows[0]["end"])


def test_scan_extract_writes_clips_like_record(tmp_path, scene_cache):
    (result,) = scan_json(
        scene_cache(),
        "--mask",
        NUMBER_MASK,
        *SHORT,
        "--extract",
        "--output",
        tmp_path / "v",
        "--name",
        "scan",
    )
    files = clips(tmp_path / "v" / "scan")
    assert len(files) == len(result["events"]) == 2
    for f, e in zip(files, result["events"]):
        assert e["clip"] == str(f)
        assert len(decode_all(f)) == json.loads(f.with_suffix(".json").read_text())["frames"] == e["frames"]


def test_scan_progress_bar_on_request(scene_cache):
    proc = run_cli("scan", scene_cache(), "--mask", NUMBER_MASK, "--progress", check=0)
    assert "default.mp4: 50%" in proc.stderr and "default.mp4: 100%" in proc.stderr


def test_scan_bad_inputs_are_one_line_errors(tmp_path, scene_cache):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(scene_cache().read_bytes()[:3000])
    cases = [
        (tmp_path / "missing.mp4", "no such file"),
        (tmp_path, "is a directory"),
        (corrupt, "corrupt"),
        (truncated, "corrupt"),
        ("rtsp://u:pw@127.0.0.1:1/x", "scan takes video files"),
    ]
    for target, words in cases:
        proc = run_cli("scan", target)
        assert proc.returncode == 1, (target, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nvr-cli: error:") and words in lines[0], proc.stderr
        assert ":pw@" not in proc.stderr


def test_scan_one_bad_file_does_not_stop_the_others(tmp_path, scene_cache):
    proc = run_cli("scan", "--json", tmp_path / "nope.mp4", scene_cache(), "--mask", NUMBER_MASK, *SHORT)
    assert proc.returncode == 1
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert "error" in lines[0] and len(lines[1]["events"]) == 2


# --- real footage ------------------------------------------------------------------------------


def test_car_detection_auto_exposure_dips_are_not_events():
    # cars drive through around 4-9, 14-20 and 25-28 s; the picture dims several times, also after
    # the last car (27.9-29.8 s)
    (result,) = scan_json(shared("video", "car-detection.mp4"), *SHORT)
    triggers = [e["trigger"] for e in result["events"]]
    bursts = [(3.5, 9), (13.5, 20), (24.5, 28)]
    # each car is an event (a dip can end a car's track and so split its event with a 1 s window)
    assert all(any(a <= t <= b for a, b in bursts) for t in triggers)
    assert all(any(a <= t <= b for t in triggers) for a, b in bursts)
    assert all(e["end"] <= 29.5 for e in result["events"])


def test_brightness_change_alone_is_no_event():
    (result,) = scan_json(shared("video", "issue53_brightness_change.avi"), *SHORT)
    assert result["events"] == []


def test_repeated_frames_do_not_hide_people():
    # 15 fps footage exported at 29.97 fps with irregularly repeated frames; people pass at 0-9 and 11-17 s
    # (bench/quality/cctv_shopfront.mp4.json: feet at the top edge later on, optional)
    (result,) = scan_json(shared("video", "cctv_shopfront.mp4"), *SHORT)
    spans = [(e["motion_start"], e["end"]) for e in result["events"]]
    assert spans[0][0] <= 1.5
    assert any(a <= 2 <= b for a, b in spans) and any(a <= 12 <= b for a, b in spans)


def test_variable_frame_rate_times_come_from_timestamps():
    region = ["--region", "631,532 841,532 841,659 631,659"]
    (cfr,) = scan_json(shared("video", "traffic_camera.mp4"), *SHORT, *region)
    (vfr,) = scan_json(shared("video", "traffic_camera_vfr.mp4"), *SHORT, *region)
    # same frames: 288 at 25 fps, then the rest at 12.5 fps (twice as long)
    switch = 288 / 25

    def vfr_time(t):
        return t if t < switch else switch + 2 * (t - switch)

    assert abs(vfr["duration"] - vfr_time(cfr["duration"])) < 0.2
    # when motion began: a track counts after so many seconds, which in the slowed part come sooner
    vfr_starts = [e["motion_start"] for e in vfr["events"]]
    for e in cfr["events"]:
        assert min(abs(vfr_time(e["motion_start"]) - t) for t in vfr_starts) < 0.2, (e, vfr_starts)


def test_region_limits_traffic_to_three_bursts():
    (full,) = scan_json(shared("video", "traffic_camera.mp4"), *SHORT)
    (region,) = scan_json(
        shared("video", "traffic_camera.mp4"), *SHORT, "--region", "631,532 841,532 841,659 631,659"
    )
    covered = sum(e["end"] - e["start"] for e in region["events"])
    assert sum(e["end"] - e["start"] for e in full["events"]) > 20  # a busy motorway: motion throughout
    assert covered < 12 and 3 <= len(region["events"]) <= 5
    for e in region["events"]:
        x0, y0, x1, y1 = e["motion_box"]
        assert x0 >= 631 - 20 and y0 >= 532 - 20 and x1 <= 841 + 20 and y1 <= 659 + 20


@pytest.mark.parametrize("name", ["vtest_480x360.avi", "highway_cctv_video02.avi"])
def test_other_footage_formats_scan(name):
    (result,) = scan_json(shared("video", name), *SHORT)
    assert result["frames"] > 100 and result["events"]
    # OpenCV's AVI positions run ahead and fall to 0 at the end; times must still be right
    assert abs(result["duration"] - result["frames"] / result["fps"]) < 0.2
    starts = [e["start"] for e in result["events"]]
    assert starts == sorted(starts) and all(e["end"] <= result["duration"] + 0.01 for e in result["events"])


def test_extract_uses_the_container_creation_time(tmp_path):
    (result,) = scan_json(
        shared("video", "car-detection.mp4"),
        *SHORT,
        "--extract",
        "--output",
        tmp_path,
        "--name",
        "lot",
        "--utc",
    )
    side = json.loads(open(result["events"][0]["clip"].replace(".mp4", ".json")).read())
    # creation_time 2018-04-19T22:46:00Z; the first car comes in 4.4 s in
    assert side["motion_start"].startswith("2018-04-19T22:46:04.")
    assert "/lot/2018/04/19/" in result["events"][0]["clip"]


def test_damaged_file_reports_what_came_before_and_fails(tmp_path, scene_cache):
    data = bytearray(scene_cache().read_bytes())
    n = len(data)
    damaged = tmp_path / "damaged.mp4"
    data[n * 3 // 4 : n * 3 // 4 + 20000] = bytes(
        20000
    )  # zeroed in the middle of the second walker... or after
    damaged.write_bytes(bytes(data))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(scene_cache().read_bytes()[: n * 3 // 5])
    for f in (damaged, truncated):
        proc = run_cli("scan", "--json", f, "--mask", NUMBER_MASK, *SHORT)
        assert proc.returncode == 1
        (line,) = [json.loads(x) for x in proc.stdout.splitlines()]
        assert "truncated or corrupt" in line["error"]
        assert line["events"] and line["events"][0]["motion_start"] < 9  # the first walker was still found
        errors = proc.stderr.strip().splitlines()
        assert (
            len(errors) == 1
            and errors[0].startswith("nvr-cli: error:")
            and "decoding stopped at" in errors[0]
        )
    proc = run_cli("record", truncated, "--output", tmp_path / "v", "--mask", NUMBER_MASK, *SHORT)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("nvr-cli: error:")
    assert clips(tmp_path / "v")  # the clip before the damage is kept, complete


def test_fast_files_are_analysed_at_most_max_analysis_fps(scene_cache):
    """A 30 fps file: every other frame is only decoded (15 analysed a second); same events as all 30."""
    scene = scene_cache("fast", fps=30)
    args = ["--mask", NUMBER_MASK, "--motion-duration", "1", "--post-capture", "0.5", "--pre-alarm", "1"]
    (thin,) = scan_json(scene, *args)
    (full,) = scan_json(scene, *args, "--max-analysis-fps", "0")
    assert thin["frames"] == full["frames"] == full["analysed_frames"] == 900
    assert thin["analysed_frames"] == 450
    assert abs(thin["duration"] - 30.0) < 0.05
    assert len(thin["events"]) == len(full["events"]) == 2
    for a, b in zip(thin["events"], full["events"]):
        # 1/15 s apart a walker has moved twice as far as 1/30 s apart: thinned analysis sees one
        # entering no later (here up to half a second sooner), and the same end
        assert -0.6 <= a["trigger"] - b["trigger"] <= 0.1 and abs(a["end"] - b["end"]) <= 0.1
        assert abs(a["frames"] - b["frames"]) <= 0.6 * 30  # frames the event spans, analysed or not


# --- the library function behind `scan` -------------------------------------------------------


def test_scan_file_returns_a_typed_result(walking):
    from nvr_cli.config import Settings
    from nvr_cli.core.errors import SourceError
    from nvr_cli.core.geometry import parse_polygon
    from nvr_cli.runtime.scan import ScanResult, scan_file

    s = Settings().replace(
        MASKS=(parse_polygon(NUMBER_MASK),),
        MINIMAL_MOTION_DURATION=1.0,
        POST_CAPTURE_SECONDS=0.0,
        PRE_ALARM_RECORDING_SECONDS=0.0,
        INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS=0,
    )
    seen = []

    class Bar:
        done = 0

        def update(self, n=1):
            self.done += n

        def close(self):
            seen.append(self.done)

    result = scan_file(s, str(walking), progress=lambda label, total: seen.append((label, total)) or Bar())
    assert isinstance(result, ScanResult) and result.file == str(walking) and not result.error
    assert abs(result.duration - 12.0) < 0.1 and result.frames == result.analysed_frames == 180
    assert result.fps == 15.0 and seen == [("walking.mp4", 180), 180]
    (event,) = result.events  # someone walks the whole 12 s: one event
    # no pre-alarm: the clip starts at the trigger, after the walker's track began
    assert (
        0 <= event["motion_start"] < 1.0 and event["motion_start"] <= event["start"] == event["trigger"] < 2.0
    )
    assert event["end"] >= 11.5 and event["peak_score"] > 0
    assert result.as_dict() == {
        "file": str(walking),
        "duration": result.duration,
        "frames": 180,
        "analysed_frames": 180,
        "fps": 15.0,
        "events": result.events,
    }
    with pytest.raises(SourceError, match="scan takes video files"):
        scan_file(s, "rtsp://127.0.0.1:1/x")
    with pytest.raises(SourceError, match="no such file"):
        scan_file(s, str(walking.parent / "missing.mp4"))
