"""Fault suite: nothing recorded is lost, under every fault we can make, over a real RTSP server.

The long case (20 server kills in a row) is marked slow; `.ci/run` runs it. The summary of
faults injected, clips checked, worst resume time and frames lost is printed at the end of the run.
"""

import os
import signal
import subprocess
import time

import pytest
from click.testing import CliRunner
from helpers import (
    FAULTS,
    check_clip,
    clips,
    decode_all,
    ffprobe,
    mount_tmpfs,
    power_cut,
    record_fault,
    run_cli,
    start_recorder,
    unmount,
    wait_for,
)

from nvr_cli.cli import cli
from nvr_cli.config import FIELDS
from nvr_cli.runtime.synthetic import read_frame_number

PASSWORD = "F4ult-pa55word"


def recorder(url, out, *extra, group=False):
    return start_recorder(url, out, *extra, name="gate", group=group)


def stop(proc, log):
    proc.send_signal(signal.SIGTERM)
    out = proc.stdout.read()
    code = proc.wait(timeout=30)
    log.join()
    return code, out


def no_password_anywhere(*texts, folder=None):
    blob = "".join(texts)
    if folder is not None:
        blob += "".join(p.read_text(errors="replace") for p in folder.rglob("*.json"))
    assert PASSWORD not in blob


@pytest.mark.slow
def test_server_killed_mid_event_20_times(tmp_path, walking, rtsp_server):
    server = rtsp_server(walking, user="admin", password=PASSWORD)
    out = tmp_path / "video"
    proc, log = recorder(server.url, out)
    resumes = []
    try:
        for i in range(20):
            opened = wait_for(lambda: log.first_after(server.ready_at, "opened rtsp"), timeout=15)
            assert opened, f"round {i}: no reconnect\n{log.text()[-2000:]}"
            resumes.append(opened - server.ready_at)
            assert wait_for(lambda: list(out.rglob("*.part.mp4")), timeout=10), f"round {i}: no event"
            time.sleep(0.3 + (i % 4) * 0.25)  # mid-event, at varying points
            server.kill()
            record_fault()
            time.sleep(0.5 + (i % 3) * 0.75)  # outages of 0.5 to 2 s
            server.start()
        assert wait_for(lambda: log.first_after(server.ready_at, "opened rtsp"), timeout=15)
        assert proc.poll() is None, "the recorder exited"
        code, stdout = stop(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0
    worst = max(resumes)
    FAULTS["worst resume seconds"] = max(FAULTS["worst resume seconds"], worst)
    print(f"\nresume after server return: worst {worst:.2f} s, mean {sum(resumes) / len(resumes):.2f} s")
    assert worst < 5.0
    files = clips(out)
    assert len(files) >= 20 and not list(out.rglob("*.part.mp4"))
    for f in files:
        check_clip(f)
    text = log.text()
    # one line when the camera goes, one when it is back: per outage, not per retry
    assert text.count("lost: connection lost") + text.count("(stalled)") == 20
    assert text.count(" is back after ") == 20
    assert "unavailable" not in text
    no_password_anywhere(text, stdout, folder=out)


def test_sigkill_mid_clip_over_rtsp_leaves_a_playable_clip(tmp_path, walking, rtsp_server):
    server = rtsp_server(walking)
    out = tmp_path / "video"
    proc, log = recorder(server.url, out, group=True)
    try:
        part = wait_for(lambda: next(iter(out.rglob("*.part.mp4")), None), timeout=20)
        assert part
        time.sleep(3.0)
        power_cut(proc.pid)  # the recorder and its ffmpeg
        proc.wait()
        record_fault()
    finally:
        if proc.poll() is None:
            proc.kill()
    frames = decode_all(part)
    # 1 s of pre-alarm and 3 s recorded: all but about the last second must play
    assert len(frames) >= 3 * 15
    nums = [read_frame_number(f) for f in frames]
    assert all(b > a for a, b in zip(nums, nums[1:]))
    FAULTS["clips checked"] += 1


def test_stall_then_recovery_in_time(tmp_path, walking, rtsp_server):
    server = rtsp_server(walking)
    out = tmp_path / "video"
    proc, log = recorder(server.url, out)
    try:
        assert wait_for(lambda: list(out.rglob("*.part.mp4")), timeout=20)
        server.toggle_stall()
        record_fault()
        stalled = time.monotonic()
        assert wait_for(lambda: clips(out), timeout=10), "the stalled clip was not finalized"
        # a stall surfaces as a read timeout ("stalled") or, under load, as a failed read: either way "lost:"
        lost_at = wait_for(lambda: log.first_after(stalled, " lost: "), timeout=5)
        assert lost_at, log.text()[-1500:]
        detected = lost_at - stalled
        server.toggle_stall()
        back = time.monotonic()
        assert wait_for(lambda: log.first_after(back, "opened rtsp"), timeout=10)
        code, _ = stop(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0
    assert detected <= 3 + 1.0  # READ_TIMEOUT_SECS and a little
    for f in clips(out):
        check_clip(f)


def complete_clip(f):
    """A clip with its final name plays to its end; its sidecar, on a full disk, may not have fitted."""
    if f.with_suffix(".json").exists():
        check_clip(f)
    else:
        assert len(decode_all(f)) == int(ffprobe(f)["streams"][0]["nb_read_frames"]) > 0


@pytest.mark.parametrize(
    "clips_from",
    [
        ["--reencode", "--crf", "0", "--preset", "ultrafast"],  # big frames: the disk fills within a clip
        [],  # the camera's packets (the default)
    ],
    ids=["reencoded", "packets"],
)
def test_full_disk_over_rtsp_keeps_trying_and_records_when_space_returns(
    tmp_path, walking, rtsp_server, clips_from
):
    mnt = mount_tmpfs(tmp_path / "disk", "300k" if clips_from else "120k")
    try:
        server = rtsp_server(walking)
        out = mnt / "video"
        cfg = tmp_path / "no_floor.py"
        cfg.write_text("RETENTION_MIN_FREE_GB = 0\n")  # nothing may be deleted: recording must keep trying
        proc, log = recorder(server.url, out, *clips_from, "--max-clip", "2", "--config", cfg)
        try:
            assert wait_for(
                lambda: log.text().count("no space left on device: this clip stops") >= 2, timeout=30
            )
            record_fault()
            assert proc.poll() is None, "the recorder died on a full disk"
            for f in clips(out):  # nothing incomplete carries a final name (small packet clips may fit)
                complete_clip(f)
            if clips_from:
                assert clips(out) == []
            subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
            assert wait_for(lambda: clips(out), timeout=20), "recording did not resume when space returned"
            code, _ = stop(proc, log)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert code == 0
        for f in clips(out):
            complete_clip(f)
        for part in out.rglob("*.part.mp4"):  # incomplete ones play up to where the disk filled
            assert decode_all(part)
        assert "Traceback" not in log.text()
    finally:
        unmount(mnt)


def test_wrong_password_retries_with_backoff_and_never_shows_it(tmp_path, walking, rtsp_server):
    server = rtsp_server(walking, user="admin", password=PASSWORD)
    host = server.url.rsplit("@", 1)[1]  # 127.0.0.1:port/cam
    # every form a password takes in a URL, each refused, at once; (URL, why, what the logs show of it)
    forms = {
        "plain": (
            server.url.replace(PASSWORD, PASSWORD + "x"),
            "wrong user name or password",
            f"admin:***@{host}",
        ),
        # a raw "@" in the password: ffmpeg splits at the last "@", so the server sees a wrong password
        "at": (f"rtsp://admin:p@{PASSWORD}x@{host}", "wrong user name or password", f"admin:***@{host}"),
        "query": (
            f"rtsp://{host}?user=admin&password={PASSWORD}x",
            "wrong user name or password",
            f"{host}?user=admin&password=***",
        ),
        # "@" and "/": ffmpeg ends the host at the "/", so it looks for camera.invalid
        "at-slash": (
            f"rtsp://admin:p@camera.invalid/{PASSWORD}x@{host}",
            "unknown host",
            f"admin:***@{host}",
        ),
    }
    runs = {}
    for kind, (url, _, _) in forms.items():
        (tmp_path / kind).mkdir()
        runs[kind] = recorder(
            url, tmp_path / kind / "v", "--log-level", "DEBUG", "--log-file", tmp_path / kind / "nvr.log"
        )
    try:
        assert wait_for(lambda: all(" unavailable: " in log.text() for _, log in runs.values()), timeout=15)
        time.sleep(6)
        record_fault()
        for kind, (proc, _) in runs.items():
            assert proc.poll() is None, f"{kind}: record must keep retrying a camera that refuses it"
        results = {kind: stop(proc, log) for kind, (proc, log) in runs.items()}
    finally:
        for proc, _ in runs.values():
            if proc.poll() is None:
                proc.kill()
    for kind, (url, why, shown) in forms.items():
        code, stdout = results[kind]
        log = runs[kind][1]
        text = log.text()
        assert code == 0, kind
        assert text.count(f"unavailable: {why}") == 1, (kind, text[-1500:])
        attempts = [t for t, line in log.lines if "reconnect attempt" in line]
        assert 2 <= len(attempts) <= 5, kind  # 1 s, 2 s, 3 s apart: backing off, not hammering
        gaps = [b - a for a, b in zip(attempts, attempts[1:])]
        assert all(g >= 0.9 for g in gaps), kind
        log_file = (tmp_path / kind / "nvr.log").read_text()
        assert shown in text and shown in log_file, (kind, shown, text[-1500:])
        # stderr, stdout, the log file and the status files (the JSON in the output folder)
        no_password_anywhere(text, stdout, log_file, folder=tmp_path / kind)
        assert list((tmp_path / kind).rglob("*.json")), kind


@pytest.mark.parametrize(
    "source_kind, words",
    [
        ("unknown host", "unknown host"),
        ("directory", "is a directory"),
        ("audio only", "not a video file"),
        ("garbage", "not a video file"),
    ],
)
def test_one_shot_bad_sources(tmp_path, source_kind, words, ffmpeg):
    sources = None
    if source_kind == "unknown host":  # the password as userinfo, with a raw "@" and "/", in the query
        sources = [
            f"rtsp://admin:{PASSWORD}@camera.invalid/stream",
            f"rtsp://admin:p@ss/{PASSWORD}@camera.invalid/s",
            f"rtsp://camera.invalid/stream?user=admin&password={PASSWORD}",
        ]
        source = sources[0]
    elif source_kind == "directory":
        source = tmp_path
    elif source_kind == "audio only":
        source = tmp_path / "sound.m4a"
        subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "sine=d=1", str(source)], check=True)
    else:
        source = tmp_path / "garbage.mp4"
        source.write_bytes(os.urandom(50000))
    commands = [["probe", s, "--no-snapshot"] for s in sources or [source]]
    if source_kind != "unknown host":  # scan takes files only
        commands.append(["scan", source])
    for cmd in commands:
        proc = run_cli(*cmd)
        record_fault()
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nvr-cli: error:") and words in lines[0], proc.stderr
        no_password_anywhere(proc.stdout, proc.stderr)


def malformed_configs(tmp_path):
    """At least 100 broken config files of every kind; yields (path, what)."""
    cases = []
    for name, f in FIELDS.items():
        check = f.metadata["check"]
        kind = getattr(check, "kind", None)
        if kind in (int, float):
            cases += [
                f"{name} = 'ten'",
                f"{name} = -7.5" if kind is float else f"{name} = 2.5",
                f"{name} = True",
            ]
        elif name in ("MASKS", "REGIONS"):
            cases += [
                f"{name} = ['1,2 3,4']",
                f"{name} = ['a,b c,d e,f']",
                f"{name} = 7",
                f"{name} = [[(1, 2)]]",
                f"{name} = ['-1,0 5,5 0,5']",
            ]
        elif check.__name__ == "_flag":
            cases += [f"{name} = 'perhaps'", f"{name} = 2"]
        elif name == "OBJECT_LABELS_OF_INTEREST":  # '' and [] are valid: every label
            cases += [f"{name} = 5", f"{name} = ['person', 3]"]
        elif name == "OBJECT_LABEL_OVERRIDES":
            cases += [
                f"{name} = ['car']",
                f"{name} = {{'car': 0.5}}",
                f"{name} = {{'car': {{'min_scor': 0.5}}}}",
                f"{name} = {{'car': {{'min_score': 2}}}}",
            ]
        elif name in ("DETECT_SOURCE", "RECORD_SOURCE"):  # an int is a USB camera index
            cases += [f"{name} = ''", f"{name} = 3.5", f"{name} = ['rtsp://a']"]
        elif name not in (
            "cam",
            "subFolderNameGeneratorFunc",
            "FFMPEG_PATH",
            "LOG_FILE_PATH",
            "scaleFrameTo",
            "OBJECT_MODEL",
            "OBJECT_LABELS",
        ):
            cases += [f"{name} = ''", f"{name} = 42"]
        typo = name[:-1] if len(name) > 4 else name + "X"
        cases.append(f"{typo} = 1")
    cases += [
        "scaleFrameTo = (500,)",
        "scaleFrameTo = 'big'",
        "subFolderNameGeneratorFunc = 'daily'",
        "MOTION_BLUR_SIZE = 4",
        "PRE_ALARM_RECORDING_SECONDS = -5",
        "MINIMAL_MOTION_DURATION = -1",
        "X = (",
        "def f(:\n    pass",
        "if True\n    x = 1",
        "1/0",
        "import no_such_module_here",
        "raise RuntimeError('broken')",
        "APP_LOG_LEVEL = 'LOUD'",
        "CAMERA_NAME = '../escape'",
        "RTSP_TRANSPORT = 'pigeon'",
        "cam = 3.5",
        "cam = ['a']",
        "cam = '   '",
        "MQTT_TLS_CA = '/etc/hostname'",  # a file, but no certificate in it
        "MQTT_TLS_CA = '/no/such/ca.crt'",
        "MQTT_TOPIC_PREFIX = 'home/#'",
        "MQTT_TOPIC_PREFIX = '/nvr'",
        "MQTT_QOS = 3",
        "CAMERAS = {'gate': {'cam': 'rtsp://h/', 'MQTT_HOST': 'broker'}}",  # one broker for all cameras
    ]
    for i, body in enumerate(cases):
        path = tmp_path / f"bad_{i:03}.py"
        path.write_text(body + "\n")
        yield path, body
    yield tmp_path, "a directory"
    yield tmp_path / "missing.py", "a missing file"


def test_100_malformed_configurations_each_one_line_and_exit_2(tmp_path):
    runner = CliRunner()
    seen = 0
    for path, what in malformed_configs(tmp_path):
        result = runner.invoke(cli, ["config", "check", "--config", str(path)])
        seen += 1
        assert result.exit_code == 2, (what, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nvr-cli: error:"), (what, result.output)
        assert "Traceback" not in result.output
    assert seen >= 100
    record_fault(seen)
    # the real entry point, for a few of them
    for path, what in list(malformed_configs(tmp_path))[::40]:
        proc = run_cli("record", "--config", path)  # no SOURCE: a bad `cam` must be caught too
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, what
        assert "no source" not in proc.stderr, what
