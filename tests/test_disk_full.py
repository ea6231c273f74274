"""A disk that fills up while recording: a real, small tmpfs mounted by the test (needs root)."""

import json
import subprocess

import pytest
from helpers import NUMBER_MASK, clips, decode_all, mount_tmpfs, run_cli, unmount


@pytest.fixture
def small_disk(tmp_path):
    mnt = mount_tmpfs(tmp_path / "disk", "400k")
    yield mnt
    unmount(mnt)


def test_full_disk_keeps_what_plays_never_fakes_a_complete_clip_and_goes_on(small_disk, scene_cache):
    out = small_disk / "video"
    cfg = small_disk.parent / "no_reaper.py"
    cfg.write_text("RETENTION_MIN_FREE_GB = 0\n")  # the case where the reaper cannot help
    # lossless ultrafast: ~1 MB a second, so the first clip fills the 400 KB disk
    args = [
        "record",
        scene_cache(),
        "--output",
        out,
        "--mask",
        NUMBER_MASK,
        "--initial-wait",
        "1",
        "--pre-alarm",
        "3",
        "--motion-duration",
        "2",
        "--crf",
        "0",
        "--preset",
        "ultrafast",
        "--config",
        cfg,
    ]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr  # it went on to the end of the source
    assert proc.stderr.count("no space left on device: this clip stops here") == 2  # both events tried
    assert "retention limits allow deleting nothing" in proc.stderr  # said clearly, once per full disk
    assert "Traceback" not in proc.stderr
    assert clips(out) == []  # nothing that is not complete carries a final name
    parts = list(out.rglob("*.part.mp4"))
    assert len(parts) == 1  # the second clip: not one frame fit, so no file at all
    played = len(decode_all(parts[0]))
    assert played >= 1
    # with room again, the next start finishes the incomplete clip, marked as recovered
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    proc = run_cli(
        *args[:2],
        "--output",
        out,
        "--name",
        "camera",
        "--retries",
        "1",
        "--min-event",
        "100",
        "--config",
        cfg,
    )
    assert proc.returncode == 0 and "recovered clip" in proc.stderr
    (done,) = clips(out)
    assert json.loads(done.with_suffix(".json").read_text())["recovered"] is True
    assert len(decode_all(done)) == played
