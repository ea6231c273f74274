"""Live view's server side against a real `nvr-cli serve` and the real RTSP test server: the WebSocket's
messages and fragmented MP4, relays shared and freed, a slow viewer, a camera that drops, latest.jpg,
the guard; and the per-viewer queue on its own."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import decode_all, descendants, pid_alive, power_cut, start_recorder, terminate, wait_for
from web_serve import Served
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from nvr_cli.core.backoff import Backoff
from nvr_cli.core.unix_socket import bind_unix, connect_unix
from nvr_cli.ffmpeg.fmp4 import Fmp4Reader, Fragment, InitSegment
from nvr_cli.ffmpeg.process import base
from nvr_cli.web import live
from nvr_cli.web import snapshots as snapshots_module
from nvr_cli.web.auth import hash_password
from nvr_cli.web.config import LiveSource
from nvr_cli.web.live import PACKETS_TIMEOUT, LiveHub, Viewer
from nvr_cli.web.snapshots import NoFrame, Snapshots
from nvr_cli.web.worker_link import snapshot as worker_snapshot

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
            self._keep(self.ws.recv(timeout=left))

    def read_for(self, seconds: float, check=lambda: None) -> None:
        """What comes within ``seconds``, calling ``check()`` at least every half second."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            check()
            try:
                self._keep(self.ws.recv(timeout=min(left, 0.5)))
            except TimeoutError:
                pass

    def _keep(self, m) -> None:
        if isinstance(m, str):
            self.texts.append(json.loads(m))
            self.all.append(self.texts[-1])
        else:
            self.binary.append(m)
            self.all.append(m)

    def inits(self) -> list:
        return [t for t in self.texts if t["type"] == "init"]

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
    """/api/status "live" without its cumulative ``dropped``."""
    got = server.api("/api/status")["live"]
    assert isinstance(got.pop("dropped"), int)
    return got


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


@pytest.fixture
def noisy_camera(rtsp_server, ffmpeg, tmp_path):
    """A camera of several MB/s (noise at a low CRF): a viewer that does not read falls behind in
    seconds, past what the sockets' buffers absorb."""
    clip = tmp_path / "noisy.mp4"
    source = ["-f", "lavfi", "-i", "testsrc2=s=640x360:r=25:d=8,noise=alls=40:allf=t"]
    enc = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "14", "-g", "25", "-pix_fmt", "yuv420p"]
    subprocess.run([*base(ffmpeg), "-y", *source, *enc, str(clip)], check=True)
    assert clip.stat().st_size > 8 * 2_000_000  # over 2 MB/s
    return rtsp_server(clip)


def _stalled(server: Served):
    """A viewer that reads its first message, then nothing: a small receive buffer, set before the
    connect so that the TCP window stays small, and no reading thread's buffer behind it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    return _watch(server, sock=sock, max_queue=1)


@pytest.mark.slow
@pytest.mark.rtsp
def test_a_viewer_that_never_reads_does_not_stop_another(noisy_camera, serve):
    server = serve(noisy_camera.url)
    with _stalled(server) as stalled, _watch(server) as ws:
        stalled.recv(timeout=30)  # connected, then never reads again
        reader = Watched(ws)
        reader.read_until(lambda: reader.fragments_since_init() >= 25)
        dropped = lambda: server.api("/api/status")["live"]["dropped"]  # noqa: E731
        # the other viewer goes on reading, past the stalled one's first drops and 4 s further on
        reader.read_until(lambda: dropped() > 0, timeout=90)
        after = reader.fragments_since_init()
        reader.read_until(lambda: reader.fragments_since_init() >= after + 100, timeout=90)
        assert "reconnecting" not in reader.states()
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


@pytest.mark.slow
@pytest.mark.rtsp
def test_the_camera_down_beside_a_recorder_is_waited_for(camera, recorder, serve, tmp_path):
    """With a recorder there, the server never opens the camera itself, however long it is down
    (while the recorder reconnects, its answers are `retry` or slow), and the view comes back."""
    recorder()
    server = serve(camera.url)  # WEB_LIVE_DIRECT: the server may open the camera, and must not here
    with _watch(server) as ws:
        w = Watched(ws)
        w.read_until(lambda: len(w.binary) >= 10)
        camera.kill()
        w.read_until(lambda: "reconnecting" in w.states(), timeout=60)

        def no_connection_of_its_own() -> None:
            assert not _camera_connections(server), _camera_connections(server)

        w.read_for(live.WORKER_GRACE + 5, no_connection_of_its_own)
        assert "unavailable" not in w.states(), w.texts
        camera.start()
        w.read_until(lambda: len(w.inits()) >= 2 and w.fragments_since_init() >= 10, timeout=120)
        assert _check_stream(w.after_last_init(), tmp_path, "back.mp4") >= 10
        assert "unavailable" not in w.states() and w.states()[-1] == "live"
        assert w.inits()[-1]["via"] == "recorder"
        no_connection_of_its_own()


@pytest.mark.slow
@pytest.mark.rtsp
def test_a_hung_recorder_is_not_live(camera, recorder, serve):
    """A stopped (SIGSTOP) recorder sends nothing and closes nothing: the viewers hear
    `reconnecting` once no video came for a while, and get video again when it goes on."""
    hung = recorder()
    server = serve(camera.url, "WEB_LIVE_DIRECT = False")
    with _watch(server) as ws:
        w = Watched(ws)
        w.read_until(lambda: len(w.binary) >= 10)
        os.kill(hung.pid, signal.SIGSTOP)
        try:
            w.read_until(lambda: "reconnecting" in w.states(), timeout=60)
        finally:
            os.kill(hung.pid, signal.SIGCONT)
        assert "no video for" in [t for t in w.texts if t.get("state") == "reconnecting"][0]["reason"]
        w.read_until(lambda: len(w.inits()) >= 2 and w.fragments_since_init() >= 10, timeout=120)
        assert "unavailable" not in w.states() and w.states()[-1] == "live"


@pytest.mark.parametrize("answer", [b"retry no packets from the camera yet\n", b""])
def test_a_recorder_that_cannot_serve_now_is_waited_for(tmp_path, monkeypatch, answer):
    """A recorder that takes the connection is there, whatever it answers: `retry <reason>` (its
    camera reconnecting) or nothing in time is `reconnecting`, never `unavailable`, and the server
    never opens the camera beside it, however long that lasts."""
    monkeypatch.setattr(live, "WORKER_GRACE", 1.0)
    monkeypatch.setattr(live, "PACKETS_TIMEOUT", 0.5)
    monkeypatch.setattr(live, "Backoff", lambda first, maximum: Backoff(0.2, 0.5))
    listener = bind_unix(tmp_path / "gate.live.sock")
    asked: list = []

    def worker() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                asked.append(conn.recv(64))
                if answer:
                    conn.sendall(answer)
                else:
                    conn.recv(64)  # no answer: the server gives up waiting and hangs up

    threading.Thread(target=worker, daemon=True).start()
    source = LiveSource(socket=tmp_path / "gate.live.sock", url=NOWHERE)

    async def scenario() -> list:
        hub = LiveHub(lambda camera: source)
        viewer = hub.join("gate")
        said = []
        while len(asked) < 6:  # several seconds, past WORKER_GRACE many times
            item = await asyncio.wait_for(viewer.next(), 30)
            said.append(json.loads(item[1]))
        await hub.close()
        return said

    try:
        said = asyncio.run(scenario())
    finally:
        listener.close()
    assert set(asked) == {b"packets\n"}
    assert said[0] == {"type": "state", "state": "connecting", "via": "recorder"}
    assert {m["state"] for m in said[1:]} == {"reconnecting"}, said
    why = "no packets from the camera yet" if answer else "did not answer"
    assert all(why in m["reason"] for m in said[1:]), said


@pytest.mark.slow
@pytest.mark.rtsp
def test_cameras_whose_recorders_hang_do_not_hold_up_another(camera, tmp_path, monkeypatch):
    """Eight cameras whose recorders take the connection and never answer (each ask waits
    PACKETS_TIMEOUT in a thread) and a camera that works: its video, then its snapshot, come while all
    eight asks still wait (asyncio's default pool, 6 threads here, would have it wait for them)."""
    hung = [bind_unix(tmp_path / f"hung{i}.live.sock") for i in range(8)]
    open_asks: list = []  # the connections of the hung recorders, as long as the server holds them

    def hold(listener) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            open_asks.append(conn)
            conn.recv(64)  # the request; no answer ever
            conn.recv(64)  # returns once the server hangs up
            open_asks.remove(conn)
            conn.close()

    for listener in hung:
        threading.Thread(target=hold, args=(listener,), daemon=True).start()
    sources = {f"hung{i}": LiveSource(socket=tmp_path / f"hung{i}.live.sock") for i in range(8)}
    sources["gate"] = LiveSource(socket=tmp_path / "gate.live.sock", url=camera.url, timeout=5)

    async def scenario() -> tuple:
        hub = LiveHub(sources.get)
        for name in sources:
            if name != "gate":
                hub.join(name)
        for _ in range(300):  # all eight asks taken (at most 30 s)
            if len(open_asks) == 8:
                break
            await asyncio.sleep(0.1)
        assert len(open_asks) == 8, f"only {len(open_asks)} of the 8 asks could wait at once"
        gate = hub.join("gate")
        said = []
        while not said or said[-1].get("type") != "init":
            item = await asyncio.wait_for(gate.next(), 60)
            if item[0] == "text":
                said.append(json.loads(item[1]))
        waiting = len(open_asks)
        for conn in list(open_asks):  # the recorders hang up: the asks end now, not in 20 s
            conn.shutdown(socket.SHUT_RDWR)
        await hub.close()
        return said, waiting

    async def snapshots() -> tuple:
        snaps = Snapshots(sources.get)
        asks = [asyncio.ensure_future(snaps.latest(name)) for name in sources if name != "gate"]
        for _ in range(300):
            if len(open_asks) == 8:
                break
            await asyncio.sleep(0.1)
        assert len(open_asks) == 8, f"only {len(open_asks)} of the 8 snapshot asks could wait at once"
        jpeg = await asyncio.wait_for(snaps.latest("gate"), 60)  # grabbed from the camera
        waiting = len(open_asks)
        for conn in list(open_asks):
            conn.shutdown(socket.SHUT_RDWR)
        refused = await asyncio.gather(*asks, return_exceptions=True)
        return jpeg, waiting, refused

    # a recorder's snapshot answer waited for as long as its packets (not 5 s): the order shows
    monkeypatch.setattr(snapshots_module, "snapshot", lambda path: worker_snapshot(path, PACKETS_TIMEOUT))
    try:
        said, waiting = asyncio.run(scenario())
        jpeg, snap_waiting, refused = asyncio.run(snapshots())
    finally:
        for listener in hung:
            listener.close()
    assert said[-1]["codec"] == "h264", said
    assert waiting == 8, "the working camera's video came only once the hung recorders' asks gave up"
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (360, 640, 3)
    assert snap_waiting == 8, "the working camera's snapshot came only once the hung recorders' gave up"
    assert all(isinstance(r, NoFrame) for r in refused), refused


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


@pytest.mark.slow
def test_logging_out_ends_live_view(serve):
    server = serve(NOWHERE, f"WEB_USERS = {{'anna': {hash_password(PASSWORD)!r}}}")
    login = server.post("/api/login", {"user": "anna", "password": PASSWORD})
    server.cookie = login.header("Set-Cookie").split(";")[0]
    with _watch(server) as ws:
        w = Watched(ws)
        w.read_until(lambda: w.texts)
        assert server.post("/api/logout", {}).status == 200
        with pytest.raises(ConnectionClosed) as closed:
            w.read_until(lambda: False, timeout=90)  # the session is looked at every 30 s
        assert closed.value.rcvd.code == 4401


def test_the_hub_counts_drops_and_refuses_viewers_once_closing(tmp_path):
    async def scenario() -> tuple:
        hub = LiveHub(lambda camera: LiveSource(socket=tmp_path / "nobody.sock"))
        v = Viewer(limit=10, hub=hub)
        v.fragment(Fragment(b"a" * 4, key=False))  # before its first keyframe: not slow, not counted
        for data, key in [(b"k" * 4, True), (b"p" * 4, False), (b"q" * 4, False), (b"r" * 4, False)]:
            v.fragment(Fragment(data, key))  # q overflows: k and p go, then q and r
        v.fragment(Fragment(b"K" * 4, key=True))
        await hub.close()
        return v.dropped, hub.stats(), hub.join("gate")

    assert asyncio.run(scenario()) == (4, {"relays": 0, "viewers": 0, "dropped": 4}, None)


def test_latest_jpg_is_made_once_for_all_waiting_and_a_failure_is_kept(tmp_path):
    asked, go_on = [], threading.Event()

    def source_of(camera: str) -> LiveSource:
        asked.append(camera)
        go_on.wait(30)
        return LiveSource(socket=tmp_path / "nobody.sock")  # no recorder, no URL: no frame

    async def scenario() -> list:
        snaps = Snapshots(source_of, failed_fresh=3600)
        waiting = [asyncio.ensure_future(snaps.latest("gate")) for _ in range(5)]
        while not asked:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # all five are waiting now
        go_on.set()
        got = await asyncio.gather(*waiting, return_exceptions=True)
        return got + await asyncio.gather(snaps.latest("gate"), return_exceptions=True)

    got = asyncio.run(scenario())
    assert all(isinstance(e, NoFrame) and "WEB_LIVE_DIRECT" in str(e) for e in got), got
    assert asked == ["gate"]


def test_a_long_stderr_line_does_not_end_its_reading():
    async def scenario() -> list:
        stream = asyncio.StreamReader()  # its limit is 64 KiB: readline() would raise
        stream.feed_data(b"x" * 200_000 + b"\nlast words\n")
        stream.feed_eof()
        tail: collections.deque = collections.deque(maxlen=5)
        await live._drain(stream, tail)
        return list(tail)

    tail = asyncio.run(scenario())
    assert tail == ["x" * live.TAIL_MAX, "last words"]


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


def test_a_killed_ffmpeg_whose_output_was_left_unread_is_reaped():
    # A relay stopped mid-stream has left ffmpeg's stdout unread; its reader pauses once the
    # buffer is full, and asyncio's Process.wait() (which also waits for the pipes to close) would
    # then never return: the relay stayed "ending" for good (seen in CI as a relay with no viewer).
    async def scenario():
        proc = await asyncio.create_subprocess_exec(
            "yes", "live video", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        await proc.stdout.read(10)
        limit = proc.stdout._limit  # (asyncio's own) the reader pauses beyond twice this
        deadline = time.monotonic() + 30
        while len(proc.stdout._buffer) <= 2 * limit and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        proc.kill()
        with pytest.raises(asyncio.TimeoutError):  # the hazard: a plain wait does not return
            await asyncio.wait_for(asyncio.shield(proc.wait()), 2)
        await asyncio.wait_for(live._reaped(proc, None), 20)
        return proc.returncode

    assert asyncio.run(scenario()) == -signal.SIGKILL
