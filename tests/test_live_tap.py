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
from pathlib import Path

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
from nvr_cli.core.unix_socket import bind_unix, connect_unix
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


def segment_count(out) -> int:
    return len([e for e in read_index(out / "gate") if "file" in e])


@pytest.mark.rtsp
def test_continuous_mode_takes_the_segmenters_packets(recording, scene_cache, tmp_path):
    """Continuous recording: the segmenter's ffmpeg writes the live TS too, and still records segments,
    with a viewer that never reads overflowing its queue."""
    noisy = scene_cache("noisy", seconds=10, noise=30)  # ~1.7 MB/s: a few seconds fill a viewer's queue
    proc, log, out, sock = recording(noisy, "--continuous", "--segment-seconds", "3")
    assert wait_for(lambda: status(out).get("frames", 0) > 15, timeout=40), log.text()
    assert ts_readers(proc.pid) == []  # no packet reader of its own: the segmenter's second output
    assert_playable(watch(sock, 5), tmp_path / "cont.ts")
    snapshot(sock)
    stalled, line = ask(sock, b"packets\n")  # never read: segments keep coming
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        assert line == "ok video/mp2t h264\n"
        assert wait_for(lambda: "a live viewer is too slow" in log.text(), timeout=90), (
            "its queue never filled"
        )
        n = segment_count(out)
        assert wait_for(lambda: segment_count(out) >= n + 3, timeout=60), "the recording stopped"
        assert_playable(watch(sock), tmp_path / "beside-stalled.ts")
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


def test_temporary_conditions_say_retry(tap, monkeypatch):
    """``retry``, not ``error``: no packets yet (the camera is still connecting), or too many clients."""
    monkeypatch.setattr(live_tap, "HEADER_WAIT", 0.5)
    t = tap(packets=PacketBuffer(0.0))  # nothing ever arrives
    assert answer(t.path, b"packets\n") == "retry no packets from the camera yet\n"
    monkeypatch.setattr(live_tap, "MAX_CLIENTS", 1)
    silent = connect_unix(t.path)  # holds the one place while it says nothing
    try:
        assert answer(t.path, b"snapshot\n") == "retry too many clients\n"
    finally:
        silent.close()


def test_a_socket_another_worker_holds_is_taken_once_free(tap, tmp_path, monkeypatch, caplog):
    """An older worker of the camera still answers on the socket: the new one binds once it is gone."""
    monkeypatch.setattr(live_tap, "BIND_RETRY", 0.2)
    path = tmp_path / "cam.live.sock"
    old = bind_unix(path)
    t = tap(packets=None)
    assert "another process answers" in caplog.text
    assert connect_unix(path) is not None  # the old one still answers (its backlog)
    old.close()
    assert wait_for(
        lambda: connect_unix(path) is not None and answer(path, b"x\n") == "error unknown request\n", 20
    )
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    t.close()
    assert not path.exists()

    held = bind_unix(path)  # closed while still waiting: its thread ends, the other's file stays
    try:
        waiting = LiveTap(path, packets=None).start()
        waiting.close()
        assert not waiting._thread.is_alive() and path.exists()
    finally:
        held.close()


def test_bind_unix_leaves_the_umask_alone(tmp_path, monkeypatch):
    """0600 by chmod before listen, not by the process-wide umask (other threads create files)."""

    def no_umask(mask):
        raise AssertionError("umask changed")

    monkeypatch.setattr(os, "umask", no_umask)
    deep = tmp_path / ("d" * 60) / ("e" * 60)  # beyond sun_path: bound through the folder's descriptor
    deep.mkdir(parents=True)
    for path in (tmp_path / "a.sock", deep / "b.sock"):
        sock = bind_unix(path)
        try:
            assert oct(os.stat(path).st_mode & 0o777) == "0o600"
            assert connect_unix(path) is not None
        finally:
            sock.close()


def test_a_stalled_viewer_overflows_and_is_counted(tap, tmp_path, scene_cache, ffmpeg, monkeypatch):
    """A viewer that never reads: its queue overflows (counted on the tap), the packets go on."""
    monkeypatch.setattr(live_tap, "QUEUE_BYTES", 200_000)
    ts = tmp_path / "scene.ts"
    subprocess.run([ffmpeg, "-v", "error", "-i", scene_cache(), "-c", "copy", "-f", "mpegts", ts], check=True)
    buf = PacketBuffer(0.0)
    t = tap(packets=buf)
    stalled = connect_unix(t.path)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"packets\n")
    assert wait_for(lambda: any(v is not None for v in t._clients.values()), 10)
    fd = os.open(ts, os.O_RDONLY)
    try:
        for _ in range(20):  # far more than the queue and the socket's buffers hold
            os.lseek(fd, 0, os.SEEK_SET)
            buf.read(fd, threading.Event())
            if t.drops:
                break
    finally:
        os.close(fd)
        stalled.close()
    assert t.drops > 0


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


# -- an ffmpeg the live packets' output does not agree with ----------------------------------------
def ffmpeg_wrapper(tmp_path, ffmpeg, *, lists_setts: bool, refuses: str) -> Path:
    """A config whose FFMPEG_PATH is a script around the real ffmpeg: it refuses every command line
    containing all words in ``refuses``, and ``-bsfs`` lists setts only if ``lists_setts``."""
    script = tmp_path / "ffmpeg"
    words = " && ".join(f'[[ "$*" == *"{w}"* ]]' for w in refuses.split())
    listing = "" if lists_setts else " | grep -vx setts"
    script.write_text(
        "#!/bin/bash\n"
        f'if [[ "$*" == *-bsfs* ]]; then {ffmpeg} -hide_banner -bsfs{listing}; exit; fi\n'
        f'if {words}; then echo "simulated: this output fails" >&2; exit 1; fi\n'
        f'exec {ffmpeg} "$@"\n'
    )
    script.chmod(0o755)
    cfg = tmp_path / "wrapped.py"
    cfg.write_text(f"FFMPEG_PATH = {str(script)!r}\n")
    return cfg


@pytest.mark.rtsp
def test_an_ffmpeg_without_setts_records_without_the_live_packets(recording, scene_cache, tmp_path, ffmpeg):
    """ffmpeg < 4.4 has no setts: continuous recording goes on; live packets say why there are none."""
    cfg = ffmpeg_wrapper(tmp_path, ffmpeg, lists_setts=False, refuses="setts=")
    proc, log, out, sock = recording(
        scene_cache(), "--config", cfg, "--no-motion", "--continuous", "--segment-seconds", "2"
    )
    assert wait_for(lambda: segment_count(out) >= 2, timeout=60), log.text()
    line = answer(sock, b"packets\n")
    assert line.startswith("error this ffmpeg lacks the setts filter"), line
    stop_and_check_socket_gone(proc, log, sock)
    assert "simulated" not in log.text()  # never ran with the output it refuses


@pytest.mark.rtsp
def test_a_failing_live_output_is_given_up_and_viewers_get_their_own_reader(
    recording, scene_cache, tmp_path, ffmpeg
):
    """setts is there, yet the segmenter's ffmpeg fails with the TS output: after two runs that
    recorded nothing the segments are written without it, and a viewer gets a reader of its own."""
    cfg = ffmpeg_wrapper(tmp_path, ffmpeg, lists_setts=True, refuses="segment_list setts=")
    proc, log, out, sock = recording(
        scene_cache(), "--config", cfg, "--no-motion", "--continuous", "--segment-seconds", "2"
    )
    assert wait_for(lambda: segment_count(out) >= 2, timeout=60), log.text()
    assert log.text().count("fails with the live packets output") == 1, log.text()
    assert ts_readers(proc.pid) == []
    assert_playable(watch(sock), tmp_path / "own-reader.ts")
    assert wait_for(lambda: not ts_readers(proc.pid), timeout=20), "the reader outlived its viewer"
    stop_and_check_socket_gone(proc, log, sock)
