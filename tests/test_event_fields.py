"""One event, four outputs (sidecar, hook payloads, `record --json`, `scan --json`): the same names
and the same values; and the clip mode is one ClipWriter class, chosen once."""

import json
import sys
from pathlib import Path

import pytest
from helpers import NUMBER_MASK, clips, run_cli

from nvr_cli.config import Settings
from nvr_cli.output.clip_writers import PacketClips, ReencodedClips, SegmentCutClips, choose_clip_writer

PROBE = str(Path(__file__).parent / "support" / "hook_probe.py")
COMMON = [
    "--mask",
    NUMBER_MASK,
    "--initial-wait",
    "2",
    "--pre-alarm",
    "3",
    "--motion-duration",
    "2",
    "--post-capture",
    "1",
]

# the names README's "Event fields" documents: every event output carries all of them
EVENT_FIELDS = {
    "event",
    "part",
    "kind",
    "kept",
    "start",
    "end",
    "trigger",
    "duration_seconds",
    "pre_alarm_seconds",
    "frames",
    "frames_lost",
    "peak_score",
    "motion_seconds",
    "motion_frames",
    "motion_box",
    "peak_boxes",
    "end_reason",
    "labels",
    "objects",
    "tracks",
    "qr",
    "clip",
    "duration",
    "score",
}
TIMES = {"start", "end", "trigger"}  # ISO in sidecars and hooks, seconds in --json
FILES = {"clip"}  # a name in the sidecar, a path elsewhere


def test_sidecar_hooks_record_json_and_scan_json_agree(tmp_path, isolated_home, scene_cache):
    scene = scene_cache()
    out, hooks = tmp_path / "video", tmp_path / "hooks"
    hooks.mkdir()
    probe = [sys.executable, PROBE, str(hooks)]
    (isolated_home / "machine_specific_configuration.py").write_text(
        f"ON_EVENT_START = {probe!r}\nON_EVENT_END = {probe!r}\n"
    )
    rec = run_cli("record", scene, "--output", out, "--name", "cam1", "--json", *COMMON, check=0)
    files = clips(out)
    assert len(files) == 2, rec.stderr
    record_json = [json.loads(x) for x in rec.stdout.splitlines()]
    scan = json.loads(run_cli("scan", "--json", scene, *COMMON, check=0).stdout)
    ends = {
        h["json"]["event"]: h for h in (json.loads(p.read_text()) for p in hooks.glob("event_end-*.json"))
    }
    starts = {
        h["json"]["event"]: h for h in (json.loads(p.read_text()) for p in hooks.glob("event_start-*.json"))
    }
    assert sorted(ends) == sorted(starts) == [1, 2]

    for f, line, found in zip(files, record_json, scan["events"]):
        side = json.loads(f.with_suffix(".json").read_text())
        end, start = ends[side["event"]], starts[side["event"]]
        outputs = {
            "sidecar": side,
            "event_end": end["json"],
            "event_start": start["json"],
            "record --json": line,
            "scan --json": found,
        }
        for name, got in outputs.items():
            assert EVENT_FIELDS <= set(got), f"{name} lacks {sorted(EVENT_FIELDS - set(got))}"
        shared = EVENT_FIELDS - TIMES - FILES
        for name in ("event_end", "record --json", "scan --json"):
            differ = {k: (side[k], outputs[name][k]) for k in shared if side[k] != outputs[name][k]}
            assert not differ, f"sidecar vs {name}: {differ}"
        # the same times, as ISO wall-clock times or as seconds into the file
        assert {k: side[k] for k in TIMES} == {k: end["json"][k] for k in TIMES}
        assert {k: line[k] for k in TIMES} == {k: found[k] for k in TIMES}
        assert end["json"]["clip"] == line["clip"] == str(f) and side["clip"] == f.name
        assert side["kept"] is True and side["peak_boxes"] and side["duration"] == side["duration_seconds"]
        # the environment variables are the payload's scalar fields
        env = end["env"]
        assert env["NVR_PEAK_SCORE"] == env["NVR_SCORE"] == str(side["peak_score"])
        assert env["NVR_DURATION_SECONDS"] == str(side["duration_seconds"]) and env["NVR_END_REASON"]
        # at the start: what is known then, under the same names; the rest is null until the end
        s = start["json"]
        assert (s["event"], s["part"], s["start"], s["trigger"], s["clip"]) == (
            side["event"],
            1,
            side["start"],
            side["trigger"],
            str(f),
        )
        assert s["end"] is s["frames"] is s["end_reason"] is s["kept"] is None
        assert start["env"]["NVR_END"] == "" and start["env"]["NVR_START"] == side["start"]


@pytest.mark.parametrize(
    "reencode, cutter, packets, mode",
    [
        (None, None, None, ReencodedClips),
        (True, "cutter", None, ReencodedClips),
        (None, None, "ring", PacketClips),
        (False, None, "ring", PacketClips),
        (False, "cutter", None, SegmentCutClips),
        (None, "cutter", None, ReencodedClips),  # re-encoded, with a lossless copy beside each clip
    ],
)
def test_the_clip_mode_is_one_class_chosen_once(reencode, cutter, packets, mode):
    w = choose_clip_writer(
        Settings().output, reencode=reencode, ffmpeg="ffmpeg", cutter=cutter, packets=packets
    )
    assert type(w) is mode and w.needs_images == (mode is ReencodedClips)
