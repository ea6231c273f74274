"""`nvr-cli run`: two cameras over a real RTSP server on 127.0.0.1, as a user would run them."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import NUMBER_MASK, LineCollector, check_clip, clips, pid_alive, run_cli, terminate, wait_for

PROBE = str(Path(__file__).parent / "support" / "hook_probe.py")


def write_config(path: Path, url: str, out: Path, hooks: Path, yard_pre_alarm=2, extra_front=""):
    path.write_text(f"""
PATH_FOR_VIDEO = {str(out)!r}
MASKS = [{NUMBER_MASK!r}]
INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS = 1
MINIMAL_MOTION_DURATION = 1
POST_CAPTURE_SECONDS = 1
READ_TIMEOUT_SECS = 3
OPEN_TIMEOUT_SECS = 5
STATUS_INTERVAL_SECS = 0.5
STATUS_STALE_SECS = 6
RESTART_DELAY_SECS = 0.5
HOOK_TIMEOUT_SECS = 2
CAMERAS = {{
    "front": {{"cam": {url!r}, "PRE_ALARM_RECORDING_SECONDS": 2{extra_front},
              "ON_EVENT_START": [{sys.executable!r}, {PROBE!r}, {str(hooks)!r}],
              "ON_EVENT_END": [{sys.executable!r}, {PROBE!r}, {str(hooks)!r}],
              "ON_CAMERA_LOST": [{sys.executable!r}, {PROBE!r}, {str(hooks)!r}],
              "ON_CAMERA_FOUND": [{sys.executable!r}, {PROBE!r}, {str(hooks)!r}]}},
    "yard": {{"cam": {url!r}, "PRE_ALARM_RECORDING_SECONDS": {yard_pre_alarm},
             "ON_EVENT_END": [{sys.executable!r}, {PROBE!r}, {str(hooks)!r}, "--hang", "300"]}},
}}
""")


def statuses(out: Path) -> dict:
    folder = out / ".status"
    got = {}
    for p in folder.glob("*.json"):
        try:
            got[p.stem] = json.loads(p.read_text())
        except ValueError:
            pass
    return got


def connected(out, name, not_pid=None):
    """The camera's status if its worker (not `not_pid`) has had a frame in the last 2 s."""
    st = statuses(out).get(name)
    # a worker says "connected" as the camera opens, before its first frame (last_frame still null)
    fresh = st and st["state"] == "connected" and st["pid"] != not_pid and st.get("last_frame")
    return st if fresh and time.time() - st["last_frame"] < 2 else None


@pytest.mark.rtsp
def test_two_cameras_restart_reload_hooks_status(tmp_path, isolated_home, scene_cache, rtsp_server):
    server = rtsp_server(scene_cache(), user="admin", password="Sup3r-s3cret")
    out, hooks = tmp_path / "video", tmp_path / "hooks"
    hooks.mkdir()
    config = isolated_home / "machine_specific_configuration.py"
    write_config(config, server.url, out, hooks)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nvr_cli", "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    log = LineCollector(proc.stderr)
    try:
        # both cameras connect, and `status` says so with exit 0
        assert wait_for(lambda: connected(out, "front") and connected(out, "yard"), timeout=30), log.text()
        ok = run_cli("status", "--json", check=0)
        assert [c["camera"] for c in json.loads(ok.stdout)["cameras"]] == ["front", "yard"]

        # both record the first walker (8-12 s of the looped scene)
        assert wait_for(lambda: clips(out / "front") and clips(out / "yard"), timeout=45), log.text()

        # hooks: front's start and end hooks got the event; yard's end hook hung and was killed at 2 s
        assert wait_for(
            lambda: list(hooks.glob("event_end-*.json")) and list(hooks.glob("event_start-*.json")),
            timeout=10,
        )
        assert wait_for(lambda: "ON_EVENT_END" in log.text() and "killed" in log.text(), timeout=10), (
            log.text()
        )
        ends = [json.loads(p.read_text()) for p in hooks.glob("event_end-*.json")]
        front_end = next(e for e in ends if e["json"]["camera"] == "front")
        yard_end = next(e for e in ends if e["json"]["camera"] == "yard")
        assert not pid_alive(yard_end["pid"]) and not pid_alive(yard_end["child"]), (
            "the hanging hook survived its timeout"
        )
        j, env = front_end["json"], front_end["env"]
        clip = Path(j["clip"])
        assert clip in clips(out / "front") and Path(j["thumbnail"]).exists() and Path(j["sidecar"]).exists()
        side = json.loads(clip.with_suffix(".json").read_text())
        assert j["start"] == side["start"] and j["end"] == side["end"] and j["frames"] == side["frames"]
        assert j["score"] == side["peak_score"] > 0 and j["kept"] is True and j["pre_alarm_seconds"] >= 2
        assert (
            env["NVR_CLIP"] == str(clip)
            and env["NVR_CAMERA"] == "front"
            and env["NVR_EVENT"] == str(j["event"])
        )
        assert "Sup3r-s3cret" not in json.dumps(front_end) + json.dumps(yard_end)
        start = next(
            json.loads(p.read_text())
            for p in hooks.glob("event_start-*.json")
            if json.loads(p.read_text())["json"]["event"] == j["event"]
        )["json"]
        assert start["clip"] == j["clip"] and start["trigger"] == side["trigger"]

        # the status file counts what was written today
        st = wait_for(lambda: (x := statuses(out)["front"])["events_today"] >= 1 and x, timeout=5)
        assert st and st["bytes_today"] >= clip.stat().st_size and st["fps"] > 10 and st["source_fps"] == 15

        # a worker killed with SIGKILL is back within seconds; the other is untouched
        front, yard = statuses(out)["front"], statuses(out)["yard"]
        os.kill(front["pid"], signal.SIGKILL)
        t0 = time.monotonic()
        back = wait_for(lambda: connected(out, "front", not_pid=front["pid"]), timeout=20, interval=0.1)
        assert back, log.text()
        print(f"killed worker recording again after {time.monotonic() - t0:.1f} s")
        assert statuses(out)["yard"]["pid"] == yard["pid"]
        front = back

        # editing yard's settings restarts yard only
        write_config(config, server.url, out, hooks, yard_pre_alarm=1)
        assert wait_for(lambda: connected(out, "yard", not_pid=yard["pid"]), timeout=20), log.text()
        assert "restarting yard" in log.text() and statuses(out)["front"]["pid"] == front["pid"]
        yard = statuses(out)["yard"]

        # an invalid edit is reported and both carry on with the settings they had
        config.write_text(
            config.read_text().replace('"PRE_ALARM_RECORDING_SECONDS": 2', '"PRE_ALARM_RECORDING_SECOND": 2')
        )
        assert wait_for(lambda: "config change rejected" in log.text(), timeout=10), log.text()
        assert "did you mean PRE_ALARM_RECORDING_SECONDS" in log.text()
        time.sleep(2)
        assert connected(out, "front")["pid"] == front["pid"] and connected(out, "yard")["pid"] == yard["pid"]

        assert run_cli("status").returncode == 2, "a broken config is an error for `status` too"
        # putting it right restarts nothing: the running settings are the ones it describes
        write_config(config, server.url, out, hooks, yard_pre_alarm=1)
        assert wait_for(lambda: "config reloaded: unchanged front, yard" in log.text(), timeout=10), (
            log.text()
        )

        # a camera renamed: the old one stops (its status file goes), the new one starts, front is untouched
        config.write_text(config.read_text().replace('"yard":', '"side":'))
        assert wait_for(lambda: connected(out, "side"), timeout=20), log.text()
        # yard may first wait for its hanging hook (up to HOOK_TIMEOUT_SECS) and finish its clip
        assert wait_for(lambda: not pid_alive(yard["pid"]) and "yard" not in statuses(out), timeout=15), (
            log.text()
        )
        assert connected(out, "front")["pid"] == front["pid"]

        # the camera goes away: `status` exits 1 and says why
        server.kill()
        t0 = time.monotonic()
        assert wait_for(lambda: run_cli("status").returncode == 1, timeout=20, interval=0.5)
        print(f"status non-zero {time.monotonic() - t0:.1f} s after the camera vanished")
        # one camera may see the loss a moment before the other
        assert wait_for(
            lambda: all(not c["ok"] for c in json.loads(run_cli("status", "--json").stdout)["cameras"]),
            timeout=20,
            interval=0.5,
        )
        assert "front" in run_cli("status").stdout
        assert wait_for(lambda: list(hooks.glob("camera_lost-*.json")), timeout=10)
        lost = json.loads(next(hooks.glob("camera_lost-*.json")).read_text())["json"]
        assert lost["camera"] == "front" and lost["reason"] and lost["never_connected"] is False

        # it comes back: the found hook runs and `status` is 0 again
        server.start()
        assert wait_for(lambda: list(hooks.glob("camera_found-*.json")), timeout=30), log.text()
        found = json.loads(next(hooks.glob("camera_found-*.json")).read_text())["json"]
        assert found["camera"] == "front" and found["away_seconds"] > 0
        assert wait_for(lambda: run_cli("status").returncode == 0, timeout=20, interval=0.5)
    finally:
        terminate(proc, timeout=90)
        log.join()
    assert proc.returncode == 0, log.text()
    assert "all workers stopped" in log.text()
    for name in ("front", "side"):
        assert not pid_alive(statuses(out)[name]["pid"]), f"{name}'s worker outlived `run`"
        assert statuses(out)[name]["state"] in ("stopped", "lost", "connecting")
    assert not list(out.rglob("*.part.mp4")), "an open clip was left unfinished"
    for f in clips(out):
        check_clip(f)
    assert "Sup3r-s3cret" not in log.text()


def test_run_qr_hook_and_worker_errors(tmp_path, isolated_home, scene_cache):
    """ON_QR_CODE from a real decode; and a camera that cannot start is restarted, then held loudly."""
    from helpers import NUMBER_MASK as mask

    scene = scene_cache("qr_walk", seconds=20, walkers=[(8, 12)], codes=[(9, 18, "parcel-7731", (420, 60))])
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (isolated_home / "machine_specific_configuration.py").write_text(f"""
PATH_FOR_VIDEO = {str(tmp_path / "video")!r}
RESTART_DELAY_SECS = 0.2
RESTARTS_PER_HOUR = 2
LOG_FILE_PATH = {str(tmp_path / "logs" / "nvr.log")!r}
CAMERAS = {{
    "door": {{"cam": {str(scene)!r}, "MASKS": [{mask!r}], "QR_ENABLED": True, "MINIMAL_MOTION_DURATION": 2,
              "ON_QR_CODE": [{sys.executable!r}, {PROBE!r}, {str(hooks)!r}]}},
    "broken": {{"cam": {str(tmp_path / "no-such-file.mp4")!r}}},
}}
""")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nvr_cli", "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    log = LineCollector(proc.stderr)
    try:
        assert wait_for(lambda: "CRITICAL" in log.text(), timeout=30), log.text()
        assert wait_for(lambda: "camera door: worker finished" in log.text(), timeout=60), log.text()
    finally:
        terminate(proc)
        log.join()
    text = log.text()
    assert proc.returncode == 0, text
    # the broken camera: started, restarted twice, then held; the door camera never disturbed
    assert (
        len(re.findall(r"camera broken: worker \d+ started", text)) == 3
        and "restarted 2 times in the last hour" in text
    ), text
    assert "nvr-cli: error: [broken] " in text and "no-such-file.mp4" in text and "Traceback" not in text
    [qr] = [json.loads(p.read_text()) for p in hooks.glob("qr_code-*.json")]  # seen for 9 s, reported once
    assert qr["json"]["payload"] == "parcel-7731" and qr["env"]["NVR_PAYLOAD"] == "parcel-7731"
    assert qr["json"]["camera"] == "door" and qr["json"]["time"][:4].isdigit() and len(qr["json"]["box"]) == 4
    assert clips(tmp_path / "video" / "door")
    # one log file per process: the supervisor's, and each camera's with its name in it
    logs = tmp_path / "logs"
    assert "running 2 camera(s)" in (logs / "nvr.log").read_text()
    assert "[door] QR code: 'parcel-7731'" in (logs / "nvr.door.log").read_text()
    assert "[broken]" in (logs / "nvr.broken.log").read_text()


@pytest.mark.parametrize(
    "config, needle",
    [
        ("", "no CAMERAS in the config"),
        (
            "CAMERAS = {'a': {'cam': 'x.mp4', 'PRE_ALARM_SECONDS': 3}}",
            "did you mean PRE_ALARM_RECORDING_SECONDS",
        ),
        (
            "CAMERAS = {'a': {'cam': 'x.mp4', 'POST_CAPTURE_SECONDS': -1}}",
            "CAMERAS['a']: POST_CAPTURE_SECONDS",
        ),
        ("CAMERAS = {'a/b': {'cam': 'x.mp4'}}", "folder name"),
        ("CAMERAS = {'a': 'rtsp://x'}", "expected a dict of settings"),
        ("CAMERAS = {'a': {'CAMERA_NAME': 'b'}}", "cannot be set per camera"),
    ],
)
def test_run_config_errors_are_one_line(isolated_home, config, needle):
    (isolated_home / "machine_specific_configuration.py").write_text(config + "\n")
    r = run_cli("run", timeout=30)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_run_unknown_camera(isolated_home):
    (isolated_home / "machine_specific_configuration.py").write_text(
        "CAMERAS = {'front': {'cam': 'x.mp4'}}\n"
    )
    r = run_cli("run", "--camera", "frnt", timeout=30)
    assert r.returncode == 2 and "did you mean 'front'" in r.stderr


@pytest.mark.rtsp
def test_workers_stop_when_run_is_killed(tmp_path, isolated_home, scene_cache, rtsp_server):
    """kill -9 of `run` leaves no orphan recording on its own: the worker finishes its clip and exits."""
    server = rtsp_server(scene_cache())
    out = tmp_path / "video"
    (isolated_home / "machine_specific_configuration.py").write_text(
        f"PATH_FOR_VIDEO = {str(out)!r}\nSTATUS_INTERVAL_SECS = 0.5\nCAMERAS = "
        f"{{'front': {{'cam': {server.url!r}}}}}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "nvr_cli", "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        worker = wait_for(lambda: connected(out, "front"), timeout=30)
        assert worker
    finally:
        proc.kill()
        proc.wait()
    assert wait_for(lambda: not pid_alive(worker["pid"]), timeout=15), "the worker outlived its supervisor"
    assert statuses(out)["front"]["state"] == "stopped"
    assert not list(out.rglob("*.part.mp4"))


@pytest.mark.rtsp
def test_status_of_a_continuous_only_camera(tmp_path, scene_cache, rtsp_server):
    """No decoding: ffmpeg's progress is the pulse, and segments count as bytes written today."""
    server = rtsp_server(scene_cache())
    out = tmp_path / "video"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nvr_cli",
            "record",
            server.url,
            "--output",
            str(out),
            "--name",
            "gate",
            "--continuous",
            "--no-motion",
            "--segment-seconds",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = LineCollector(proc.stderr)
    try:
        st = wait_for(
            lambda: (
                (x := statuses(out).get("gate")) and x["state"] == "connected" and x["bytes_today"] > 0 and x
            ),
            timeout=30,
        )
        assert st, log.text()
        assert st["events_today"] == 0 and st["source"] == server.url
        assert run_cli("status", "--output", out, check=0).stdout.count("gate") == 1
        server.kill()
        assert wait_for(lambda: run_cli("status", "--output", out).returncode == 1, timeout=20), log.text()
        proc.kill()  # no goodbye: the status file still says it runs, but its process is gone
        proc.wait()
        dead = json.loads(run_cli("status", "--output", out, "--json").stdout)["cameras"][0]
        assert dead["verdict"].startswith("dead") and not dead["ok"]
    finally:
        terminate(proc)
        log.join()
    segs = sum(p.stat().st_size for p in out.rglob("*.seg.mp4"))
    assert segs and statuses(out)["gate"]["bytes_today"] <= segs


def test_config_show_hides_passwords_inside_cameras(isolated_home):
    (isolated_home / "machine_specific_configuration.py").write_text(
        "CAMERAS = {'front': {'cam': 'rtsp://admin:Sup3r-s3cret@127.0.0.1/a'}}\n"
    )
    for args in (("config", "show"), ("config", "show", "--json")):
        r = run_cli(*args, check=0)
        assert "admin:***@127.0.0.1" in r.stdout and "Sup3r-s3cret" not in r.stdout
