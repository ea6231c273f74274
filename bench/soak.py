#!/usr/bin/env python3
"""Soak: one camera under `nvr-cli run` for an hour or more, unattended, to show that its memory, open
files, threads and processes stay flat while events, clips, segments and hooks keep coming.

    python3 bench/soak.py                                   # 70 min, first 10 excluded: the real figure
    python3 bench/soak.py --minutes 3 --warmup-minutes 1 --sample-seconds 15   # a short trial
    python3 bench/soak.py --json > soak.json                # the same, plus samples and summary as JSON

The camera is a generated scene (nvr_cli.runtime.synthetic.Scene: a still room with sensor noise, a walker
crossing it for --walk-seconds every --period seconds, a QR code shown while the walker is there)
served in a loop by the tests' GStreamer RTSP server on 127.0.0.1 (its own process, not measured).
`nvr-cli run --config CONFIG` records it with everything on: event clips (re-encoded from the frames,
as continuous recording implies), continuous 10 s segments, lossless event cuts from them, QR codes,
ON_EVENT_START / ON_EVENT_END / ON_QR_CODE hooks (a /bin/sh line appending to a file, so they really
run and are counted), status files and a log file, all in a temporary folder.

Measured: the whole process tree of `run` (supervisor, worker, their ffmpeg children, hooks), found by
walking /proc by parent pid from the supervisor (children in sessions of their own included), polled
every --poll-seconds: PSS and its anonymous part (/proc/PID/smaps_rollup), open descriptors
(/proc/PID/fd), threads and processes (zombies included: an unreaped child is a leak too). Every
--sample-seconds one line: the values at that moment, the tree's idle level over the interval, clips,
segments and hook runs so far, and the worker's status file (state, fps, dropped frames, in an event).

Idle level: a clip's x264 encoder, its remux, the lossless cut and the hooks are processes that exist
only around an event (tens of MB, a few descriptors and threads each), so values at a sample depend on
where in an event it falls. The idle level of an interval is the median of its polls at which the tree
had only its long-lived processes (supervisor, worker, segmenting ffmpeg): between events, with the
pre-alarm buffer full. A leak raises it; events do not.

Judged after --warmup-minutes, against the targets:
- memory growth under 1 MB/h: least-squares slope of the idle anonymous PSS (heap and other private
  memory, where a leak grows). The slope of the total PSS is printed too, but is not judged: its
  file-backed part (shared libraries) is divided among every process on the machine mapping the same
  files, so other ffmpeg processes starting and stopping move it by tens of MB.
- no growth in descriptors, threads or processes: the median of the idle levels over the last third
  of the post-warm-up samples is no higher than over the first third. Slopes and max - min are printed.
- and the run was healthy: `run` and the server stayed up, no worker restart, the camera connected,
  about one event per --period, and no pile-up of unfinished files (*.part.mp4, staging, hook JSON).

Cleans up on exit, Ctrl-C and SIGTERM included: SIGTERM to `run` (its worker finishes its clip), then
SIGKILL to any process of its tree still there (every process it was seen with, and any carrying this
run's environment tag), stops the server, and removes the temporary folder unless --keep. A second
Ctrl-C while stopping skips the waiting.

With --json the lines go to stderr and stdout gets one JSON document (settings, samples, summary).
Exit status: 0 pass, 1 fail (or not enough samples to judge), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import ROOT, SERVER, ffmpeg  # noqa: E402

DEBIAN_PYTHON = "/usr/bin/python3"
CAMERA = "soak"
TAG_VAR = "NVR_SOAK_TAG"  # in the environment of `run`, hence of everything it starts
MEMORY_TARGET_MB_PER_HOUR = 1.0
TICK = os.sysconf("SC_CLK_TCK")
OUT = sys.stdout  # where the human-readable lines go (stderr with --json)
METRICS = {
    "pss_mb": "PSS MB",
    "anon_mb": "anonymous PSS MB",
    "fds": "descriptors",
    "threads": "threads",
    "procs": "processes",
}


def say(msg: str = ""):
    print(msg, file=OUT, flush=True)


# -- the scene and the camera ------------------------------------------------------------------------


def make_scene(path: Path, size: tuple, fps: float, period: float, walk: float, qr: bool) -> dict:
    """A --period second scene, looped by the server: one walker, and a QR code while it walks."""
    from nvr_cli.runtime.synthetic import Scene, qr_image

    w, h = size
    start = round(period * 0.4, 2)
    walkers = [(start, start + walk)]
    codes = []
    payload = "nvr-cli soak"
    side = qr_image(payload).shape[0]
    if qr and side + 16 <= min(w, h) and walk > 1.0:
        codes = [(start + 0.5, start + walk - 0.5, payload, (w - side - 8, h - side - 8))]
    Scene(seconds=period, fps=fps, size=size, walkers=walkers, codes=codes).write(path, ffmpeg())
    return {
        "seconds": period,
        "fps": fps,
        "size": list(size),
        "walkers": walkers,
        "qr": [{"from": c[0], "to": c[1], "payload": c[2], "at": list(c[3])} for c in codes],
    }


class RtspServer:
    """tests/support/rtsp_server.py under Debian's python3, in a session of its own; its output drained."""

    def __init__(self, clip: Path, port: int, logdir: Path):
        self.err = open(logdir / "rtsp_server.err", "w")
        self.proc = subprocess.Popen(
            [DEBIAN_PYTHON, str(SERVER), "--file", str(clip), "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        lines: queue.Queue = queue.Queue()

        def drain():  # keep reading, so that nothing it prints can ever block it
            for line in self.proc.stdout:
                lines.put(line)
            lines.put("")

        threading.Thread(target=drain, daemon=True).start()
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            line = "(nothing within 60 s)"
        if not line.startswith("READY"):
            self.stop()
            raise SystemExit(
                f"RTSP server did not start: {line.strip()} "
                f"{(logdir / 'rtsp_server.err').read_text()[-2000:]}"
            )
        self.url = f"rtsp://127.0.0.1:{port}/cam"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, url: str, work: Path, period: float, walk: float, hooklog: Path) -> dict:
    from nvr_cli.runtime.synthetic import NUMBER_MASK

    # never run through a shell by nvr-cli: this runs /bin/sh itself; $0 is the log file
    hook = ["/bin/sh", "-c", 'echo "$NVR_HOOK $NVR_EVENT $(date +%s)" >> "$0"', str(hooklog)]
    settings = {
        "CAMERAS": {CAMERA: {"cam": url}},
        "CONTINUOUS_RECORDING": True,
        "SEGMENT_SECONDS": 10,
        "QR_ENABLED": True,
        # each pass of the walker is a new sighting (and an ON_QR_CODE run), not a repeat
        "QR_REPEAT_WINDOW_SECS": max(walk, period / 3),
        "MASKS": [NUMBER_MASK],  # the frame-number strip changes every frame, as a camera's clock
        "PRE_ALARM_RECORDING_SECONDS": 2,
        "MINIMAL_MOTION_DURATION": 2,
        "POST_CAPTURE_SECONDS": 1,
        "INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS": 1,
        "PATH_FOR_VIDEO": str(work / "video"),  # status files: the default, PATH_FOR_VIDEO/.status
        "LOG_FILE_PATH": str(work / "logs" / "nvr.log"),
        "LOG_TO_CONSOLE": False,
        "RETENTION_MIN_FREE_GB": 0,
        "STOP_TIMEOUT_SECS": 30,
        "ON_EVENT_START": hook,
        "ON_EVENT_END": hook,
        "ON_QR_CODE": hook,
    }
    lines = ['"""nvr-cli soak benchmark: written by bench/soak.py."""']
    lines += [f"{k} = {v!r}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return settings


# -- process trees -----------------------------------------------------------------------------------


@dataclass
class Proc:
    pid: int
    ppid: int
    state: str
    start: int  # clock ticks after boot: with the pid, names one process even if the pid is reused
    threads: int
    cpu_ticks: int  # user + system, its own and its reaped children's
    comm: str


def proc_table() -> dict:
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        head, _, rest = raw.rpartition(")")
        x = rest.split()
        try:
            table[int(d)] = Proc(
                int(d),
                int(x[1]),
                x[0],
                int(x[19]),
                int(x[17]),
                sum(int(v) for v in x[11:15]),
                head.partition("(")[2],
            )
        except (IndexError, ValueError):
            continue
    return table


def subtree(root: int, table: dict) -> list:
    """root and every process below it by parent pid (sessions of their own included)."""
    if root not in table:
        return []
    children: dict = {}
    for p in table.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(table[pid])
        todo.extend(children.get(pid, []))
    return out


def pss_kb(pid: int) -> tuple:
    """(Pss, Pss_Anon) in kB: all its memory, shared pages divided among their users; the anonymous part."""
    pss = anon = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Pss_Anon:"):
                    anon = int(line.split()[1])
    except OSError:
        pass
    return pss, anon


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def cmdline(pid: int) -> list:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def has_tag(pid: int, tag: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"{TAG_VAR}={tag}".encode() in f.read().split(b"\0")
    except OSError:
        return False


def role_of(argv: list, pid: int, root: int) -> str:
    if pid == root:
        return "supervisor"
    if "--camera" in argv:
        return "worker"
    exe = Path(argv[0]).name if argv else ""
    if exe.startswith("ffmpeg"):
        if "segment" in argv:
            return "ffmpeg segmenter"
        if "rawvideo" in argv:
            return "ffmpeg encoder"
        if "concat" in argv:
            return "ffmpeg cut"
        return "ffmpeg other"  # remux of a finished clip, checks of a file
    if exe in ("sh", "dash", "bash", "date"):
        return "hook"
    return exe or "?"


class TreeWatch:
    """Polls the tree of `run`; remembers every process it was seen with (for the cleanup) and each
    sample interval's polls (for its floor, peak and idle level)."""

    KEYS = ("pss_mb", "anon_mb", "fds", "threads", "procs", "zombies")

    def __init__(self, root: int):
        self.root = root
        self.seen: dict = {}  # (pid, start) -> {"role", "argv", "comm"}
        self.workers: list = []  # (pid, start) of each worker seen, in order: more than one is a restart
        self.polls: list = []  # this interval's totals

    def poll(self) -> dict:
        table = proc_table()
        procs = []
        for p in subtree(self.root, table):
            key = (p.pid, p.start)
            known = self.seen.get(key)
            # a child between fork and exec still shows its parent's command line: look again after exec
            if known is None or known["comm"] != p.comm:
                argv = cmdline(p.pid)
                role = role_of(argv, p.pid, self.root)
                self.seen[key] = {"role": role, "argv": argv, "comm": p.comm}
                if role == "worker" and p.ppid == self.root and key not in self.workers:
                    self.workers.append(key)
            zombie = p.state == "Z"
            pss, anon = (0, 0) if zombie else pss_kb(p.pid)
            procs.append(
                {
                    "pid": p.pid,
                    "ppid": p.ppid,
                    "role": self.seen[key]["role"],
                    "state": p.state,
                    "pss_kb": pss,
                    "anon_kb": anon,
                    "fds": 0 if zombie else fd_count(p.pid),
                    "threads": p.threads,
                    "cpu_ticks": p.cpu_ticks,
                }
            )
        totals = {
            "pss_mb": sum(p["pss_kb"] for p in procs) / 1024,
            "anon_mb": sum(p["anon_kb"] for p in procs) / 1024,
            "fds": sum(p["fds"] for p in procs),
            "threads": sum(p["threads"] for p in procs),
            "procs": len(procs),
            "zombies": sum(p["state"] == "Z" for p in procs),
            "cpu_s": sum(p["cpu_ticks"] for p in procs) / TICK,
        }
        self.polls.append(totals)
        return {"totals": totals, "procs": procs}

    def interval(self) -> dict:
        """Floor, peak and idle level of the polls since the last call; starts a new interval."""
        polls, self.polls = self.polls, []
        fewest = min(p["procs"] for p in polls)
        quiet = [p for p in polls if p["procs"] == fewest]  # only the long-lived processes were there

        def r(k, v):
            return round(v, 1) if k.endswith("_mb") else v

        return {
            "polls": len(polls),
            "idle_polls": len(quiet),
            "floor": {k: r(k, min(p[k] for p in polls)) for k in self.KEYS},
            "peak": {k: r(k, max(p[k] for p in polls)) for k in self.KEYS},
            "idle": {k: r(k, statistics.median(p[k] for p in quiet)) for k in self.KEYS},
        }

    def alive_seen(self) -> list:
        """Processes it was seen with that are still there (same pid and start time)."""
        table = proc_table()
        return [pid for pid, start in self.seen if pid in table and table[pid].start == start]


# -- files -------------------------------------------------------------------------------------------


def count_files(video: Path, tmpdir: Path, hooklog: Path) -> dict:
    c = {
        "clips": 0,
        "lossless": 0,
        "segments": 0,
        "sidecars": 0,
        "thumbnails": 0,
        "parts": 0,
        "staging": 0,
        "hook_tmp": 0,
        "video_mb": 0.0,
    }
    size = 0
    for folder, _dirs, files in os.walk(video):
        rel = Path(folder).relative_to(video).parts
        if rel and rel[0] == ".status":
            continue
        hidden = any(p.startswith(".") for p in rel)  # .incoming: the segment being written
        for name in files:
            try:
                size += os.stat(os.path.join(folder, name)).st_size
            except OSError:
                continue
            if hidden or name.startswith("."):  # staging, a remux or a cut in progress
                c["staging"] += 1
            elif name.endswith(".part.mp4"):
                c["parts"] += 1
            elif name.endswith(".seg.mp4"):
                c["segments"] += 1
            elif name.endswith(".lossless.mp4"):
                c["lossless"] += 1
            elif name.endswith(".mp4"):
                c["clips"] += 1
            elif name.endswith(".json"):
                c["sidecars"] += 1
            elif name.endswith(".jpg"):
                c["thumbnails"] += 1
    c["video_mb"] = round(size / 2**20, 1)
    try:
        c["hook_tmp"] = len(os.listdir(tmpdir))  # NVR_JSON files of hooks (TMPDIR of `run`)
    except OSError:
        pass
    hooks: dict = {}
    try:
        for line in hooklog.read_text().splitlines():
            kind = line.split(" ", 1)[0]
            hooks[kind] = hooks.get(kind, 0) + 1
    except OSError:
        pass
    c["hooks"] = hooks
    c["hook_runs"] = sum(hooks.values())
    c["unfinished"] = c["parts"] + c["staging"] + c["hook_tmp"]
    return c


def read_status(path: Path) -> dict:
    try:
        st = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {
        "state": st.get("state"),
        "fps": st.get("fps"),
        "dropped_frames": st.get("dropped_frames"),
        "event": bool(st.get("event")),
        "events_today": st.get("events_today"),
        "frames": st.get("frames"),
        "age_s": round(time.time() - st.get("updated", 0), 1),
    }


def log_problems(logdir: Path) -> dict:
    counts = {"WARNING": 0, "ERROR": 0, "CRITICAL": 0}
    examples: list = []
    for p in sorted(logdir.glob("nvr*.log*")):
        try:
            text = p.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            for level in counts:
                if f" - {level} - " in line:
                    counts[level] += 1
                    msg = line.split(f" - {level} - ", 1)[1][:200]
                    if msg not in examples and len(examples) < 8:
                        examples.append(f"{level}: {msg}")
    return {"counts": counts, "examples": examples}


# -- statistics --------------------------------------------------------------------------------------


def slope_per_hour(ts: list, ys: list):
    """Least-squares slope of ys against ts (minutes), per hour; None with fewer than 3 points."""
    if len(ts) < 3:
        return None
    tm, ym = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - tm) ** 2 for t in ts)
    if den == 0:
        return None
    return sum((t - tm) * (y - ym) for t, y in zip(ts, ys)) / den * 60


def thirds(values: list) -> tuple:
    k = max(1, len(values) // 3)
    return statistics.median(values[:k]), statistics.median(values[-k:])


def summarise(samples: list, warmup: float, period: float) -> dict:
    post = [s for s in samples if s["t_min"] >= warmup]
    out: dict = {"samples_after_warmup": len(post), "warmup_minutes": warmup}
    if len(post) < 3:
        out["verdict"] = f"not enough samples after the warm-up to judge ({len(post)}; need 3)"
        out["pass"] = False
        return out
    ts = [s["t_min"] for s in post]
    metrics = {}
    for k in METRICS:
        at = [s[k] for s in post]
        idle = [s["idle"][k] for s in post]
        first, last = thirds(idle)
        metrics[k] = {
            "slope_per_h": slope_per_hour(ts, at),
            "idle_slope_per_h": slope_per_hour(ts, idle),
            "min": min(at),
            "max": max(at),
            "max_minus_min": round(max(at) - min(at), 1),
            "idle_min": min(idle),
            "idle_max": max(idle),
            "idle_max_minus_min": round(max(idle) - min(idle), 1),
            "idle_median_first_third": first,
            "idle_median_last_third": last,
            "no_growth": last <= first,
        }
    for role in ("supervisor", "worker"):
        series = [s["roles"].get(role, {}).get("anon_mb", 0.0) for s in post]
        metrics["anon_mb"][f"{role}_slope_per_h"] = slope_per_hour(ts, series)
    cpu = [(s["t_min"], s["cpu_pct"]) for s in post if s["cpu_pct"] is not None]
    out["cpu_pct"] = {
        "mean": round(statistics.fmean(c for _, c in cpu), 1) if cpu else None,
        "slope_per_h": slope_per_hour([t for t, _ in cpu], [c for _, c in cpu]) if cpu else None,
    }
    out["metrics"] = metrics
    mem = metrics["anon_mb"]["idle_slope_per_h"]
    memory_ok = mem is not None and mem < MEMORY_TARGET_MB_PER_HOUR
    flat = all(metrics[k]["no_growth"] for k in ("fds", "threads", "procs"))
    # health: events kept coming, nothing restarted, nothing piled up
    span = post[-1]["t_min"] - post[0]["t_min"]
    clips = post[-1]["clips"] - post[0]["clips"]
    expected = span * 60 / period
    unfinished = [s["unfinished"] for s in post]
    k = max(1, len(post) // 3)
    health = {
        "clips_after_warmup": clips,
        "expected_events": round(expected, 1),
        "events_ok": expected > 0 and clips >= 0.8 * expected,
        "hook_runs_after_warmup": post[-1]["hook_runs"] - post[0]["hook_runs"],
        "worker_restarts": max(0, samples[-1]["worker_starts"] - 1),
        "zombies_max": max(s["peak"]["zombies"] for s in post),
        "unfinished_files_max": max(unfinished),
        # growth: the least of the last third above the most of the first third
        "unfinished_files_grow": min(unfinished[-k:]) > max(unfinished[:k]),
        "dropped_frames_last": post[-1]["status"].get("dropped_frames"),
        "states": sorted({str(s["status"].get("state")) for s in post}),
    }
    healthy = (
        health["events_ok"]
        and health["worker_restarts"] == 0
        and not health["unfinished_files_grow"]
        and health["states"] == ["connected"]
    )
    out["health"] = health
    out.update(
        {"memory_ok": memory_ok, "flat_ok": flat, "healthy": healthy, "pass": memory_ok and flat and healthy}
    )
    return out


def fmt(v, unit="", digits=2) -> str:
    return "n/a" if v is None else f"{v:+.{digits}f}{unit}"


def print_summary(summary: dict, minutes_run: float):
    say()
    say(
        f"## Summary: {minutes_run:.1f} min, {summary['samples_after_warmup']} samples after the "
        f"{summary['warmup_minutes']:g} min warm-up"
    )
    if "metrics" not in summary:
        say(f"VERDICT: NONE: {summary['verdict']}")
        return
    m = summary["metrics"]
    say("")
    say(
        "| metric | slope at samples | slope of idle level | idle, first third (median) | idle, last third "
        "(median) "
        "| max - min at samples | max - min idle |"
    )
    say("|---|---|---|---|---|---|---|")
    for k, label in METRICS.items():
        x = m[k]
        d = 1 if k.endswith("_mb") else 0
        unit = " MB/h" if k.endswith("_mb") else "/h"
        say(
            f"| {label} | {fmt(x['slope_per_h'], unit)} | {fmt(x['idle_slope_per_h'], unit)} | "
            f"{x['idle_median_first_third']:.{d}f} | {x['idle_median_last_third']:.{d}f} | "
            f"{x['max_minus_min']:.{d}f} | {x['idle_max_minus_min']:.{d}f} |"
        )
    say("")
    say(
        f"anonymous PSS slope (at samples): supervisor "
        f"{fmt(m['anon_mb']['supervisor_slope_per_h'], ' MB/h')}, "
        f"worker {fmt(m['anon_mb']['worker_slope_per_h'], ' MB/h')}; tree CPU {summary['cpu_pct']['mean']} % "
        f"of a core, slope {fmt(summary['cpu_pct']['slope_per_h'], ' points/h')}"
    )
    h = summary["health"]
    say(
        f"after the warm-up: {h['clips_after_warmup']} clips (~{h['expected_events']:g} events expected), "
        f"{h['hook_runs_after_warmup']} hook runs; worker restarts {h['worker_restarts']}; zombies at most "
        f"{h['zombies_max']}; unfinished files at most {h['unfinished_files_max']} "
        f"({'GROWING' if h['unfinished_files_grow'] else 'not growing'}); camera {', '.join(h['states'])}; "
        f"dropped frames {h['dropped_frames_last']}"
    )
    mem = m["anon_mb"]["idle_slope_per_h"]
    parts = [
        f"memory {fmt(mem, ' MB/h')} (idle anonymous PSS; target < {MEMORY_TARGET_MB_PER_HOUR:g}: "
        f"{'met' if summary['memory_ok'] else 'NOT MET'}; total PSS "
        f"{fmt(m['pss_mb']['idle_slope_per_h'], ' MB/h')}, "
        f"not judged)"
    ]
    for k in ("fds", "threads", "procs"):
        x = m[k]
        parts.append(
            f"{METRICS[k]} {'flat' if x['no_growth'] else 'GROWING'} "
            f"({x['idle_median_first_third']:g} -> {x['idle_median_last_third']:g})"
        )
    parts.append("healthy" if summary["healthy"] else "UNHEALTHY")
    short = (
        "" if minutes_run >= 60 else f" [a {minutes_run:.0f} min trial: the real figure needs 60 min or more]"
    )
    say("")
    say(f"VERDICT: {'PASS' if summary['pass'] else 'FAIL'}: " + "; ".join(parts) + short)
    say(
        "  (idle level: median of each interval's polls at which only the long-lived processes were running; "
        "'flat': its median over the last third of the post-warm-up samples is no higher than over the "
        "first third)"
    )


# -- the run -----------------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


def stop_everything(run, watch, server, tag) -> dict:
    """SIGTERM to `run` and time to finish its clip; then SIGKILL whatever of its tree is left; the server."""
    report = {"run": "not started", "killed": [], "server": "not started", "left_running": []}
    hurry = threading.Event()

    def on_signal(signum, _frame):
        hurry.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        if run is not None:
            if watch is not None:
                watch.poll()  # its latest children too
            if run.poll() is None:
                run.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + 45  # STOP_TIMEOUT_SECS (30) and some
                while run.poll() is None and time.monotonic() < deadline and not hurry.is_set():
                    time.sleep(0.2)
                    if watch is not None and run.poll() is None:
                        watch.poll()
                if run.poll() is None:
                    run.kill()
                    run.wait()
                    report["run"] = (
                        "killed (still running 45 s after SIGTERM)"
                        if not hurry.is_set()
                        else "killed (hurried)"
                    )
                else:
                    report["run"] = f"stopped by SIGTERM (exit {run.returncode})"
            else:
                report["run"] = f"had exited (code {run.returncode})"
            victims = set(watch.alive_seen() if watch is not None else [])
            victims |= {pid for pid in proc_table() if pid != os.getpid() and has_tag(pid, tag)}
            victims.discard(run.pid)
            end = time.monotonic() + 10  # what is finishing on its own (a hook) gets a moment
            while victims and time.monotonic() < end and not hurry.is_set():
                time.sleep(0.2)
                table = proc_table()
                victims = {p for p in victims if p in table and table[p].state != "Z"}
            for pid in sorted(victims):
                try:
                    os.kill(pid, signal.SIGKILL)
                    report["killed"].append(pid)
                except ProcessLookupError:
                    pass
        if server is not None:
            server.stop()
            report["server"] = "stopped"
        time.sleep(0.3)
        table = proc_table()
        left = {pid for pid in table if pid != os.getpid() and table[pid].state != "Z" and has_tag(pid, tag)}
        if watch is not None:
            left |= {pid for pid in watch.alive_seen() if pid in table and table[pid].state != "Z"}
        if server is not None and server.proc.poll() is None:
            left.add(server.pid)
        report["left_running"] = sorted(left)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return report


def n(v) -> str:
    """A count as it is; a median between two counts with its half."""
    return f"{v:g}" if float(v).is_integer() else f"{v:.1f}"


def sample_line(s: dict) -> str:
    st, idle = s["status"], s["idle"]
    drop = st.get("dropped_frames")
    return (
        f"{s['t_min']:6.2f} {s['pss_mb']:7.1f} {idle['pss_mb']:6.1f} {idle['anon_mb']:6.1f} {s['fds']:4d} "
        f"{n(idle['fds']):>4} {s['threads']:4d} {n(idle['threads']):>4} {s['procs']:5d} "
        f"{n(idle['procs']):>4} "
        f"{'' if s['cpu_pct'] is None else s['cpu_pct']:>5} {s['clips']:5d} {s['segments']:5d} "
        f"{s['hook_runs']:5d} {s['hooks'].get('qr_code', 0):4d} {str(st.get('state')):>9} "
        f"{st.get('fps') or 0:5.1f} {'-' if drop is None else drop:>4} {'*' if st.get('event') else '':>2}"
    )


HEADER = (
    f"{'min':>6} {'PSS MB':>7} {'idle':>6} {'anon':>6} {'fds':>4} {'idle':>4} {'thr':>4} {'idle':>4} "
    f"{'procs':>5} {'idle':>4} {'cpu%':>5} {'clips':>5} {'segs':>5} {'hooks':>5} {'qr':>4} {'state':>9} "
    f"{'fps':>5} {'drop':>4} {'ev':>2}"
)


def main() -> int:
    global OUT
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--minutes", type=float, default=70, help="length of the run (60 or more for the real figure)"
    )
    ap.add_argument("--warmup-minutes", type=float, default=10, help="excluded from the judgement")
    ap.add_argument("--sample-seconds", type=float, default=60, help="one sample (a printed line) this often")
    ap.add_argument(
        "--poll-seconds", type=float, default=1.0, help="the tree is polled this often (idle levels)"
    )
    ap.add_argument("--size", default="640x360", help="scene size WxH")
    ap.add_argument("--fps", type=float, default=15)
    ap.add_argument(
        "--period", type=float, default=15, help="seconds from one walker to the next (scene length)"
    )
    ap.add_argument("--walk-seconds", type=float, default=3, help="how long each walker is in the picture")
    ap.add_argument("--no-qr", action="store_true", help="no QR code in the scene")
    ap.add_argument("--port", type=int, default=0, help="RTSP port (default: a free one)")
    ap.add_argument("--dir", help="make the temporary folder in this folder (default: the system's)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (config, clips, logs)")
    ap.add_argument(
        "--json", action="store_true", help="samples and summary as JSON on stdout (lines on stderr)"
    )
    args = ap.parse_args()
    if args.json:
        OUT = sys.stderr
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        ap.error(f"--size: expected WxH, got {args.size!r}")
    if args.walk_seconds >= args.period * 0.5:
        ap.error(
            "--walk-seconds must be under half of --period, so that each event ends before the next walker"
        )
    if args.sample_seconds < args.poll_seconds:
        ap.error("--sample-seconds must be at least --poll-seconds")

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    work = Path(tempfile.mkdtemp(prefix="nvr-soak-", dir=args.dir))
    logdir, tmpdir, confdir = work / "logs", work / "tmp", work / "conf"
    for d in (logdir, tmpdir, confdir):
        d.mkdir()
    hooklog = work / "hooks.log"
    tag = uuid.uuid4().hex
    server = run = watch = run_out = None
    samples: list = []
    outcome = "completed"
    t_start = time.monotonic()
    try:
        scene = make_scene(
            work / "scene.mp4", (w, h), args.fps, args.period, args.walk_seconds, not args.no_qr
        )
        server = RtspServer(work / "scene.mp4", args.port or free_port(), logdir)
        config = confdir / "soak_config.py"  # a folder of its own: `run` watches the config's folder
        settings = write_config(config, server.url, work, args.period, args.walk_seconds, hooklog)
        video = Path(settings["PATH_FOR_VIDEO"])
        status_file = video / ".status" / f"{CAMERA}.json"
        env = {**os.environ, TAG_VAR: tag, "TMPDIR": str(tmpdir)}
        run_out = open(logdir / "run.out", "w")
        run = subprocess.Popen(
            [sys.executable, "-m", "nvr_cli", "run", "--config", str(config)],
            cwd=str(ROOT),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=run_out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # Ctrl-C reaches us only: we stop it, once
        t_start = time.monotonic()
        watch = TreeWatch(run.pid)
        say(
            f"# nvr-cli soak: {w}x{h} {args.fps:g} fps, a walker for {args.walk_seconds:g} s every "
            f"{args.period:g} s{' with a QR code' if scene['qr'] else ''}, served at {server.url} "
            f"(server pid {server.pid}, not measured)"
        )
        say(
            f"# `nvr-cli run` pid {run.pid}, folder {work}; {args.minutes:g} min, warm-up "
            f"{args.warmup_minutes:g} min, "
            f"a sample every {args.sample_seconds:g} s, the tree polled every {args.poll_seconds:g} s"
        )
        say(
            "# PSS, fds, thr, procs: at the sample and idle (median of the interval's polls with only the "
            "long-lived "
            "processes); anon: idle anonymous PSS; cpu: % of a core over the interval; clips, segs, hooks, "
            "qr: so far; "
            "state, fps, drop, ev (in an event): the worker's status file"
        )
        say(HEADER)
        end = t_start + args.minutes * 60
        next_sample = t_start + args.sample_seconds
        next_poll = t_start
        last_cpu = None
        while True:
            if run.poll() is not None:
                outcome = f"`nvr-cli run` exited on its own (code {run.returncode})"
                break
            if not server.alive():
                outcome = "the RTSP server died"
                break
            snap = watch.poll()
            now = time.monotonic()
            if now >= next_sample or now >= end:
                tot = snap["totals"]
                cpu_pct = 100 * (tot["cpu_s"] - last_cpu[1]) / (now - last_cpu[0]) if last_cpu else None
                last_cpu = (now, tot["cpu_s"])
                roles: dict = {}
                for p in snap["procs"]:
                    r = roles.setdefault(
                        p["role"], {"n": 0, "pss_mb": 0.0, "anon_mb": 0.0, "fds": 0, "threads": 0}
                    )
                    r["n"] += 1
                    r["pss_mb"] = round(r["pss_mb"] + p["pss_kb"] / 1024, 1)
                    r["anon_mb"] = round(r["anon_mb"] + p["anon_kb"] / 1024, 1)
                    r["fds"] += p["fds"]
                    r["threads"] += p["threads"]
                sample = {
                    "t_min": round((now - t_start) / 60, 3),
                    **{k: round(tot[k], 1) if k.endswith("_mb") else tot[k] for k in TreeWatch.KEYS},
                    **watch.interval(),
                    "cpu_pct": None if cpu_pct is None else round(cpu_pct, 1),
                    **count_files(video, tmpdir, hooklog),
                    "status": read_status(status_file),
                    "worker_starts": len(watch.workers),
                    "roles": roles,
                    "processes": [
                        {
                            k: p[k]
                            for k in ("pid", "ppid", "role", "state", "pss_kb", "anon_kb", "fds", "threads")
                        }
                        for p in snap["procs"]
                    ],
                }
                samples.append(sample)
                say(sample_line(sample))
                while next_sample <= now:
                    next_sample += args.sample_seconds
                if now >= end:
                    break
            next_poll += args.poll_seconds
            delay = min(next_poll, next_sample, end) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_poll = time.monotonic()
    except (KeyboardInterrupt, Interrupted) as e:
        outcome = f"interrupted ({str(e) or 'SIGINT'}) after {(time.monotonic() - t_start) / 60:.1f} min"
    except Exception:  # noqa: BLE001 - a bug here must not lose what was measured, nor leave `run` behind
        import traceback

        outcome = "the soak script failed:\n" + traceback.format_exc()
    finally:
        minutes_run = (time.monotonic() - t_start) / 60
        cleanup = stop_everything(run, watch, server, tag)
        if run_out is not None:
            run_out.close()
        problems = log_problems(logdir)
        files_end = count_files(work / "video", tmpdir, hooklog)
        run_tail = (
            (logdir / "run.out").read_text(errors="replace")[-2000:] if (logdir / "run.out").exists() else ""
        )
        if args.keep:
            say(f"# kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    summary = summarise(samples, args.warmup_minutes, args.period)
    summary.update(
        {
            "outcome": outcome,
            "minutes_run": round(minutes_run, 2),
            "cleanup": cleanup,
            "log": problems,
            "files_at_end": files_end,
        }
    )
    if outcome != "completed":
        summary["pass"] = False
    print_summary(summary, minutes_run)
    say(
        f"run: {outcome}; after stopping: {files_end['clips']} clips, {files_end['lossless']} lossless cuts, "
        f"{files_end['segments']} segments, {files_end['video_mb']:g} MB; hook runs {files_end['hooks']}; "
        f"unfinished files left {files_end['unfinished']}"
    )
    if outcome.startswith("`nvr-cli run` exited") and run_tail.strip():
        say("its last output:\n" + run_tail.strip())
    c = problems["counts"]
    say(
        f"log: {c['WARNING']} warnings, {c['ERROR']} errors, {c['CRITICAL']} critical"
        + "".join(f"\n  {x}" for x in problems["examples"])
    )
    say(
        f"cleanup: `run` {cleanup['run']}; killed {cleanup['killed'] or 'nothing'}; server "
        f"{cleanup['server']}; "
        f"left running: {cleanup['left_running'] or 'nothing'}"
    )
    if args.json:
        json.dump(
            {
                "settings": {
                    "size": [w, h],
                    "fps": args.fps,
                    "period": args.period,
                    "walk_seconds": args.walk_seconds,
                    "minutes": args.minutes,
                    "warmup_minutes": args.warmup_minutes,
                    "sample_seconds": args.sample_seconds,
                    "poll_seconds": args.poll_seconds,
                },
                "samples": samples,
                "summary": summary,
            },
            sys.stdout,
            indent=1,
            default=str,
        )
        print()
    if outcome.startswith("interrupted"):
        return 130
    return 0 if summary["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
