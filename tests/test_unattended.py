"""Unattended for months: no component dies silently, nothing grows with run time, and no child
process outlives its camera. Real ffmpeg, the real RTSP test server, real files, a real tmpfs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest
from helpers import (
    NUMBER_MASK,
    LineCollector,
    clips,
    decode_all,
    descendants,
    mount_tmpfs,
    pid_alive,
    start_recorder,
    terminate,
    unmount,
    wait_for,
)

import nvr_cli.storage.paths as storage
from nvr_cli.analysis.qr import QrScanner
from nvr_cli.config import Settings
from nvr_cli.core.errors import StorageError
from nvr_cli.core.frames import Frame
from nvr_cli.core.supervised import Supervised
from nvr_cli.output.packet_clip import PacketClip, open_packet_clip
from nvr_cli.runtime.logs import setup_logging
from nvr_cli.source.packets import PacketRing
from nvr_cli.source.spec import parse_source
from nvr_cli.storage.segments import INDEX, append_index, index_folders, read_index


def recorder(url, out, *extra, config=None):
    return start_recorder(url, out, *extra, *(["--config", config] if config else []), name="cam")


def ffmpeg_wrapper(folder: Path, ffmpeg: str, remux_sleep: float = 0) -> Path:
    """A real ffmpeg behind a script: one the test can delete, or whose remux (the clip's finishing
    step, the only call with +faststart) takes as long as on a slow disk."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ffmpeg"
    slow = f'case "$*" in *+faststart*) sleep {remux_sleep};; esac\n' if remux_sleep else ""
    path.write_text(f'#!/bin/sh\n{slow}exec {ffmpeg} "$@"\n')
    path.chmod(0o755)
    return path


def names(pids) -> list:
    out = []
    for p in pids:
        try:
            out.append(Path(f"/proc/{p}/comm").read_text().strip())
        except OSError:
            pass
    return out


# --- 1. no component dies silently ---------------------------------------------------------------


def test_a_crashing_component_is_logged_with_its_traceback_restarted_then_declared_fatal(tmp_path):
    log_file = tmp_path / "nvr.log"
    setup_logging(Settings(LOG_FILE_PATH=str(log_file), LOG_TO_CONSOLE=False).logging)
    stop = threading.Event()
    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise OSError("index of rtsp://admin:s3cret@10.0.0.5/main not written")

    comp = Supervised("flaky part", flaky, stop, first_delay=0.05).start()
    comp.join(10)
    assert not comp.is_alive() and len(calls) == 3 and comp.crashes == 2 and comp.fatal is None
    assert calls[2] - calls[1] > calls[1] - calls[0]  # backoff grows

    fatal = []
    broken = Supervised(
        "broken part",
        lambda: 1 / 0,
        stop,
        on_fatal=fatal.append,
        max_failures=3,
        first_delay=0.01,
        max_delay=0.02,
    ).start()
    broken.join(10)
    assert fatal and fatal[0].startswith("broken part failed 4 times") and "ZeroDivisionError" in fatal[0]
    text = log_file.read_text()
    assert text.count("Traceback (most recent call last)") >= 2 + 4
    assert "flaky part crashed (OSError" in text and "restarting it in" in text
    assert "CRITICAL" in text and "giving up on this camera" in text
    assert "s3cret" not in text and "admin:***@10.0.0.5" in text


def test_continuous_only_survives_a_full_disk_and_records_when_space_returns(tmp_path, walking, rtsp_server):
    mnt = mount_tmpfs(tmp_path / "disk", "1m")
    try:
        server = rtsp_server(walking)
        out = mnt / "video"
        cfg = tmp_path / "no_floor.py"
        cfg.write_text("RETENTION_MIN_FREE_GB = 0\n")  # nothing may be deleted: recording must keep trying
        proc, log = recorder(
            server.url, out, "--continuous", "--no-motion", "--segment-seconds", "2", config=cfg
        )
        try:
            assert wait_for(lambda: "space left" in log.text().lower(), timeout=90), log.text()[-2000:]
            full_at = time.monotonic()
            wait_for(lambda: proc.poll() is not None, timeout=8)  # full for a while: ffmpeg retries meanwhile
            assert proc.poll() is None, "the recorder exited on a full disk:\n" + log.text()[-2000:]
            indexed = len(read_index(out / "cam"))
            subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
            assert wait_for(lambda: len(read_index(out / "cam")) >= indexed + 3, timeout=40), (
                "no new segments after the space returned:\n" + log.text()[-3000:]
            )
            assert proc.poll() is None
            terminate(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
        log.join()
        text = log.text()
        assert proc.returncode == 0, text[-2000:]
        assert "Traceback" not in text
        # said once, not once per retry (ffmpeg was restarted every few seconds while the disk was full)
        said = [x for x in text.splitlines() if ("WARNING" in x or "ERROR" in x) and "space" in x.lower()]
        assert 1 <= len(said) <= 3, said
        assert time.monotonic() - full_at > 8
        entries = [e for e in read_index(out / "cam") if "file" in e]
        assert all(e["path"].exists() for e in entries)
        assert all(decode_all(e["path"]) for e in entries[-3:])
    finally:
        unmount(mnt)


@pytest.mark.slow
def test_a_component_that_cannot_recover_makes_record_exit_non_zero(tmp_path, walking, rtsp_server, ffmpeg):
    """ffmpeg vanishes (a package upgrade gone wrong): the packet buffer cannot restart; after its
    retries the recorder exits 1, so that `run` or systemd restarts the camera, instead of exit 0."""
    wrapper = ffmpeg_wrapper(tmp_path / "bin", ffmpeg)
    cfg = tmp_path / "cfg.py"
    cfg.write_text(f"FFMPEG_PATH = {str(wrapper)!r}\nRECONNECT_MAX_DELAY_SECS = 1\n")
    server = rtsp_server(walking)
    proc, log = recorder(server.url, tmp_path / "video", config=cfg)
    try:
        assert wait_for(lambda: "opened rtsp://" in log.text(), timeout=30), log.text()
        wrapper.unlink()
        server.kill()  # the packet buffer's ffmpeg ends with the stream, and cannot be started again
        server.start()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    log.join()
    text = log.text()
    assert proc.returncode == 1, text[-3000:]
    assert "packet buffer crashed (FileNotFoundError" in text and "Traceback" in text
    assert "packet buffer failed 6 times" in text
    assert (
        text.strip()
        .splitlines()[-1]
        .startswith("nvr-cli: error: recording of cam stopped: packet buffer failed")
    )


# --- 2. nothing grows with run time --------------------------------------------------------------


def test_a_clip_writer_that_stops_reading_ends_that_clip_not_the_memory(
    tmp_path, walking, rtsp_server, ffmpeg, monkeypatch
):
    server = rtsp_server(walking)
    ring = PacketRing(parse_source(server.url), ffmpeg, 2.0, threading.Event())
    try:
        assert wait_for(lambda: ring.span > 1, timeout=30)
        monkeypatch.setattr(PacketClip, "MAX_QUEUED_BYTES", 150_000)  # a few seconds of this small stream
        clip = open_packet_clip(ring, tmp_path / "c.part.mp4", time.monotonic())
        os.kill(clip.proc.pid, signal.SIGSTOP)  # ffmpeg stops reading, as on a hung disk
        try:
            assert wait_for(lambda: clip.error, timeout=60), f"{clip._queued} bytes queued and growing"
            assert clip._queued == 0 and "stopped taking packets" in clip.error
            with pytest.raises(StorageError, match="stopped taking packets"):
                clip.write(None)
        finally:
            os.kill(clip.proc.pid, signal.SIGCONT)
        clip.abort()
        assert clip.proc.poll() is not None
        assert ring.span > 1  # the ring itself carries on
    finally:
        ring.close()


def test_qr_payloads_seen_long_ago_are_forgotten():
    s = Settings(QR_ENABLED=True, QR_EVERY_SECONDS=0, QR_REPEAT_WINDOW_SECS=5)
    scanner = QrScanner(s.qr)
    enc = cv2.QRCodeEncoder.create()
    for i in range(150):  # a delivery code a minute for 2.5 hours
        code = cv2.resize(enc.encode(f"parcel-{i}"), None, fx=6, fy=6, interpolation=cv2.INTER_NEAREST)
        img = cv2.cvtColor(
            cv2.copyMakeBorder(code, 30, 30, 30, 30, cv2.BORDER_CONSTANT, value=255), cv2.COLOR_GRAY2BGR
        )
        seen = scanner.process(Frame(img, 60.0 * i, i), None)
        assert [q.payload for q in seen] == [f"parcel-{i}"]
    assert len(scanner._seen) <= 65


def test_an_event_cut_reads_only_the_days_it_can_touch(tmp_path):
    root = tmp_path / "video"
    day = 86400
    t0 = 1_780_000_000.0
    for d in range(30):  # a month of history, one segment a day in each day's folder
        start = t0 + d * day
        append_index(
            storage.clip_dir(root, "cam", start),
            {"file": f"s{d}.seg.mp4", "start": start, "end": start + 60, "size": 1, "valid": True},
        )
    folders = index_folders(root, "cam", t0 + 20 * day + 10, t0 + 20 * day + 50)
    assert 1 <= len([f for f in folders if (f / INDEX).exists()]) <= 2
    got = read_index(root / "cam", folders)
    assert [e["file"] for e in got] == ["s20.seg.mp4"]
    assert len(read_index(root / "cam")) == 30  # the whole history is still there for export


def test_an_event_cut_holds_only_its_own_segments_of_a_full_day_in_memory(tmp_path):
    """A day of 10 s segments is 8640 index lines: a cut of one event must not build them all (the
    memory a read takes stays with a long-running worker: bench/soak.py measured it growing)."""
    import tracemalloc

    folder = tmp_path / "cam" / "2026" / "06" / "01"
    t0 = 1_780_300_000.0
    lines = [
        json.dumps(
            {"file": f"s{i}.seg.mp4", "start": t0 + 10 * i, "end": t0 + 10 * i + 10, "size": 1, "valid": True}
        )
        for i in range(8640)
    ]
    lines.insert(100, json.dumps({"gap": True, "start": t0 + 995, "end": t0 + 1000}))
    lines.insert(200, '{"file": "torn.seg.mp4", "sta')  # a line a crash cut short
    folder.mkdir(parents=True)
    (folder / INDEX).write_text("\n".join(lines) + "\n")
    start, end = t0 + 40_005, t0 + 40_025  # an event of 20 s
    tracemalloc.start()
    try:
        got = read_index(tmp_path / "cam", [folder], overlapping=(start, end))
        _, peak_one = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        whole = read_index(tmp_path / "cam", [folder])
        _, peak_all = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [e["file"] for e in got] == ["s4000.seg.mp4", "s4001.seg.mp4", "s4002.seg.mp4"]
    assert len(whole) == 8641  # every segment and the gap; the torn line skipped
    assert peak_one * 20 < peak_all, (peak_one, peak_all)


# --- 4. children never outlive their camera ------------------------------------------------------


@pytest.mark.parametrize("mode", [[], ["--continuous"]], ids=["packet-clips", "continuous+reencoded"])
def test_a_sigkilled_recorder_leaves_no_process_behind(tmp_path, walking, rtsp_server, mode):
    cfg = tmp_path / "cfg.py"
    cfg.write_text('ON_EVENT_START = ["/bin/sleep", "120"]\nHOOK_TIMEOUT_SECS = 300\n')
    server = rtsp_server(walking)
    out = tmp_path / "video"
    proc, log = recorder(server.url, out, *mode, "--max-clip", "60", config=cfg)
    try:
        # mid-event: a clip is being written and its hook is running
        assert wait_for(
            lambda: list(out.rglob("*.part.mp4")) and "sleep" in names(descendants(proc.pid)), timeout=40
        ), log.text()[-2000:]
        kids = descendants(proc.pid)
        assert names(kids).count("ffmpeg") >= (2 if mode else 2), names(kids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        left = wait_for(lambda: not [k for k in kids if pid_alive(k)], timeout=2, interval=0.05)
        assert left, (
            f"still running 2 s after the recorder was killed: {names(k for k in kids if pid_alive(k))}"
        )
    finally:
        for k in descendants(proc.pid):
            os.kill(k, signal.SIGKILL)
    for part in out.rglob("*.part.mp4"):  # and what they were writing plays
        assert decode_all(part)


def test_a_sigkilled_worker_of_run_leaves_no_process_behind(tmp_path, isolated_home, walking, rtsp_server):
    server = rtsp_server(walking)
    out = tmp_path / "video"
    cfg = tmp_path / "cfg.py"
    # a hook script whose own child (the grandchild) is what a pdeath signal alone would miss
    cfg.write_text(f"""
PATH_FOR_VIDEO = {str(out)!r}
MASKS = [{NUMBER_MASK!r}]
INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS = 0.5
MINIMAL_MOTION_DURATION = 1
POST_CAPTURE_SECONDS = 0.5
RESTART_DELAY_SECS = 30
HOOK_TIMEOUT_SECS = 300
CAMERAS = {{"gate": {{"cam": {server.url!r}, "ON_EVENT_START": ["/bin/sh", "-c", "sleep 120; echo done"]}}}}
""")
    run = subprocess.Popen(
        [sys.executable, "-m", "nvr_cli", "run", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = LineCollector(run.stderr)
    try:

        def worker_mid_event():
            tree = descendants(run.pid)
            return tree if names(tree).count("sleep") and list(out.rglob("*.part.mp4")) else None

        tree = wait_for(worker_mid_event, timeout=60)
        assert tree, log.text()[-2000:]
        worker = next(
            p
            for p in tree
            if os.path.exists(f"/proc/{p}")
            and int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1]) == run.pid
        )
        kids = descendants(worker)
        assert {"sh", "sleep", "ffmpeg"} <= set(names(kids)), names(kids)
        os.kill(worker, signal.SIGKILL)
        gone = wait_for(lambda: not [k for k in kids if pid_alive(k)], timeout=2, interval=0.05)
        assert gone, f"left running 2 s after the worker was killed: {names(k for k in kids if pid_alive(k))}"
        assert run.poll() is None
    finally:
        terminate(run)
    log.join()
    assert "ended" in log.text() and "left behind" in log.text()


def test_finishing_a_clip_never_holds_up_the_live_analysis(tmp_path, walking, rtsp_server, ffmpeg):
    """Each clip's remux takes 6 s (a long clip, a slow disk); the camera's frames keep being
    analysed meanwhile: none dropped, and the events that follow are recorded as they happen."""
    wrapper = ffmpeg_wrapper(tmp_path / "bin", ffmpeg, remux_sleep=6)
    cfg = tmp_path / "cfg.py"
    cfg.write_text(f"FFMPEG_PATH = {str(wrapper)!r}\nSTATUS_INTERVAL_SECS = 0.5\n")
    server = rtsp_server(walking)
    out = tmp_path / "video"
    proc, log = recorder(server.url, out, "--max-clip", "2", config=cfg)
    status = out / ".status" / "cam.json"
    try:
        assert wait_for(lambda: log.text().count("recording cam_") >= 6, timeout=60), log.text()[-2000:]
        st = json.loads(status.read_text())
        terminate(proc, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    log.join()
    text = log.text()
    assert proc.returncode == 0, text[-2000:]
    assert st["dropped_frames"] == 0 and "frames dropped" not in text, st
    assert st["decoded_fps"] > 10, st
    done = clips(out)
    assert len(done) >= 5, text[-2000:]
    for c in done:
        side = json.loads(c.with_suffix(".json").read_text())
        assert 0 < side["duration_seconds"] and len(decode_all(c)) == side["frames"]
        # the file holds the part (2 s at most, from the keyframe before), not also what came while
        # the clip before it was being finished (6 s)
        assert side["duration_seconds"] <= 2 + 1.5, side


def test_one_reaper_per_storage_root_under_run(tmp_path, isolated_home, walking, rtsp_server):
    server = rtsp_server(walking)
    out = tmp_path / "video"
    old = out / "old" / "2020" / "01" / "01" / "old_20200101-000000.mp4"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"x" * 1000)
    os.utime(old, (time.time() - 90 * 86400,) * 2)
    cfg = tmp_path / "cfg.py"
    cfg.write_text(f"""
PATH_FOR_VIDEO = {str(out)!r}
RETENTION_CHECK_SECONDS = 5
CAMERAS = {{"a": {{"cam": {server.url!r}}}, "b": {{"cam": {server.url!r}}}}}
""")
    run = subprocess.Popen(
        [sys.executable, "-m", "nvr_cli", "run", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = LineCollector(run.stderr)
    try:
        assert wait_for(lambda: not old.exists(), timeout=30)
        assert wait_for(
            lambda: (out / ".status" / "a.json").exists() and (out / ".status" / "b.json").exists(),
            timeout=30,
        )
        time.sleep(6)  # another round of checks
    finally:
        terminate(run)
    log.join()
    deleted = [x for x in log.text().splitlines() if "deleted event" in x]
    assert len(deleted) == 1 and "[a]" not in deleted[0] and "[b]" not in deleted[0], deleted


def test_recovery_leaves_parts_being_written_and_export_temporaries(tmp_path, walking, ffmpeg):
    day = tmp_path / "video" / "cam" / "2026" / "11" / "29"
    day.mkdir(parents=True)
    left = day / "cam_20261129-110000.part.mp4"  # what a killed recorder left: to be finished
    subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-i",
            str(walking),
            "-c",
            "copy",
            "-t",
            "3",
            "-movflags",
            "+frag_keyframe+empty_moov+default_base_moof",
            "-f",
            "mp4",
            str(left),
        ],
        check=True,
    )
    temporary = day / ".export.mp4.part.mp4"  # an export's file in the making
    shutil.copy(left, temporary)
    busy = day / "cam_20261129-120000.part.mp4"  # still being written by another process
    writer = subprocess.Popen(
        [
            ffmpeg,
            "-v",
            "error",
            "-re",
            "-i",
            str(walking),
            "-c",
            "copy",
            "-movflags",
            "+frag_keyframe+empty_moov+default_base_moof",
            "-flush_packets",
            "1",
            "-f",
            "mp4",
            str(busy),
        ]
    )
    try:
        assert wait_for(lambda: storage.plays(busy), timeout=20)
        recovered = storage.recover_parts(tmp_path / "video", "cam", ffmpeg)
        assert recovered == [day / "cam_20261129-110000.mp4"]
        assert busy.exists() and not (day / "cam_20261129-120000.mp4").exists()
        assert temporary.exists()
        assert writer.poll() is None
    finally:
        writer.kill()
        writer.wait()
