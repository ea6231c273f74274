"""The review page's index (nvr_cli/storage/catalog.py): built from real recordings and from sidecars
and segment indexes written by the recorder's own serializers; filters, cursor paging, reviewed marks,
day bounds, the watcher, retention, `nvr-cli index`."""

import datetime as dt
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import NUMBER_MASK, run_cli, wait_for

import nvr_cli.storage.paths as storage
from nvr_cli.analysis.qr import QrSighting
from nvr_cli.config import Settings, load_settings
from nvr_cli.events.controller import ObjectSeen
from nvr_cli.output.sinks import EventRecord
from nvr_cli.storage.catalog import ID_RE, INDEX_NAME, Catalog, catalog_for, decode_cursor, safe_id
from nvr_cli.storage.retention import plan, prune
from nvr_cli.storage.segments import INDEX, Segment, append_index

SUMMARY_KEYS = {
    "id",
    "camera",
    "day",
    "start",
    "start_ts",
    "end",
    "end_ts",
    "duration_seconds",
    "labels",
    "top_score",
    "motion_score",
    "qr",
    "kind",
    "event",
    "part",
    "end_reason",
    "pre_alarm_seconds",
    "reviewed",
    "recovered",
    "has_thumbnail",
}
T0 = dt.datetime(2026, 11, 20, 8, 0).timestamp()  # local time: tests that need a zone set TZ


# -- storage as the recorder writes it -------------------------------------------------------------
def write_event(
    root,
    camera,
    start,
    *,
    seconds=10.0,
    objects=(),
    qr=(),
    clip=True,
    thumbnail=True,
    n=1,
    local_time=True,
):
    """An event clip as the recorder leaves it: the clip (empty: the index never decodes), its
    thumbnail and the sidecar, named and foldered by storage.paths, fields by EventRecord.as_dict."""
    folder = storage.clip_dir(root, camera, start, local_time)
    folder.mkdir(parents=True, exist_ok=True)
    final = storage.new_clip_path(folder, camera, start, local_time)
    rec = EventRecord(
        event=n,
        part=1,
        start=start,
        end=start + seconds,
        trigger=start + 2,
        frames=int(seconds * 15),
        peak_score=0.0312,
        motion_seconds=seconds - 3,
        motion_frames=40,
        union_box=[0, 0, 100, 100],
        reason="motion ended",
        kept=True,
        objects=[ObjectSeen(label, score, (1, 2, 3, 4), start + 3) for label, score in objects],
        qr=[QrSighting(payload, start + 4, (5, 6, 7, 8)) for payload in qr],
    )
    if clip:
        final.write_bytes(b"")
    if thumbnail:
        final.with_suffix(".jpg").write_bytes(b"")
    data = {
        "camera": camera,
        "source": "rtsp://admin:***@10.0.0.5/main",
        **rec.as_dict(local_time=local_time),
        "clip": final.name,
        "thumbnail": final.with_suffix(".jpg").name if thumbnail else None,
        "fps": 15.0,
        "width": 640,
        "height": 360,
        "error": None,
        "encoding": "re-encoded",
        "settings": {"MOTION_FRAME_WIDTH": 500},
    }
    storage.write_json(final.with_suffix(".json"), data)
    return final


def write_segments(root, camera, start, count, seconds=600.0, *, local_time=True, files=True):
    """``count`` contiguous segments from ``start``, each listed in its day's index as the Segmenter does."""
    made = []
    for i in range(count):
        a = start + i * seconds
        folder = storage.clip_dir(root, camera, a, local_time)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{camera}_{storage.name_stamp(a, local_time)}.seg.mp4"
        if files:
            path.write_bytes(b"\0" * 10)
        append_index(folder, Segment(path, a, a + seconds, 10, True).as_dict())
        made.append(path)
    return made


def catalog(tmp_path, root, **kw):
    return Catalog(tmp_path / "index.sqlite3", {}, more_roots=[root], **kw)


def all_pages(cat, limit=7, **filters):
    out, cursor = [], None
    while True:
        page, cursor = cat.events(limit=limit, cursor=cursor, **filters)
        out += page
        if cursor is None:
            return out


def check_days(cat):
    """The calendar's counts (kept by triggers) agree with the events themselves."""
    by_day = {}
    for e in all_pages(cat, limit=500):
        d = by_day.setdefault(e["day"], [0, 0])
        d[0] += 1
        d[1] += not e["reviewed"]
    got = {d["day"]: [d["events"], d["unreviewed"]] for d in cat.days() if d["events"]}
    assert got == by_day


# -- real recordings -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_storage(tmp_path_factory):
    """`nvr-cli demo`: a generated scene recorded by the real recorder (clips, sidecars, thumbnails)."""
    out = tmp_path_factory.mktemp("demo") / "out"
    run_cli("demo", "--output", out, "--json", check=0, timeout=300)
    return out


def test_real_recordings_are_indexed_as_their_sidecars_say(demo_storage, tmp_path):
    sidecars = sorted(demo_storage.glob("demo/*/*/*/*.json"))
    assert len(sidecars) >= 2
    cat = catalog(tmp_path, demo_storage)
    done = cat.build()
    assert (done["events"], done["segments"], done["read"]) == (len(sidecars), 0, len(sidecars))
    assert cat.cameras() == ["demo"]
    page, cursor = cat.events()
    assert cursor is None and [e["id"] for e in page] == [p.stem for p in reversed(sidecars)]
    for e in page:
        assert set(e) == SUMMARY_KEYS
        side = json.loads(next(p for p in sidecars if p.stem == e["id"]).read_text())
        assert e["start"] == side["start"] and e["end"] == side["end"] and e["day"] == side["start"][:10]
        assert e["start_ts"] == pytest.approx(dt.datetime.fromisoformat(side["start"]).timestamp())
        assert e["duration_seconds"] == side["duration_seconds"] and e["motion_score"] == side["peak_score"]
        assert e["has_thumbnail"] and e["labels"] == [] and e["top_score"] is None and not e["reviewed"]
        full = cat.event(e["id"])
        assert full["paths"]["clip"].is_file() and full["paths"]["thumbnail"].is_file()
        assert full["paths"]["sidecar"] == next(p for p in sidecars if p.stem == e["id"])
        assert (
            full["facts"]["frames"] == side["frames"]
            and full["facts"]["pre_alarm"] == side["pre_alarm_seconds"]
        )
        assert full["facts"]["fps"] == side["fps"] and full["facts"]["clip_pending"] is False
    day = page[0]["day"]
    assert cat.days() == [
        {
            "day": day,
            "events": len(sidecars),
            "unreviewed": len(sidecars),
            "recorded_seconds": 0.0,
            "cameras": ["demo"],
        }
    ]
    assert [e["id"] for e in cat.timeline("demo", day)["events"]] == [p.stem for p in sidecars]
    assert cat.build()["read"] == 0  # nothing changed: nothing read
    cat.close()


@pytest.mark.rtsp
def test_watcher_follows_a_recorder_and_retention(tmp_path, scene_cache, rtsp_server):
    """A real camera recorded continuously with motion detection: the watcher indexes its event clips
    and segments while it records; retention's deletions then leave the index."""
    out = tmp_path / "video"
    out.mkdir()
    cat = Catalog(out / INDEX_NAME, {"gate": out})
    watcher = cat.watch(resync_seconds=3600)  # only notifications: the safety net must not do it
    # someone walks through every 8 s: an event clip ends every loop
    server = rtsp_server(scene_cache("catalog", seconds=8, walkers=[(1.0, 3.5)]))
    cmd = [sys.executable, "-m", "nvr_cli", "record", server.url, "--output", str(out), "--name", "gate"]
    cmd += ["--mask", NUMBER_MASK, "--initial-wait", "0.5", "--pre-alarm", "1", "--motion-duration", "1"]
    cmd += ["--post-capture", "0.5", "--read-timeout", "3", "--continuous", "--segment-seconds", "3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: cat.stats()["events"] >= 2 and cat.stats()["segments"] >= 2, timeout=60), (
            cat.stats(),
            proc.stderr.read() if proc.poll() is not None else "",
        )
        assert watcher.alive
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    sidecars = {p.stem for p in out.glob("gate/*/*/*/*.json")}
    listed = [
        json.loads(line) for idx in out.glob(f"gate/*/*/*/{INDEX}") for line in idx.read_text().splitlines()
    ]
    seg_files = {Path(e["file"]).name[: -len(".seg.mp4")] for e in listed if "file" in e}

    def indexed():
        ids = {e["id"] for e in all_pages(cat, cameras=["gate"])}
        segs = {s["id"] for d in cat.days() for s in cat.timeline("gate", d["day"])["segments"]}
        return ids, segs

    assert wait_for(lambda: indexed() == (sidecars, seg_files), timeout=10), (
        [sorted(a ^ b) for a, b in zip(indexed(), (sidecars, seg_files))],
        watcher.last_error,
    )
    for e in all_pages(cat):
        assert cat.event(e["id"])["paths"]["clip"].is_file()
    day = cat.days()[0]["day"]
    tl = cat.timeline("gate", day)
    lines = {Path(e["file"]).name[: -len(".seg.mp4")]: e for e in listed if "file" in e}
    for seg in tl["segments"]:  # as the recorder's index says, to the millisecond
        line = lines[seg["id"]]
        assert (seg["start_ts"], seg["end_ts"]) == (line["start"], line["end"])
        assert (seg["valid"], seg["partial"]) == (line["valid"], line["partial"])
        path = cat.segment(seg["id"])["path"]
        assert (
            path.name == line["file"] and path.is_file() and path.parent.parent.parent.parent == out / "gate"
        )
    holes = [(a["end_ts"], b["start_ts"]) for a, b in zip(tl["segments"], tl["segments"][1:])]
    assert [(g["start_ts"], g["end_ts"]) for g in tl["gaps"]] == [h for h in holes if h[1] - h[0] > 1]
    # retention deletes everything older than a day: the files are made to look two days old
    old = time.time() - 2 * 86400
    for p in out.rglob("*.mp4"):
        os.utime(p, (old, old))
    s = Settings(RETENTION_SEGMENT_DAYS=1, RETENTION_EVENT_DAYS=1, RETENTION_MIN_FREE_GB=0)
    deleted = prune(out, s.retention)
    assert deleted and (out / INDEX_NAME).exists()
    assert wait_for(lambda: cat.stats()["events"] == 0 and cat.stats()["segments"] == 0, timeout=10), (
        cat.stats()
    )
    watcher.stop()
    assert not watcher.alive
    cat.close()


# -- generated storage: what is and is not an event ------------------------------------------------
def test_only_event_sidecars_count(tmp_path):
    root = tmp_path / "video"
    a = write_event(root, "front", T0, objects=[("person", 0.91)])
    write_event(root, "front", T0 + 60, thumbnail=False)
    gone = write_event(root, "front", T0 + 120)
    gone.unlink()  # its clip deleted: not an event to show
    folder = a.parent
    # an export's sidecar named like an event, a hidden copy, a part being written, a stray JSON
    (folder / f"front_{storage.name_stamp(T0 + 200)}.json").write_text(
        json.dumps({"requested": {}, "segments": [], "duration_seconds": 3})
    )
    (folder / f"front_{storage.name_stamp(T0 + 200)}.mp4").write_bytes(b"")
    (folder / ("." + a.with_suffix(".json").name)).write_text(a.with_suffix(".json").read_text())
    (folder / f"front_{storage.name_stamp(T0 + 300)}.part.mp4").write_bytes(b"")
    (folder / "notes.json").write_text("{}")
    (folder / f"front_{storage.name_stamp(T0 + 400)}.json").write_text("{not json")
    (root / ".status").mkdir()
    (root / ".status" / "front.json").write_text(json.dumps({"camera": "front", "start": "x"}))
    (root / "front" / ".incoming").mkdir()
    (root / "front" / ".incoming" / "seg_1.mp4").write_bytes(b"")
    (root / "empty").mkdir()  # a folder with nothing recorded is no camera
    cat = catalog(tmp_path, root)
    assert cat.build()["events"] == 2
    assert cat.cameras() == ["front"]
    got = {e["id"]: e for e in cat.events()[0]}
    assert set(got) == {a.stem, f"front_{storage.name_stamp(T0 + 60)}"}
    assert got[a.stem]["labels"] == ["person"] and got[a.stem]["top_score"] == 0.91
    assert not got[f"front_{storage.name_stamp(T0 + 60)}"]["has_thumbnail"]
    assert cat.event(f"front_{storage.name_stamp(T0 + 60)}")["paths"]["thumbnail"] is None
    # the clip comes back: so does the event
    gone.write_bytes(b"")
    assert cat.build()["events"] == 3


def test_a_clip_still_to_be_cut_is_an_event_once_its_sidecar_says_so(tmp_path):
    """With --no-reencode the clip is cut from the segments later: the sidecar's clip is null meanwhile."""
    root = tmp_path / "video"
    final = write_event(root, "yard", T0, clip=False)
    side = json.loads(final.with_suffix(".json").read_text())
    side["clip"] = None
    storage.write_json(final.with_suffix(".json"), side)
    cat = catalog(tmp_path, root)
    cat.build()
    e = cat.event(final.stem)
    assert e["facts"]["clip_pending"] and e["paths"]["clip"] == final and not final.exists()
    final.write_bytes(b"")
    side["clip"] = final.name
    storage.write_json(final.with_suffix(".json"), side)
    cat.build()
    assert cat.event(final.stem)["facts"]["clip_pending"] is False


def test_recovered_clip_takes_its_time_from_its_name_even_in_the_repeated_hour(tmp_path, zone):
    zone("Europe/Berlin")
    root = tmp_path / "video"
    second_pass = dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.timezone.utc).timestamp()  # 02:30 CET
    first_pass = second_pass - 3600  # 02:30 CEST
    made = {}
    for ts in (first_pass, second_pass):
        folder = storage.clip_dir(root, "door", ts)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"door_{storage.name_stamp(ts)}.mp4"
        final.write_bytes(b"")
        # what recover_parts writes for a clip finished after a crash
        storage.write_json(
            final.with_suffix(".json"),
            {"camera": "door", "clip": final.name, "recovered": True, "note": "times not known"},
        )
        made[final.stem] = ts
    assert any("R" in stem for stem in made)
    cat = catalog(tmp_path, root)
    assert cat.build()["events"] == 2
    for e in cat.events()[0]:
        assert e["recovered"] and e["start_ts"] == made[e["id"]] and e["day"] == "2026-10-25"
        assert e["end_ts"] == e["start_ts"] and e["duration_seconds"] is None
        assert dt.datetime.fromisoformat(e["start"]).timestamp() == made[e["id"]]
    assert [e["id"] for e in cat.events()[0]] == sorted(made, key=made.get, reverse=True)


def test_camera_names_outside_the_id_alphabet_get_stable_safe_ids(tmp_path):
    root = tmp_path / "video"
    final = write_event(root, "Front door #1", T0)
    seg = write_segments(root, "Front door #1", T0, 2)
    write_event(root, "front", T0)
    cat = catalog(tmp_path, root)
    cat.build()
    ids = {e["camera"]: e["id"] for e in cat.events()[0]}
    weird = ids["Front door #1"]
    assert weird != final.stem and ID_RE.fullmatch(weird) and weird == safe_id(final.stem)
    assert ids["front"] == f"front_{storage.name_stamp(T0)}"
    assert cat.event(weird)["paths"]["clip"] == final
    tl = cat.timeline("Front door #1", storage.iso(T0)[:10])
    assert [cat.segment(s["id"])["path"] for s in tl["segments"]] == seg
    assert all(ID_RE.fullmatch(s["id"]) for s in tl["segments"])
    cat.rebuild()
    assert {e["camera"]: e["id"] for e in cat.events()[0]}["Front door #1"] == weird
    # ids are looked up, never made into paths
    for bad in ("../front", "front/../../etc/passwd", "", ".hidden", "a" * 300, None):
        assert cat.event(bad) is None and cat.segment(bad) is None


# -- queries ---------------------------------------------------------------------------------------
@pytest.fixture
def three_cameras(tmp_path):
    """60 events over 3 cameras and 3 days, with labels, scores and QR codes."""
    root = tmp_path / "video"
    kinds = [
        [("person", 0.9)],
        [("car", 0.6)],
        [],
        [("person", 0.55), ("dog", 0.8)],
    ]
    for i in range(60):
        camera = ("front", "yard", "door")[i % 3]
        start = T0 + (i // 20) * 86400 + i * 300
        write_event(root, camera, start, objects=kinds[i % 4], qr=["PARCEL-1"] if i % 10 == 0 else [], n=i)
    cat = catalog(tmp_path, root)
    cat.build()
    yield cat
    cat.close()


def test_filters(three_cameras):
    cat = three_cameras
    everything = all_pages(cat)
    assert len(everything) == 60
    keys = [(e["start_ts"], e["id"]) for e in everything]
    assert keys == sorted(keys, reverse=True)
    day1 = storage.iso(T0)[:10]

    def ids(**f):
        return {e["id"] for e in all_pages(cat, **f)}

    def expect(pred):
        return {e["id"] for e in everything if pred(e)}

    assert ids(cameras=["front"]) == expect(lambda e: e["camera"] == "front")
    assert ids(cameras=["front", "door"]) == expect(lambda e: e["camera"] in ("front", "door"))
    assert ids(day=day1) == expect(lambda e: e["day"] == day1) and len(ids(day=day1)) == 20
    assert ids(labels=["person"]) == expect(lambda e: "person" in e["labels"])
    assert ids(labels=["dog", "car"]) == expect(lambda e: {"dog", "car"} & set(e["labels"]))
    assert ids(labels=["motion"]) == expect(lambda e: not e["labels"]) and ids(labels=["motion"])
    assert ids(labels=["qr"]) == expect(lambda e: e["qr"]) and len(ids(labels=["qr"])) == 6
    assert ids(labels=["giraffe"]) == set()
    assert ids(min_score=0.8) == expect(lambda e: (e["top_score"] or 0) >= 0.8)
    assert ids(cameras=["yard"], labels=["person"], min_score=0.85) == expect(
        lambda e: e["camera"] == "yard" and "person" in e["labels"] and e["top_score"] >= 0.85
    )
    t_from, t_to = T0 + 86400, T0 + 86400 + 3600
    assert ids(start=t_from, end=t_to) == expect(lambda e: t_from <= e["start_ts"] < t_to)
    assert ids(start=storage.iso(t_from), end=storage.iso(t_to)) == ids(start=t_from, end=t_to)
    for bad in ({"day": "yesterday"}, {"start": "soon"}, {"cursor": "garbage"}):
        with pytest.raises(ValueError):
            cat.events(**bad)
    qr_event = next(e for e in everything if e["qr"])
    assert qr_event["qr"] == ["PARCEL-1"]
    facts = cat.event(qr_event["id"])["facts"]
    assert facts["qr"][0]["payload"] == "PARCEL-1" and facts["qr"][0]["seen"]
    summary = cat.camera_summary("front", day1)
    assert summary["last_event"]["id"] == next(e["id"] for e in everything if e["camera"] == "front")
    assert (summary["events_today"], summary["unreviewed_today"], summary["has_recordings"]) == (7, 7, False)


def test_cursor_paging_neither_repeats_nor_misses_while_events_arrive(three_cameras, tmp_path):
    cat = three_cameras
    root = tmp_path / "video"
    # two events at the very same time: the id breaks the tie
    write_event(root, "front", T0 - 1000, n=98)
    write_event(root, "front", T0 - 1000, n=99)
    cat.build()
    before = [e["id"] for e in all_pages(cat, limit=100)]
    seen, cursor, arrived = [], None, 0
    while True:
        page, cursor = cat.events(limit=9, cursor=cursor)
        seen += [e["id"] for e in page]
        if cursor is None:
            break
        assert decode_cursor(cursor) == (page[-1]["start_ts"], page[-1]["id"])
        write_event(root, ("front", "yard")[arrived % 2], time.time() + arrived, n=1000 + arrived)
        arrived += 1
        cat.build()
    assert seen == before and len(seen) == len(set(seen)) == 62
    assert cat.stats()["events"] == 62 + arrived
    check_days(cat)


def test_reviewed_marks_survive_rebuild_reread_and_reopen_but_not_deleting_the_index(three_cameras, tmp_path):
    cat = three_cameras
    some = [e["id"] for e in cat.events(cameras=["door"], limit=5)[0]]
    assert cat.set_reviewed(some + ["no-such-event"]) == 5
    assert cat.set_reviewed(some) == 0  # already marked
    assert {e["id"] for e in all_pages(cat, reviewed=True)} == set(some)
    assert len(all_pages(cat, reviewed=False)) == 55
    cat.rebuild()
    assert {e["id"] for e in all_pages(cat, reviewed=True)} == set(some)
    # the sidecar changes (a lossless cut finished): the row is read again, the mark stays
    side_path = cat.event(some[0])["paths"]["sidecar"]
    side = json.loads(side_path.read_text())
    side["lossless"] = {"file": "x.lossless.mp4"}
    storage.write_json(side_path, side)
    assert cat.build(full=True)["read"] == 1
    assert (
        cat.event(some[0])["reviewed"] and cat.event(some[0])["facts"]["lossless"]["file"] == "x.lossless.mp4"
    )
    check_days(cat)
    cat.close()
    again = Catalog(tmp_path / "index.sqlite3", {}, more_roots=[tmp_path / "video"])
    assert again.build()["read"] == 0
    assert {e["id"] for e in all_pages(again, reviewed=True)} == set(some)
    day = again.event(some[0])["day"]
    assert again.days()[[d["day"] for d in again.days()].index(day)]["unreviewed"] == 20 - sum(
        again.event(i)["day"] == day for i in some
    )
    assert again.set_reviewed(some[:2], reviewed=False) == 2
    assert len(all_pages(again, reviewed=True)) == 3
    assert again.set_reviewed_matching(True, cameras=["yard"], labels=["person"]) == len(
        all_pages(again, cameras=["yard"], labels=["person"])
    )
    assert all(e["reviewed"] for e in all_pages(again, cameras=["yard"], labels=["person"]))
    check_days(again)
    marked = len(all_pages(again, reviewed=True))
    assert again.set_reviewed_matching(False, cameras=["yard"], labels=["person"]) == marked - 3
    again.close()
    # the index is a cache: deleted, it is made again from the files, only the marks are lost
    for p in tmp_path.glob("index.sqlite3*"):
        p.unlink()
    fresh = Catalog(tmp_path / "index.sqlite3", {}, more_roots=[tmp_path / "video"])
    assert fresh.stats() == {"events": 0, "segments": 0, "built": None}
    assert fresh.build()["events"] == 60
    assert fresh.stats()["built"] and not all_pages(fresh, reviewed=True)
    fresh.close()


def test_days_timeline_gaps_and_torn_lines(tmp_path):
    root = tmp_path / "video"
    day0 = dt.datetime(2026, 11, 20).timestamp()
    segs = write_segments(root, "yard", day0 - 900, 8)  # 23:45 the day before .. 01:05
    folder = segs[-1].parent
    # the recorder was down 01:00-01:30, said so, then recorded on
    append_index(
        folder, {"gap": True, "start": day0 + 3900, "end": day0 + 5400, "reason": "recording was interrupted"}
    )
    more = write_segments(root, "yard", day0 + 5400, 3)
    more[1].unlink()  # retention (or a person) deleted one: a hole with no reason given
    with open(folder / INDEX, "a") as f:
        f.write('{"file": "yard_torn.seg.mp4", "start": 17')  # a line torn by a crash, never finished
    write_event(root, "yard", day0 + 600)
    write_event(root, "yard", day0 - 300, seconds=600)  # from the day before, across midnight
    cat = catalog(tmp_path, root)
    assert cat.build()["segments"] == 10
    tl = cat.timeline("yard", "2026-11-20")
    t0, t1 = day0, dt.datetime(2026, 11, 21).timestamp()
    assert (tl["camera"], tl["day"], tl["start_ts"], tl["end_ts"]) == ("yard", "2026-11-20", t0, t1)
    starts = [s["start_ts"] for s in tl["segments"]]
    assert starts == [day0 - 300 + i * 600 for i in range(7)] + [day0 + 5400, day0 + 6600]
    assert tl["gaps"] == [
        {"start_ts": day0 + 3900, "end_ts": day0 + 5400, "reason": "recording was interrupted"},
        {"start_ts": day0 + 6000, "end_ts": day0 + 6600, "reason": None},
    ]
    assert [e["start_ts"] for e in tl["events"]] == [day0 - 300, day0 + 600]  # the one across midnight too
    days = cat.days()
    assert [d["day"] for d in days] == ["2026-11-20", "2026-11-19"]
    assert days[0]["recorded_seconds"] == 8 * 600 and days[1]["recorded_seconds"] == 2 * 600
    assert days[0]["events"] == 1 and days[0]["cameras"] == ["yard"]
    assert cat.days(month="2026-10") == [] and cat.days(cameras=["front"]) == []
    assert cat.camera_summary("yard", "2026-11-20")["has_recordings"]
    # the torn line is finished by the next one appended after it: still never a segment
    with open(folder / INDEX, "a") as f:
        f.write("\n")
    write_segments(root, "yard", day0 + 7200, 1)
    assert cat.build()["segments"] == 11
    assert not cat.segment("yard_torn")
    assert cat.days()[0]["recorded_seconds"] == 9 * 600
    cat.rebuild()
    assert cat.days()[0]["recorded_seconds"] == 9 * 600 and cat.days()[1]["recorded_seconds"] == 2 * 600


def test_day_bounds_follow_dst(tmp_path, zone):
    zone("Europe/Berlin")
    root = tmp_path / "video"
    fall = dt.datetime(2026, 10, 24, 22, 0, tzinfo=dt.timezone.utc).timestamp()  # 00:00 CEST, 25 Oct
    write_segments(root, "yard", fall - 900, 52, 1800)  # the whole 25-hour day and a bit either side
    cat = catalog(tmp_path, root)
    cat.build()
    tl = cat.timeline("yard", "2026-10-25")
    assert tl["end_ts"] - tl["start_ts"] == 25 * 3600 and tl["start_ts"] == fall
    assert not tl["gaps"] and tl["segments"][0]["start_ts"] == fall - 900
    assert tl["segments"][-1]["end_ts"] > tl["end_ts"] > tl["segments"][-1]["start_ts"]
    assert [d["recorded_seconds"] for d in cat.days() if d["day"] == "2026-10-25"] == [25 * 3600]
    spring = cat.day_bounds("2026-03-29")
    assert spring[1] - spring[0] == 23 * 3600
    utc = Catalog(tmp_path / "utc.sqlite3", {}, more_roots=[root], local_time=False)
    assert utc.day_bounds("2026-10-25") == (fall + 7200, fall + 7200 + 86400)


# -- keeping up with the files ---------------------------------------------------------------------
def test_incremental_build_reads_only_what_changed(tmp_path):
    root = tmp_path / "video"
    for i in range(5):
        write_event(root, "front", T0 + i * 60)
    segs = write_segments(root, "front", T0, 3)
    cat = catalog(tmp_path, root)
    assert cat.build()["read"] == 6  # 5 sidecars, 1 index
    os.utime(segs[0].parent, ns=(0, 0))  # the folder's mtime settles (past the racy window)
    cat.build(full=True)
    assert cat.build()["read"] == 0
    write_segments(root, "front", T0 + 1800, 2)  # appended lines: read from where it stopped
    done = cat.build()
    assert (done["read"], done["segments"]) == (1, 5)
    victim = write_event(root, "front", T0 + 900)
    assert cat.build()["events"] == 6
    for suffix in (".mp4", ".json", ".jpg"):
        victim.with_suffix(suffix).unlink()
    assert cat.build()["events"] == 5
    check_days(cat)
    assert [d["recorded_seconds"] for d in cat.days()] == [5 * 600]
    segs[1].unlink()
    cat.build()
    assert [d["recorded_seconds"] for d in cat.days()] == [4 * 600]
    shutil.rmtree(root / "front")
    assert cat.build() | {"seconds": 0} == {"events": 0, "segments": 0, "seconds": 0, "read": 0}
    assert cat.cameras() == []


def test_a_segment_put_in_place_while_its_folder_is_listed_is_not_lost(tmp_path, monkeypatch):
    root = tmp_path / "video"
    write_segments(root, "yard", T0, 1)
    cat = catalog(tmp_path, root)
    read_index = Catalog._sync_index

    def recorder_in_between(self, *args, **kwargs):
        if not recorder_in_between.done:  # the next segment lands after the listing, before the read
            recorder_in_between.done = True
            write_segments(root, "yard", T0 + 600, 1)
        return read_index(self, *args, **kwargs)

    recorder_in_between.done = False
    monkeypatch.setattr(Catalog, "_sync_index", recorder_in_between)
    assert cat.build()["segments"] == 2
    cat.close()


def test_watcher_picks_up_a_new_clip_and_a_deletion(tmp_path):
    root = tmp_path / "video"
    write_event(root, "front", T0)
    cat = catalog(tmp_path, root)
    watcher = cat.watch(resync_seconds=3600, debounce=0.1)
    try:
        assert wait_for(lambda: cat.stats()["events"] == 1, timeout=10)
        new = write_event(root, "front", T0 + 100)
        assert wait_for(lambda: cat.event(new.stem) is not None, timeout=10)
        segs = write_segments(root, "front", T0, 2)
        assert wait_for(lambda: cat.stats()["segments"] == 2, timeout=10)
        other = write_event(root, "back", T0 + 200)  # a new camera folder
        assert wait_for(lambda: cat.event(other.stem) is not None, timeout=10)
        new.unlink()
        new.with_suffix(".json").unlink()
        segs[0].unlink()
        assert wait_for(lambda: cat.event(new.stem) is None and cat.stats()["segments"] == 1, timeout=10)
        assert watcher.alive and watcher.last_error is None
    finally:
        watcher.stop()
    assert not watcher.alive
    cat.close()


def test_the_safety_net_finds_what_no_notification_said(tmp_path):
    root = tmp_path / "video"
    root.mkdir()
    cat = catalog(tmp_path, root)
    watcher = cat.watch(resync_seconds=0.5)
    try:
        watcher._observer.unschedule_all()  # as if notifications were lost
        made = write_event(root, "front", T0)
        assert wait_for(lambda: cat.event(made.stem) is not None, timeout=10)
    finally:
        watcher.stop()
    cat.close()


def test_reads_go_on_while_the_index_is_written(tmp_path):
    """Many threads read (as the server's thread pool does) while another builds and marks."""
    import threading

    root = tmp_path / "video"
    for i in range(40):
        write_event(root, ("front", "yard")[i % 2], T0 + i * 60)
    cat = catalog(tmp_path, root)
    cat.build()
    errors, stop = [], threading.Event()

    def reader():
        try:
            while not stop.is_set():
                page, _ = cat.events(limit=10)
                assert len(page) == 10
                cat.timeline("front", page[0]["day"])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for t in readers:
        t.start()
    for i in range(20):
        write_event(root, "front", T0 + 10000 + i)
        cat.build()
        cat.set_reviewed_matching(bool(i % 2), cameras=["yard"])
    stop.set()
    for t in readers:
        t.join()
    assert not errors and cat.stats()["events"] == 60
    # a server's worker threads come and go: their connections must not pile up
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        t = threading.Thread(target=lambda: cat.events(limit=5))
        t.start()
        t.join()
    assert len(os.listdir("/proc/self/fd")) <= fds + 3
    cat.close()


def test_retention_removes_old_days_from_the_index_and_never_touches_the_index(tmp_path):
    root = tmp_path / "video"
    now = time.time()
    old = [write_event(root, "front", now - 40 * 86400 + i * 60) for i in range(3)]
    new = write_event(root, "front", now - 3600)
    for clip in old:
        os.utime(clip, (now - 40 * 86400, now - 40 * 86400))
    cat = Catalog(root / INDEX_NAME, {"front": root})
    assert cat.build()["events"] == 4
    s = load_settings(None, {"PATH_FOR_VIDEO": str(root), "RETENTION_MAX_GB_TOTAL": 1e-9}).settings
    doomed = plan(root, s.retention)
    assert INDEX_NAME not in {item.path.name for item, _ in doomed}
    assert all(item.path.suffix == ".mp4" for item, _ in doomed)
    s = load_settings(None, {"PATH_FOR_VIDEO": str(root), "RETENTION_EVENT_DAYS": 30}).settings
    deleted = prune(root, s.retention)
    assert sorted(item.path for item, _ in deleted) == sorted(old)
    assert not old[0].parent.exists()  # the emptied day folder went too
    assert (root / INDEX_NAME).exists()
    done = cat.build()
    assert done["events"] == 1 and cat.events()[0][0]["id"] == new.stem
    check_days(cat)
    cat.close()


# -- settings and the command ----------------------------------------------------------------------
def test_catalog_for_settings(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    conf = tmp_path / "conf.py"
    cameras = {"front": {"cam": "x.mp4"}, "yard": {"cam": "y.mp4", "PATH_FOR_VIDEO": str(b)}}
    conf.write_text(f"PATH_FOR_VIDEO = {str(a)!r}\nCAMERAS = {cameras!r}\n")
    write_event(a, "front", T0)
    write_event(b, "yard", T0)
    write_event(a, "old", T0)  # a camera no longer configured, still on disk
    write_event(b, "front", T0 + 60)  # front's root is a: this folder is not front's
    cat = catalog_for(load_settings(str(conf)))
    assert cat.db_path == a / INDEX_NAME
    cat.build()
    assert cat.cameras() == ["front", "yard", "old"]
    assert {e["camera"] for e in cat.events()[0]} == {"front", "yard", "old"} and cat.stats()["events"] == 3
    cat.close()
    conf.write_text(f"cam = 'x.mp4'\nCAMERA_NAME = 'door'\nWEB_INDEX_FILE = {str(tmp_path / 'i.db')!r}\n")
    single = catalog_for(load_settings(str(conf)))
    assert single.db_path == tmp_path / "i.db" and single.cameras() == ["door"]
    single.close()


def test_index_command(tmp_path):
    root = tmp_path / "video"
    for i in range(3):
        write_event(root, "front", T0 + i * 60)
    write_segments(root, "front", T0, 2)
    done = json.loads(run_cli("index", "--output", root, "--json", check=0).stdout)
    assert (done["events"], done["segments"], done["read"]) == (3, 2, 4)
    assert done["index"] == str(root / INDEX_NAME)
    cat = Catalog(root / INDEX_NAME, {})
    first = cat.events()[0][0]["id"]
    cat.set_reviewed([first])
    cat.close()
    text = run_cli("index", "--output", root, "--rebuild", check=0).stdout
    assert re.match(
        rf"{re.escape(str(root / INDEX_NAME))}: 3 event\(s\), 2 segment\(s\); 4 file\(s\) read", text
    )
    cat = Catalog(root / INDEX_NAME, {})
    assert [e["id"] for e in cat.events(reviewed=True)[0]] == [first]
    cat.close()
    for args in (["--output", tmp_path / "nowhere"], ["--config", tmp_path / "missing.py"]):
        bad = run_cli("index", *args, check=2)
        assert bad.stderr.startswith("nvr-cli: error: ") and len(bad.stderr.strip().splitlines()) == 1
    conf = tmp_path / "conf.py"
    conf.write_text(f"WEB_INDEX_FILE = {str(tmp_path)!r}\n")  # a folder, not a file
    bad = run_cli("index", "--output", root, "--config", conf, check=1)
    assert (
        bad.stderr.strip()
        == f"nvr-cli: error: cannot open the index {tmp_path}: unable to open database file"
    )
    # a damaged index is only a cache: made again
    (root / INDEX_NAME).write_bytes(b"not a database at all" * 100)
    for p in root.glob(INDEX_NAME + "-*"):
        p.unlink()
    assert json.loads(run_cli("index", "--output", root, "--json", check=0).stdout)["events"] == 3
    with sqlite3.connect(root / INDEX_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
