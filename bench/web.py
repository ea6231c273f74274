#!/usr/bin/env python3
"""The review page's index (issue 14): 100,000 events over 30 days and 10 cameras.

    python3 bench/web.py [--json] [--events N] [--days D] [--cameras C] [--repeat R] [--fresh]

Generates event sidecars (realistic ones, with their settings block: ~1.7 kB each), empty clips, a
thumbnail for nine events in ten, and continuous recording (10-minute segments, empty files, in each
day's segments.jsonl, with a few gaps), once, into bench/.cache/web-<N>-<D>-<C>/ (--fresh makes it
again). Then it measures the index (nvr_cli/storage/catalog.py): a cold build, an incremental build
with nothing new, and the queries the page makes, each repeated (median and 95th percentile, ms):
the first events page, a filtered page (one camera, a label, a minimum score), the page after a
cursor, a day's timeline of one camera, the days list, one event. Targets: each page and the
timeline under 100 ms.

``serve_figures`` is the hook for the HTTP side (the same calls through `nvr-cli serve`, and the
server's CPU while a browser plays a clip): it returns rows in the same shape, or none yet.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from nvr_cli.storage.catalog import Catalog  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import timed  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
LABELS = [("person", 0.30), ("car", 0.20), ("dog", 0.05), ("bicycle", 0.05)]  # the rest: motion only
FIRST_DAY = dt.date(2026, 10, 1)
SETTINGS = {  # what a sidecar's "settings" block holds (its size matters to reading it)
    "MOTION_FRAME_WIDTH": 500,
    "scaleFrameTo": None,
    "MOTION_BLUR_SIZE": 21,
    "MOTION_PIXEL_THRESHOLD": 25,
    "MOTION_DILATE_ITERATIONS": 8,
    "MOTION_ERODE_ITERATIONS": 4,
    "MOTION_MIN_SCORE": 0.003,
    "MOTION_MIN_CONTOUR_AREA": 150,
    "MOTION_TRIGGER_FRAMES": 3,
    "LIGHTING_REJECT": True,
    "MASKS": ["0,0 330,0 330,26 0,26"],
    "REGIONS": [],
    "MINIMAL_MOTION_DURATION": 2.0,
    "PRE_ALARM_RECORDING_SECONDS": 3.0,
    "POST_CAPTURE_SECONDS": 1.0,
    "MIN_EVENT_SECONDS": 0.0,
    "MAX_CLIP_SECONDS": 600.0,
    "OBJECT_MODEL": "ssd_mobilenet_v2",
    "OBJECT_CONFIRM": "tag",
    "OBJECT_LABELS_OF_INTEREST": ["person", "car"],
    "OBJECT_MIN_SCORE": 0.5,
    "QR_ENABLED": True,
}


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


def _stamp(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y%m%d-%H%M%S")


def sidecar(camera: str, start: float, rng: random.Random, n: int) -> dict:
    """A sidecar as the recorder writes one (README "Event fields")."""
    duration = round(rng.uniform(4, 40), 3)
    end = start + duration
    roll, objects, acc = rng.random(), [], 0.0
    for label, share in LABELS:
        acc += share
        if roll < acc:
            score = round(rng.uniform(0.5, 0.97), 4)
            objects.append(
                {"label": label, "score": score, "box": [120, 80, 60, 140], "first_seen": _iso(start + 3.2)}
            )
            break
    qr = [{"payload": f"PARCEL-{n:06d}", "box": [10, 10, 80, 80], "seen": _iso(start + 4)}] * (
        rng.random() < 0.02
    )
    peak = round(rng.uniform(0.004, 0.2), 5)
    return {
        "camera": camera,
        "source": "rtsp://admin:***@10.0.0.5/main",
        "event": n,
        "part": 1,
        "kind": "qr" if qr and not objects else "motion",
        "kept": True,
        "start": _iso(start),
        "end": _iso(end),
        "trigger": _iso(start + 3),
        "duration_seconds": duration,
        "pre_alarm_seconds": 3.0,
        "frames": int(duration * 15),
        "frames_lost": 0,
        "peak_score": peak,
        "motion_seconds": round(duration - 4, 3),
        "motion_frames": int((duration - 4) * 15),
        "motion_box": [0, 92, 640, 248],
        "peak_boxes": [[471, 98, 76, 149]],
        "end_reason": "motion ended",
        "labels": [o["label"] for o in objects],
        "objects": objects,
        "qr": qr,
        "clip": None,  # set by the caller, which knows the name
        "duration": duration,
        "score": peak,
        "thumbnail": None,
        "fps": 15.0,
        "width": 1280,
        "height": 720,
        "error": None,
        "encoding": "camera packets",
        "settings": SETTINGS,
    }


def generate(root: Path, events: int, days: int, cameras: int, seed: int = 14) -> None:
    """Event sidecars (+ empty clips, thumbnails) and continuous segments under ``root``."""
    rng = random.Random(seed)
    names = [f"cam{i:02d}" for i in range(cameras)]
    per_day = events // (days * cameras)
    extra = events - per_day * days * cameras
    n = 0
    for d in range(days):
        day = FIRST_DAY + dt.timedelta(days=d)
        midnight = dt.datetime.combine(day, dt.time()).timestamp()
        next_midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time()).timestamp()
        for ci, camera in enumerate(names):
            folder = root / camera / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"
            folder.mkdir(parents=True, exist_ok=True)
            count = per_day + (1 if d * cameras + ci < extra else 0)
            starts = sorted(rng.uniform(midnight, next_midnight - 60) for _ in range(count))
            for start in starts:
                n += 1
                stem = f"{camera}_{_stamp(start)}"
                k = 0
                while (folder / f"{stem}.json").exists():
                    k += 1
                    stem = f"{camera}_{_stamp(start)}-{k}"
                data = sidecar(camera, start, rng, n)
                data["clip"] = f"{stem}.mp4"
                (folder / f"{stem}.mp4").touch()
                if rng.random() < 0.9:
                    (folder / f"{stem}.jpg").touch()
                    data["thumbnail"] = f"{stem}.jpg"
                (folder / f"{stem}.json").write_text(json.dumps(data, indent=2))
            lines, t = [], midnight
            while t < next_midnight:
                if rng.random() < 0.01:  # a gap of 5 to 30 minutes now and then
                    hole = rng.uniform(300, 1800)
                    lines.append(
                        {"gap": True, "start": t, "end": t + hole, "reason": "recording was interrupted"}
                    )
                    t += hole
                seg_end = min(t + 600, next_midnight)
                name = f"{camera}_{_stamp(t)}.seg.mp4"
                (folder / name).touch()
                lines.append(
                    {"file": name, "start": round(t, 3), "end": round(seg_end, 3), "size": 0, "valid": True}
                    | {"partial": False}
                )
                t = seg_end
            (folder / "segments.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def storage(events: int, days: int, cameras: int, fresh: bool) -> Path:
    """The generated storage root (made once, kept in bench/.cache)."""
    root = CACHE / f"web-{events}-{days}-{cameras}"
    done = root / ".complete"
    if fresh and root.exists():
        shutil.rmtree(root)
    if not done.exists():
        if root.exists():
            shutil.rmtree(root)
        t = time.monotonic()
        print(
            f"generating {events} events over {days} days and {cameras} cameras in {root} ...",
            file=sys.stderr,
        )
        generate(root, events, days, cameras)
        done.write_text(json.dumps({"seconds": round(time.monotonic() - t, 1)}))
    return root


def catalog_figures(root: Path, repeat: int) -> dict:
    """Build times and query times of the index over the storage ``root``."""
    db = root / ".nvr-index.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    cat = Catalog(db, {}, more_roots=[root])
    try:
        t = time.monotonic()
        cold = cat.build()
        cold_s = time.monotonic() - t
        t = time.monotonic()
        noop = cat.build()
        noop_s = time.monotonic() - t
        t = time.monotonic()
        full = cat.build(full=True)
        full_s = time.monotonic() - t
        cams = cat.cameras()
        days = cat.days()
        busy_day = days[len(days) // 2]["day"]
        first, cursor = cat.events(limit=50)
        some = first[0]["id"]
        queries = {
            "first events page (50)": lambda: cat.events(limit=50),
            "filtered page (camera, person, min_score 0.8)": lambda: cat.events(
                cameras=[cams[3]], labels=["person"], min_score=0.8, limit=50
            ),
            "filtered page (2 cameras, qr)": lambda: cat.events(cameras=cams[:2], labels=["qr"], limit=50),
            "worst case: a label no event has": lambda: cat.events(labels=["giraffe"], limit=50),
            "unreviewed, a day": lambda: cat.events(day=busy_day, reviewed=False, limit=50),
            "next page (cursor)": lambda: cat.events(limit=50, cursor=cursor),
            "day timeline (one camera)": lambda: cat.timeline(cams[3], busy_day),
            "days (calendar)": lambda: cat.days(),
            "one event": lambda: cat.event(some),
            "camera summary": lambda: cat.camera_summary(cams[3], busy_day),
        }
        rows = {name: timed(fn, repeat) for name, fn in queries.items()}
    finally:
        cat.close()
    return {
        "events": cold["events"],
        "segments": cold["segments"],
        "files_read": cold["read"],
        "index_mb": round(db.stat().st_size / 2**20, 1),
        "build_cold_s": round(cold_s, 2),
        "build_noop_s": round(noop_s, 3),
        "build_full_relist_s": round(full_s, 2),
        "full_relist_read": full["read"],
        "noop_read": noop["read"],
        "queries": rows,
    }


def serve_figures(root: Path, repeat: int) -> dict | None:
    """Hook for the server's figures: the same queries through `nvr-cli serve` over HTTP (and its CPU
    while a browser plays a clip), as {"queries": {name: {"median_ms", "p95_ms"}}, ...}: bench/web_http.py."""
    from web_http import serve_figures as measured

    return measured(root, repeat)


def report(figures: dict) -> None:
    c = figures["catalog"]
    print(f"# web index, {figures['when']}, {figures['host']}, {figures['cores']} cores")
    print()
    print(
        f"{c['events']} events, {c['segments']} segments; index {c['index_mb']} MB; "
        f"cold build {c['build_cold_s']} s ({c['files_read']} files read), "
        f"nothing new {c['build_noop_s'] * 1000:.0f} ms, "
        f"every folder listed again {c['build_full_relist_s']} s"
    )
    print()
    print("| query (index, in process) | median ms | p95 ms |")
    print("|---|---:|---:|")
    for name, r in c["queries"].items():
        print(f"| {name} | {r['median_ms']} | {r['p95_ms']} |")
    http = figures.get("http")
    if http:
        print()
        print("| query (HTTP) | median ms | p95 ms |")
        print("|---|---:|---:|")
        for name, r in http["queries"].items():
            print(f"| {name} | {r['median_ms']} | {r['p95_ms']} |")
        play = http.get("playing")
        if play:
            print()
            print(
                f"`nvr-cli serve` ready {http['ready_s']} s after start (index up to date); its CPU while "
                f"{play['player']} plays a {play['seconds']} s clip ({play['clip_mb']} MB): "
                f"{play['server_cpu_percent']} % of one core"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--cameras", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=50, help="calls per query")
    ap.add_argument("--fresh", action="store_true", help="generate the storage again")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()
    root = storage(args.events, args.days, args.cameras, args.fresh)
    figures = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "host": platform.node(),
        "cores": len(os.sched_getaffinity(0)),
        "catalog": catalog_figures(root, args.repeat),
        "http": serve_figures(root, args.repeat),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        report(figures)


if __name__ == "__main__":
    main()
