"""A recorder on a real Mosquitto broker: events, motion, snapshots, availability, arming, outages.

Everything is real: the GStreamer RTSP server as the camera, `nvr-cli record` / `nvr-cli run` as
processes, Debian's mosquitto, and a paho subscriber (tests/support/mqtt_watch.py) as the user's
Home Assistant or Node-RED.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import LineCollector, check_clip, clips, run_cli, shared, start_recorder, terminate, wait_for
from support.mqtt_watch import Watch

from nvr_cli.mqtt.discovery import camera_configs, node_id
from nvr_cli.mqtt.topics import Topics

pytestmark = pytest.mark.rtsp

PREFIX = "nvr-test"


@pytest.fixture
def gate_scene(scene_cache):
    """Someone walks through from 2 s to 6 s of a 12 s loop: one event a loop."""
    return scene_cache("mqtt-gate", seconds=12, walkers=[(2, 6)])


def mqtt_config(path: Path, broker, **extra) -> Path:
    lines = [
        f"MQTT_HOST = {broker.host!r}",
        f"MQTT_PORT = {broker.port}",
        f"MQTT_TOPIC_PREFIX = {PREFIX!r}",
        "MQTT_KEEPALIVE_SECS = 5",
        "STATUS_INTERVAL_SECS = 0.5",
    ]
    lines += [f"{k} = {v!r}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def events(watch: Watch, camera: str, kind=None) -> list:
    got = [json.loads(p) for p in watch.payloads(f"{PREFIX}/{camera}/events")]
    return [e for e in got if kind is None or e["type"] == kind]


def order(watch: Watch) -> list:
    """(topic, short payload) in arrival order: what a subscriber saw, for the order checks."""
    out = []
    for topic, payload, _ in watch.messages():
        if topic.endswith("/events"):
            e = json.loads(payload)
            out.append((topic, f"{e['type']} {e['event']}"))
        elif topic.endswith("/snapshot"):
            out.append((topic, "jpeg"))
        else:
            out.append((topic, payload.decode(errors="replace")))
    return out


def retained(broker, topic: str, timeout: float = 10.0):
    """What the broker keeps for ``topic``, as a fresh subscriber gets it (None: nothing retained)."""
    w = Watch(broker, topic)
    try:
        w.wait_for(lambda: w.messages(topic), timeout)
        got = [p for _, p, r in w.messages(topic) if r]
        return got[-1].decode(errors="replace") if got else None
    finally:
        w.close()


def test_events_motion_and_snapshot_in_order(tmp_path, gate_scene, rtsp_server, mqtt_broker):
    broker = mqtt_broker()
    server = rtsp_server(gate_scene)
    watch = Watch(broker, f"{PREFIX}/#")
    out = tmp_path / "video"
    cfg = mqtt_config(tmp_path / "cfg.py", broker)
    proc, log = start_recorder(server.url, out, "--config", cfg, name="gate")
    try:
        assert watch.wait_for(lambda: events(watch, "gate", "end"), 90), log.text()
        t = Topics(PREFIX, "gate")
        seen = order(watch)
        end = events(watch, "gate", "end")[0]
        n = end["event"]
        new_at = seen.index((t.events, f"new {n}"))
        end_at = seen.index((t.events, f"end {n}"))
        on_at = max(i for i, m in enumerate(seen[:new_at]) if m == (t.motion, "ON"))
        off_at = seen.index((t.motion, "OFF"), on_at)
        assert (t.available, "online") in seen[:new_at]
        assert on_at < new_at < end_at, seen
        assert new_at < off_at < end_at, seen
        snaps = [i for i, m in enumerate(seen) if m == (t.snapshot, "jpeg")]
        assert any(new_at < i < end_at for i in snaps), seen  # the trigger's view at the start ...
        last_snap = [i for i in snaps if i < end_at][-1]
        assert last_snap > off_at, seen  # ... and the best one as the clip is finished

        # the end event is the sidecar's event, with the files by their full paths
        clip = Path(end["clip"])
        assert clip in clips(out / "gate") and end["kept"] is True and end["camera"] == "gate"
        side = json.loads(Path(end["sidecar"]).read_text())
        for key in (
            "event",
            "part",
            "start",
            "end",
            "trigger",
            "frames",
            "peak_score",
            "labels",
            "qr",
            "kind",
        ):
            assert end[key] == side[key], key
        snapshots = [p for topic, p, _ in watch.messages() if topic == t.snapshot]
        assert Path(end["thumbnail"]).read_bytes() == snapshots[snaps.index(last_snap)]
        new = events(watch, "gate", "new")[0]
        assert new["event"] == n and new["clip"] == end["clip"] and new["end"] is None
        img = cv2.imdecode(np.frombuffer(watch.messages(t.snapshot)[0][1], np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[1] == side["width"] and img.shape[0] == side["height"]
        check_clip(clip)

        # retained state, as a subscriber arriving now gets it
        assert watch.wait_for(lambda: "1" in watch.payloads(t.events_today), 10)
        assert retained(broker, t.events_today) == "1"
        assert retained(broker, t.detect_state) == "ON"
        assert retained(broker, t.available) == "online"
        assert retained(broker, t.motion) in ("ON", "OFF")
        status = json.loads((out / ".status" / "gate.json").read_text())
        assert status["mqtt"]["connected"] is True and status["detect"] is True
    finally:
        terminate(proc)
        watch.close()
    # a clean stop says offline, retained
    assert retained(broker, Topics(PREFIX, "gate").available) == "offline"


def write_run_config(path: Path, broker, url: str, out: Path, cameras=("front", "yard"), **extra):
    cams = {name: {"cam": url, "MASKS": ["0,0 200,0 200,40 0,40"]} for name in cameras}
    mqtt_config(
        path,
        broker,
        PATH_FOR_VIDEO=str(out),
        CAMERAS=cams,
        INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS=0.5,
        RESTART_DELAY_SECS=0.5,
        **extra,
    )


def test_run_availability_will_and_removed_cameras(
    tmp_path, isolated_home, scene_cache, rtsp_server, mqtt_broker
):
    broker = mqtt_broker()
    server = rtsp_server(scene_cache("mqtt-run", seconds=12, walkers=[(2, 5)]))
    out = tmp_path / "video"
    cfg = isolated_home / "machine_specific_configuration.py"
    write_run_config(cfg, broker, server.url, out, MQTT_HA_DISCOVERY=True)
    # another recorder's camera on the same broker and prefix (another host, a lone `record`): not ours
    other = camera_configs(Topics(PREFIX, "other"), labels=(), ha_prefix="homeassistant", version="x")
    feeder = Watch(broker, "none/#")
    for topic, config in other.items():
        feeder.publish(topic, json.dumps(config), retain=True)
    feeder.close()
    watch = Watch(broker, f"{PREFIX}/#", "homeassistant/#")
    proc = subprocess.Popen([sys.executable, "-m", "nvr_cli", "run"], stderr=subprocess.PIPE, text=True)
    log = LineCollector(proc.stderr)
    front, yard = Topics(PREFIX, "front"), Topics(PREFIX, "yard")
    try:
        assert watch.wait_for(
            lambda: (
                "online" in watch.payloads(front.available) and "online" in watch.payloads(yard.available)
            ),
            45,
        ), log.text()
        assert watch.wait_for(lambda: "online" in watch.payloads(f"{PREFIX}/available"), 10)
        yard_configs = camera_configs(yard, labels=(), ha_prefix="homeassistant", version="x")
        assert watch.wait_for(lambda: all(watch.messages(c) for c in yard_configs), 20), sorted(
            {t for t, _, _ in watch.messages() if t.startswith("homeassistant/")}
        )

        # SIGKILL of a worker: the broker says offline for it (its last will), then it is back
        pid = json.loads((out / ".status" / "front.json").read_text())["pid"]
        before = len(watch.messages(front.available))
        os.kill(pid, signal.SIGKILL)
        assert watch.wait_for(lambda: "offline" in watch.payloads(front.available)[before:], 20), log.text()
        assert watch.wait_for(lambda: watch.payloads(front.available)[-1] == "online", 45), log.text()

        # yard taken out of CAMERAS: once its recorder has stopped, its configs and retained state go
        write_run_config(cfg, broker, server.url, out, cameras=("front",), MQTT_HA_DISCOVERY=True)
        assert watch.wait_for(lambda: all(watch.messages(c)[-1][1] == b"" for c in yard_configs), 30), (
            log.text()
        )
        for topic in (*yard_configs, yard.available, yard.detect_state, yard.motion):
            assert retained(broker, topic, timeout=2) is None, topic
        front_configs = camera_configs(front, labels=(), ha_prefix="homeassistant", version="x")
        assert all(retained(broker, c) for c in front_configs)
        assert all(retained(broker, c) for c in other), "another recorder's camera was cleared"
    finally:
        terminate(proc)
        watch.close()
    assert retained(broker, f"{PREFIX}/available") == "offline"
    assert retained(broker, front.available) == "offline"


def test_broker_gone_mid_event_loses_nothing(tmp_path, scene_cache, rtsp_server, mqtt_broker):
    broker = mqtt_broker()
    server = rtsp_server(scene_cache("mqtt-long", seconds=14, walkers=[(1, 9)]))
    watch = Watch(broker, f"{PREFIX}/#")
    out = tmp_path / "video"
    cfg = mqtt_config(tmp_path / "cfg.py", broker, LOG_FILE_PATH=str(tmp_path / "nvr.log"))
    proc, log = start_recorder(server.url, out, "--config", cfg, name="gate")
    t = Topics(PREFIX, "gate")
    try:
        assert watch.wait_for(lambda: events(watch, "gate", "new"), 60), log.text()
        broker.stop()  # mid-event
        n = events(watch, "gate", "new")[0]["event"]
        # the event ends and its clip is finished while the broker is away
        assert wait_for(lambda: any(c.with_suffix(".json").exists() for c in clips(out / "gate")), 60), (
            log.text()
        )
        time.sleep(1)
        broker.start()
        assert watch.wait_for(lambda: [e for e in events(watch, "gate", "end") if e["event"] == n], 60), (
            log.text()
        )
        end = next(e for e in events(watch, "gate", "end") if e["event"] == n)
        check_clip(Path(end["clip"]))
        assert retained(broker, t.available) == "online"
        text = (tmp_path / "nvr.log").read_text()
        outages = [line for line in text.splitlines() if "WARNING" in line and "MQTT" in line]
        assert len(outages) == 1, outages  # one line per outage, not one per retry
    finally:
        terminate(proc)
        watch.close()


def test_detect_off_disarms_events_and_is_remembered(tmp_path, walking, rtsp_server, mqtt_broker):
    broker = mqtt_broker()
    server = rtsp_server(walking)
    watch = Watch(broker, f"{PREFIX}/#")
    out = tmp_path / "video"
    cfg = mqtt_config(tmp_path / "cfg.py", broker, SEGMENT_SECONDS=2)
    t = Topics(PREFIX, "gate")
    proc, log = start_recorder(server.url, out, "--config", cfg, "--continuous", name="gate")
    try:
        assert watch.wait_for(lambda: events(watch, "gate", "new"), 60), log.text()
        watch.publish(t.detect_set, "OFF")
        assert watch.wait_for(lambda: "OFF" in watch.payloads(t.detect_state), 10), log.text()
        # the open event ends (its motion no longer counts), and no other starts while disarmed
        assert watch.wait_for(lambda: watch.payloads(t.motion)[-1] == "OFF", 30), log.text()
        started = len(events(watch, "gate", "new"))
        segments = lambda: list((out / "gate").rglob("*.seg.mp4"))  # noqa: E731
        before = len(segments())
        assert wait_for(lambda: len(segments()) >= before + 3, 30), "continuous recording stopped"
        assert len(events(watch, "gate", "new")) == started
        assert json.loads((out / ".status" / "gate.json").read_text())["detect"] is False
    finally:
        terminate(proc)

    # a restart keeps it disarmed; ON arms it again
    proc, log = start_recorder(server.url, out, "--config", cfg, "--continuous", name="gate")
    try:
        assert wait_for(lambda: "disarmed" in log.text(), 30), log.text()
        assert retained(broker, t.detect_state) == "OFF"
        # 60 frames analysed (4 s) with the walker always there: armed, this would have started an event
        status = out / ".status" / "gate.json"
        assert wait_for(lambda: json.loads(status.read_text()).get("frames", 0) >= 60, 30), log.text()
        assert len(events(watch, "gate", "new")) == started
        watch.publish(t.detect_set, "ON")
        assert watch.wait_for(lambda: len(events(watch, "gate", "new")) > started, 30), log.text()
        assert retained(broker, t.detect_state) == "ON"
    finally:
        terminate(proc)
        watch.close()


def test_refused_login_never_stops_recording_nor_shows_the_password(
    tmp_path, gate_scene, rtsp_server, mqtt_broker
):
    secret, wrong = "Br0ker-Pa55-9731", "Wr0ng-Guess-4482"
    broker = mqtt_broker(users={"nvr": secret})
    server = rtsp_server(gate_scene)
    out = tmp_path / "video"
    logfile = tmp_path / "nvr.log"
    cfg = mqtt_config(
        tmp_path / "cfg.py", broker, MQTT_USER="nvr", MQTT_PASSWORD=wrong, LOG_FILE_PATH=str(logfile)
    )
    shown = run_cli("config", "show", "--config", str(cfg), check=0).stdout
    assert wrong not in shown and "MQTT_PASSWORD" in shown and "***" in shown
    proc, log = start_recorder(server.url, out, "--config", cfg, name="gate")
    try:
        assert wait_for(lambda: any(c.with_suffix(".json").exists() for c in clips(out / "gate")), 60), (
            log.text()
        )
        time.sleep(3)  # a few more reconnect attempts
    finally:
        terminate(proc)
    text = logfile.read_text() + log.text()
    refused = [line for line in logfile.read_text().splitlines() if "MQTT" in line and "refused" in line]
    assert len(refused) == 1, refused
    assert wrong not in text and wrong not in (out / ".status" / "gate.json").read_text()

    # the right password: the events arrive. A camera of its own: once in CI the test server's shared
    # media sent no frame to any client after the first recorder's two sessions were torn down
    server = rtsp_server(gate_scene)
    cfg = mqtt_config(
        tmp_path / "cfg.py", broker, MQTT_USER="nvr", MQTT_PASSWORD=secret, LOG_FILE_PATH=str(logfile)
    )
    watch = Watch(broker, f"{PREFIX}/#", user="nvr", password=secret)
    proc, log = start_recorder(server.url, out, "--config", cfg, name="gate")
    try:
        assert watch.wait_for(lambda: events(watch, "gate", "end"), 60), log.text()
    finally:
        terminate(proc)
        watch.close()
    assert secret not in logfile.read_text() + log.text()


def test_discovery_announced_again_and_stale_label_cleared(tmp_path, gate_scene, rtsp_server, mqtt_broker):
    broker = mqtt_broker()
    server = rtsp_server(gate_scene)
    t = Topics(PREFIX, "Gate Cam")
    # a label this camera announced once but no longer wants, retained on the broker
    stale = f"homeassistant/binary_sensor/{node_id(PREFIX, 'Gate Cam')}/car/config"
    feeder = Watch(broker, "none/#")
    feeder.publish(stale, json.dumps({"state_topic": t.label("car"), "name": "Car"}), retain=True)
    feeder.close()
    watch = Watch(broker, "homeassistant/#", f"{PREFIX}/#")
    cfg = mqtt_config(tmp_path / "cfg.py", broker, MQTT_HA_DISCOVERY=True)
    proc, log = start_recorder(server.url, tmp_path / "video", "--config", cfg, name="Gate Cam")
    configs = camera_configs(t, labels=(), ha_prefix="homeassistant", version="x")
    try:
        assert watch.wait_for(lambda: all(watch.messages(c) for c in configs), 30), log.text()
        for topic in configs:
            got = json.loads(watch.messages(topic)[-1][1])
            assert t.available in json.dumps(got), topic  # unavailable when the camera or its recorder is
        assert watch.wait_for(lambda: watch.messages(stale) and watch.messages(stale)[-1][1] == b"", 10)
        # Home Assistant restarts: it says online, and gets every config again
        counts = {c: len(watch.messages(c)) for c in configs}
        watch.publish("homeassistant/status", "online")
        assert watch.wait_for(lambda: all(len(watch.messages(c)) > counts[c] for c in configs), 10)
    finally:
        terminate(proc)
        watch.close()


def test_objects_in_view_and_event_update(tmp_path, rtsp_server, mqtt_broker):
    model, labels = shared("models", "ssd_mobilenet_v1_1_metadata_1.tflite"), shared("models", "labelmap.txt")
    broker = mqtt_broker()
    server = rtsp_server(shared("video", "one-by-one-person-detection.mp4"))  # a person walks in after 6 s
    watch = Watch(broker, f"{PREFIX}/#", "homeassistant/#")
    cfg = mqtt_config(tmp_path / "cfg.py", broker, MQTT_HA_DISCOVERY=True)
    extra = ("--model", model, "--labels", labels, "--confirm", "tag", "--objects", "person", "--config", cfg)
    proc, log = start_recorder(server.url, tmp_path / "video", *extra, name="room")
    t = Topics(PREFIX, "room")
    try:
        assert watch.wait_for(lambda: any(int(p) > 0 for p in watch.payloads(t.label("person"))), 90), (
            log.text()
        )
        assert watch.payloads(t.label("person"))[0] == "0"  # announced as none first
        person_config = camera_configs(t, labels=("person",), ha_prefix="homeassistant", version="x")
        occupancy = [c for c in person_config if "/binary_sensor/" in c and c.endswith("/person/config")]
        assert occupancy and watch.messages(occupancy[0]), sorted(person_config)
        assert json.loads(watch.messages(occupancy[0])[-1][1])["state_topic"] == t.label("person")
        # the open event tells that it now shows a person (an update, or its new already did)
        assert watch.wait_for(
            lambda: any(
                "person" in e["labels"] for e in events(watch, "room") if e["type"] in ("new", "update")
            ),
            60,
        ), [(e["type"], e["labels"]) for e in events(watch, "room")]
    finally:
        terminate(proc)
        watch.close()


def test_stalled_broker_never_holds_up_recording(tmp_path, gate_scene, rtsp_server, mqtt_broker):
    broker = mqtt_broker()
    server = rtsp_server(gate_scene)
    watch = Watch(broker, f"{PREFIX}/#")
    out = tmp_path / "video"
    proc, log = start_recorder(
        server.url, out, "--config", mqtt_config(tmp_path / "cfg.py", broker), name="gate"
    )
    status = out / ".status" / "gate.json"
    try:
        assert watch.wait_for(lambda: events(watch, "gate", "new"), 60), log.text()
        broker.pause()  # SIGSTOP: connected, but nothing is read or answered
        # clips go on being made, one a loop of the scene, and frames go on being analysed
        assert wait_for(lambda: len(clips(out / "gate")) >= 2, 60), log.text()
        frames = json.loads(status.read_text())["frames"]
        assert wait_for(lambda: json.loads(status.read_text())["frames"] > frames + 30, 10)
    finally:
        terminate(proc)  # SIGTERM with the broker still stopped: the recorder ends all the same
        broker.resume()
        watch.close()
    assert proc.returncode == 0, log.text()
    for clip in clips(out / "gate"):
        check_clip(clip)


def test_continuous_only_says_available_once_and_files_are_never_published(
    tmp_path, gate_scene, rtsp_server, mqtt_broker
):
    broker = mqtt_broker()
    scene = gate_scene
    server = rtsp_server(scene)
    watch = Watch(broker, f"{PREFIX}/#", "homeassistant/#")
    out = tmp_path / "video"
    cfg = mqtt_config(tmp_path / "cfg.py", broker, MQTT_HA_DISCOVERY=True)
    t = Topics(PREFIX, "yard")
    proc, log = start_recorder(server.url, out, "--config", cfg, "--no-motion", "--continuous", name="yard")
    status = out / ".status" / "yard.json"
    try:
        assert watch.wait_for(lambda: "online" in watch.payloads(t.available), 30), log.text()
        first = json.loads(status.read_text())["updated"]
        assert wait_for(lambda: json.loads(status.read_text())["updated"] > first + 3, 20)  # 6+ status ticks
        said = watch.payloads(t.available)  # "offline" first, perhaps, while the camera connects
        assert said[said.index("online") :] == ["online"], said  # then once, not at every tick
        # nothing to announce or arm without analysis: no motion, no switch, no events
        assert [topic for topic, _, _ in watch.messages() if topic != t.available] == []
    finally:
        terminate(proc)
    watch.wait_for(lambda: "offline" in watch.payloads(t.available), 10)

    # a file recorded under a camera's name must not speak for that camera on the broker
    before = len(watch.messages())
    done = run_cli(
        "record", str(scene), "--config", str(cfg), "--output", str(out), "--name", "yard", check=0
    )
    assert "MQTT is for cameras" in done.stderr
    time.sleep(1)  # anything it had sent would have arrived by now: the broker is local and idle
    assert watch.messages()[before:] == []
    watch.close()
