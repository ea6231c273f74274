"""The peers, each installed in its own environment by the benchmark itself, and the helpers the
sections share: streams made from the real footage, the RTSP server, CPU and memory of process trees.

DVR-Scan comes from PyPI (`dvr-scan-headless`) into a venv under bench/.peers; Motion from Debian
(`apt-get install motion`, run as its own daemon with a config we write).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the checkout being measured, as its subprocesses get it (PYTHONPATH), not whatever is installed
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
PEERS = ROOT / "bench" / ".peers"
CACHE = ROOT / "bench" / ".cache"
SHARED = ROOT.parent / "shared" / "data" / "video"
SERVER = ROOT / "tests" / "support" / "rtsp_server.py"
DVR_SCAN_VERSION = "1.8.2.1"


def say(msg):
    print(msg, file=sys.stderr, flush=True)


def dvr_scan() -> str:
    """The dvr-scan command, installed from PyPI into bench/.peers/dvr-scan on first use."""
    venv = PEERS / "dvr-scan"
    exe = venv / "bin" / "dvr-scan"
    if not exe.exists():
        say(f"installing dvr-scan-headless {DVR_SCAN_VERSION} into {venv} ...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", f"dvr-scan-headless=={DVR_SCAN_VERSION}"], check=True
        )
    return str(exe)


def motion() -> str:
    """Debian's motion daemon, installed with apt-get on first use (needs root)."""
    exe = shutil.which("motion")
    if not exe:
        say("installing Debian's motion ...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if (
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "motion"], env=env, stdout=subprocess.DEVNULL
            ).returncode
            != 0
        ):
            subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=True)
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "motion"], env=env, stdout=subprocess.DEVNULL, check=True
            )
        exe = shutil.which("motion")
    return exe


def ffmpeg() -> str:
    from nvr_cli.ffmpeg.binary import find_ffmpeg

    return find_ffmpeg()


def stream_file(width: int, height: int, fps: int, source: Path = None) -> Path:
    """The traffic footage as a camera would send it: WxH at fps, H.264, a keyframe a second."""
    source = source or SHARED / "traffic_camera.mp4"
    out = CACHE / f"{source.stem}_{height}p{fps}.mp4"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                ffmpeg(),
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-i",
                str(source),
                "-an",
                "-vf",
                f"scale={width}:{height},fps={fps}",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "23",
                "-g",
                str(fps),
                "-bf",
                "0",
                "-pix_fmt",
                "yuv420p",
                str(out),
            ],
            check=True,
        )
    return out


def quiet_file(width: int, height: int, fps: int, seconds: float = 20.0) -> Path:
    """A still scene (noise, a frame counter in the corner): a camera on which nothing happens."""
    from nvr_cli.runtime.synthetic import Scene

    out = CACHE / f"quiet_{height}p{fps}.mp4"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        Scene(seconds=seconds, fps=fps, size=(width, height), walkers=[]).write(out, ffmpeg())
    return out


class Server:
    """The tests' GStreamer RTSP server (Debian's python3), serving a file in a loop; one mount, shared."""

    def __init__(self, clip: Path, port: int, log_times: Path = None):
        extra = ["--log-times", str(log_times)] if log_times else []
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", str(SERVER), "--file", str(clip), "--port", str(port), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.proc.kill()
            raise SystemExit(f"RTSP server did not start: {line}{self.proc.stderr.read()}")
        self.url = f"rtsp://127.0.0.1:{port}/cam"
        self.pid = self.proc.pid

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- process trees ---------------------------------------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list:
    """pid and all its descendants (a session or a process group would miss workers in their own)."""
    children: dict = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids) -> float:
    """user + system time of these processes and of their children they have waited for."""
    total = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in f[11:15])
    return total / TICK


def pss_mb(pids) -> float:
    """Proportional set size: shared pages split between the processes that share them."""
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class CpuMeter:
    """CPU share of a process tree between start() and stop(), in % of one core."""

    def __init__(self, pid):
        self.pid = pid

    def start(self):
        self.pids = tree(self.pid)
        self.t0, self.c0 = time.monotonic(), cpu_seconds(self.pids)

    def stop(self) -> float:
        pids = tree(self.pid)
        # processes that ended in between are in their parents' child times by now
        used = cpu_seconds(pids) - self.c0
        return 100 * used / (time.monotonic() - self.t0)


def timed(fn, repeat: int) -> dict:
    """Median and 95th percentile of ``repeat`` calls of ``fn``, in ms (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 2),
    }
