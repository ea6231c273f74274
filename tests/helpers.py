"""Helpers shared by the tests: real subprocesses, real decoders, a real RTSP server."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from nvr_cli.ffmpeg.binary import find_ffmpeg  # noqa: F401  (re-exported for conftest)
from nvr_cli.runtime.synthetic import NUMBER_MASK, Scene  # noqa: F401  (re-exported for the tests)

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
RTSP_SERVER = Path(__file__).parent / "support" / "rtsp_server.py"
DEBIAN_PYTHON = "/usr/bin/python3"


def shared(*parts) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (../shared is absent): skipping this real-footage case")
    return path


def run_cli(*args, env=None, timeout=120, check=None):
    """Run the real console entry point in a subprocess."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run(
        [sys.executable, "-m", "nvr_cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
    return proc


def clips(root: Path):
    """Finished MP4 files: no parts, nothing hidden (staging folders, temporary remuxes)."""
    root = Path(root)
    return sorted(
        p
        for p in root.rglob("*.mp4")
        if not p.name.endswith(".part.mp4") and not any(x.startswith(".") for x in p.relative_to(root).parts)
    )


def decode_all(path):
    """Every frame of a video, through OpenCV."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    return frames


def ffprobe(path) -> dict:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,pix_fmt,nb_read_frames,width,height:format=duration,format_name",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def video_packets(path) -> list:
    """(size, keyframe) of each video packet, in decode order."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=size,flags",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [(int(size), "K" in flags) for size, flags in (line.split(",")[:2] for line in out.split())]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rtsp_available() -> bool:
    if not Path(DEBIAN_PYTHON).exists():
        return False
    probe = subprocess.run(
        [
            DEBIAN_PYTHON,
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer",
        ],
        capture_output=True,
    )
    return probe.returncode == 0


class RtspServer:
    """GStreamer's RTSP server in its own process, serving a file in a loop at real-time pace."""

    def __init__(self, clip, user=None, password=None, path="/cam", protocols=None):
        self.port = free_port()
        self.cmd = [
            DEBIAN_PYTHON,
            str(RTSP_SERVER),
            "--file",
            str(clip),
            "--port",
            str(self.port),
            "--path",
            path,
        ]
        if user:
            self.cmd += ["--user", user, "--password", password]
        if protocols:  # "tcp" or "udp": the only RTSP transport it accepts
            self.cmd += ["--protocols", protocols]
        self.start()
        cred = f"{user}:{password}@" if user else ""
        self.url = f"rtsp://{cred}127.0.0.1:{self.port}{path}"

    def start(self):
        """Start (again, on the same port); returns time.monotonic() when it accepts clients."""
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.proc.kill()
            raise RuntimeError(f"RTSP server did not start: {line}{self.proc.stderr.read()}")
        self.ready_at = time.monotonic()
        return self.ready_at

    def kill(self):
        """SIGKILL: the camera vanishes mid-stream, no goodbye."""
        self.proc.kill()
        self.proc.wait()

    def toggle_stall(self):
        self.proc.send_signal(signal.SIGUSR1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for(predicate, timeout, interval=0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


class LineCollector:
    """Reads a process's stderr on a thread, keeping each line with its arrival time."""

    def __init__(self, stream):
        import threading

        self.lines = []
        self._t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._t.start()

    def _run(self, stream):
        for line in stream:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def text(self) -> str:
        return "\n".join(text for _, text in self.lines)

    def first_after(self, t0: float, needle: str):
        """Arrival time of the first line containing ``needle`` that came after ``t0``."""
        for t, line in list(self.lines):
            if t >= t0 and needle in line:
                return t
        return None

    def join(self, timeout=10):
        self._t.join(timeout)


FAULTS = {"faults injected": 0, "clips checked": 0, "worst resume seconds": 0.0, "frames lost in clips": 0}


def record_fault(n=1):
    FAULTS["faults injected"] += n


def check_clip(path) -> int:
    """Every frame the sidecar promises decodes; returns the frame count. Counts into the summary."""
    side = json.loads(Path(path).with_suffix(".json").read_text())
    frames = decode_all(path)
    probe = ffprobe(path)
    FAULTS["clips checked"] += 1
    FAULTS["frames lost in clips"] += max(0, side["frames"] - len(frames)) + side.get("frames_lost", 0)
    assert len(frames) == side["frames"] == int(probe["streams"][0]["nb_read_frames"]), (
        path,
        len(frames),
        side["frames"],
        probe["streams"][0]["nb_read_frames"],
    )
    assert side.get("frames_lost", 0) == 0 or side.get("error"), "frames lost without saying so"
    return len(frames)


def start_recorder(url, out, *extra, name="gate", group=False):
    """`nvr-cli record` of a camera showing the walking scene, tuned for quick events; returns
    (process, LineCollector of its stderr). ``group``: in a session of its own."""
    cmd = [
        sys.executable,
        "-m",
        "nvr_cli",
        "record",
        url,
        "--output",
        str(out),
        "--name",
        name,
        "--mask",
        NUMBER_MASK,
        "--initial-wait",
        "0.5",
        "--pre-alarm",
        "1",
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
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=group
    )
    return proc, LineCollector(proc.stderr)


def run_until(proc, predicate, timeout, message):
    """Wait for ``predicate`` while ``proc`` records, then stop it with SIGTERM; returns its (stdout,
    stderr).
    """
    try:
        assert wait_for(predicate, timeout=timeout), message
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def mount_tmpfs(folder: Path, size: str) -> Path:
    """A real, small file system for full-disk cases (needs root; skips, saying so, elsewhere)."""
    folder.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip()}): the full-disk case needs root")
    return folder


def unmount(folder: Path):
    subprocess.run(["umount", "-l", str(folder)], check=False)


def pid_alive(pid) -> bool:
    """A running process; a zombie (killed, not yet reaped by a parent that is gone) is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def terminate(proc, timeout=60):
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def descendants(pid) -> list:
    """Every process below ``pid`` (children in sessions of their own too)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def power_cut(pid):
    """SIGKILL a process and everything it started at once, as a power cut would: ffmpeg children in
    sessions of their own (so that a terminal's Ctrl-C spares them) included."""
    victims = descendants(pid)
    for p in [pid, *victims]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
