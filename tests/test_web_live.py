"""Live view's server side against a real `nvr-cli serve` and the real RTSP test server: the WebSocket's
messages and fragmented MP4, relays shared and freed, a slow viewer, a camera that drops, latest.jpg,
the guard; and the per-viewer queue on its own."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import decode_all, descendants, pid_alive, power_cut, start_recorder, terminate, wait_for
from web_serve import Served
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from nvr_cli.core.unix_socket import connect_unix
from nvr_cli.ffmpeg.fmp4 import Fmp4Reader, Fragment, InitSegment
from nvr_cli.web.auth import hash_password
from nvr_cli.web.live import Viewer

PASSWORD = "correct horse battery"
NOWHERE = "rtsp://u:Gate-pa55word@127.0.0.1:9/x"  # a camera that never answers


def _config(tmp_path: Path, cam: str, extra: str = "") -> Path:
    cfg = tmp_path / "live.py"
    cfg.write_text(
        f"cam = {cam!r}\nCAMERA_NAME = 'gate'\nPATH_FOR_VIDEO = {str(tmp_path / 'video')!r}\n"
        f"WEB_INDEX_FILE = {str(tmp_path / 'index.sqlite3')!r}\nREAD_TIMEOUT_SECS = 3\n{extra}\n"
    )
    return cfg


def _watch(server: Served, camera: str = "gate", origin: str = "own", **kwargs):
    headers = {"Cookie": server.cookie} if server.cookie else {}
    return connect(
        f"ws://127.0.0.1:{server.port}/api/cameras/{camera}/live",
        origin=f"http://127.0.0.1:{server.port}" if origin == "own" else origin,
        additional_headers=headers,
        max_size=None,
        open_timeout=20,
        **kwargs,
    )


def _refused(server: Served, **kwargs) -> int:
    """The HTTP status with which the server refuses a WebSocket's handshake."""
    with pytest.raises(InvalidStatus) as refused:
        _watch(server, **kwargs)
    return refused.value.response.status_code


class Watched:
    """What one viewer received: text messages parsed, binary ones in order."""

    def __init__(self, ws):
        self.ws = ws
        self.texts: list = []
        self.binary: list = []
        self.all: list = []

    def read_until(self, done, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while not done():
            left = end - time.monotonic()
            assert left > 0, f"timed out; texts: {self.texts}, {len(self.binary)} binary"
            m = self.ws.recv(timeout=left)
            if isinstance(m, str):
                self.texts.append(json.loads(m))
                self.all.append(self.texts[-1])
            else:
                self.binary.append(m)
                self.all.append(m)

    def states(self) -> list:
        return [t["state"] for t in self.texts if t["type"] == "state"]

    def after_last_init(self) -> list:
        """The binary messages since the last init message: the init segment, then fragments."""
        inits = [i for i, m in enumerate(self.all) if isinstance(m, dict) and m["type"] == "init"]
        if not inits:
            return []
        return [m for m in self.all[inits[-1] + 1 :] if isinstance(m, bytes)]

    def fragments_since_init(self) -> int:
        return max(0, len(self.after_last_init()) - 1)


def _check_stream(binary: list, tmp_path: Path, name: str) -> int:
    """The init segment then fragments, the first a keyframe; returns how many frames they decode to."""
    init, fragments = binary[0], binary[1:]
    assert init[4:8] == b"ftyp"
    assert all(f[4:8] == b"moof" for f in fragments)
    segments = Fmp4Reader().feed(b"".join(binary))
    assert isinstance(segments[0], InitSegment) and segments[0].codec == "h264"
    assert isinstance(segments[1], Fragment) and segments[1].key
    path = tmp_path / name
    path.write_bytes(b"".join(binary))
    return len(decode_all(path))


def _ffmpegs(server: Served) -> list:
    out = []
    for pid in descendants(server.proc.pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(Path(c.decode(errors="replace")).name == "ffmpeg" for c in cmd):
            out.append(cmd)
    return out


def _live(server: Served) -> dict:
    return server.api("/api/status")["live"]


@pytest.fixture
def camera(rtsp_server, walking):
    return rtsp_server(walking)


@pytest.fixture
def serve(tmp_path):
    """Starts `nvr-cli serve` of one camera ``gate`` (its source, more settings); all stopped after."""
    servers = []

    def start(cam: str, extra: str = "") -> Served:
        servers.append(Served(_config(tmp_path, cam, extra)))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


@pytest.mark.slow
@pytest.mark.rtsp
def test_direct_live_view_shared_and_freed(camera, serve, tmp_path):
    server = serve(camera.url)
    with _watch(server) as ws1:
        one = Watched(ws1)
        one.read_until(lambda: len(one.binary) >= 40)
        assert one.texts[0] == {"type": "state", "state": "connecting", "via": "camera"}
        init = one.texts[1]
        assert init["type"] == "init" and init["codec"] == "h264"
        assert init["mime"].startswith('video/mp4; codecs="avc1.')
        assert (init["width"], init["height"]) == (640, 360)
        assert "live" in one.states()
        assert _check_stream(one.binary, tmp_path, "one.mp4") >= 35
        assert _live(server) == {"relays": 1, "viewers": 1}
        cams = server.api("/api/cameras")["cameras"]
        assert cams[0]["live"] == {"viewers": 1, "via": "camera"}

        with _watch(server) as ws2:
            two = Watched(ws2)
            two.read_until(lambda: len(two.binary) >= 10)
            assert two.texts[0]["state"] == "connecting" and two.texts[1]["type"] == "init"
            assert _check_stream(two.binary, tmp_path, "two.mp4") >= 5  # from the relay's newest keyframe on
            assert _live(server) == {"relays": 1, "viewers": 2}
            assert len(_ffmpegs(server)) == 1  # one camera connection for both
    assert wait_for(lambda: _live(server) == {"relays": 0, "viewers": 0}, timeout=15), _live(server)
    assert wait_for(lambda: not _ffmpegs(server), timeout=10), _ffmpegs(server)
    assert "Gate-pa55word" not in server.log.text()


@pytest.mark.slow
@pytest.mark.rtsp
def test_a_viewer_that_never_reads_does_not_stop_another(camera, serve):
    server = serve(camera.url)
    # max_queue=1: the stalled client stops reading its socket, so the server's sends to it block
    with _watch(server, max_queue=1) as stalled, _watch(server) as ws:
        stalled.recv(timeout=30)  # connected, then never reads again
        reader = Watched(ws)
        reader.read_until(lambda: reader.fragments_since_init() >= 150, timeout=90)  # 6 s of video
        assert _live(server) == {"relays": 1, "viewers": 2}
        children = descendants(server.proc.pid)
        assert server.stop() == 0  # with its viewers still there: the relay ends with the server
        assert not [p for p in children if pid_alive(p)]


@pytest.mark.slow
@pytest.mark.rtsp
def test_camera_dropping_and_coming_back(camera, serve, tmp_path):
    server = serve(camera.url)
    with _watch(server) as ws:
        w = Watched(ws)
        w.read_until(lambda: len(w.binary) >= 10)
        camera.kill()
        w.read_until(lambda: "reconnecting" in w.states(), timeout=60)
        reason = [t for t in w.texts if t.get("state") == "reconnecting"][0]["reason"]
        assert reason and "Gate-pa55word" not in reason
        camera.start()
        inits = lambda: sum(1 for t in w.texts if t["type"] == "init")  # noqa: E731
        w.read_until(lambda: inits() >= 2 and w.fragments_since_init() >= 10, timeout=90)
        assert _check_stream(w.after_last_init(), tmp_path, "again.mp4") >= 10
        assert w.states()[-1] == "live"


@pytest.mark.slow
@pytest.mark.rtsp
def test_latest_jpg_grabbed_from_the_camera(camera, serve):
    server = serve(camera.url)
    r = server.get("/api/cameras/gate/latest.jpg")
    assert r.status == 200, r
    assert r.header("Content-Type") == "image/jpeg" and r.header("Cache-Control") == "no-store"
    img = cv2.imdecode(np.frombuffer(r.body, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[:2] == (360, 640)
    assert server.get("/api/cameras/nobody/latest.jpg").status == 404
    assert _refused(server, camera="nobody") == 404
    assert wait_for(lambda: not _ffmpegs(server), timeout=30)  # the grab's ffmpeg is gone


@pytest.fixture
def recorder(camera, tmp_path):
    """`nvr-cli record` of the camera into the storage that `serve` shows; starts again when called."""
    procs = []
    sock = tmp_path / "video" / ".status" / "gate.live.sock"

    def start():
        procs.append(start_recorder(camera.url, tmp_path / "video", name="gate")[0])
        assert wait_for(lambda: _answers(sock), timeout=60), "the recorder's live socket never answered"
        return procs[-1]

    yield start
    for p in procs:
        if p.poll() is None:
            terminate(p)


def _answers(path: Path) -> bool:
    sock = connect_unix(path, timeout=1) if path.exists() else None
    if sock is not None:
        sock.close()
    return sock is not None


def _camera_connections(server: Served) -> list:
    return [c for c in _ffmpegs(server) if any(b"rtsp://" in a for a in c)]


@pytest.mark.slow
@pytest.mark.rtsp
def test_live_view_through_the_recorder(camera, recorder, serve, tmp_path):
    recorder()
    server = serve(camera.url)
    with _watch(server) as ws:
        w = Watched(ws)
        w.read_until(lambda: len(w.binary) >= 30)
        assert w.texts[0] == {"type": "state", "state": "connecting", "via": "recorder"}
        assert w.texts[1]["type"] == "init" and w.texts[1]["mime"].startswith('video/mp4; codecs="avc1.')
        assert "live" in w.states()
        assert _check_stream(w.binary, tmp_path, "recorder.mp4") >= 25
        relays = _ffmpegs(server)
        assert len(relays) == 1 and b"pipe:0" in relays[0], relays  # the recorder's packets, on stdin
        assert not _camera_connections(server)  # no connection of the server's to the camera
        assert server.api("/api/cameras")["cameras"][0]["live"] == {"viewers": 1, "via": "recorder"}
    assert wait_for(lambda: _live(server)["relays"] == 0 and not _ffmpegs(server), timeout=15)


@pytest.mark.slow
@pytest.mark.rtsp
def test_recorder_restarting_under_viewers(camera, recorder, serve, tmp_path):
    first = recorder()
    server = serve(camera.url, "WEB_LIVE_DIRECT = False")  # what comes, comes from the recorder
    r = server.get("/api/cameras/gate/latest.jpg")
    assert r.status == 200 and r.header("Content-Type") == "image/jpeg", r
    img = cv2.imdecode(np.frombuffer(r.body, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[:2] == (360, 640)
    with _watch(server) as ws:
        w = Watched(ws)
        w.read_until(lambda: len(w.binary) >= 10)
        power_cut(first.pid)
        w.read_until(lambda: "reconnecting" in w.states(), timeout=60)
        recorder()
        inits = lambda: sum(1 for t in w.texts if t["type"] == "init")  # noqa: E731
        w.read_until(lambda: inits() >= 2 and w.fragments_since_init() >= 10, timeout=120)
        assert _check_stream(w.after_last_init(), tmp_path, "again.mp4") >= 10
        assert "unavailable" not in w.states() and w.states()[-1] == "live"


@pytest.mark.slow
@pytest.mark.rtsp
def test_a_recorder_starting_takes_over_from_the_camera(camera, recorder, serve, tmp_path):
    server = serve(camera.url)
    with _watch(server) as ws:
        w = Watched(ws)
        w.read_until(lambda: len(w.binary) >= 10)
        assert w.texts[0]["via"] == "camera"
        recorder()
        inits = lambda: [t for t in w.texts if t["type"] == "init"]  # noqa: E731
        w.read_until(lambda: len(inits()) >= 2 and w.fragments_since_init() >= 10, timeout=60)
        assert inits()[-1]["via"] == "recorder" and "reconnecting" in w.states()
        assert _check_stream(w.after_last_init(), tmp_path, "taken-over.mp4") >= 10
        assert wait_for(lambda: not _camera_connections(server), timeout=10)  # the server's own is gone


def test_no_live_video_without_a_recorder_or_direct_access(serve):
    server = serve(NOWHERE, "WEB_LIVE_DIRECT = False")
    with _watch(server) as ws:
        w = Watched(ws)
        with pytest.raises(ConnectionClosed) as closed:
            w.read_until(lambda: False, timeout=30)
        assert closed.value.rcvd.code == 1000
        assert w.states() == ["unavailable"] and "WEB_LIVE_DIRECT" in w.texts[-1]["reason"]
    r = server.get("/api/cameras/gate/latest.jpg")
    assert r.status == 503 and "WEB_LIVE_DIRECT" in r.json()["error"]
    assert wait_for(lambda: _live(server)["relays"] == 0, timeout=15)


def test_the_guard_checks_websockets(serve):
    server = serve(NOWHERE, f"WEB_USERS = {{'anna': {hash_password(PASSWORD)!r}}}")
    foreign = ("http://evil.example", None, f"http://localhost:{server.port}")
    assert [_refused(server, origin=o) for o in ("own", *foreign)] == [403] * 4  # no session
    login = server.post("/api/login", {"user": "anna", "password": PASSWORD})
    assert login.status == 200
    server.cookie = login.header("Set-Cookie").split(";")[0]
    assert [_refused(server, origin=o) for o in foreign] == [403] * 3  # a session, another origin
    with _watch(server) as ws:
        w = Watched(ws)
        w.read_until(lambda: w.texts)
        assert w.texts[0] == {"type": "state", "state": "connecting", "via": "camera"}


def test_a_slow_viewer_drops_to_the_next_keyframe():
    async def scenario() -> list:
        v = Viewer(limit=10)
        v.say(type="state", state="connecting", via="camera")
        v.fragment(Fragment(b"a" * 4, key=False))  # before any keyframe: dropped
        for data, key in [(b"k" * 4, True), (b"p" * 4, False), (b"q" * 4, False), (b"r" * 4, False)]:
            v.fragment(Fragment(data, key))  # q overflows: k and p go, q and r wait for a keyframe
        v.fragment(Fragment(b"K" * 4, key=True))
        v.close()
        got = []
        while (item := await v.next()) is not None:
            got.append(item)
        return got

    got = asyncio.run(scenario())
    assert [kind for kind, _ in got] == ["text", "frag"]
    assert got[1][1] == b"K" * 4
