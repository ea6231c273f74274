"""Hooks run real commands: what they are given, and that a bad one never gets in the way."""

import json
import logging
import sys
import time
from pathlib import Path

import pytest
from helpers import pid_alive, wait_for

from nvr_cli.config import Settings
from nvr_cli.runtime.hooks import HookRunner, hook_env

PROBE = str(Path(__file__).parent / "support" / "hook_probe.py")


@pytest.fixture
def hook_log():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("nvr_cli.runtime.hooks")
    h = Keep(level=logging.DEBUG)
    logger.addHandler(h)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(h)
    logger.setLevel(old)


def test_hook_gets_env_and_json_without_a_shell(tmp_path, hook_log):
    # an argument with shell syntax arrives as it is: nothing ever goes through a shell
    s = Settings().replace(
        CAMERA_NAME="front", ON_EVENT_END=(sys.executable, PROBE, str(tmp_path), "$(touch x); *")
    )
    runner = HookRunner(s.hooks, s.CAMERA_NAME)
    payload = {
        "event": 7,
        "clip": "/v/front/a.mp4",
        "labels": ["person", "dog"],
        "score": 0.0125,
        "kept": True,
        "objects": [{"label": "person", "score": 0.9}],
    }
    t = runner.fire("event_end", payload)
    t.join(10)
    [out] = list(tmp_path.glob("event_end-*.json"))
    got = json.loads(out.read_text())
    assert got["argv"][-1] == "$(touch x); *" and not (tmp_path / "x").exists()
    env = got["env"]
    assert env["NVR_HOOK"] == "event_end" and env["NVR_CAMERA"] == "front" and env["NVR_EVENT"] == "7"
    assert env["NVR_LABELS"] == "person,dog" and env["NVR_SCORE"] == "0.0125" and env["NVR_KEPT"] == "1"
    assert "NVR_OBJECTS" not in env  # nested: only in the JSON file
    assert got["json"]["objects"] == payload["objects"] and got["json"]["camera"] == "front"
    assert not Path(env["NVR_JSON"]).exists(), "the JSON file is removed when the hook ends"
    assert runner.fire("event_start", {}) is None  # not configured: nothing runs


def test_hanging_hook_and_its_children_are_killed_at_the_timeout(tmp_path, hook_log):
    s = Settings().replace(
        ON_CAMERA_LOST=(sys.executable, PROBE, str(tmp_path), "--hang", "300"), HOOK_TIMEOUT_SECS=1.5
    )
    t0 = time.monotonic()
    t = HookRunner(s.hooks, s.CAMERA_NAME).fire("camera_lost", {"reason": "timeout"})
    assert wait_for(lambda: list(tmp_path.glob("camera_lost-*.json")), timeout=10)
    got = json.loads(next(tmp_path.glob("camera_lost-*.json")).read_text())
    t.join(10)
    took = time.monotonic() - t0
    assert not t.is_alive() and 1.4 < took < 8, took
    # SIGKILL is sent at the timeout; the kernel takes a moment to finish the orphaned child
    assert wait_for(lambda: not pid_alive(got["pid"]) and not pid_alive(got["child"]), timeout=5), (
        "the hook or its child survived"
    )
    assert any("ON_CAMERA_LOST" in m and "killed" in m for m in hook_log), hook_log


def test_failing_missing_and_too_many_hooks_are_logged(tmp_path, hook_log):
    s = Settings().replace(
        ON_QR_CODE=(sys.executable, PROBE, str(tmp_path), "--fail"),
        ON_CAMERA_FOUND=(str(tmp_path / "no-such-program"),),
        ON_EVENT_START=(sys.executable, PROBE, str(tmp_path), "--hang", "3"),
        HOOK_MAX_RUNNING=2,
    )
    runner = HookRunner(s.hooks, s.CAMERA_NAME)
    runner.fire("qr_code", {"payload": "hello"}).join(10)
    runner.fire("camera_found", {}).join(10)
    assert any(
        "ON_QR_CODE" in m and "exited with 3" in m and "probe failed on purpose" in m for m in hook_log
    )
    assert any("ON_CAMERA_FOUND" in m and "could not start" in m for m in hook_log)
    first = [runner.fire("event_start", {"event": i}) for i in range(3)]
    assert first[2] is None and any("HOOK_MAX_RUNNING" in m for m in hook_log)
    assert runner.wait(15)


def test_hook_env_flattens_scalars_only():
    env = hook_env({"a": None, "b": False, "c": [1, "x"], "d": {"k": 1}, "e": 2.5})
    assert env == {"NVR_A": "", "NVR_B": "0", "NVR_C": "1,x", "NVR_E": "2.5"}


def test_hooks_must_be_argument_lists(isolated_home):
    from helpers import run_cli

    (isolated_home / "machine_specific_configuration.py").write_text('ON_EVENT_END = "notify --all"\n')
    r = run_cli("config", "check", check=2)
    assert "ON_EVENT_END" in r.stderr and "argument list" in r.stderr and "Traceback" not in r.stderr
