"""The review page's JSON API (docs/web-api.md) against a real `nvr-cli serve` on 127.0.0.1, over
storage made by real recordings (tests/web_storage.py): filters, paging, media with Range, ids
and path traversal, reviewed marks across a restart, the index following a recorder and
retention, exports."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from helpers import ffprobe, run_cli, start_recorder, wait_for
from web_serve import Served, serve_config
from web_storage import CAMERA_PASSWORD


@pytest.fixture(scope="module")
def served(recorded_storage, tmp_path_factory):
    """One server over the session's storage (its index in a folder of its own: the storage stays
    as recorded for the other tests)."""
    server = Served(serve_config(recorded_storage.config, tmp_path_factory.mktemp("serve")))
    yield server
    assert server.stop() == 0, server.log.text()
    assert CAMERA_PASSWORD not in server.log.text()


def _all_events(served, query: str = "") -> list:
    page = served.api(f"/api/events?limit=500{'&' + query if query else ''}")
    assert page["next_cursor"] is None
    return page["events"]


def _lobby(storage):
    if "lobby" not in storage.cameras:
        pytest.skip("../shared is absent: the lobby camera (persons) was not recorded")


def _copy(storage, folder: Path) -> Path:
    """A copy of the recorded storage that a test may change."""
    root = folder / "video"
    shutil.copytree(storage.root, root, ignore=shutil.ignore_patterns(".nvr-index*", ".status"))
    return root


# -- cameras, status ------------------------------------------------------------------------------


def test_cameras_show_state_and_counts_and_no_password(served, recorded_storage):
    cams = {c["name"]: c for c in served.api("/api/cameras")["cameras"]}
    assert list(cams)[: len(recorded_storage.cameras)] == recorded_storage.cameras
    gate = cams["gate"]
    assert gate["source"] == recorded_storage.urls["gate"].replace(CAMERA_PASSWORD, "***")
    # the recording stopped cleanly (however long ago): down, not stale
    assert (gate["state"], gate["verdict"]) == ("down", "down: stopped")
    assert gate["has_recordings"] is True
    events = _all_events(served, "camera=gate")
    newest = events[0]
    assert gate["last_event"]["id"] == newest["id"]
    assert gate["thumbnail"] == f"/api/events/{newest['id']}/thumbnail.jpg"
    today = [e for e in events if e["day"] == time.strftime("%Y-%m-%d")]
    assert gate["events_today"] == len(today)
    status = served.api("/api/status")
    assert status["index"]["events"] == len(_all_events(served))
    assert status["index"]["watching"] is True
    assert {c["camera"] for c in status["cameras"]} >= set(recorded_storage.cameras)


def test_no_answer_shows_the_camera_password(served, recorded_storage):
    """Every kind of answer, and every answer this module's server gave, is free of the password."""
    assert CAMERA_PASSWORD in recorded_storage.config.read_text()  # the secret is there to leak
    served.get("/")
    served.get("/events")
    served.get("/static/app.js")
    served.api("/api/status")
    for e in _all_events(served):
        served.api(f"/api/events/{e['id']}")
        side = served.get(e["sidecar"])
        assert side.status == 200
        assert "***" in side.json()["source"] or e["camera"] != "gate"
    for d in served.api("/api/days")["days"]:
        for cam in d["cameras"]:
            served.api(f"/api/cameras/{cam}/recordings?day={d['day']}")
    leaks = [path for path, body in served.answers if CAMERA_PASSWORD.encode() in body]
    assert not leaks
    assert len(served.answers) > 10


# -- events ---------------------------------------------------------------------------------------


def test_events_filters(served, recorded_storage):
    everything = _all_events(served)
    assert len(everything) >= 2 * len(recorded_storage.cameras)
    keys = [(e["start_ts"], e["id"]) for e in everything]
    assert keys == sorted(keys, reverse=True), "newest first"
    for e in everything:
        assert e["clip"] == f"/api/events/{e['id']}/clip.mp4"
        assert "paths" not in e and "facts" not in e

    gate = _all_events(served, "camera=gate")
    assert gate and {e["camera"] for e in gate} == {"gate"}
    assert [e["id"] for e in gate] == [e["id"] for e in everything if e["camera"] == "gate"]
    both = _all_events(served, "camera=gate&camera=nosuch")
    assert both == gate

    day = everything[0]["day"]
    assert _all_events(served, f"day={day}") == [e for e in everything if e["day"] == day]
    assert _all_events(served, "day=1999-01-01") == []

    motion = _all_events(served, "label=motion")
    assert motion == [e for e in everything if not e["labels"]]
    assert {e["id"] for e in gate} <= {e["id"] for e in motion}  # the gate scene has no objects
    assert _all_events(served, "label=qr") == [e for e in everything if e["qr"]]

    mid = everything[len(everything) // 2]["start_ts"]
    ranged = _all_events(served, f"from={mid}&to={everything[0]['start_ts'] + 1}")
    assert ranged == [e for e in everything if e["start_ts"] >= mid]
    iso_from = everything[len(everything) // 2]["start"]
    assert _all_events(served, urlencode({"from": iso_from})) == ranged

    assert _all_events(served, "reviewed=false") == everything  # nothing is marked in this server
    assert _all_events(served, "reviewed=true") == []

    for bad in ("day=2026-13-45x", "limit=0", "limit=501", "limit=x", "min_score=2", "min_score=x",
                "reviewed=maybe", "cursor=nonsense", "from=yesterday-ish"):  # fmt: skip
        r = served.get(f"/api/events?{bad}")
        assert r.status == 400, (bad, r)
        assert set(r.json()) == {"error"} and "\n" not in r.json()["error"]


def test_person_label_and_min_score(served, recorded_storage):
    _lobby(recorded_storage)
    everything = _all_events(served)
    persons = _all_events(served, "label=person")
    assert persons and all("person" in e["labels"] and e["camera"] == "lobby" for e in persons)
    assert persons == [e for e in everything if "person" in e["labels"]]
    either = _all_events(served, "label=person&label=motion")
    assert either == [e for e in everything if "person" in e["labels"] or not e["labels"]]
    best = max(e["top_score"] for e in persons)
    assert _all_events(served, f"min_score={best}") == [e for e in persons if e["top_score"] >= best]
    assert _all_events(served, "min_score=0") == [e for e in everything if e["top_score"] is not None]
    assert _all_events(served, f"min_score={min(best + 0.001, 1)}") == []


def test_cursor_paging_has_no_duplicates_and_no_misses(served):
    everything = [e["id"] for e in _all_events(served)]
    for size in (1, 2, 3):
        seen, cursor, pages = [], None, 0
        while True:
            page = served.api(f"/api/events?limit={size}" + (f"&cursor={cursor}" if cursor else ""))
            assert len(page["events"]) <= size
            seen += [e["id"] for e in page["events"]]
            cursor = page["next_cursor"]
            pages += 1
            if cursor is None:
                break
            assert pages < 1000
        assert seen == everything, size
    # a filter and its cursor go together
    gate = [e["id"] for e in _all_events(served, "camera=gate")]
    first = served.api("/api/events?camera=gate&limit=1")
    rest = served.api(f"/api/events?camera=gate&limit=500&cursor={first['next_cursor']}")
    assert [e["id"] for e in first["events"] + rest["events"]] == gate


# -- one event and its media ----------------------------------------------------------------------


def test_one_event_with_facts(served, recorded_storage):
    clip = recorded_storage.clips("gate")[0]
    side = json.loads(clip.with_suffix(".json").read_text())
    ev = served.api(f"/api/events/{clip.stem}")
    assert ev["id"] == clip.stem and ev["camera"] == "gate"
    assert ev["facts"]["frames"] == side["frames"]
    assert ev["facts"]["end_reason"] == side["end_reason"] == ev["end_reason"]
    assert ev["sidecar"] == f"/api/events/{clip.stem}/sidecar.json"
    assert "paths" not in ev
    assert served.get("/api/events/gate_19990101-000000").status == 404


def test_clip_whole_and_range(served, recorded_storage):
    clip = recorded_storage.clips("gate")[0]
    data = clip.read_bytes()
    whole = served.get(f"/api/events/{clip.stem}/clip.mp4")
    assert whole.status == 200 and whole.body == data
    assert whole.header("Content-Type") == "video/mp4" and whole.header("Accept-Ranges") == "bytes"
    assert whole.header("Content-Disposition") is None
    part = served.get(f"/api/events/{clip.stem}/clip.mp4", Range="bytes=100-1099")
    assert part.status == 206
    assert part.header("Content-Range") == f"bytes 100-1099/{len(data)}"
    assert part.body == data[100:1100]
    tail = served.get(f"/api/events/{clip.stem}/clip.mp4", Range="bytes=-500")
    assert tail.status == 206 and tail.body == data[-500:]
    beyond = served.get(f"/api/events/{clip.stem}/clip.mp4", Range=f"bytes={len(data) + 10}-")
    assert beyond.status == 416
    down = served.get(f"/api/events/{clip.stem}/clip.mp4?download=1")
    assert down.status == 200 and down.header("Content-Disposition").startswith("attachment")
    assert clip.name in down.header("Content-Disposition")


def test_thumbnail_and_sidecar(served, recorded_storage):
    clip = recorded_storage.clips("gate")[0]
    thumb = served.get(f"/api/events/{clip.stem}/thumbnail.jpg")
    assert thumb.status == 200 and thumb.header("Content-Type") == "image/jpeg"
    assert thumb.body == clip.with_suffix(".jpg").read_bytes()
    on_disk = json.loads(clip.with_suffix(".json").read_text())
    side = served.get(f"/api/events/{clip.stem}/sidecar.json")
    assert side.status == 200 and side.header("Content-Type").startswith("application/json")
    got = side.json()
    assert list(got) == list(on_disk)  # as written, keys in order
    assert got["source"] == on_disk["source"] and CAMERA_PASSWORD not in got["source"]
    assert {k: v for k, v in got.items() if k != "source"} == {
        k: v for k, v in on_disk.items() if k != "source"
    }


# -- days and recordings --------------------------------------------------------------------------


def test_days(served, recorded_storage):
    days = served.api("/api/days")["days"]
    events = _all_events(served)
    assert [d["day"] for d in days] == sorted({e["day"] for e in events}, reverse=True)
    for d in days:
        assert d["events"] == sum(e["day"] == d["day"] for e in events)
        assert d["unreviewed"] == d["events"]
        assert d["recorded_seconds"] > 0
        assert set(d["cameras"]) == set(recorded_storage.cameras)
    gate = served.api("/api/days?camera=gate")["days"]
    assert all(d["cameras"] == ["gate"] for d in gate)
    assert served.api(f"/api/days?month={days[0]['day'][:7]}")["days"] == days
    assert served.api("/api/days?month=1999-01")["days"] == []
    assert served.get("/api/days?month=2026").status == 400


def test_recordings_of_a_day_are_contiguous_segments(served, recorded_storage):
    day = _all_events(served, "camera=gate")[0]["day"]
    tl = served.api(f"/api/cameras/gate/recordings?day={day}")
    assert tl["camera"] == "gate" and tl["day"] == day
    assert tl["end_ts"] - tl["start_ts"] in (23 * 3600, 24 * 3600, 25 * 3600)
    segs = tl["segments"]
    assert len(segs) >= 3 and len(segs) == len([s for s in recorded_storage.segments("gate")])
    for a, b in zip(segs, segs[1:]):
        assert a["start_ts"] < b["start_ts"]
        assert abs(b["start_ts"] - a["end_ts"]) <= 1.0, (a, b)
    assert tl["gaps"] == []
    assert all(s["url"] == f"/api/segments/{s['id']}.mp4" for s in segs)
    assert {e["id"] for e in tl["events"]} == {e["id"] for e in _all_events(served, f"camera=gate&day={day}")}
    assert all(e["clip"].endswith("/clip.mp4") for e in tl["events"])
    assert served.get(f"/api/cameras/nosuch/recordings?day={day}").status == 404
    assert served.get("/api/cameras/gate/recordings?day=29-11-2026").status == 400


def test_segment_with_range(served, recorded_storage):
    day = _all_events(served, "camera=gate")[0]["day"]
    seg = served.api(f"/api/cameras/gate/recordings?day={day}")["segments"][1]
    path = next(e["path"] for e in recorded_storage.segments("gate") if e["path"].name.startswith(seg["id"]))
    data = path.read_bytes()
    whole = served.get(seg["url"])
    assert whole.status == 200 and whole.body == data and whole.header("Content-Type") == "video/mp4"
    part = served.get(seg["url"], Range="bytes=2000-2999")
    assert part.status == 206 and part.body == data[2000:3000]
    assert part.header("Content-Range") == f"bytes 2000-2999/{len(data)}"


def test_a_gap_shows_where_a_segment_is_missing(recorded_storage, tmp_path):
    root = _copy(recorded_storage, tmp_path)
    segs = [e for e in recorded_storage.segments("gate")]
    middle = segs[len(segs) // 2]
    (root / middle["path"].relative_to(recorded_storage.root)).unlink()
    server = Served(serve_config(recorded_storage.config, tmp_path / "serve", root=root))
    try:
        day = server.api("/api/events?camera=gate&limit=1")["events"][0]["day"]
        tl = server.api(f"/api/cameras/gate/recordings?day={day}")
        assert len(tl["segments"]) == len(segs) - 1
        assert len(tl["gaps"]) == 1
        gap = tl["gaps"][0]
        assert abs(gap["start_ts"] - segs[len(segs) // 2 - 1]["end"]) <= 1.0
        assert abs(gap["end_ts"] - segs[len(segs) // 2 + 1]["start"]) <= 1.0
        gone = middle["path"].name[: -len(".seg.mp4")]
        assert server.get(f"/api/segments/{gone}.mp4").status == 404
    finally:
        assert server.stop() == 0


def test_output_shows_a_storage_with_no_config(recorded_storage, tmp_path):
    """`nvr-cli serve --output DIR` (after `nvr-cli demo`, say): the cameras are the folders found."""
    root = _copy(recorded_storage, tmp_path)
    bare = tmp_path / "bare.py"
    bare.write_text(f"WEB_INDEX_FILE = {str(tmp_path / 'index.sqlite3')!r}\n")
    server = Served(bare, "--output", str(root))
    try:
        cams = [c["name"] for c in server.api("/api/cameras")["cameras"]]
        assert sorted(cams) == sorted(recorded_storage.cameras)
        assert {e["camera"] for e in _all_events(server)} == set(recorded_storage.cameras)
    finally:
        assert server.stop() == 0


# -- ids and paths --------------------------------------------------------------------------------


def test_ids_and_path_traversal_never_reach_a_file(served, recorded_storage):
    secret_texts = [b"PATH_FOR_VIDEO", b"root:x:0:0", b"CAMERAS"]
    event = recorded_storage.clips("gate")[0].stem
    segment = recorded_storage.segments("gate")[0]["path"].name[: -len(".seg.mp4")]
    config = str(recorded_storage.config)
    tries = [
        "/api/events/../../../../etc/passwd/clip.mp4",
        "/api/events/..%2f..%2f..%2f..%2fetc%2fpasswd/clip.mp4",
        "/api/events/%2e%2e%2f%2e%2e%2fetc%2fpasswd/clip.mp4",
        "/api/events/%2e%2e/clip.mp4",
        "/api/events/..%2Fnvr.py/sidecar.json",
        f"/api/events/{quote(config, safe='')}/sidecar.json",
        f"/api/events/{config}/sidecar.json",
        "/api/events//etc/passwd/clip.mp4",
        "/api/events/.hidden/clip.mp4",
        "/api/events/-x/clip.mp4",
        f"/api/events/{'a' * 300}/clip.mp4",
        "/api/segments/..%2f..%2fnvr.py.mp4",
        f"/api/segments/{quote('/etc/passwd', safe='')}.mp4",
        f"/api/segments/{segment}.seg.mp4",  # ids, not file names
        f"/api/segments/{segment}",
        f"/api/events/{event}.json/clip.mp4",
        "/api/exports/..%2f..%2fnvr.py/file.mp4",
        "/api/exports/20260101-000000-00000000/file.mp4",
        "/static/../nvr.py",
        "/static/..%2f..%2fconfig%2fdefaults.py",
        "/static/%2e%2e/%2e%2e/config/defaults.py",
        "/static//etc/passwd",
        f"/static/{config}",
        "/static/index.html/../../__init__.py",
        "/api/cameras/..%2f..%2fetc/recordings?day=2026-01-01",
    ]
    for path in tries:
        r = served.get(path)
        assert r.status in (400, 404), (path, r)
        assert not any(s in r.body for s in secret_texts), (path, r)
    assert served.get("/static/index.html").status == 200  # the real ones are there


def test_planted_links_and_foreign_paths_are_not_served(recorded_storage, tmp_path):
    """A sidecar whose clip names another camera's file, and links out of the camera's folder, are
    indexed (the files are the truth) but their files never served."""
    root = _copy(recorded_storage, tmp_path)
    lobby_or_gate = recorded_storage.cameras[-1]
    other = next(p for p in (root / lobby_or_gate).rglob("*.mp4") if not p.name.endswith(".seg.mp4"))
    real = recorded_storage.clips("gate")[0]
    folder = root / real.relative_to(recorded_storage.root).parent
    side = json.loads(real.with_suffix(".json").read_text())
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0 a file outside the storage\n")
    planted = {
        "gate_20261129-000001": {"clip": os.path.relpath(other, folder)},  # ../../../../lobby/...
        "gate_20261129-000002": {"clip": str(secret)},
        "gate_20261129-000003": {"clip": "gate_20261129-000003.mp4"},  # links to the secret
    }
    for stem, changes in planted.items():
        (folder / f"{stem}.json").write_text(json.dumps({**side, **changes, "thumbnail": f"{stem}.jpg"}))
    (folder / "gate_20261129-000003.mp4").symlink_to(secret)
    (folder / "gate_20261129-000003.jpg").symlink_to(secret)
    (folder / "gate_20261129-000001.jpg").symlink_to(other.with_suffix(".jpg"))
    link_dir = root / "gate" / "linked"
    link_dir.symlink_to(tmp_path)  # a folder link out of the storage
    server = Served(serve_config(recorded_storage.config, tmp_path / "serve", root=root))
    try:
        ids = {e["id"] for e in server.api("/api/events?limit=500")["events"]}
        for stem in planted:
            for media in ("clip.mp4", "thumbnail.jpg"):
                r = server.get(f"/api/events/{stem}/{media}")
                assert r.status == 404, (stem, media, r, stem in ids)
                assert b"root:x:0:0" not in r.body and not r.body.startswith(b"\x00\x00\x00")
        ok = server.get(f"/api/events/{real.stem}/clip.mp4")
        assert ok.status == 200 and ok.body == real.read_bytes()
    finally:
        assert server.stop() == 0


# -- writes ---------------------------------------------------------------------------------------


def test_reviewed_marks_survive_a_restart(recorded_storage, tmp_path):
    cfg = serve_config(recorded_storage.config, tmp_path / "serve")
    server = Served(cfg)
    try:
        events = server.api("/api/events?limit=500")["events"]
        first = events[0]
        r = server.post(f"/api/events/{first['id']}/reviewed", {"reviewed": True})
        assert r.status == 200 and r.json()["reviewed"] is True and r.json()["id"] == first["id"]
        assert [e["id"] for e in server.api("/api/events?reviewed=true")["events"]] == [first["id"]]
        r = server.post("/api/reviewed", {"reviewed": True, "camera": "gate"})
        gate = [e for e in events if e["camera"] == "gate"]
        assert r.status == 200 and r.json() == {"changed": len(gate) - (first["camera"] == "gate")}
        assert server.post("/api/events/nosuch_1/reviewed", {"reviewed": True}).status == 404
        assert server.post(f"/api/events/{first['id']}/reviewed", {"reviewed": "yes"}).status == 400
        day = server.api("/api/days")["days"][0]
        assert day["unreviewed"] == len([e for e in events if e["camera"] != "gate" and e is not first])
    finally:
        assert server.stop() == 0
    server = Served(cfg)
    try:
        marked = {e["id"] for e in server.api("/api/events?reviewed=true&limit=500")["events"]}
        assert marked == {first["id"]} | {e["id"] for e in gate}
        r = server.post(f"/api/events/{first['id']}/reviewed", {"reviewed": False})
        assert r.json()["reviewed"] is False
    finally:
        assert server.stop() == 0


def test_writes_need_json_and_the_same_origin(served):
    event = served.api("/api/events?limit=1")["events"][0]["id"]
    url = f"/api/events/{event}/reviewed"
    form = served.request(
        "POST", url, raw=b"reviewed=true", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert form.status == 403
    plain = served.request("POST", url, raw=b'{"reviewed": true}', headers={"Content-Type": "text/plain"})
    assert plain.status == 403
    foreign = served.post(url, {"reviewed": False}, headers={"Origin": "http://evil.example"})
    assert foreign.status == 403
    same = served.post(url, {"reviewed": False}, headers={"Origin": f"http://127.0.0.1:{served.port}"})
    assert same.status == 200
    assert served.api("/api/events?reviewed=true")["events"] == []


def test_headers_and_unknown_paths(served):
    page = served.get("/timeline/gate/2026-11-29?t=08:15:00")
    assert page.status == 200 and page.header("Content-Type").startswith("text/html")
    assert page.body == served.get("/").body == served.get("/events/x").body == served.get("/login").body
    for r in (page, served.get("/api/cameras")):
        assert r.header("X-Content-Type-Options") == "nosniff"
        assert "default-src 'self'" in r.header("Content-Security-Policy")
        assert r.header("Referrer-Policy") == "same-origin"
    assert served.get("/api/cameras").header("Cache-Control") == "no-store"
    unknown = served.get("/api/nothing")
    assert unknown.status == 404 and "error" in unknown.json()
    assert served.get("/no/such/page").status == 404
    assert served.get("/api/me", Host="evil.example").status == 403  # DNS rebinding of a loopback server


# -- the index follows the storage ----------------------------------------------------------------


def test_the_index_follows_a_recorder_and_retention(recorded_storage, rtsp_server, scene_cache, tmp_path):
    root = _copy(recorded_storage, tmp_path)
    cfg = serve_config(recorded_storage.config, tmp_path / "serve", root=root)
    server = Served(cfg)
    recorder = None
    try:
        before = {e["id"] for e in server.api("/api/events?camera=gate&limit=500")["events"]}
        camera = rtsp_server(scene_cache("web-gate", seconds=12, walkers=[(1, 4), (7, 10)]))  # short events
        recorder, rec_log = start_recorder(camera.url, root, "--continuous", "--segment-seconds", "4")

        def new_clip():
            now = server.api("/api/events?camera=gate&limit=500")["events"]
            fresh = [e for e in now if e["id"] not in before]
            return fresh and server.get(fresh[0]["clip"]).status == 200 and fresh

        fresh = wait_for(new_clip, timeout=120, interval=0.5)
        assert fresh, rec_log.text()
        assert fresh[0]["camera"] == "gate"
        recorder.send_signal(signal.SIGTERM)
        recorder.wait(timeout=60)
        recorder = None

        # retention: keep nothing older than a moment ago; what it deletes leaves the page
        (tmp_path / "prune.py").write_text(
            cfg.read_text() + "\nRETENTION_EVENT_DAYS = 0.00001\nRETENTION_SEGMENT_DAYS = 0.00001\n"
        )
        time.sleep(1.0)  # every file is older than the limit (0.86 s)
        done = run_cli("prune", "--config", tmp_path / "prune.py", check=0)
        assert "deleted" in done.stdout

        def emptied():
            return server.api("/api/events?camera=gate&limit=500")["events"] == []

        assert wait_for(emptied, timeout=60, interval=0.5), server.api("/api/events?camera=gate")
        day = next(iter(fresh))["day"]
        assert wait_for(
            lambda: server.api(f"/api/cameras/gate/recordings?day={day}")["segments"] == [], timeout=60
        )
    finally:
        if recorder is not None and recorder.poll() is None:
            recorder.kill()
        assert server.stop() == 0


# -- exports --------------------------------------------------------------------------------------


def test_export_a_range_to_a_playable_mp4(served, recorded_storage, tmp_path):
    segs = recorded_storage.segments("gate")
    start, end = segs[0]["start"] + 0.5, segs[2]["end"] - 0.5
    r = served.post("/api/exports", {"camera": "gate", "from": start, "to": end})
    assert r.status == 202, r
    job = r.json()
    assert job["state"] in ("queued", "running", "done") and job["camera"] == "gate"
    done = wait_for(
        lambda: served.api(f"/api/exports/{job['id']}")["state"] in ("done", "failed"), timeout=120
    )
    job = served.api(f"/api/exports/{job['id']}")
    assert done and job["state"] == "done", job
    assert job["progress"] == 1 and job["error"] is None
    f = served.get(job["file"])
    assert f.status == 200 and f.header("Content-Type") == "video/mp4" and len(f.body) == job["size"]
    out = tmp_path / "export.mp4"
    out.write_bytes(f.body)
    probe = ffprobe(out)
    assert probe["streams"][0]["codec_name"] == "h264"
    assert abs(float(probe["format"]["duration"]) - (end - start)) < 3
    part = served.get(job["file"], Range="bytes=0-99")
    assert part.status == 206 and part.body == f.body[:100]
    side = served.api(job["sidecar"])
    assert side["camera"] == "gate" and len(side["segments"]) >= 3 and side["gaps"] == []
    assert all("/" not in s["file"] for s in side["segments"])  # names, not the server's paths
    assert served.api("/api/exports")["exports"][0]["id"] == job["id"]


def test_export_refusals(served, recorded_storage):
    segs = recorded_storage.segments("gate")
    a = segs[0]["start"]
    cases = [
        ({"camera": "gate", "from": a + 10, "to": a}, 400),
        ({"camera": "gate", "from": a, "to": a + 3 * 86400}, 400),
        ({"camera": "gate", "from": "not a time", "to": a}, 400),
        ({"camera": "gate", "from": 946684800, "to": 946684860}, 404),  # 2000-01-01: nothing then
        ({"camera": "nosuch", "from": a, "to": a + 5}, 404),
        ({"camera": "gate", "from": a - 3600, "to": a + 5}, 409),  # a gap (no recording before)
        ({"from": a, "to": a + 5}, 400),
    ]
    for body, status in cases:
        r = served.post("/api/exports", body)
        assert r.status == status, (body, r)
        assert "\n" not in r.json()["error"]
    ok = served.post("/api/exports", {"camera": "gate", "from": a - 3600, "to": a + 5, "allow_gaps": True})
    assert ok.status == 202
    assert served.get("/api/exports/nosuch-1").status == 404
