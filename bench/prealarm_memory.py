#!/usr/bin/env python3
"""Pre-alarm memory: one 1080p25 RTSP camera with 5 s of pre-alarm, on a still scene (no events, so
the buffer stays full), against the same camera with no pre-alarm; and Motion with 5 s of pre_capture.

    python3 bench/prealarm_memory.py [--seconds S]

Buffer = proportional memory (PSS) of the whole process tree (ffmpeg children included) less the
same tool's with no pre-alarm. CPU = % of one core over the measuring window, tree-wide.
"""

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import CpuMeter, Server, ffmpeg, motion, pss_mb, quiet_file, say, tree  # noqa: E402

from nvr_cli.runtime.synthetic import NUMBER_MASK  # noqa: E402

W, H, FPS = 1920, 1080, 25


def ours(url, work, pre, packets):
    cmd = [
        sys.executable,
        "-m",
        "nvr_cli",
        "record",
        url,
        "--output",
        str(work),
        "--name",
        "cam",
        "--mask",
        NUMBER_MASK,
        "--pre-alarm",
        str(pre),
        "--pre-alarm-max-mb",
        "4096",
    ]
    if not packets:
        cmd.append("--reencode")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def motion_proc(url, work, pre):
    conf = work / "motion.conf"
    conf.write_text(
        "\n".join(
            [
                "daemon off",
                f"log_file {work / 'motion.log'}",
                f"width {W}",
                f"height {H}",
                f"framerate {FPS}",
                f"netcam_url {url}",
                "netcam_params rtsp_transport=tcp",
                f"target_dir {work}",
                f"pre_capture {pre * FPS}",
                "movie_output on",
                "picture_output off",
                "webcontrol_port 0",
                "stream_port 0",
            ]
        )
        + "\n"
    )
    return subprocess.Popen(
        [motion(), "-n", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def measure(start, settle, seconds) -> tuple:
    work = Path(tempfile.mkdtemp(prefix="nvr-bench-"))
    proc = start(work)
    try:
        time.sleep(settle)  # connected and the buffer full (5 s), with a margin
        meter = CpuMeter(proc.pid)
        meter.start()
        samples = []
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            samples.append(pss_mb(tree(proc.pid)))
            time.sleep(1)
        return max(samples), meter.stop()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def run(seconds=10.0):
    server = Server(quiet_file(W, H, FPS), 18700)
    url = server.url
    rows = []
    try:
        cases = [
            ("nvr-cli record", "none", lambda w: ours(url, w, 0, True)),
            ("nvr-cli record", "5 s, camera packets", lambda w: ours(url, w, 5, True)),
            ("nvr-cli record --reencode", "none", lambda w: ours(url, w, 0, False)),
            ("nvr-cli record --reencode", "5 s, decoded frames", lambda w: ours(url, w, 5, False)),
            ("motion", "none", lambda w: motion_proc(url, w, 0)),
            ("motion", "5 s (pre_capture 125)", lambda w: motion_proc(url, w, 5)),
        ]
        for tool, pre, start in cases:
            say(f"pre-alarm: {tool}, {pre} ...")
            pss, cpu = measure(start, 9, seconds)
            rows.append({"tool": tool, "pre": pre, "pss": pss, "cpu": cpu})
    finally:
        server.stop()
    return rows


def report(rows):
    print(f"\n## Pre-alarm memory: one {W}x{H} {FPS} fps camera, 5 s before the trigger\n")
    print(
        "| tool | pre-alarm | PSS MB (tree) | buffer MB (vs none) | CPU % of a core | CPU cost of the "
        "buffer |"
    )
    print("|---|---|---|---|---|---|")
    base = {}
    for r in rows:
        if r["pre"] == "none":
            base[r["tool"]] = r
            print(f"| {r['tool']} | none | {r['pss']:.0f} | – | {r['cpu']:.1f} | – |")
        else:
            b = base[r["tool"]]
            print(
                f"| {r['tool']} | {r['pre']} | {r['pss']:.0f} | {r['pss'] - b['pss']:.0f} | {r['cpu']:.1f} | "
                f"{r['cpu'] - b['cpu']:+.1f} points |"
            )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    ffmpeg()
    report(run(args.seconds))


if __name__ == "__main__":
    main()
