"""QR codes: the real images in ../shared, generated scenes, and the zbar-missing message."""

import json
import os
import subprocess
import sys

import pytest
from helpers import NUMBER_MASK, SHARED, clips, run_cli, shared

QR_IMAGES = [
    "pyzbar_qrcode_rotated",
    "zxing_qrcode-1_1",
    "zxing_qrcode-1_16",
    "zxing_qrcode-2_28",
    "zxing_qrcode-2_4",
    "zxing_qrcode-2_5",
]


def expected(name):
    text = shared("qr", f"{name}.expected.txt").read_bytes().decode("utf-8")
    return text[:-1] if text.endswith("\n") and not text.endswith("\r\n") else text


@pytest.mark.parametrize("name", QR_IMAGES)
def test_real_qr_images_decode_to_their_payloads(name):
    proc = run_cli("qr", shared("qr", f"{name}.png"), "--json", check=0)
    codes = json.loads(proc.stdout)["codes"]
    assert [c["payload"] for c in codes] == [expected(name)]
    assert all(c["box"][2] > 0 and c["box"][3] > 0 for c in codes)


def test_qr_plain_output_one_payload_per_line():
    if not SHARED.exists():
        pytest.skip("../shared is absent")
    proc = run_cli("qr", shared("qr", "zxing_qrcode-2_5.png"), check=0)
    assert proc.stdout == expected("zxing_qrcode-2_5") + "\n"


def test_qr_in_a_recorded_event_and_repeats_are_one_sighting(tmp_path, scene_cache):
    # a code held up while someone walks by (8-12 s), and still there afterwards
    scene = scene_cache("qr_walk", seconds=20, walkers=[(8, 12)], codes=[(9, 18, "parcel-7731", (420, 60))])
    out = tmp_path / "v"
    proc = run_cli(
        "record",
        scene,
        "--output",
        out,
        "--mask",
        NUMBER_MASK,
        "--qr",
        "--motion-duration",
        "2",
        "--initial-wait",
        "1",
        "--json",
        check=0,
    )
    (clip,) = clips(out)
    side = json.loads(clip.with_suffix(".json").read_text())
    assert [q["payload"] for q in side["qr"]] == ["parcel-7731"]  # seen for 9 s, reported once
    assert side["qr"][0]["seen"][:4].isdigit()
    assert proc.stderr.count("QR code: 'parcel-7731'") == 1
    (line,) = [json.loads(x) for x in proc.stdout.splitlines()]
    assert line["qr"][0]["payload"] == "parcel-7731"


def test_qr_starts_an_event_without_motion_when_configured(tmp_path, scene_cache, isolated_home):
    # nothing moves; a code is on screen from 5 s to 8 s (its appearance is masked as motion)
    scene = scene_cache("qr_still", seconds=12, walkers=[], codes=[(5, 8, "gate-open", (420, 60))])
    mask = ["--mask", NUMBER_MASK, "--mask", "400,40 640,40 640,250 400,250"]
    quiet = run_cli("scan", scene, *mask, "--qr", "--json", check=0)
    assert json.loads(quiet.stdout)["events"] == []
    (isolated_home / "machine_specific_configuration.py").write_text("QR_STARTS_EVENT = True\n")
    proc = run_cli("scan", scene, *mask, "--qr", "--json", "--motion-duration", "1", check=0)
    (event,) = json.loads(proc.stdout)["events"]
    assert event["kind"] == "qr" and [q["payload"] for q in event["qr"]] == ["gate-open"]
    assert 5.0 <= event["trigger"] <= 5.6
    # QR_AREA = "motion": only motion regions are scanned, and here nothing moves
    (isolated_home / "machine_specific_configuration.py").write_text(
        "QR_STARTS_EVENT = True\nQR_AREA = 'motion'\n"
    )
    proc = run_cli("scan", scene, *mask, "--qr", "--json", check=0)
    assert json.loads(proc.stdout)["events"] == []


def test_missing_zbar_library_is_one_line(tmp_path, scene_cache):
    # a pyzbar that fails to import exactly as the real one does without Debian's libzbar0
    fake = tmp_path / "fake" / "pyzbar"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "pyzbar.py").write_text("raise ImportError('Unable to find zbar shared library')\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'fake'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run(
        [sys.executable, "-m", "nvr_cli", "qr", str(scene_cache())], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr == "nvr-cli: error: QR codes need the zbar library: apt-get install libzbar0\n"
    # everything else keeps working without it
    proc = subprocess.run(
        [sys.executable, "-m", "nvr_cli", "scan", str(scene_cache()), "--mask", NUMBER_MASK, "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)["events"]
