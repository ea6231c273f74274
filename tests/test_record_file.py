"""record and demo end to end on generated files whose frames carry their own number."""

import json
import os
import signal
import subprocess
import sys
import time

import cv2
from helpers import NUMBER_MASK, clips, decode_all, ffprobe, power_cut, run_cli, wait_for

from nvr_cli.config import Settings
from nvr_cli.runtime.synthetic import read_frame_number

FPS = 15
# the default scene: 30 s at 15 fps, walkers at 8-12 s and 19-22 s
COMMON = [
    "--mask",
    NUMBER_MASK,
    "--initial-wait",
    "2",
    "--pre-alarm",
    "3",
    "--motion-duration",
    "2",
    "--post-capture",
    "1",
    "--name",
    "cam1",
]


def numbers(path):
    return [read_frame_number(img) for img in decode_all(path)]


def test_record_file_pre_alarm_prolongation_post_capture(tmp_path, scene_cache):
    scene = scene_cache()
    out = tmp_path / "video"
    proc = run_cli("record", scene, "--output", out, "--json", *COMMON, check=0)
    files = clips(out)
    assert len(files) == 2, proc.stderr
    # date folders: <root>/cam1/YYYY/MM/DD/cam1_YYYYmmdd-HHMMSS.mp4
    rel = files[0].relative_to(out).parts
    assert rel[0] == "cam1" and len(rel[1]) == 4 and len(rel[2]) == 2 and len(rel[3]) == 2
    assert rel[4].startswith("cam1_") and rel[4].endswith(".mp4")

    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [x["event"] for x in lines] == [1, 2]
    for f, walk, info in zip(files, [(8, 12), (19, 22)], lines):
        probe = ffprobe(f)
        stream = probe["streams"][0]
        assert stream["codec_name"] == "h264" and stream["pix_fmt"] == "yuv420p"
        nums = numbers(f)
        assert int(stream["nb_read_frames"]) == len(nums)
        assert nums == list(range(nums[0], nums[-1] + 1)), "frames lost or repeated"
        side = json.loads(f.with_suffix(".json").read_text())
        trigger_frame = round(info["trigger"] * FPS)
        # the clip starts at least the pre-alarm seconds before the trigger
        assert nums[0] <= trigger_frame - 3 * FPS
        assert side["pre_alarm_seconds"] >= 3.0
        assert walk[0] <= info["motion_start"] <= walk[0] + 0.7
        assert info["motion_start"] < info["trigger"] <= info["motion_start"] + 1.5  # its track counts
        # the walker moves until walk[1] (a frame half a second later still differs from one with
        # it); prolongation (2 s) + post-capture (1 s) after the last motion
        lag = Settings().MOTION_COMPARE_SECONDS
        assert nums[-1] >= (walk[1] - 0.5 + 3) * FPS - 2
        assert nums[-1] <= (walk[1] + lag + 3) * FPS + 2
        assert side["frames"] == len(nums) and side["camera"] == "cam1"
        assert side["start"][-6] in "+-" and side["fps"] == 15.0
        assert side["peak_boxes"] and side["peak_score"] > 0
        thumb = cv2.imread(str(f.with_suffix(".jpg")))
        assert thumb is not None and thumb.shape[:2] == (360, 640)
    assert not list(out.rglob("*.part.mp4"))


def test_max_clip_splits_into_consecutive_files(tmp_path, scene_cache):
    scene = scene_cache()
    out = tmp_path / "video"
    run_cli("record", scene, "--output", out, *COMMON, "--max-clip", "2", check=0)
    files = clips(out)
    assert len(files) >= 5
    first_event = [f for f in files if json.loads(f.with_suffix(".json").read_text())["event"] == 1]
    parts = [json.loads(f.with_suffix(".json").read_text())["part"] for f in first_event]
    assert parts == list(range(1, len(parts) + 1))
    joined = [n for f in first_event for n in numbers(f)]
    assert joined == list(range(joined[0], joined[-1] + 1)), "a frame was lost or repeated at a split"


def test_subfolder_function_from_config(tmp_path, scene_cache, isolated_home):
    (isolated_home / "machine_specific_configuration.py").write_text(
        "def subFolderNameGeneratorFunc(dts):\n    return 'day-{:04}{:02}{:02}'.format(dts.year, dts.month, "
        "dts.day)\n"
    )
    out = tmp_path / "video"
    run_cli("record", scene_cache(), "--output", out, *COMMON, check=0)
    files = clips(out)
    assert files and all(f.parent.name.startswith("day-") and f.parent.parent.name == "cam1" for f in files)


def test_without_ffmpeg_opencv_writes_mp4v_with_a_warning(tmp_path, scene_cache):
    out = tmp_path / "video"
    proc = run_cli("record", scene_cache(), "--output", out, *COMMON, env={"NVR_CLI_FFMPEG": "none"}, check=0)
    assert "no ffmpeg found" in proc.stderr
    files = clips(out)
    assert len(files) == 2
    assert ffprobe(files[0])["streams"][0]["codec_name"] == "mpeg4"
    nums = numbers(files[0])
    assert nums == list(range(nums[0], nums[-1] + 1))


def test_sigkill_mid_clip_leaves_a_playable_part_that_is_recovered(tmp_path, scene_cache):
    out = tmp_path / "video"
    cmd = [
        sys.executable,
        "-m",
        "nvr_cli",
        "record",
        str(scene_cache()),
        "--output",
        str(out),
        "--realtime",
        *map(str, COMMON),
    ]
    # its own process group: the kill must reach it and nothing else
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        part = wait_for(lambda: next(iter(out.rglob("*.part.mp4")), None), timeout=30)
        assert part, "no clip was started"
        time.sleep(2.5)
        power_cut(proc.pid)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    frames_in_part = decode_all(part)
    # 3 s of pre-alarm went in at once, 2.5 s more live; all but the last second or so must play
    assert len(frames_in_part) >= 3 * FPS + 1 * FPS, "the killed clip does not play"
    nums = [read_frame_number(f) for f in frames_in_part]
    assert nums == list(range(nums[0], nums[-1] + 1))
    # the next start finishes it: a complete, indexed MP4 with a sidecar saying so
    proc2 = run_cli("record", scene_cache(), "--output", out, *COMMON, check=0)
    assert "recovered clip" in proc2.stderr
    assert not list(out.rglob("*.part.mp4"))
    recovered = [f for f in clips(out) if json.loads(f.with_suffix(".json").read_text()).get("recovered")]
    assert len(recovered) == 1 and recovered[0].name == part.name.replace(".part.mp4", ".mp4")
    assert len(decode_all(recovered[0])) == len(frames_in_part)
    assert len(clips(out)) == 3  # and the new run recorded its own two events


def test_sigterm_mid_event_finalizes_the_clip(tmp_path, scene_cache):
    out = tmp_path / "video"
    cmd = [
        sys.executable,
        "-m",
        "nvr_cli",
        "record",
        str(scene_cache()),
        "--output",
        str(out),
        "--realtime",
        *map(str, COMMON),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    part = wait_for(lambda: next(iter(out.rglob("*.part.mp4")), None), timeout=30)
    assert part
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    files = clips(out)
    assert len(files) == 1 and not list(out.rglob("*.part.mp4"))
    side = json.loads(files[0].with_suffix(".json").read_text())
    assert side["end_reason"] == "stopped"
    assert len(decode_all(files[0])) == side["frames"]


def test_ctrl_c_in_a_terminal_finalizes_the_clip(tmp_path, scene_cache):
    """A terminal's Ctrl-C reaches the whole foreground process group, ffmpeg children included:
    the clip must still be finished by us, not left as an interrupted part."""
    out = tmp_path / "video"
    cmd = [
        sys.executable,
        "-m",
        "nvr_cli",
        "record",
        str(scene_cache()),
        "--output",
        str(out),
        "--realtime",
        *map(str, COMMON),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert wait_for(lambda: next(iter(out.rglob("*.part.mp4")), None), timeout=30)
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)  # as the terminal does
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    files = clips(out)
    assert len(files) == 1 and not list(out.rglob("*.part.mp4")), proc.stderr.read()
    side = json.loads(files[0].with_suffix(".json").read_text())
    assert side["end_reason"] == "stopped" and side["error"] is None
    assert len(decode_all(files[0])) == side["frames"]


def test_demo_needs_no_camera(tmp_path):
    proc = run_cli("demo", "--output", tmp_path / "d", check=0)
    files = clips(tmp_path / "d" / "demo")
    assert len(files) == 2
    assert "2 clip(s)" in proc.stdout
    assert f"nvr-cli serve --output {tmp_path / 'd'}" in proc.stdout  # the way to see them
    for f in files:
        assert str(f.relative_to(tmp_path)) in proc.stdout
        assert f.with_suffix(".json").exists() and f.with_suffix(".jpg").exists()


def test_file_clips_keep_the_recording_time_not_now(tmp_path, scene_cache):
    import datetime as dt
    import shutil

    scene = tmp_path / "yesterday.mp4"
    shutil.copy(scene_cache(), scene)
    end = dt.datetime(2024, 3, 5, 12, 0, 30, tzinfo=dt.timezone.utc).timestamp()
    os.utime(scene, (end, end))  # written until 12:00:30, 30 s long: began at 12:00:00 UTC
    out = tmp_path / "video"
    run_cli("record", scene, "--output", out, *COMMON, env={"TZ": "UTC"}, check=0)
    first = clips(out)[0]
    assert first.relative_to(out).parts[1:4] == ("2024", "03", "05")
    side = json.loads(first.with_suffix(".json").read_text())
    start = dt.datetime.fromisoformat(side["start"])
    began = dt.datetime.fromisoformat(side["motion_start"])
    assert start.utcoffset() == dt.timedelta(0)
    # the walker enters 8 s into the file
    assert abs((began - dt.datetime(2024, 3, 5, 12, 0, 8, tzinfo=dt.timezone.utc)).total_seconds()) < 0.7
    assert first.name == f"cam1_{start:%Y%m%d-%H%M%S}.mp4"


def test_without_system_ffmpeg_the_one_imageio_ffmpeg_ships_is_used(tmp_path, scene_cache):
    import shutil

    import imageio_ffmpeg

    bin_dir = tmp_path / "bin"  # a PATH with python but no ffmpeg, as after a bare `pip install`
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    env = {"PATH": str(bin_dir), "NVR_CLI_FFMPEG": ""}
    assert shutil.which("ffmpeg", path=str(bin_dir)) is None
    proc = run_cli("demo", "--output", tmp_path / "d", env=env, check=0)
    assert "no ffmpeg found" not in proc.stderr
    files = clips(tmp_path / "d" / "demo")
    assert len(files) == 2 and ffprobe(files[0])["streams"][0]["codec_name"] == "h264"
    probe = subprocess.run(
        [sys.executable, "-c", "from nvr_cli.ffmpeg.binary import find_ffmpeg; print(find_ffmpeg())"],
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == imageio_ffmpeg.get_ffmpeg_exe()


def test_record_runs_the_retention_limits(tmp_path, scene_cache):
    out = tmp_path / "video"
    old = out / "cam1" / "2020" / "01" / "01" / "cam1_20200101-000000.seg.mp4"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"\0" * 1000)
    os.utime(old, (1577836800, 1577836800))  # 2020: older than RETENTION_SEGMENT_DAYS (7)
    proc = run_cli("record", scene_cache(), "--output", out, *COMMON, check=0)
    assert not old.exists() and "older than 7 days" in proc.stderr
    assert len(clips(out)) == 2  # this run's clips are new: kept
