"""The wall clock: names in the repeated autumn hour, and a recorder whose clock changes under it.

The recorder cases run the real recorder under libfaketime (Debian's `faketime` package) against the
real RTSP test server, which itself runs on the real clock:

- DST: the fake clock starts 20 s before Europe/Berlin goes from CEST back to CET (2026-10-25,
  01:00:00 UTC) and runs on; clips and continuous segments are made on both sides of the change.
- Step: the wall clock is stepped +1 h mid-event and back a few seconds later, as a badly set NTP
  server or an operator would; durations and the pre-alarm must not notice.

CLOCK_MONOTONIC is never faked (FAKETIME_DONT_FAKE_MONOTONIC=1): a stepped or DST-changed wall clock
does not move it either.
"""

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import NUMBER_MASK, LineCollector, clips, decode_all, ffprobe, wait_for

import nvr_cli.storage.paths as storage
from nvr_cli.storage.segments import read_index

BERLIN = "Europe/Berlin"
UTC = dt.timezone.utc
FALL_BACK = dt.datetime(2026, 10, 25, 1, 0, tzinfo=UTC).timestamp()  # 03:00 CEST -> 02:00 CET
SPRING = dt.datetime(2026, 3, 29, 1, 0, tzinfo=UTC).timestamp()  # 02:00 CET -> 03:00 CEST


def utc(*args) -> float:
    return dt.datetime(*args, tzinfo=UTC).timestamp()


# -- names -----------------------------------------------------------------------------------------


def test_names_across_the_autumn_change_are_unique_and_sort_in_time_order(zone):
    zone(BERLIN)
    times = [utc(2026, 10, 25, 0, 30) + 10 * i for i in range(2 * 360 + 1)]  # 00:30 .. 02:30 UTC
    names = [storage.name_stamp(t) for t in times]
    assert len(set(names)) == len(names), "two instants got the same name"
    assert sorted(names) == names, "sorting the names does not give time order"
    # the second pass (01:00-02:00 UTC, 02:00-03:00 CET) and only it is marked
    assert [("R" in n) for n in names] == [FALL_BACK <= t < FALL_BACK + 3600 for t in times]
    assert storage.name_stamp(FALL_BACK - 30) == "20261025-025930"  # first pass, CEST
    assert storage.name_stamp(FALL_BACK + 10) == "20261025-02R0010"  # second pass, CET
    assert storage.name_stamp(FALL_BACK + 3599) == "20261025-02R5959"
    assert storage.name_stamp(FALL_BACK + 3600) == "20261025-030000"
    # UTC names never repeat: never marked
    for t in times:
        assert storage.name_stamp(t, local_time=False) == dt.datetime.fromtimestamp(t, UTC).strftime(
            "%Y%m%d-%H%M%S"
        )
    # and against the collision suffixes new_clip_path adds (stems: the suffix follows the stamp)
    in_order = [
        "cam_20261025-025959",
        "cam_20261025-025959-1",
        "cam_20261025-025959-2",
        "cam_20261025-02R0000",
        "cam_20261025-02R0010",
        "cam_20261025-02R0010-1",
        "cam_20261025-02R5959-2",
        "cam_20261025-030000",
    ]
    assert sorted(in_order) == in_order


def test_new_clip_path_uses_the_marked_names(zone, tmp_path):
    zone(BERLIN)
    first = storage.new_clip_path(tmp_path, "cam", FALL_BACK - 50)
    assert first.name == "cam_20261025-025910.mp4"
    second = storage.new_clip_path(tmp_path, "cam", FALL_BACK + 3550)  # same local time, an hour later
    assert second.name == "cam_20261025-02R5910.mp4"
    second.write_bytes(b"")
    assert storage.new_clip_path(tmp_path, "cam", FALL_BACK + 3550).name == "cam_20261025-02R5910-1.mp4"
    assert (
        storage.new_clip_path(tmp_path, "cam", FALL_BACK + 3550, local_time=False).name
        == "cam_20261025-015910.mp4"
    )


@pytest.mark.parametrize(
    "name, start, minutes",
    [
        (BERLIN, SPRING - 1800, 60),  # spring: an hour skipped, nothing repeated
        ("UTC", FALL_BACK - 1800, 60),
        ("Australia/Lord_Howe", utc(2026, 4, 4, 14, 0), 120),  # autumn, but clocks go back only 30 minutes
    ],
)
def test_no_mark_where_no_hour_repeats_and_half_hour_changes(zone, name, start, minutes):
    zone(name)
    times = [start + 10 * i for i in range(minutes * 6 + 1)]
    names = [storage.name_stamp(t) for t in times]
    assert len(set(names)) == len(names) and sorted(names) == names
    if name == "Australia/Lord_Howe":  # 02:00 LHDT -> 01:30 LHST at 15:00 UTC: 01:30-02:00 repeats
        back = utc(2026, 4, 4, 15, 0)
        assert [("R" in n) for n in names] == [back <= t < back + 1800 for t in times]
        assert storage.name_stamp(back) == "20260405-01R3000"
    else:
        assert not [n for n in names if "R" in n]


# -- under libfaketime ----------------------------------------------------------------------------


def _find_libfaketime():
    try:
        listed = subprocess.run(["dpkg", "-L", "libfaketime"], capture_output=True, text=True).stdout.split()
    except OSError:
        listed = []
    candidates = [p for p in listed if p.endswith("/libfaketime.so.1")]
    candidates += [
        f"/usr/{d}/faketime/libfaketime.so.1"
        for d in ("lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu", "lib", "local/lib")
    ]
    return next((p for p in candidates if Path(p).is_file()), None)


def _python_sleep_broken(env) -> bool:
    """libfaketime 0.9.10 (Debian 12) with FAKETIME_DONT_FAKE_MONOTONIC makes Python >= 3.11's time.sleep
    fail with EINVAL: Python sleeps with clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME), and that
    version shifts the (real) monotonic deadline by the fake wall clock (wolfcw/libfaketime#426,
    fixed in 0.9.11)."""
    r = subprocess.run(
        [sys.executable, "-c", "import time; time.sleep(0.01)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return r.returncode != 0


# Runs `python -m nvr_cli ...` with time.sleep replaced by a relative wait (select(): the kernel counts
# it on the monotonic clock, as time.sleep does), for libfaketime versions with the bug above only.
_RUN_WITH_RELATIVE_SLEEP = """
import runpy, select, sys, time
def _sleep(seconds):
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    select.select([], [], [], seconds)
time.sleep = _sleep
sys.argv[0] = "nvr_cli"
runpy.run_module("nvr_cli", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="session")
def libfaketime():
    path = _find_libfaketime()
    if path is None:
        if os.environ.get("NVR_CLI_REQUIRE_RTSP"):
            pytest.fail("libfaketime is not installed (Debian package faketime)")
        pytest.skip("libfaketime is not installed (Debian package faketime): run scripts/install_and_test.sh")
    return path


def faketime_env(lib, **fake) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKETIME")}  # FAKETIME wins over a file
    env.update(TZ=BERLIN, LD_PRELOAD=lib, FAKETIME_DONT_FAKE_MONOTONIC="1", FAKETIME_NO_CACHE="1", **fake)
    return env


def recorder(url, out, env, *extra, initial_wait=0.5):
    entry = ["-c", _RUN_WITH_RELATIVE_SLEEP] if _python_sleep_broken(env) else ["-m", "nvr_cli"]
    cmd = [
        sys.executable,
        *entry,
        "record",
        url,
        "--output",
        str(out),
        "--name",
        "dst",
        "--mask",
        NUMBER_MASK,
        "--initial-wait",
        str(initial_wait),
        "--motion-duration",
        "1",
        "--post-capture",
        "0.5",
        "--read-timeout",
        "3",
        "--open-timeout",
        "5",
        *map(str, extra),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    return proc, LineCollector(proc.stderr)


def run_until_stopped(proc, log, predicate, timeout, message=None):
    """Wait for ``predicate`` while ``proc`` records, then stop it with SIGTERM; its log. Without a
    message, not reaching ``predicate`` is no failure: what was recorded by then is checked."""
    hung = False
    try:
        reached = wait_for(predicate, timeout=timeout)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        hung = True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for leftover in (f"faketime_shm_{proc.pid}", f"sem.faketime_sem_{proc.pid}"):  # a killed process's
            Path("/dev/shm", leftover).unlink(missing_ok=True)
    log.join()
    tail = f"\n--- recorder log ---\n{log.text()[-3000:]}"
    assert reached or message is None, (
        f"{message}{' (and it ignored SIGTERM for 60 s)' if hung else ''}{tail}"
    )
    assert not hung, f"the recorder did not exit within 60 s of SIGTERM{tail}"
    return log.text()


def event_clips(out):
    return [c for c in clips(out) if not c.name.endswith((".seg.mp4", ".lossless.mp4"))]


def sidecars(out):
    """(clip, sidecar) of every event clip whose sidecar is written."""
    done = []
    for c in event_clips(out):
        try:
            done.append((c, json.loads(c.with_suffix(".json").read_text())))
        except (FileNotFoundError, ValueError):
            continue
    return done


STAMP = re.compile(r"dst_\d{8}-\d\dR?\d{4}")  # a name with no collision suffix


@pytest.mark.rtsp
def test_names_across_the_autumn_change_in_a_real_recording(tmp_path, walking, rtsp_server, libfaketime):
    server = rtsp_server(walking)  # on the real clock
    out = tmp_path / "video"
    offset = int(round(utc(2026, 10, 25, 0, 59, 40) - time.time()))  # the fake clock starts at 00:59:40 UTC
    env = faketime_env(libfaketime, FAKETIME=f"{offset:+d}")
    proc, log = recorder(
        server.url, out, env, "--continuous", "--segment-seconds", "4", "--pre-alarm", "1", "--max-clip", "3"
    )

    def segs():
        return [e for e in read_index(out / "dst") if "file" in e] if (out / "dst").is_dir() else []

    def done():  # clips and segments started after the change (~40 s recorded)
        return [
            s for c, s in sidecars(out) if dt.datetime.fromisoformat(s["start"]).timestamp() >= FALL_BACK + 8
        ] and [e for e in segs() if e["start"] >= FALL_BACK + 8]

    text = run_until_stopped(proc, log, done, 120, "no clip and segment after the change to CET")
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]

    # event clips: their sidecar start (ISO with the UTC offset of the time) is the truth
    made = sorted((dt.datetime.fromisoformat(s["start"]).timestamp(), c.name) for c, s in sidecars(out))
    names = [n for _, n in made]
    print(f"\nclips: {names}")
    assert [s for c, s in sidecars(out) if s["start"].endswith("+02:00")], "no clip before the change (CEST)"
    assert [s for c, s in sidecars(out) if s["start"].endswith("+01:00")], "no clip after the change (CET)"
    assert [n for n in names if "-025" in n], f"no first-pass (CEST) 02:5x clip name: {names}"
    assert [n for n in names if "-02R" in n], f"no second-pass (CET) clip name marked R: {names}"
    assert all(STAMP.fullmatch(n[: -len(".mp4")]) for n in names), f"clip names collided (-N suffix): {names}"
    assert len(set(names)) == len(names)
    assert sorted(names) == names, f"clip names do not sort in time order: {names}"

    # continuous segments: segments.jsonl's start (epoch seconds) is the truth
    entries = sorted(segs(), key=lambda e: e["start"])
    seg_names = [e["file"] for e in entries]
    print(f"segments: {seg_names}")
    assert [e for e in entries if e["start"] < FALL_BACK - 2], "no segment before the change"
    assert [e for e in entries if e["start"] > FALL_BACK + 2], "no segment after the change"
    assert [n for n in seg_names if "-025" in n], f"no first-pass (CEST) 02:5x segment name: {seg_names}"
    assert [n for n in seg_names if "-02R" in n], (
        f"segment names are not marked R in the second pass (continuous.py's segment stem must use "
        f"storage.name_stamp): {seg_names}"
    )
    assert all(STAMP.fullmatch(n[: -len(".seg.mp4")]) for n in seg_names), (
        f"segment names collided (-N suffix): {seg_names}"
    )
    assert sorted(seg_names) == seg_names, f"segment names do not sort in time order: {seg_names}"


def _step_file(path: Path, spec: str):
    """Replace the timestamp file at once: libfaketime (FAKETIME_NO_CACHE) re-reads it on every call."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(spec + "\n")
    os.replace(tmp, path)


def _numbers(data, where=""):
    """Every (key path, number) in a sidecar."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _numbers(v, f"{where}.{k}")
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _numbers(v, f"{where}[{i}]")
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        yield where, data


@pytest.mark.rtsp
def test_wall_clock_stepped_mid_event(tmp_path, walking, rtsp_server, libfaketime):
    max_clip, pre_alarm, gop = 6, 2, 1.0  # the scene has a keyframe every second
    server = rtsp_server(walking)  # on the real clock
    out = tmp_path / "video"
    stamp = tmp_path / "faketime.rc"
    _step_file(stamp, "+0")
    env = faketime_env(libfaketime, FAKETIME_TIMESTAMP_FILE=str(stamp))
    # someone is always walking: no detection until the pre-alarm buffer has filled, so that the
    # first (and only) event can have its whole pre-alarm
    proc, log = recorder(
        server.url,
        out,
        env,
        "--max-clip",
        max_clip,
        "--pre-alarm",
        pre_alarm,
        initial_wait=pre_alarm + 2 * gop,
    )
    try:
        assert wait_for(lambda: list(out.rglob("*.part.mp4")), timeout=30), (
            f"no event started\n{log.text()[-3000:]}"
        )
        time.sleep(2)  # mid-event, mid-clip
        _step_file(stamp, "+3600")
        time.sleep(3)
        _step_file(stamp, "+0")
        finished = len(sidecars(out))
    except BaseException:
        run_until_stopped(proc, log, lambda: True, 0)
        raise
    # two more clips (MAX_CLIP each) after the clock came back; a clip that never reaches MAX_CLIP (a
    # wall clock that went back) is stopped after a generous wait, and its duration checked below
    run_until_stopped(proc, log, lambda: len(sidecars(out)) >= finished + 2, 4 * max_clip)
    text = log.text()
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]

    made = sidecars(out)
    report = [
        (
            c.name,
            s["event"],
            s["part"],
            s["duration_seconds"],
            s["pre_alarm_seconds"],
            s["start"],
            s["end"],
            s["end_reason"],
        )
        for c, s in made
    ]
    print("\nclip, event, part, duration, pre-alarm, start, end, end reason:\n" + "\n".join(map(str, report)))
    assert made
    parts = {(s["event"], s["part"]) for c, s in made}
    wrong = []  # every clip checked, every problem listed: what a step does shows in one run
    for c, s in made:
        negative = [(k, v) for k, v in _numbers(s) if v < 0 and ("duration" in k or "seconds" in k)]
        if negative:
            wrong.append(f"{c.name}: negative durations {negative}")
        if not 0 <= s["duration_seconds"] <= max_clip + gop:
            wrong.append(
                f"{c.name}: duration {s['duration_seconds']} s, not within 0..MAX_CLIP ({max_clip} s) "
                f"+ a keyframe"
            )
        start, end = (dt.datetime.fromisoformat(s[k]).timestamp() for k in ("start", "end"))
        if end < start:
            wrong.append(f"{c.name}: ends ({s['end']}) before it starts ({s['start']})")
        if s["part"] == 1 and not pre_alarm - 0.5 <= s["pre_alarm_seconds"] <= pre_alarm + gop + 0.2:
            wrong.append(
                f"{c.name}: pre-alarm {s['pre_alarm_seconds']} s, not the {pre_alarm} s asked (+ up to a GOP)"
            )
        if (s["event"], s["part"] + 1) in parts and s["duration_seconds"] < max_clip - 0.5:
            wrong.append(f"{c.name}: split after {s['duration_seconds']} s, before MAX_CLIP ({max_clip} s)")
        frames = decode_all(c)
        if not frames or len(frames) != int(ffprobe(c)["streams"][0]["nb_read_frames"]):
            wrong.append(
                f"{c.name}: {len(frames)} frames decode, ffprobe counts "
                f"{ffprobe(c)['streams'][0]['nb_read_frames']}"
            )
    assert not wrong, "\n".join(wrong)
