#!/usr/bin/env python3
"""Detection quality (issue 17): the events each recorder keeps in the shared clips, graded against our
own annotations in bench/quality/<clip>.json (how they were made: bench/quality/README.md).

    python3 bench/quality.py [--only CLIP ...] [--json] [--previous REV] [--fresh]

For each annotated clip, side by side in one run:
  ours            `python -m nvr_cli scan FILE --json` of this tree
  previous        the same on the tree at PREVIOUS (git archive, extracted once into bench/.cache)
  dvr-scan        DVR-Scan with its defaults (`dvr-scan -i FILE -so --ignore-user-config`)
  ours+model      ours with the SSD model and --confirm require, wanting people and vehicles
  previous+model  previous with the same
Only kept events count. Grades, per clip and summed over the clips:
  recall          must events hit / must events; hit = some kept event's recorded span overlaps it by at
                  least min(HIT_OVERLAP, half its length)
  false events    kept events whose motion span is TOLERANCE or more away from every annotated event
  quiet recorded  recorded seconds in the quiet time (the clip minus each annotated event widened by GUARD
                  on both sides) / quiet seconds
and the seconds recorded in night_ir.mp4's insect-only stretch. Ours is re-measured every time; DVR-Scan's
and previous's results are cached in bench/.cache/quality (keyed by clip, version or commit, model, the
file's mtime); --fresh ignores that cache.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import CACHE, DVR_SCAN_VERSION, ROOT, SHARED, dvr_scan, say  # noqa: E402
from scan_vs_dvrscan import dvr_events  # noqa: E402

ANNOTATIONS = ROOT / "bench" / "quality"
MODELS = SHARED.parent / "models"
MODEL = MODELS / "ssd_mobilenet_v1_1_metadata_1.tflite"
LABELS = MODELS / "labelmap.txt"

# The project's defaults before the motion detector's change (tracks): the commit before it.
PREVIOUS = "c9b59a9"

# Grading (seconds)
HIT_OVERLAP = 1.0  # a must event is hit by a recorded span overlapping it this much (or half its length)
TOLERANCE = 2.0  # a kept event whose motion span is this far or more from every annotated event is false
GUARD = 5.0  # around each annotated event, time that is not quiet (a recorder may keep a few seconds)
# Our events' motion span: the recorded span less the pre-alarm before the trigger and, at the end, the
# motion window and post-capture (MINIMAL_MOTION_DURATION + POST_CAPTURE_SECONDS, read from each tree;
# these are the defaults, used when a tree's settings cannot be read).
DEFAULT_POST = 10.0 + 2.0
# End reasons of events that did not close for lack of motion: their span runs to their recorded end.
CUT_REASONS = ("end", "maximum clip length", "stopped")
# DVR-Scan's defaults: it records 1.5 s before the first motion and 2 s after the last.
DVR_PRE, DVR_POST = 1.5, 2.0
INSECT_CLIP = "night_ir.mp4"  # its last non_event is the insect-only stretch, reported on its own

# The targets, checked for ours and ours+model
TARGET_RECALL = 0.95
TARGET_FALSE = 0
TARGET_QUIET_SHARE = 0.15
TARGET_INSECT_SECONDS = 0.0

RUNS = ("ours", "previous", "dvr-scan", "ours+model", "previous+model")
# The +model runs want what the annotated events are about, one set for every clip: people and vehicles
MODEL_OBJECTS = "person,bicycle,car,motorcycle,bus,truck"


# -- intervals -------------------------------------------------------------------------------------
def union(spans) -> list:
    out = []
    for a, b in sorted((a, b) for a, b in spans if b > a):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [tuple(s) for s in out]


def length(spans) -> float:
    return sum(b - a for a, b in union(spans))


def intersect(xs, ys) -> list:
    return [(max(a, c), min(b, d)) for a, b in union(xs) for c, d in union(ys) if min(b, d) > max(a, c)]


def subtract(span, holes) -> list:
    out, (a, b) = [], span
    for c, d in union(holes):
        if d <= a or c >= b:
            continue
        if c > a:
            out.append((a, c))
        a = max(a, d)
    if b > a:
        out.append((a, b))
    return out


def overlap(a, b, c, d) -> float:
    return max(0.0, min(b, d) - max(a, c))


def gap(a, b, c, d) -> float:
    """Distance between [a, b] and [c, d]; 0 when they touch or overlap."""
    return max(0.0, c - b, a - d)


# -- annotations -----------------------------------------------------------------------------------
def annotations(only=None) -> list:
    anns = [json.loads(p.read_text()) for p in sorted(ANNOTATIONS.glob("*.json"))]
    if only:
        wanted = {Path(o).name for o in only}
        unknown = wanted - {a["clip"] for a in anns} - {Path(a["clip"]).stem for a in anns}
        if unknown:
            raise SystemExit(f"no annotations for {', '.join(sorted(unknown))} in {ANNOTATIONS}")
        anns = [a for a in anns if a["clip"] in wanted or Path(a["clip"]).stem in wanted]
    return anns


def insect_stretch(ann) -> list:
    """night_ir.mp4's non_events after its last event: insects and noise once the person has gone."""
    last = max((e["end"] for e in ann["events"]), default=0.0)
    return [(n["start"], n["end"]) for n in ann["non_events"] if n["start"] >= last]


# -- the trees -------------------------------------------------------------------------------------
def tree_env(tree: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NVR_CLI_HOME"}  # each tree reads its own config
    env["PYTHONPATH"] = str(tree)
    return env


def previous_tree(rev: str) -> tuple:
    """The tree at rev, extracted once into bench/.cache/quality-<commit>: (path, commit)."""
    r = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"], capture_output=True, text=True
    )
    if r.returncode != 0:
        raise SystemExit(f"--previous {rev}: not a commit in {ROOT}: {r.stderr.strip()}")
    commit = r.stdout.strip()
    tree = CACHE / f"quality-{commit[:12]}"
    if not (tree / "nvr_cli").is_dir():
        say(f"extracting {rev} ({commit[:12]}) into {tree} ...")
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=tree.name + ".", dir=CACHE))
        archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", commit], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(tmp)], stdin=archive.stdout, check=True)
        archive.stdout.close()
        if archive.wait() != 0:
            shutil.rmtree(tmp)
            raise SystemExit(f"git archive {commit} failed")
        shutil.rmtree(tree, ignore_errors=True)
        tmp.rename(tree)
    return tree, commit


SETTINGS = """
import json, nvr_cli
from nvr_cli.config.loading import load_settings
s = load_settings().settings
print(json.dumps([nvr_cli.__file__, s.MINIMAL_MOTION_DURATION + s.POST_CAPTURE_SECONDS]))
"""


def motion_post(tree: Path) -> float:
    """MINIMAL_MOTION_DURATION + POST_CAPTURE_SECONDS as the tree's scan sees them."""
    r = subprocess.run(
        [sys.executable, "-c", SETTINGS], env=tree_env(tree), cwd=tree, capture_output=True, text=True
    )
    try:
        where, post = json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        say(f"{tree}: settings not readable ({r.stderr.strip()[-200:]}); assuming {DEFAULT_POST:g} s")
        return DEFAULT_POST
    if not Path(where).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"PYTHONPATH={tree} imports nvr_cli from {where}, not from that tree")
    return float(post)


# -- the runs --------------------------------------------------------------------------------------
def run_scan(tree: Path, clip: Path, model: bool, extra: tuple = ()) -> dict:
    cmd = [sys.executable, "-m", "nvr_cli", "scan", str(clip), "--json", *extra]
    if model:
        cmd += ["--model", str(MODEL), "--labels", str(LABELS), "--confirm", "require"]
        cmd += ["--objects", MODEL_OBJECTS]
    t = time.perf_counter()
    r = subprocess.run(cmd, env=tree_env(tree), cwd=tree, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"scan of {clip.name} in {tree} failed: {r.stderr.strip()[-800:]}")
    data = json.loads(r.stdout.strip().splitlines()[-1])
    return {"wall": wall, "duration": data["duration"], "fps": data.get("fps"), "events": data["events"]}


def run_dvr(exe: str, clip: Path) -> dict:
    t = time.perf_counter()
    r = subprocess.run([exe, "-i", str(clip), "-so", "--ignore-user-config"], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"dvr-scan on {clip.name} failed: {r.stderr.strip()[-800:]}")
    return {
        "wall": wall,
        "events": [{"start": a, "end": b} for a, b in dvr_events(r.stdout + "\n" + r.stderr)],
    }


def cached(key: dict, fresh: bool, make) -> tuple:
    """make()'s result, stored in bench/.cache/quality under key; (result, from_cache)."""
    name = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = CACHE / "quality" / f"{key['clip']}.{key['run']}.{name}.json"
    if not fresh and path.exists():
        return json.loads(path.read_text()), True
    result = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, **result}))
    return result, False


# -- grading ---------------------------------------------------------------------------------------
def spans_ours(result: dict, post: float) -> list:
    """(recorded span, motion span) of each kept event of a scan."""
    out = []
    duration, fps = result["duration"], result.get("fps") or 25.0
    for e in result["events"]:
        if not e.get("kept"):
            continue
        start, end = e["start"], e["end"]
        cut = e.get("end_reason") in CUT_REASONS or end >= duration - 2.0 / fps
        ms = start + (e.get("pre_alarm_seconds") or 0.0)
        me = end if cut else end - post
        if ms > me:  # never empty: at least the trigger
            ms = me = min(max(e.get("trigger", ms), start), end)
        out.append(((start, end), (ms, me)))
    return out


def spans_dvr(result: dict, duration: float) -> list:
    out, previous_end = [], 0.0
    for e in result["events"]:
        start, end = e["start"], e["end"]
        # its 1.5 s before the motion are cut short at the file's start and by the event before: there
        # the motion began somewhere in that shorter stretch, counted from its start
        ms = start if start - previous_end < DVR_PRE + 0.05 else start + DVR_PRE
        me = end if end >= duration - 0.1 else end - DVR_POST  # cut short by the file's end
        if ms > me:
            ms = me = min(start + DVR_PRE, end)
        out.append(((start, end), (ms, me)))
        previous_end = end
    return out


def grade(ann: dict, spans: list) -> dict:
    duration = ann["duration"]
    recorded = union(s for s, _ in spans)
    must = [e for e in ann["events"] if e["kind"] == "must"]
    found = sum(
        any(
            overlap(a, b, e["start"], e["end"]) >= min(HIT_OVERLAP, (e["end"] - e["start"]) / 2)
            for a, b in recorded
        )
        for e in must
    )
    false = [m for _, m in spans if all(gap(*m, e["start"], e["end"]) >= TOLERANCE for e in ann["events"])]
    busy = [(e["start"] - GUARD, e["end"] + GUARD) for e in ann["events"]]
    quiet = subtract((0.0, duration), busy)
    out = {
        "kept": len(spans),
        "recorded": [list(s) for s, _ in spans],
        "must": len(must),
        "found": found,
        "false": len(false),
        "false_spans": [list(m) for m in false],
        "quiet_s": length(quiet),
        "quiet_recorded_s": length(intersect(recorded, quiet)),
        "recorded_s": length(recorded),
    }
    if ann["clip"] == INSECT_CLIP:
        stretch = insect_stretch(ann)
        out["insect_stretch"] = [list(s) for s in stretch]
        out["insect_recorded_s"] = length(intersect(recorded, stretch))
    return out


# -- main ------------------------------------------------------------------------------------------
def measure(anns, previous: str, fresh: bool, ours_args: tuple = (), ours_only: bool = False) -> dict:
    prev_tree, commit = previous_tree(previous)
    posts = {"ours": motion_post(ROOT), "previous": motion_post(prev_tree)}
    have_model = MODEL.exists() and LABELS.exists()
    if not have_model:
        say(f"{MODEL} or {LABELS} missing: the +model runs are skipped")
    runs = [
        r
        for r in RUNS
        if (have_model or not r.endswith("+model")) and (r.startswith("ours") or not ours_only)
    ]
    exe = None if ours_only else dvr_scan()
    clips = {}
    for ann in anns:
        clip = SHARED / ann["clip"]
        if not clip.exists():
            say(f"{clip}: missing (needs ../shared beside the project); skipped")
            continue
        mtime = clip.stat().st_mtime_ns
        rows = {}
        for run in runs:
            say(f"quality: {ann['clip']} ({run}) ...")
            if run == "dvr-scan":
                key = {"clip": ann["clip"], "run": run, "version": DVR_SCAN_VERSION, "mtime": mtime}
                result, hit = cached(key, fresh, lambda: run_dvr(exe, clip))
                spans = spans_dvr(result, ann["duration"])
            else:
                model = run.endswith("+model")
                if run.startswith("ours"):
                    result, hit = run_scan(ROOT, clip, model, ours_args), False
                else:
                    key = {"clip": ann["clip"], "run": run, "commit": commit, "mtime": mtime}
                    if model:
                        key["model_mtime"] = MODEL.stat().st_mtime_ns
                        key["objects"] = MODEL_OBJECTS
                    result, hit = cached(key, fresh, lambda: run_scan(prev_tree, clip, model))
                spans = spans_ours(result, posts[run.split("+")[0]])
            rows[run] = {**grade(ann, spans), "wall_s": result["wall"], "cached": hit}
        clips[ann["clip"]] = rows
    total = {}
    for run in runs:
        rs = [c[run] for c in clips.values()]
        total[run] = {
            k: sum(r[k] for r in rs)
            for k in ("must", "found", "false", "quiet_s", "quiet_recorded_s", "wall_s")
        }
        total[run]["cached"] = any(r["cached"] for r in rs)
        insects = [c[run]["insect_recorded_s"] for c in clips.values() if "insect_recorded_s" in c[run]]
        total[run]["insect_recorded_s"] = insects[0] if insects else None
    return {
        "previous": {"rev": previous, "commit": commit},
        "motion_post_s": posts,
        "grading": {"hit_overlap_s": HIT_OVERLAP, "tolerance_s": TOLERANCE, "guard_s": GUARD},
        "runs": runs,
        "clips": clips,
        "total": total,
    }


def share(part, whole):
    return part / whole if whole else None


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"


def spans_text(spans, limit=6) -> str:
    text = " ".join(f"{a:.1f}–{b:.1f}" for a, b in spans[:limit])
    return (text + f" … (+{len(spans) - limit})" if len(spans) > limit else text) or "none"


def row(labels, r) -> str:
    recall, quiet = share(r["found"], r["must"]), share(r["quiet_recorded_s"], r["quiet_s"])
    wall = f"{r['wall_s']:.1f}" + ("*" if r["cached"] else "")
    cells = [
        *labels,
        f"{r['found']}/{r['must']}",
        "–" if recall is None else f"{recall:.2f}",
        str(r["false"]),
        f"{r['quiet_recorded_s']:.1f} / {r['quiet_s']:.1f} ({pct(quiet)})",
        wall,
    ]
    return "| " + " | ".join(cells) + " |"


def report(res: dict):
    runs = res["runs"]
    cols = "must found | recall | false events | quiet recorded s / quiet s | scan wall s |"
    prev = res["previous"]
    print(
        f"\n## Detection quality vs our annotations (bench/quality/), previous = {prev['rev']} "
        f"({prev['commit'][:10]})\n"
    )
    print(
        f"Hit: a kept event's recorded span overlaps a must event by min({HIT_OVERLAP:g} s, half of it). "
        f"False: a kept event whose motion span is {TOLERANCE:g} s or more from every annotated event. "
        f"Quiet: the clip less each annotated event widened by {GUARD:g} s. * = cached result (wall time "
        "of that run).\n"
    )
    print("| clip | run | " + cols)
    print("|---" * 7 + "|")
    for clip, rows in res["clips"].items():
        for run in runs:
            print(row([clip, run], rows[run]))
    print("\nKept events (recorded spans, s):\n")
    print("| clip | " + " | ".join(runs) + " |")
    print("|---" * (len(runs) + 1) + "|")
    for clip, rows in res["clips"].items():
        print(f"| {clip} | " + " | ".join(spans_text(rows[r]["recorded"]) for r in runs) + " |")
    night = res["clips"].get(INSECT_CLIP)
    if night:
        stretch = next(iter(night.values()))["insect_stretch"]
        where = ", ".join(f"{a:g}–{b:g} s" for a, b in stretch)
        print(f"\n{INSECT_CLIP}, seconds recorded in the insect-only stretch ({where}):\n")
        print("| " + " | ".join(runs) + " |")
        print("|---" * len(runs) + "|")
        print("| " + " | ".join(f"{night[r]['insect_recorded_s']:.1f}" for r in runs) + " |")
    print(f"\n### Overall ({len(res['clips'])} clips)\n")
    print("| run | " + cols)
    print("|---" * 6 + "|")
    for run in runs:
        print(row([run], res["total"][run]))
    print("\n### Targets (issue 17)\n")
    print(
        "| run | recall ≥ 0.95 | false events = 0 | quiet recorded ≤ 15 % | night_ir insect stretch = 0 s |"
    )
    print("|---|---|---|---|---|")
    for run in ("ours", "ours+model"):
        if run not in res["total"]:
            continue
        t = res["total"][run]
        recall, quiet = share(t["found"], t["must"]), share(t["quiet_recorded_s"], t["quiet_s"])
        insects = t["insect_recorded_s"]
        cells = [
            verdict(
                recall,
                recall is not None and recall >= TARGET_RECALL,
                f"{recall:.2f}" if recall is not None else "–",
            ),
            verdict(t["false"], t["false"] <= TARGET_FALSE, str(t["false"])),
            verdict(quiet, quiet is not None and quiet <= TARGET_QUIET_SHARE, pct(quiet)),
            verdict(
                insects, insects is not None and insects <= TARGET_INSECT_SECONDS, f"{insects or 0:.1f} s"
            ),
        ]
        print(f"| {run} | " + " | ".join(cells) + " |")


def verdict(value, ok, text) -> str:
    return "n/a" if value is None else f"{'PASS' if ok else 'FAIL'} ({text})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", action="extend", metavar="CLIP", help="these clips (file names)")
    ap.add_argument("--json", action="store_true", help="print the raw numbers as JSON instead of tables")
    ap.add_argument(
        "--previous", default=PREVIOUS, metavar="REV", help=f"previous defaults (default {PREVIOUS})"
    )
    ap.add_argument("--fresh", action="store_true", help="ignore cached DVR-Scan and previous results")
    ap.add_argument(
        "--ours-args", default="", metavar="'OPTIONS'", help="scan options added to ours, e.g. '--blur 11'"
    )
    ap.add_argument("--ours-only", action="store_true", help="only ours and ours+model (trying settings)")
    args = ap.parse_args()
    if not SHARED.is_dir():
        say(f"{SHARED}: missing (needs ../shared beside the project); nothing to measure")
        return
    if (ROOT / "machine_specific_configuration.py").exists():
        say(f"note: {ROOT / 'machine_specific_configuration.py'} applies to 'ours' (not to previous)")
    t = time.monotonic()
    res = measure(
        annotations(args.only), args.previous, args.fresh, tuple(shlex.split(args.ours_args)), args.ours_only
    )
    res["wall_s"] = time.monotonic() - t
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        report(res)
        print(f"\nWhole run: {res['wall_s']:.0f} s.")


if __name__ == "__main__":
    main()
