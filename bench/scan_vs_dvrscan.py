#!/usr/bin/env python3
"""File scan: `nvr-cli scan` vs `dvr-scan -so` (PyPI, its own venv) vs OpenCV decode-only, the ceiling.

    python3 bench/scan_vs_dvrscan.py [FILE ...] [--repeat N]   (default: ../shared traffic_camera.mp4)

Each is a whole command, start-up included, as a user runs it; the best of N runs counts. With
default settings, then with the same region (traffic_camera's lower-right lane, where cars come in
three bursts). fps = the file's frames / wall time.
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import SHARED, dvr_scan, say  # noqa: E402

# traffic_camera.mp4's lower-right rectangle (shared/README.md): cars only in three bursts
REGIONS = {"traffic_camera.mp4": [(631, 532), (841, 532), (841, 659), (631, 659)]}

DECODE = """
import sys, cv2
cap = cv2.VideoCapture(sys.argv[1])
n = 0
while cap.read()[0]:
    n += 1
print(n)
"""


def timed(cmd) -> tuple:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed: {r.stderr.strip()[-500:]}")
    return time.perf_counter() - t, r.stdout + r.stderr


def best(cmd, repeat) -> tuple:
    runs = [timed(cmd) for _ in range(repeat)]
    return min(runs, key=lambda r: r[0])


def ours(path, region, repeat, extra=()):
    cmd = [sys.executable, "-m", "nvr_cli", "scan", str(path), "--json", *extra]
    if region:
        cmd += ["--region", " ".join(f"{x},{y}" for x, y in region)]
    wall, out = best(cmd, repeat)
    data = json.loads(out.strip().splitlines()[-1])
    return wall, [(round(e["start"], 1), round(e["end"], 1)) for e in data["events"]]


def dvr(exe, path, region, repeat):
    cmd = [exe, "-i", str(path), "-so", "--ignore-user-config"]
    if region:
        cmd += ["-a"] + [str(v) for xy in region for v in xy]
    wall, out = best(cmd, repeat)
    return wall, [(round(a, 1), round(b, 1)) for a, b in dvr_events(out)]


def dvr_events(out: str) -> list:
    """(start, end) in seconds of each event in `dvr-scan -so`'s output (its comma-separated timecodes)."""
    m = re.search(r"Comma-separated timecode values:\s*\n([0-9:.,]*)", out)
    if not m or not m.group(1):
        return []
    stamps = [
        sum(float(p) * 60**i for i, p in enumerate(reversed(t.split(":")))) for t in m.group(1).split(",")
    ]
    return list(zip(stamps[::2], stamps[1::2]))


# DVR-Scan's defaults: 1.5 s before an event, 2 s after the last motion, no motion window
DVR_TIMING = ["--pre-alarm", "1.5", "--post-capture", "2", "--motion-duration", "0"]


def run(files, repeat=3):
    exe = dvr_scan()
    rows = []
    for f in files:
        wall, out = best([sys.executable, "-c", DECODE, str(f)], repeat)
        frames = int(out.split()[0])
        region = REGIONS.get(f.name)
        cases = [
            ("default", None, [], True),
            ("default, every frame analysed", None, ["--max-analysis-fps", "0"], False),
        ]
        if region:
            cases += [
                ("region", region, [], True),
                ("region, DVR-Scan's event timing", region, DVR_TIMING, False),
            ]
        peer = None
        for label, reg, extra, new_peer in cases:
            say(f"scan: {f.name} ({label}) ...")
            ow, oe = ours(f, reg, repeat, extra)
            if new_peer:
                peer = dvr(exe, f, reg, repeat)
            dw, de = peer
            rows.append(
                {
                    "file": f.name,
                    "settings": label,
                    "frames": frames,
                    "decode_fps": frames / wall,
                    "ours_fps": frames / ow,
                    "dvr_fps": frames / dw,
                    "ours_events": oe,
                    "dvr_events": de,
                }
            )
    return rows


def report(rows):
    print(
        "\n## File scan: nvr-cli scan vs dvr-scan -so vs OpenCV decode-only (whole commands, best of runs)\n"
    )
    print(
        "dvr-scan runs with its defaults, or with the same region (-a); 'every frame analysed' and "
        "'DVR-Scan's event "
        "timing' are ours only, beside the same dvr-scan run.\n"
    )
    print(
        "| file | settings | decode fps | nvr-cli fps | dvr-scan fps | nvr-cli / dvr-scan | nvr-cli / "
        "decode | "
        "events nvr-cli | events dvr-scan |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ev = lambda es: " ".join(f"{a:g}–{b:g}" for a, b in es) or "none"  # noqa: E731
        print(
            f"| {r['file']} | {r['settings']} | {r['decode_fps']:.0f} | {r['ours_fps']:.0f} | "
            f"{r['dvr_fps']:.0f} | "
            f"{r['ours_fps'] / r['dvr_fps']:.1f}× | {r['ours_fps'] / r['decode_fps']:.2f} | "
            f"{len(r['ours_events'])}: {ev(r['ours_events'])} | {len(r['dvr_events'])}: "
            f"{ev(r['dvr_events'])} |"
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    files = args.files or [SHARED / "traffic_camera.mp4"]
    missing = [f for f in files if not f.exists()]
    if missing:
        sys.exit(f"{missing[0]}: not found (needs ../shared beside the project, or FILE arguments)")
    report(run(files, args.repeat))


if __name__ == "__main__":
    main()
