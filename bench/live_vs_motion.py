#!/usr/bin/env python3
"""Live cameras: N simultaneous RTSP streams recorded by `nvr-cli run` vs Motion (Debian's daemon, motion
detection + movie output) on the same streams from GStreamer's RTSP server on 127.0.0.1.

    python3 bench/live_vs_motion.py [--seconds S] [--quick]

The streams are the real traffic footage at 720p15 and 1080p25 (H.264, a keyframe a second): busy,
so every tool records all the time. Per run: CPU of the whole process tree (workers, ffmpeg children)
per camera, proportional memory (PSS) per camera, frames analysed against frames the camera sent,
and whether it keeps up (analysed >= 95 %). N grows until a tool stops keeping up.

Frames analysed: ours from each camera's status file (a counter of analysed frames); Motion's from
its movies (it writes every frame it processes: packets / duration), with `framerate` set to the
stream's so it is not capped below it. Ours by default copies the camera's packets into clips and
analyses at most MAX_ANALYSIS_FPS (15) frames a second, so 12.5 of a 25 fps camera's are due; with
EVENT_REENCODE = True every frame is analysed and re-encoded into the clip.
"""

import argparse
import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import CpuMeter, Server, ffmpeg, motion, pss_mb, say, stream_file, tree  # noqa: E402

STREAMS = {"720p15": (1280, 720, 15), "1080p25": (1920, 1080, 25)}


def _count_packets(path: Path) -> tuple:
    r = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
            "stream=nb_read_packets:format=duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    try:
        d = json.loads(r.stdout)
        return int(d["streams"][0]["nb_read_packets"]), float(d["format"]["duration"])
    except (ValueError, KeyError, IndexError):
        return 0, 0.0


def stop(proc):
    """SIGTERM, and the time to finish what it writes."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


class Ours:
    """`nvr-cli run` with CAMERAS; by default clips are the camera's packets, ``reencode``: from the
    frames.
    """

    def __init__(self, reencode=False, every_frame=False):
        self.packets = not reencode
        self.every_frame = every_frame or reencode  # a re-encoded clip needs every frame anyway
        self.variant = reencode or every_frame
        self.name = "nvr-cli run" + (
            " (EVENT_REENCODE = True)" if reencode else " (MAX_ANALYSIS_FPS = 0)" if every_frame else ""
        )

    def start(self, work: Path, url: str, n: int, fps: int):
        cfg = work / "config.py"
        cams = {f"cam{i}": {"cam": url} for i in range(n)}
        cfg.write_text(
            f"CAMERAS = {cams!r}\nPATH_FOR_VIDEO = {str(work / 'video')!r}\n"
            f"STATUS_INTERVAL_SECS = 1.0\nEVENT_REENCODE = {None if self.packets else True}\n"
            f"MAX_ANALYSIS_FPS = {0 if self.every_frame else 15}\n"
        )
        self.work, self.n = work, n
        self.log = open(work / "ours.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nvr_cli", "run", "--config", str(cfg)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        return self.proc.pid

    def expected_fps(self, fps):
        """frames a second it analyses when keeping up: all, or MAX_ANALYSIS_FPS (15) when no clip is
        re-encoded from the frames (the others are decoded only)"""
        return fps if self.every_frame else fps / math.ceil(fps / 15 - 0.01)

    def _status(self) -> list:
        out = []
        for f in sorted((self.work / "video" / ".status").glob("*.json")):
            try:
                out.append(json.loads(f.read_text()))
            except (OSError, ValueError):
                pass
        return out

    def ready(self) -> bool:
        st = self._status()
        return len(st) == self.n and all(s["state"] == "connected" and s["frames"] > 0 for s in st)

    def mark(self):
        self._m0 = {s["camera"]: (s["frames"], s["updated"]) for s in self._status()}

    def analysed_fps(self) -> list:
        """frames analysed per second, per camera, since mark()"""
        out = []
        for s in self._status():
            f0, t0 = self._m0.get(s["camera"], (0, 0))
            out.append((s["frames"] - f0) / (s["updated"] - t0) if s["updated"] > t0 else 0.0)
        return out

    def stop(self):
        stop(self.proc)
        self.log.close()


class Motion:
    def __init__(self, passthrough=False):
        self.passthrough = passthrough
        self.name = "motion" + (" (movie_passthrough)" if passthrough else "")
        self.exe = motion()

    def start(self, work: Path, url: str, n: int, fps: int, size=(1280, 720)):
        self.work, self.n = work, n
        (work / "motion").mkdir(parents=True, exist_ok=True)
        cams = []
        for i in range(n):
            c = work / f"cam{i}.conf"
            c.write_text(
                f"camera_id {i + 1}\ncamera_name cam{i}\nnetcam_url {url}\n"
                f"netcam_params rtsp_transport=tcp\n"
                f"target_dir {work / 'motion' / f'cam{i}'}\n"
            )
            cams.append(c)
        w, h = size
        conf = work / "motion.conf"
        # as close to our defaults as Motion goes: 5 s pre-capture, 2 s post-capture, movies on
        conf.write_text(
            "\n".join(
                [
                    "daemon off",
                    "setup_mode off",
                    f"log_file {work / 'motion.log'}",
                    "log_level 6",
                    f"width {w}",
                    f"height {h}",
                    f"framerate {fps}",
                    "threshold 1500",
                    "minimum_motion_frames 3",
                    "event_gap 10",
                    f"pre_capture {5 * fps}",
                    f"post_capture {2 * fps}",
                    "picture_output off",
                    "movie_output on",
                    "movie_max_time 0",
                    "movie_codec mkv",
                    f"movie_passthrough {'on' if self.passthrough else 'off'}",
                    "webcontrol_port 0",
                    "stream_port 0",
                    "text_right",
                    "text_left",
                    *[f"camera {c}" for c in cams],
                ]
            )
            + "\n"
        )
        self.proc = subprocess.Popen(
            [self.exe, "-n", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return self.proc.pid

    def expected_fps(self, fps):
        return fps

    def _movies(self) -> list:
        return [p for p in (self.work / "motion").rglob("*") if p.is_file() and p.suffix in (".mkv", ".mp4")]

    def ready(self) -> bool:
        return len({p.parent for p in self._movies()}) >= self.n  # every camera has an event going

    def mark(self):
        pass

    def stop(self):
        stop(self.proc)

    def analysed_fps(self) -> list:
        """per camera: frames in its movies / their duration (read after stop(), when they are complete)"""
        out = []
        for i in range(self.n):
            frames = seconds = 0
            for p in (self.work / "motion" / f"cam{i}").glob("*"):
                f, s = _count_packets(p)
                frames, seconds = frames + f, seconds + s
            out.append(frames / seconds if seconds else 0.0)
        return out


def measure(tool, url, n, fps, size, seconds, server_pid) -> dict:
    work = Path(tempfile.mkdtemp(prefix="nvr-bench-"))
    try:
        kwargs = {"size": size} if isinstance(tool, Motion) else {}
        pid = tool.start(work, url, n, fps, **kwargs)
        deadline = time.monotonic() + 30
        while not tool.ready() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # past the connect burst
        tool.mark()
        meter, server = CpuMeter(pid), CpuMeter(server_pid)
        meter.start()
        server.start()
        time.sleep(seconds)
        pss = pss_mb(tree(pid))
        cpu = meter.stop()
        server_cpu = server.stop()
        rates = tool.analysed_fps() if isinstance(tool, Ours) else None
        tool.stop()
        if rates is None:
            rates = tool.analysed_fps()
        rates = rates or [0.0]
        share = min(rates) / tool.expected_fps(fps)
        return {
            "tool": tool.name,
            "n": n,
            "cpu_per_cam": cpu / n,
            "pss_per_cam": pss / n,
            "analysed_fps_min": min(rates),
            "fps": fps,
            "expected": tool.expected_fps(fps),
            "share": share,
            "keeps_up": share >= 0.95,
            "server_cpu": server_cpu,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


LADDER = {"720p15": [1, 2, 4, 6, 8, 10, 12, 16], "1080p25": [1, 2, 3, 4, 6, 8]}


def run(seconds=15.0, ladder=None, tools=None):
    """Each tool at growing N until it stops keeping up; the variants (re-encode, passthrough) at N=1 only."""
    ladder = ladder or LADDER
    tools = tools or [Ours(), Motion(), Ours(every_frame=True), Ours(reencode=True), Motion(passthrough=True)]
    rows = []
    for label, (w, h, fps) in STREAMS.items():
        clip = stream_file(w, h, fps)
        server = Server(clip, 18600 + h)
        try:
            for tool in tools:
                variant = getattr(tool, "variant", False) or getattr(tool, "passthrough", False)
                for n in ladder[label][:1] if variant else ladder[label]:
                    say(f"live {label}: {tool.name} x{n} ...")
                    r = measure(tool, server.url, n, fps, (w, h), seconds, server.pid)
                    r["stream"] = label
                    rows.append(r)
                    say(
                        f"   {r['cpu_per_cam']:.1f} % CPU/camera, {r['pss_per_cam']:.0f} MB/camera, "
                        f"{r['analysed_fps_min']:.1f} of {r['expected']:g} fps analysed"
                    )
                    if not r["keeps_up"]:
                        break
        finally:
            server.stop()
    return rows


def report(rows):
    print("\n## Live RTSP cameras: nvr-cli run vs Motion (same streams, same run)\n")
    print(
        "| stream | tool | cameras | CPU % of a core per camera | PSS MB per camera | analysed fps (slowest "
        "camera) / due "
        "| keeps up | RTSP server CPU % |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['stream']} | {r['tool']} | {r['n']} | {r['cpu_per_cam']:.1f} | {r['pss_per_cam']:.0f} | "
            f"{r['analysed_fps_min']:.1f} / {r['expected']:g} of {r['fps']} | "
            f"{'yes' if r['keeps_up'] else 'no'} | {r['server_cpu']:.0f} |"
        )
    print()
    for stream in STREAMS:
        sub = [r for r in rows if r["stream"] == stream]
        names = list(dict.fromkeys(r["tool"] for r in sub))
        best = {t: max([r["n"] for r in sub if r["tool"] == t and r["keeps_up"]], default=0) for t in names}
        # kept up at every step tried: the limit is beyond the ladder
        more = {t: all(r["keeps_up"] for r in sub if r["tool"] == t) for t in names}
        one = {
            t: next((r["cpu_per_cam"] for r in sub if r["tool"] == t and r["n"] == 1), None) for t in names
        }
        ref = "motion" if "motion" in names else None
        for t in names:
            ratio = (
                f", CPU per camera at N=1 {one[t] / one[ref]:.2f}× Motion's"
                if ref and one[t] and one[ref]
                else ""
            )
            print(f"- {stream}: {t} keeps up with {'at least ' if more[t] else ''}{best[t]} camera(s){ratio}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--quick", action="store_true", help="N = 1, 2 at 720p15 and 1 at 1080p25")
    args = ap.parse_args()
    ffmpeg()
    report(run(args.seconds, {"720p15": [1, 2], "1080p25": [1]} if args.quick else None))


if __name__ == "__main__":
    main()
