"""A recording worker offers its camera's packets and newest frame on a Unix socket (issue 15): the
real `nvr-cli record` over the real RTSP server, in each of the three ways it gets its packets, and
the socket's protocol against a LiveTap in this process."""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import cv2
import numpy as np
import pytest
from helpers import (
    clips,
    decode_all,
    descendants,
    ffprobe,
    start_recorder,
    terminate,
    video_packets,
    wait_for,
)

from nvr_cli.core.frames import Frame
from nvr_cli.core.unix_socket import connect_unix
from nvr_cli.ffmpeg.mpegts import TsParser, keyframe_starts
from nvr_cli.runtime import live_tap
from nvr_cli.runtime.live_tap import LiveTap
from nvr_cli.source.packets import PacketBuffer
from nvr_cli.storage.segments import read_index

SIZE = (640, 360)  # the generated scene's


# -- talking to the socket ------------------------------------------------------------------------
def readline(sock: socket.socket) -> str:
    line = b""
    while not line.endswith(b"\n") and len(line) < 200:
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
    return line.decode()


def ask(path, request: bytes):
    """(connected socket, the answer's first line)."""
    sock = connect_unix(path, timeout=20)
    assert sock is not None, f"nothing listens on {path}"
    sock.sendall(request)
    return sock, readline(sock)


def read_for(sock: socket.socket, seconds: float) -> bytes:
    """What the socket gives in ``seconds`` (or until it closes)."""
    data, end = bytearray(), time.monotonic() + seconds
    while time.monotonic() < end:
        sock.settimeout(max(0.05, end - time.monotonic()))
        try:
            chunk = sock.recv(1 << 16)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def watch(path, seconds: float = 4.0) -> bytes:
    """``packets`` for a few seconds: the ok line says H.264, then the TS."""
    sock, line = ask(path, b"packets\n")
    with sock:
        assert line == "ok video/mp2t h264\n", line
        return read_for(sock, seconds)


def assert_playable(data: bytes, path, min_frames: int = 10) -> int:
    """H.264 in MPEG-TS, its first frame a keyframe, decodable: returns the frames OpenCV decodes."""
    path.write_bytes(data)
    probe = ffprobe(path)
    stream = probe["streams"][0]
    assert probe["format"]["format_name"] == "mpegts"
    assert stream["codec_name"] == "h264" and (stream["width"], stream["height"]) == SIZE
    assert int(stream["nb_read_frames"]) >= min_frames, stream
    assert video_packets(path)[0][1], "the first frame is not a keyframe"
    frames = decode_all(path)
    assert len(frames) >= min_frames and frames[0].shape[:2] == SIZE[::-1]
    return len(frames)


def snapshot(path) -> np.ndarray:
    sock, line = ask(path, b"snapshot\n")
    with sock:
        kind, mime, n = line.split()
        assert (kind, mime) == ("ok", "image/jpeg"), line
        data = b""
        while len(data) < int(n):
            chunk = sock.recv(int(n) - len(data))
            assert chunk, "closed before the whole JPEG"
            data += chunk
        assert sock.recv(1) == b""  # then the worker closes
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[:2] == SIZE[::-1]
    return image


def status(out, name="gate") -> dict:
    try:
        return json.loads((out / ".status" / f"{name}.json").read_text())
    except (OSError, ValueError):
        return {}


def ts_readers(pid) -> list:
    """The recorder's ffmpeg processes that write MPEG-TS to their stdout (a packet reader)."""
    found = []
    for p in descendants(pid):
        try:
            cmd = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"mpegts" in cmd and cmd[-2:-1] == [b"-"]:
            found.append(p)
    return found


@pytest.fixture
def recording(tmp_path, rtsp_server):
    """Start `nvr-cli record` (tests/helpers.py start_recorder) of a scene; SIGTERMed at the end."""
    started = []

    def start(scene, *extra, name="gate"):
        server = rtsp_server(scene)
        out = tmp_path / "video"
        proc, log = start_recorder(server.url, out, *extra, "--log-level", "INFO", name=name)
        started.append(proc)
        sock = out / ".status" / f"{name}.live.sock"
        assert wait_for(sock.exists, timeout=30), f"no live socket\n{log.text()}"
        return proc, log, out, sock

    yield start
    for proc in started:
        if proc.poll() is None:
            terminate(proc)


def stop_and_check_socket_gone(proc, log, sock):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    log.join()
    assert proc.returncode == 0, log.text()
    assert not sock.exists(), "the live socket outlived the recorder"
    assert "Traceback" not in log.text(), log.text()


# -- the real recorder ----------------------------------------------------------------------------
@pytest.mark.rtsp
def test_packet_clip_mode_serves_packets_and_snapshots(recording, scene_cache, tmp_path):
    """Clips from the camera's packets (the default for RTSP): viewers share the clips' ring."""
    proc, log, out, sock = recording(scene_cache())
    assert wait_for(lambda: status(out).get("frames", 0) > 15, timeout=40), log.text()
    readers = ts_readers(proc.pid)
    assert len(readers) == 1, readers  # the ring's: a viewer adds no camera connection

    assert_playable(watch(sock), tmp_path / "one.ts")
    snapshot(sock)

    # two at once: both get the stream from a keyframe
    results = {}

    def viewer(i):
        results[i] = watch(sock)

    threads = [threading.Thread(target=viewer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i in range(2):
        assert_playable(results[i], tmp_path / f"two-{i}.ts")
    assert ts_readers(proc.pid) == readers

    # requests it does not know
    for request in (b"hello\n", b"PACKETS\n", b"x" * 100 + b"\n"):
        s, line = ask(sock, request)
        s.close()
        assert line == "error unknown request\n", (request, line)

    # a viewer that never reads: the recorder goes on analysing and writing clips, others still watch
    stalled, line = ask(sock, b"packets\n")
    assert line.startswith("ok video/mp2t")
    try:
        frames, before = status(out)["frames"], len(clips(out))
        assert wait_for(lambda: status(out)["frames"] > frames + 60, timeout=60), "analysis stopped"
        assert wait_for(lambda: len(clips(out)) > before, timeout=90), f"no clip while stalled\n{log.text()}"
        assert_playable(watch(sock), tmp_path / "beside-stalled.ts")
        snapshot(sock)
    finally:
        stalled.close()
    stop_and_check_socket_gone(proc, log, sock)


@pytest.mark.rtsp
def test_continuous_mode_takes_the_segmenters_packets(recording, scene_cache, tmp_path):
    """Continuous recording: the segmenter's ffmpeg writes the live TS too, and still records segments."""
    proc, log, out, sock = recording(scene_cache(), "--continuous", "--segment-seconds", "3")
    assert wait_for(lambda: status(out).get("frames", 0) > 15, timeout=40), log.text()
    assert ts_readers(proc.pid) == []  # no packet reader of its own: the segmenter's second output
    assert_playable(watch(sock, 5), tmp_path / "cont.ts")
    snapshot(sock)
    stalled, line = ask(sock, b"packets\n")  # never read: segments keep coming
    try:
        assert line == "ok video/mp2t h264\n"
        n = len([e for e in read_index(out / "gate") if "file" in e])
        assert wait_for(
            lambda: len([e for e in read_index(out / "gate") if "file" in e]) >= n + 3, timeout=60
        )
    finally:
        stalled.close()
    stop_and_check_socket_gone(proc, log, sock)
    segs = [e for e in read_index(out / "gate") if "file" in e]
    assert segs and all(e["valid"] for e in segs), segs
    assert "live packets" not in log.text()  # the drain never complained


@pytest.mark.rtsp
def test_reencoded_clips_open_a_reader_only_while_watched(recording, scene_cache, tmp_path):
    """EVENT_REENCODE = True, no continuous recording: nothing reads packets until a viewer asks."""
    cfg = tmp_path / "reencode.py"
    cfg.write_text("EVENT_REENCODE = True\n")
    proc, log, out, sock = recording(scene_cache(), "--config", cfg)
    assert wait_for(lambda: status(out).get("frames", 0) > 15, timeout=40), log.text()
    assert ts_readers(proc.pid) == []
    assert_playable(watch(sock), tmp_path / "reencode.ts")
    assert wait_for(lambda: not ts_readers(proc.pid), timeout=20), "the reader outlived its viewer"
    # two viewers share one reader
    a, line_a = ask(sock, b"packets\n")
    b, line_b = ask(sock, b"packets\n")
    with a, b:
        assert line_a == line_b == "ok video/mp2t h264\n"
        data_a, data_b = read_for(a, 3), read_for(b, 3)
        assert len(ts_readers(proc.pid)) == 1
    assert_playable(data_a, tmp_path / "a.ts")
    assert_playable(data_b, tmp_path / "b.ts")
    assert wait_for(lambda: not ts_readers(proc.pid), timeout=20)
    snapshot(sock)
    stop_and_check_socket_gone(proc, log, sock)


# -- the protocol, in this process ----------------------------------------------------------------
@pytest.fixture
def tap(tmp_path):
    made = []

    def make(**kwargs):
        t = LiveTap(tmp_path / "cam.live.sock", **kwargs).start()
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def answer(path, request: bytes) -> str:
    sock, line = ask(path, request)
    sock.close()
    return line


def test_errors_say_why(tap, monkeypatch):
    monkeypatch.setattr(live_tap, "REQUEST_TIMEOUT", 0.3)
    frame = {"f": None}
    t = tap(packets=None, no_packets="a USB camera has no video packets to relay", frame=lambda: frame["f"])
    assert oct(os.stat(t.path).st_mode & 0o777) == "0o600"
    assert answer(t.path, b"packets\n") == "error a USB camera has no video packets to relay\n"
    assert answer(t.path, b"snapshot\n") == "error no frame yet\n"
    frame["f"] = Frame(np.zeros((SIZE[1], SIZE[0], 3), np.uint8), time.monotonic() - 60, 0)
    assert answer(t.path, b"snapshot\r\n").startswith("error camera lost")
    assert answer(t.path, b"nonsense\n") == "error unknown request\n"
    sock = connect_unix(t.path)
    assert readline(sock) == "error no request line\n"  # said nothing within the timeout
    sock.close()
    t.close()
    assert not t.path.exists()


def test_snapshot_is_encoded_once_per_half_second(tap, monkeypatch):
    monkeypatch.setattr(live_tap, "SNAPSHOT_TTL", 3600)  # "within 0.5 s", without a race against the clock
    calls = []
    image = np.full((SIZE[1], SIZE[0], 3), 128, np.uint8)

    def newest():
        calls.append(1)
        return Frame(image, time.monotonic(), len(calls))

    t = tap(packets=None, frame=newest)
    first = answer_jpeg(t.path)
    assert answer_jpeg(t.path) == first and len(calls) == 1


def answer_jpeg(path) -> bytes:
    sock, line = ask(path, b"snapshot\n")
    with sock:
        n = int(line.split()[2])
        data = read_for(sock, 5)
    assert len(data) == n
    return data


def test_a_slow_viewer_drops_to_the_next_keyframe_group(tmp_path, scene_cache, ffmpeg):
    """Its queue overflows: what waits is dropped and it resumes with PAT, PMT and a keyframe."""
    ts = tmp_path / "scene.ts"
    subprocess.run([ffmpeg, "-v", "error", "-i", scene_cache(), "-c", "copy", "-f", "mpegts", ts], check=True)
    buf = PacketBuffer(0.0)
    viewer = live_tap._Viewer()
    buf.attach(viewer, time.monotonic())
    viewer.max_queued = 200_000  # a few keyframe groups of this scene
    fd = os.open(ts, os.O_RDONLY)
    try:
        buf.read(fd, threading.Event())  # the whole file at once: far faster than anyone reads
    finally:
        os.close(fd)
    assert viewer.drops > 0
    data = viewer.take(0)
    parser = TsParser()
    parser.feed(data)
    assert data.startswith(buf.header) and keyframe_starts(data, parser.video_pid)[0] == len(buf.header)
    assert_playable(data, tmp_path / "resumed.ts", min_frames=1)
    buf.reset()
    assert viewer.take(0) is None  # the stream ended: the viewer's connection ends
