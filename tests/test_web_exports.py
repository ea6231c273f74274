"""The page's export jobs: finished ones are found again after a restart, and deleted with their
files after WEB_EXPORT_KEEP_HOURS (in process: the HTTP side is in test_web_api.py)."""

import json
import os
import time

from nvr_cli.config import Settings
from nvr_cli.web.exports import ExportJobs


def _finished(folder, job_id, camera="gate", age=0.0):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{job_id}.mp4").write_bytes(b"\x00" * 100)
    record = {"camera": camera, "from_ts": 1e9, "to_ts": 1e9 + 10, "allow_gaps": False, "local_time": True,
              "created": time.time() - age}  # fmt: skip
    (folder / f"{job_id}.json").write_text(json.dumps({"camera": camera, "segments": [], "job": record}))


def test_finished_exports_outlive_a_restart_until_they_expire(tmp_path):
    folder = tmp_path / ".nvr-exports"
    _finished(folder, "20261129-080000-0000000a", age=2 * 3600)  # older than the 1 h kept
    _finished(folder, "20261129-090000-0000000b", age=60)
    _finished(folder, "20261129-090100-0000000c", age=30)
    (folder / "20261129-090200-0000000d.mp4").write_bytes(b"half")  # a crash before its sidecar
    (folder / ".20261129-090300-0000000e.mp4.part.mp4").write_bytes(b"part")
    out = Settings().output
    jobs = ExportJobs(folder, lambda cam: out, lambda: "ffmpeg", keep_hours=1.0)
    listed = jobs.all()
    assert [j["id"] for j in listed] == [
        "20261129-090100-0000000c",
        "20261129-090000-0000000b",
    ]  # newest first
    assert all(j["state"] == "done" and j["progress"] == 1 and j["size"] == 100 for j in listed)
    assert listed[0]["file"] == "/api/exports/20261129-090100-0000000c/file.mp4"
    assert not (folder / "20261129-080000-0000000a.mp4").exists()
    assert not (folder / "20261129-080000-0000000a.json").exists()
    assert jobs.sidecar("20261129-090000-0000000b") == {"camera": "gate", "segments": []}  # no job record
    assert jobs.get("20261129-080000-0000000a") is None
    # files of no job are left an hour (a server may be writing them), then go
    assert (folder / "20261129-090200-0000000d.mp4").exists()
    old = time.time() - 7200
    for name in ("20261129-090200-0000000d.mp4", ".20261129-090300-0000000e.mp4.part.mp4"):
        os.utime(folder / name, (old, old))
    jobs.expire()
    assert {p.name for p in folder.iterdir()} == {
        "20261129-090000-0000000b.mp4",
        "20261129-090000-0000000b.json",
        "20261129-090100-0000000c.mp4",
        "20261129-090100-0000000c.json",
    }
