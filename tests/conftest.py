import os
import time

import pytest
from helpers import RtspServer, Scene, find_ffmpeg, rtsp_available


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """No test sees the developer's machine_specific_configuration.py."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("NVR_CLI_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def restored_logging():
    """A test that sets up nvr-cli's logging (in-process CliRunner commands do) leaves the next test the
    logging it found: otherwise records stop reaching caplog (propagate off) depending on test order."""
    import logging
    import sys
    import threading

    saved = []
    for name in ("nvr_cli", "py.warnings"):
        lg = logging.getLogger(name)
        saved.append((lg, list(lg.handlers), lg.level, lg.propagate))
    hooks = threading.excepthook, sys.excepthook
    yield
    for lg, handlers, level, propagate in saved:
        for h in list(lg.handlers):
            if h not in handlers:
                lg.removeHandler(h)
                h.close()
        for h in handlers:
            if h not in lg.handlers:
                lg.addHandler(h)
        lg.setLevel(level)
        lg.propagate = propagate
    logging.captureWarnings(False)
    threading.excepthook, sys.excepthook = hooks


@pytest.fixture
def zone(monkeypatch):
    """Set the process's time zone (TZ + tzset) for one test; restored afterwards."""

    def set_zone(name):
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(scope="session")
def ffmpeg():
    return find_ffmpeg()


@pytest.fixture(scope="session")
def scene_cache(tmp_path_factory, ffmpeg):
    """Generated scenes, made once per session: key -> path."""
    folder = tmp_path_factory.mktemp("scenes")
    made = {}

    def get(name="default", **kwargs):
        if name not in made:
            made[name] = Scene(**kwargs).write(folder / f"{name}.mp4", ffmpeg)
        return made[name]

    return get


@pytest.fixture(scope="session")
def recorded_storage(tmp_path_factory, scene_cache):
    """Two cameras recorded by `nvr-cli run` over the real RTSP server, once a session (web_storage.py)."""
    from web_storage import record_storage

    if not rtsp_available():
        if os.environ.get("NVR_CLI_REQUIRE_RTSP"):
            pytest.fail("GStreamer's RTSP server is not installed (python3-gi, gir1.2-gst-rtsp-server-1.0)")
        pytest.skip("GStreamer's RTSP server is not installed: run scripts/install_and_test.sh")
    scene = scene_cache("web-gate", seconds=12, walkers=[(1, 4), (7, 10)])  # two events a loop
    return record_storage(tmp_path_factory.mktemp("web"), scene)


@pytest.fixture
def walking(scene_cache):
    """Someone is always walking: every connect to a camera showing it quickly becomes an event."""
    return scene_cache("walking", seconds=12, walkers=[(0, 4), (4, 8), (8, 12)])


@pytest.fixture
def rtsp_server():
    if not rtsp_available():
        if os.environ.get("NVR_CLI_REQUIRE_RTSP"):
            pytest.fail("GStreamer's RTSP server is not installed (python3-gi, gir1.2-gst-rtsp-server-1.0)")
        pytest.skip("GStreamer's RTSP server is not installed: run scripts/install_and_test.sh")
    servers = []

    def start(clip, **kwargs):
        server = RtspServer(clip, **kwargs)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def mqtt_broker():
    """A factory of real Mosquitto brokers on 127.0.0.1: ``mqtt_broker(users={"nvr": "pw"}, tls=False)``."""
    from support import mosquitto

    if not mosquitto.available():
        if os.environ.get("NVR_CLI_REQUIRE_RTSP"):
            pytest.fail("Debian's mosquitto is not installed: run scripts/install_and_test.sh")
        pytest.skip("Debian's mosquitto is not installed: run scripts/install_and_test.sh")
    brokers = []

    def start(**kwargs):
        broker = mosquitto.Mosquitto(**kwargs).start()
        brokers.append(broker)
        return broker

    yield start
    for b in brokers:
        b.cleanup()


def pytest_terminal_summary(terminalreporter):
    from helpers import FAULTS

    if FAULTS["faults injected"]:
        terminalreporter.section("fault suite")
        for k, v in FAULTS.items():
            terminalreporter.write_line(f"{k}: {round(v, 2) if isinstance(v, float) else v}")
