"""`nvr-cli model download` against a real HTTP server on 127.0.0.1 serving ../shared's models."""

import hashlib
import json
import subprocess
import sys

import cv2
import pytest
from helpers import free_port, run_cli, shared


@pytest.fixture
def model_server():
    folder = shared("models", "ssd_mobilenet_v1_1_metadata_1.tflite").parent
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import time
    import urllib.request

    for _ in range(50):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait()


def test_known_model_is_fetched_verified_and_usable(tmp_path, model_server):
    env = {"NVR_CLI_MODEL_MIRROR": model_server + "/", "XDG_DATA_HOME": str(tmp_path / "data")}
    proc = run_cli("model", "download", "ssd-mobilenet-v1", env=env, check=0)
    model = tmp_path / "data" / "nvr-cli" / "models" / "ssd_mobilenet_v1_1_metadata_1.tflite"
    labels = model.with_name("ssd_mobilenet_v1_1_metadata_1.labels.txt")
    assert model.read_bytes() == shared("models", "ssd_mobilenet_v1_1_metadata_1.tflite").read_bytes()
    assert "(verified)" in proc.stdout
    assert (
        f"OBJECT_MODEL = {str(model)!r}" in proc.stdout and f"OBJECT_LABELS = {str(labels)!r}" in proc.stdout
    )
    # the printed lines work as a config file, and the model detects with the written labels
    cfg = tmp_path / "cfg.py"
    cfg.write_text("\n".join(x for x in proc.stdout.splitlines() if not x.startswith("#")) + "\n")
    assert run_cli("config", "check", "--config", cfg).returncode == 0
    img = tmp_path / "street.png"
    cap = cv2.VideoCapture(str(shared("video", "vtest_480x360.avi")))
    cap.set(cv2.CAP_PROP_POS_MSEC, 10000)
    cv2.imwrite(str(img), cap.read()[1])
    out = run_cli("detect", img, "--model", model, "--labels", labels, "--json", check=0)
    assert "person" in [d["label"] for d in json.loads(out.stdout)["detections"]]


def test_url_with_checksum_and_failures(tmp_path, model_server):
    url = model_server + "/yolox_nano.tflite"
    good = hashlib.sha256(shared("models", "yolox_nano.tflite").read_bytes()).hexdigest()
    dest = tmp_path / "m"
    proc = run_cli("model", "download", url, "--sha256", good, "--dest", dest, check=0)
    assert (dest / "yolox_nano.tflite").exists() and "(verified)" in proc.stdout
    bad = run_cli("model", "download", url, "--sha256", "0" * 64, "--dest", tmp_path / "bad")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "SHA-256 is " + good in bad.stderr
    assert not list((tmp_path / "bad").iterdir())  # nothing half-checked is left behind
    missing = run_cli("model", "download", model_server + "/nope.tflite", "--dest", tmp_path / "x")
    assert missing.returncode == 1 and "HTTP 404" in missing.stderr and missing.stderr.count("\n") == 1
    unknown = run_cli("model", "download", "no-such-model")
    assert unknown.returncode == 1 and "ssd-mobilenet-v1" in unknown.stderr
