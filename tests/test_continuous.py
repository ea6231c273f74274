"""Continuous stream-copy recording, export and retention, over the real RTSP test server."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import (
    NUMBER_MASK,
    clips,
    decode_all,
    ffprobe,
    mount_tmpfs,
    power_cut,
    run_cli,
    run_until,
    unmount,
    wait_for,
)

from nvr_cli.config import Settings
from nvr_cli.runtime.synthetic import read_frame_number
from nvr_cli.storage.retention import GB, plan
from nvr_cli.storage.segments import read_index

pytestmark = pytest.mark.rtsp


def continuous(url, out, *extra, group=False):
    cmd = [
        sys.executable,
        "-m",
        "nvr_cli",
        "record",
        url,
        "--output",
        str(out),
        "--name",
        "yard",
        "--continuous",
        "--segment-seconds",
        "3",
        "--read-timeout",
        "3",
        *map(str, extra),
    ]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=group
    )


def segments(out):
    return [e for e in read_index(out / "yard") if "file" in e]


def numbers(path):
    return [read_frame_number(f) for f in decode_all(path)]


@pytest.fixture
def recorded(tmp_path_factory, scene_cache, rtsp_server):
    """~12 s of continuous recording (no motion detection) of the numbered scene, in 3 s segments."""
    out = tmp_path_factory.mktemp("cont") / "video"
    server = rtsp_server(scene_cache())
    proc = continuous(server.url, out, "--no-motion")
    assert wait_for(lambda: len(segments(out)) >= 4, timeout=40), proc.stderr.read() if proc.poll() else ""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return out, err


def test_segments_are_contiguous_valid_and_lose_no_frame(recorded):
    out, err = recorded
    segs = segments(out)
    assert len(segs) >= 4 and all(e["valid"] for e in segs)
    assert not [e for e in read_index(out / "yard") if e.get("gap")]
    assert not list((out / "yard" / ".incoming").glob("*.mp4"))
    previous_last = None
    for a, b in zip(segs, segs[1:]):
        assert abs(b["start"] - a["end"]) < 0.3  # contiguous in time
    for e in segs:
        assert e["path"].parent.relative_to(out / "yard").parts[0].isdigit()  # YYYY/MM/DD like event clips
        probe = ffprobe(e["path"])["streams"][0]
        assert probe["codec_name"] == "h264" and (probe["width"], probe["height"]) == (640, 360)
        nums = numbers(e["path"])
        assert nums == list(range(nums[0], nums[-1] + 1))
        if previous_last is not None:  # the next segment starts with the very next frame
            assert nums[0] == previous_last + 1
        previous_last = nums[-1]
    assert "Traceback" not in err


def test_export_across_three_segments_is_lossless(recorded, tmp_path):
    out, _ = recorded
    segs = segments(out)
    start, end = segs[0]["start"] + 1.5, segs[2]["start"] + 1.5
    target = tmp_path / "clip.mp4"
    iso = lambda t: __import__("datetime").datetime.fromtimestamp(t).isoformat()  # noqa: E731
    proc = run_cli(
        "export", "yard", target, "--from", iso(start), "--to", iso(end), "--output", out, "--json", check=0
    )
    info = json.loads(proc.stdout)
    assert len(info["segments"]) == 3 and info["gaps"] == []
    # stream copy: the same codec parameters, and every frame from the keyframe before --from to --to
    src = ffprobe(segs[0]["path"])["streams"][0]
    dst = ffprobe(target)["streams"][0]
    for k in ("codec_name", "width", "height", "pix_fmt"):
        assert src[k] == dst[k]
    nums = numbers(target)
    assert nums == list(range(nums[0], nums[-1] + 1)), "frames lost or repeated across segment joins"
    assert int(dst["nb_read_frames"]) == len(nums)
    # packets start at the keyframe before --from, and an edit list makes players start at --from itself
    duration = len(nums) / 15
    assert abs(duration - (end - start)) <= 0.2
    first_seg_nums = numbers(segs[0]["path"])
    assert abs(nums[0] - (first_seg_nums[0] + 1.5 * 15)) <= 1.5
    assert json.loads(target.with_suffix(".json").read_text())["camera"] == "yard"


def test_export_errors(recorded, tmp_path):
    out, _ = recorded
    segs = segments(out)
    from datetime import datetime

    iso = lambda t: datetime.fromtimestamp(t).isoformat()  # noqa: E731
    none = run_cli(
        "export",
        "yard",
        tmp_path / "x.mp4",
        "--from",
        "2001-01-01T00:00",
        "--to",
        "2001-01-01T00:05",
        "--output",
        out,
    )
    assert none.returncode == 1 and "no recording of 'yard'" in none.stderr and none.stderr.count("\n") == 1
    past_end = run_cli(
        "export",
        "yard",
        tmp_path / "y.mp4",
        "--from",
        iso(segs[-1]["start"]),
        "--to",
        iso(segs[-1]["end"] + 30),
        "--output",
        out,
    )
    assert past_end.returncode == 1 and "gap" in past_end.stderr
    ok = run_cli(
        "export",
        "yard",
        tmp_path / "y.mp4",
        "--from",
        iso(segs[-1]["start"]),
        "--to",
        iso(segs[-1]["end"] + 30),
        "--output",
        out,
        "--allow-gaps",
        check=0,
    )
    assert "gap(s) skipped" in ok.stdout and decode_all(tmp_path / "y.mp4")
    bad = run_cli("export", "yard", tmp_path / "z.mp4", "--from", "yesterday-ish", "--output", out)
    assert bad.returncode == 2 and "bad time" in bad.stderr


def test_kill_9_leaves_a_playable_segment_and_a_lost_camera_leaves_a_gap(tmp_path, scene_cache, rtsp_server):
    server = rtsp_server(scene_cache())
    out = tmp_path / "video"
    proc = continuous(server.url, out, "--no-motion", group=True)
    try:
        assert wait_for(lambda: len(segments(out)) >= 1, timeout=30)
        time.sleep(2.0)  # into the next segment
        power_cut(proc.pid)  # the recorder and its ffmpeg
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    staged = list((out / "yard" / ".incoming").glob("*.mp4"))
    assert len(staged) == 1 and len(decode_all(staged[0])) >= 15  # at least the first second plays
    # restart: the leftover is indexed as a partial segment; then the camera goes away and comes back
    proc = continuous(server.url, out, "--no-motion")
    try:
        assert wait_for(lambda: any(e.get("partial") for e in segments(out)), timeout=20)
        n = len(segments(out))
        assert wait_for(lambda: len(segments(out)) >= n + 1, timeout=20)
        server.kill()
        time.sleep(4)
        server.start()
        assert wait_for(
            lambda: [e for e in read_index(out / "yard") if e.get("gap") and e["end"] - e["start"] >= 3],
            timeout=30,
        ), "no gap recorded for the outage"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = next(e for e in segments(out) if e.get("partial"))
    assert partial["valid"] and decode_all(partial["path"])
    index = read_index(out / "yard")
    gaps = [e["end"] - e["start"] for e in index if e.get("gap")]
    # one while the recorder was dead after kill -9, one while the camera was away (4 s)
    assert len(gaps) >= 2 and max(gaps) >= 3.0
    files = [e for e in index if "file" in e]
    assert all(b["start"] >= a["end"] - 0.3 for a, b in zip(files, files[1:]))  # no overlaps
    assert err.count("restarting with backoff") == 1  # the outage is logged once, not per retry


def event_clips(out):
    return [c for c in clips(out) if not c.name.endswith((".seg.mp4", ".lossless.mp4"))]


def lossless_done(out):
    done = []
    for c in event_clips(out):
        try:  # the clip is renamed into place a moment before its sidecar is written
            side = json.loads(c.with_suffix(".json").read_text())
        except (FileNotFoundError, ValueError):
            continue
        if side.get("lossless", {}).get("status") != "pending":
            done.append((c, side))
    return done


def test_motion_events_are_also_cut_losslessly_from_the_segments(tmp_path, scene_cache, rtsp_server):
    server = rtsp_server(scene_cache())
    out = tmp_path / "video"
    proc = continuous(
        server.url,
        out,
        "--mask",
        NUMBER_MASK,
        "--initial-wait",
        "1",
        "--motion-duration",
        "1",
        "--pre-alarm",
        "2",
        "--post-capture",
        "0.5",
    )
    run_until(proc, lambda: lossless_done(out), 45, "the walker's event was not cut")
    clip, side = lossless_done(out)[0]
    cut = clip.with_name(side["lossless"]["file"])
    assert cut.name.endswith(".lossless.mp4") and "error" not in side["lossless"]
    for k in ("requested_start", "requested_end", "actual_start", "actual_end"):
        assert side["lossless"][k][:4].isdigit()
    seg = segments(out)[0]["path"]
    assert ffprobe(cut)["streams"][0]["codec_name"] == ffprobe(seg)["streams"][0]["codec_name"] == "h264"
    enc, lossless = numbers(clip), numbers(cut)
    assert lossless == list(range(lossless[0], lossless[-1] + 1))
    # the cut covers the re-encoded clip, pre-alarm included (the wall-clock estimates of two separate
    # connections agree to within about half a second; more on a loaded machine, which only widens the cut)
    assert lossless[0] <= enc[0] + 8 and lossless[-1] >= enc[-1] - 8
    assert len(lossless) <= len(enc) + 2 * 15 * 1.5
    # the pre-alarm before the walker (frame 120), whose track counts within 1.5 s
    assert enc[0] <= 120 + 1.5 * 15 - 2 * 15


def test_no_reencode_makes_the_cut_the_clip(tmp_path, scene_cache, rtsp_server):
    server = rtsp_server(scene_cache())
    out = tmp_path / "video"
    proc = continuous(
        server.url,
        out,
        "--mask",
        NUMBER_MASK,
        "--initial-wait",
        "1",
        "--motion-duration",
        "1",
        "--pre-alarm",
        "2",
        "--no-reencode",
    )
    run_until(proc, lambda: event_clips(out), 45, "no clip cut from the segments")
    clip = event_clips(out)[0]
    side = json.loads(clip.with_suffix(".json").read_text())
    assert side["clip"] == clip.name and side["lossless"]["file"] == clip.name
    # the event's own facts survive the cut (the export's sidecar must not replace them)
    assert side["camera"] and side["start"] and side["trigger"] and "settings" in side
    assert clip.with_suffix(".jpg").exists()
    nums = numbers(clip)
    assert nums == list(range(nums[0], nums[-1] + 1)) and nums[0] <= 120 + 1.5 * 15 - 2 * 15


# --- retention -----------------------------------------------------------------------------------


def make(path, size, age_days, now):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    t = now - age_days * 86400
    os.utime(path, (t, t))
    return path


@pytest.fixture
def storage(tmp_path):
    now = time.time()
    root = tmp_path / "root"
    files = {
        "old_seg": make(root / "a" / "2026/01/01" / "a_1.seg.mp4", 1000, 10, now),
        "new_seg": make(root / "a" / "2026/01/09" / "a_2.seg.mp4", 1000, 1, now),
        "old_evt": make(root / "a" / "2026/01/01" / "a_3.mp4", 1000, 10, now),
        "ancient_evt": make(root / "a" / "2025/01/01" / "a_0.mp4", 1000, 40, now),
        "b_seg": make(root / "b" / "2026/01/09" / "b_1.seg.mp4", 3000, 2, now),
        "writing": make(root / "a" / ".incoming" / "seg_1.mp4", 1000, 50, now),
        "part": make(root / "a" / "2026/01/09" / "a_9.part.mp4", 1000, 50, now),
    }
    make(files["old_evt"].with_suffix(".json"), 10, 10, now)
    return root, files, now


def deleted(root, files, **limits):
    base = dict(RETENTION_SEGMENT_DAYS=0, RETENTION_EVENT_DAYS=0, RETENTION_MIN_FREE_GB=0)
    base.update(limits)
    free = base.pop("free", None)
    doomed = plan(root, Settings(**base).retention, free_bytes=free)
    names = {v: k for k, v in files.items()}
    return [names[i.path] for i, _ in doomed]


def test_each_retention_limit(storage):
    root, f, _ = storage
    assert deleted(root, f) == []
    assert deleted(root, f, RETENTION_SEGMENT_DAYS=7, RETENTION_EVENT_DAYS=30) == ["old_seg", "ancient_evt"]
    # per camera: a holds 4000 bytes; to get under 2500 the oldest go, segments before events
    # (b holds 3000 bytes on its own: its only file goes too)
    assert deleted(root, f, RETENTION_MAX_GB_PER_CAMERA=2500 / GB) == ["old_seg", "new_seg", "b_seg"]
    # whole root 7000 bytes; under 4500: segments first across cameras, oldest first
    assert deleted(root, f, RETENTION_MAX_GB_TOTAL=4500 / GB) == ["old_seg", "b_seg"]
    # free-space floor: 1500 bytes short
    assert deleted(root, f, RETENTION_MIN_FREE_GB=2000 / GB, free=500) == ["old_seg", "b_seg"]
    # never a file being written, whatever the limits
    everything = deleted(root, f, RETENTION_MAX_GB_TOTAL=1 / GB)
    assert "writing" not in everything and "part" not in everything and len(everything) == 5


def test_prune_command_dry_run_then_for_real(storage, tmp_path):
    root, f, _ = storage
    cfg = tmp_path / "r.py"
    cfg.write_text("RETENTION_SEGMENT_DAYS = 7\nRETENTION_EVENT_DAYS = 5\nRETENTION_MIN_FREE_GB = 0\n")
    dry = run_cli("prune", "--dry-run", "--json", "--output", root, "--config", cfg, check=0)
    lines = [json.loads(x) for x in dry.stdout.splitlines()]
    assert {entry["file"] for entry in lines} == {str(f["old_seg"]), str(f["old_evt"]), str(f["ancient_evt"])}
    assert all(p.exists() for p in f.values())
    run_cli("prune", "--output", root, "--config", cfg, check=0)
    assert (
        not f["old_seg"].exists()
        and not f["old_evt"].exists()
        and not f["old_evt"].with_suffix(".json").exists()
    )
    assert f["new_seg"].exists() and f["writing"].exists() and f["part"].exists()


def test_full_disk_triggers_the_reaper_at_once(tmp_path, scene_cache):
    mnt = mount_tmpfs(tmp_path / "disk", "24m")
    try:
        # an old segment fills all but 0.5 MB; a lossless clip of the first walker needs ~10 MB
        old = make(mnt / "video" / "cam1" / "2020/01/01" / "cam1_old.seg.mp4", 23_500_000, 100, time.time())
        cfg = tmp_path / "floor.py"
        cfg.write_text("RETENTION_MIN_FREE_GB = 0.0002\nRETENTION_SEGMENT_DAYS = 0\n")  # ~200 KB floor
        proc = run_cli(
            "record",
            scene_cache(),
            "--output",
            mnt / "video",
            "--name",
            "cam1",
            "--mask",
            NUMBER_MASK,
            "--initial-wait",
            "1",
            "--motion-duration",
            "1",
            "--crf",
            "0",
            "--preset",
            "ultrafast",
            "--config",
            cfg,
        )
        assert proc.returncode == 0, proc.stderr
        assert not old.exists() and "deleted segment" in proc.stderr and "GB free" in proc.stderr
        assert [c for c in clips(mnt / "video") if not c.name.endswith(".seg.mp4")], (
            "nothing recorded after pruning"
        )
    finally:
        unmount(mnt)


@pytest.mark.parametrize("codec, kept", [("aac", True), ("pcm_mulaw", False)])
def test_audio_is_copied_where_mp4_allows_it_else_dropped_with_a_warning(tmp_path, ffmpeg, codec, kept):
    src = tmp_path / f"cam_{codec}.mkv"
    subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=15",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=8000",
            "-t",
            "4",
            "-c:v",
            "libx264",
            "-g",
            "15",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            codec,
            str(src),
        ],
        check=True,
    )
    out = tmp_path / "video"
    proc = run_cli(
        "record",
        src,
        "--continuous",
        "--no-motion",
        "--segment-seconds",
        "2",
        "--output",
        out,
        "--name",
        "yard",
        check=0,
    )
    segs = segments(out)
    assert segs and sum(e["end"] - e["start"] for e in segs) >= 3.5
    kinds = {
        s["codec_type"]
        for s in json.loads(
            subprocess.run(
                ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(segs[0]["path"])],
                capture_output=True,
                text=True,
            ).stdout
        )["streams"]
    }
    assert kinds == ({"video", "audio"} if kept else {"video"})
    assert ("recording video only" in proc.stderr) == (not kept)


def test_time_forms():
    from datetime import datetime

    from nvr_cli.core.errors import ConfigError
    from nvr_cli.storage.export import parse_time

    now = datetime(2026, 11, 21, 15, 30, 0).timestamp()
    assert parse_time("now", now) == now
    assert parse_time("-15m", now) == now - 900 and parse_time("-2h", now) == now - 7200
    assert parse_time("-1d", now) == now - 86400 and parse_time("-30s", now) == now - 30
    assert parse_time("14:05", now) == datetime(2026, 11, 21, 14, 5).timestamp()
    assert parse_time("14:05:30", now) == datetime(2026, 11, 21, 14, 5, 30).timestamp()
    assert parse_time("2026-11-20T08:00:00", now) == datetime(2026, 11, 20, 8).timestamp()
    assert parse_time("2026-11-20T08:00:00+00:00", now) == 1795161600.0
    with pytest.raises(ConfigError):
        parse_time("soon", now)


def test_detect_on_a_sub_stream_record_the_main_stream(tmp_path, scene_cache, rtsp_server):
    main = rtsp_server(scene_cache())
    sub = rtsp_server(scene_cache("small", size=(320, 180)))
    out = tmp_path / "video"
    proc = continuous(
        main.url,
        out,
        "--detect-source",
        sub.url,
        "--mask",
        NUMBER_MASK,
        "--initial-wait",
        "1",
        "--motion-duration",
        "1",
        "--pre-alarm",
        "2",
    )
    run_until(proc, lambda: lossless_done(out), 45, "no event cut")
    clip, side = lossless_done(out)[0]
    assert (side["width"], side["height"]) == (320, 180)  # analysed and re-encoded from the sub-stream
    cut = ffprobe(clip.with_name(side["lossless"]["file"]))["streams"][0]
    assert (cut["width"], cut["height"]) == (640, 360)  # the main stream, at its own quality
    assert (ffprobe(segments(out)[0]["path"])["streams"][0]["width"]) == 640


def test_a_stalled_camera_restarts_continuous_recording(tmp_path, scene_cache, rtsp_server):
    server = rtsp_server(scene_cache())
    out = tmp_path / "video"
    proc = continuous(server.url, out, "--no-motion")
    try:
        assert wait_for(lambda: len(segments(out)) >= 1, timeout=30)
        server.toggle_stall()
        time.sleep(8)  # read timeout 3 s (+2): detected, ffmpeg restarted, still nothing arrives
        server.toggle_stall()
        n = len(segments(out))
        assert wait_for(lambda: len(segments(out)) >= n + 1, timeout=30), "recording did not resume"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    gaps = [e for e in read_index(out / "yard") if e.get("gap")]
    assert gaps and max(e["end"] - e["start"] for e in gaps) >= 4
    assert "stalled" in err or "restarting with backoff" in err
    for e in segments(out):
        assert decode_all(e["path"])
