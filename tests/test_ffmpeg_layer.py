"""One ffmpeg layer: every reader of a camera opens it with the user's RTSP_TRANSPORT and timeouts,
every ffmpeg child goes through one runner (own session, tied to us, a bounded stderr tail, a clear
"why it failed"), one backoff, and OpenCV's capture options never leak from one open to another."""

import os
import socket
import subprocess
import threading
import time

import pytest
from helpers import wait_for

from nvr_cli.config import Settings
from nvr_cli.core.backoff import Backoff
from nvr_cli.core.processes import ENV_OWNER
from nvr_cli.ffmpeg import process as ffproc
from nvr_cli.source import capture
from nvr_cli.source.capture import VideoSource, diagnose, diagnose_command
from nvr_cli.source.packets import PacketRing
from nvr_cli.source.spec import ffmpeg_input_args, parse_source
from nvr_cli.storage.segments import Segmenter

# --- the backoff -----------------------------------------------------------------------------------


def test_backoff_doubles_to_its_maximum_and_starts_afresh_after_reset():
    b = Backoff(1.0, 5.0)
    assert [b.next() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    b.reset()
    assert b.peek() == 1.0 and b.next() == 1.0 and b.next() == 2.0
    assert [Backoff(10.0, 3.0).next() for _ in range(1)] == [
        10.0
    ]  # a first delay above the maximum: as given


# --- input options: one builder, every user ------------------------------------------------------


def _after(cmd, option):
    return cmd[cmd.index(option) + 1]


def test_input_args_follow_the_source_kind(tmp_path):
    rtsp = parse_source("rtsp://user:pw@127.0.0.1:1/cam")
    assert ffmpeg_input_args(rtsp, transport="udp", timeout=2.5) == [
        "-rtsp_transport",
        "udp",
        "-timeout",
        "2500000",
        "-i",
        "rtsp://user:pw@127.0.0.1:1/cam",
    ]
    assert ffmpeg_input_args(parse_source("http://127.0.0.1:1/mjpg"), transport="udp", timeout=3) == [
        "-rw_timeout",
        "3000000",
        "-i",
        "http://127.0.0.1:1/mjpg",
    ]
    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"\0" * 10)
    assert ffmpeg_input_args(parse_source(str(clip)), transport="tcp", timeout=1) == ["-i", str(clip)]
    with pytest.raises(ValueError):
        ffmpeg_input_args(parse_source("0"), transport="tcp", timeout=1)


def test_every_camera_reader_uses_the_settings_transport_and_timeout(tmp_path, ffmpeg):
    """The packet buffer, continuous recording and the open-failure probe: none hard-codes either."""
    spec = parse_source("rtsp://127.0.0.1:1/cam")
    s = Settings(
        RTSP_TRANSPORT="udp", READ_TIMEOUT_SECS=4.5, OPEN_TIMEOUT_SECS=2.5, PATH_FOR_VIDEO=str(tmp_path)
    )
    ring = PacketRing.__new__(PacketRing)  # its command only: no thread, no connection
    ring.spec, ring.ffmpeg, ring.rtsp_transport, ring.read_timeout = (
        spec,
        ffmpeg,
        s.RTSP_TRANSPORT,
        s.READ_TIMEOUT_SECS,
    )
    commands = {
        "packet buffer": ring._command(),
        "segmenter": Segmenter(s.source, s.continuous, s.output, spec, ffmpeg, threading.Event())._command(),
        "diagnose": diagnose_command(ffmpeg, spec, s.OPEN_TIMEOUT_SECS, s.RTSP_TRANSPORT),
    }
    for who, cmd in commands.items():
        assert cmd.count("-rtsp_transport") == 1 and _after(cmd, "-rtsp_transport") == "udp", who
        assert cmd.count("-timeout") == 1, who
        assert cmd.index("-timeout") < cmd.index("-i"), who  # an input option, not an output one
    assert _after(commands["packet buffer"], "-timeout") == "4500000"
    assert _after(commands["segmenter"], "-timeout") == "4500000"
    assert _after(commands["diagnose"], "-timeout") == "2500000"  # opening: the open timeout


@pytest.fixture
def silent_server():
    """Accepts connections and never says a word: only a timeout ends a client."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns = []

    def accept():
        while True:
            try:
                conns.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"rtsp://127.0.0.1:{srv.getsockname()[1]}/cam", conns
    srv.close()
    for c in conns:
        c.close()


def test_the_packet_buffer_gives_up_on_a_silent_camera_after_the_read_timeout(silent_server, ffmpeg):
    url, conns = silent_server
    ring = PacketRing(
        parse_source(url),
        ffmpeg,
        2.0,
        threading.Event(),
        read_timeout=1.0,
        retry_delay=0.1,
        max_retry_delay=0.2,
    )
    try:
        # it was 10 s whatever READ_TIMEOUT_SECS said: one connection in this time
        assert wait_for(lambda: ring.connects >= 3, timeout=12), f"{ring.connects} connects"
        assert len(conns) >= 2
    finally:
        ring.close()


def test_continuous_recording_gives_up_on_a_silent_camera_after_the_read_timeout(
    silent_server, ffmpeg, tmp_path
):
    url, _ = silent_server
    s = Settings(READ_TIMEOUT_SECS=1.0, PATH_FOR_VIDEO=str(tmp_path), CAMERA_NAME="cam")
    seg = Segmenter(s.source, s.continuous, s.output, parse_source(url), ffmpeg, threading.Event())
    t = time.monotonic()
    produced, reason, stderr = seg._run_once()
    # ffmpeg itself timed out ("exited"), before the segmenter's own watchdog (READ_TIMEOUT_SECS + 2)
    assert (produced, reason) == (0, "exited") and time.monotonic() - t < 2.9, (reason, stderr)
    assert stderr.strip()  # and said something about it


def test_diagnose_opens_with_the_open_timeout(silent_server):
    url, _ = silent_server
    t = time.monotonic()
    why = diagnose(parse_source(url), 1.0, "tcp")
    assert time.monotonic() - t < 4 and why


# --- transports, for real: a camera that speaks only one of them ------------------------------------


@pytest.fixture
def udp_only(walking, rtsp_server):
    return rtsp_server(walking, protocols="udp")


@pytest.mark.rtsp
def test_udp_only_camera_works_for_every_reader_with_rtsp_transport_udp(udp_only, ffmpeg, tmp_path):
    spec = parse_source(udp_only.url)
    # the probe: with TCP the server refuses the transport; with UDP it reads a frame, nothing to say
    assert "not supported" in diagnose(spec, 5.0, "tcp").lower()
    assert diagnose(spec, 5.0, "udp") == "cannot open (no frames)"
    # the decoder
    src = VideoSource(
        spec, rtsp_transport="udp", open_timeout=5, read_timeout=5, diagnose_errors=False
    ).open()
    src.close()
    # the packet buffer
    ring = PacketRing(spec, ffmpeg, 2.0, threading.Event(), rtsp_transport="udp")
    try:
        assert wait_for(lambda: ring.span > 1, timeout=30)
    finally:
        ring.close()
    # continuous recording
    s = Settings(RTSP_TRANSPORT="udp", SEGMENT_SECONDS=2, PATH_FOR_VIDEO=str(tmp_path), CAMERA_NAME="cam")
    stop = threading.Event()
    seg = Segmenter(s.source, s.continuous, s.output, spec, ffmpeg, stop)
    worker = threading.Thread(target=seg.run, daemon=True)
    worker.start()
    try:
        assert wait_for(lambda: seg.written >= 1, timeout=30)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert seg.segments[0].valid


@pytest.mark.rtsp
def test_two_sources_opened_at_once_each_get_their_own_capture_options(walking, rtsp_server):
    """OpenCV takes the RTSP transport from one process-wide variable: opened from two threads at
    the same moment, a TCP-only and a UDP-only camera must each be opened with their own."""
    tcp_cam, udp_cam = rtsp_server(walking, protocols="tcp"), rtsp_server(walking, protocols="udp")
    before = os.environ.get(capture.CAPTURE_OPTIONS_ENV)
    for _ in range(4):
        start = threading.Barrier(2)
        results = {}

        def open_one(url, transport):
            start.wait()
            try:
                VideoSource(
                    parse_source(url),
                    rtsp_transport=transport,
                    open_timeout=5,
                    read_timeout=5,
                    diagnose_errors=False,
                ).open().close()
                results[transport] = "ok"
            except Exception as e:  # noqa: BLE001 - reported below
                results[transport] = repr(e)

        threads = [
            threading.Thread(target=open_one, args=(tcp_cam.url, "tcp")),
            threading.Thread(target=open_one, args=(udp_cam.url, "udp")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert results == {"tcp": "ok", "udp": "ok"}
        # and a camera's options do not stay behind for the next open (a file, say)
        assert os.environ.get(capture.CAPTURE_OPTIONS_ENV) == before


# --- the runner ------------------------------------------------------------------------------------


def test_an_ffmpeg_child_has_its_own_session_our_mark_and_a_bounded_tail(ffmpeg):
    # a long-running ffmpeg that writes a line of stderr per frame (debug logging of a test source)
    proc = ffproc.FfmpegProcess(
        [
            ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "debug",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x64:rate=50",
            "-f",
            "null",
            "-",
        ],
        tail=7,
    )
    try:
        assert os.getsid(proc.pid) == proc.pid  # a session of its own: a terminal's Ctrl-C is not its

        def comm():
            with open(f"/proc/{proc.pid}/comm") as f:
                return f.read()

        # setpriv set the death signal and became ffmpeg (until its exec is done, environ reads empty)
        assert wait_for(lambda: "ffmpeg" in comm(), timeout=10)
        with open(f"/proc/{proc.pid}/environ", "rb") as f:
            assert f"{ENV_OWNER}={os.getpid()}".encode() in f.read().split(b"\0")
        assert wait_for(lambda: len(proc.tail) == 7, timeout=10)
        time.sleep(0.5)
        assert len(proc.lines()) == 7  # bounded, however much it writes
    finally:
        assert proc.end(timeout=10) is not None
    assert proc.poll() is not None


def test_why_a_write_failed_is_the_cause_not_ffmpegs_last_words(ffmpeg):
    proc = ffproc.FfmpegProcess(
        ffproc.base(ffmpeg)
        + ["-f", "lavfi", "-i", "testsrc=size=64x64:rate=25", "-t", "5", "-f", "rawvideo", "-y", "/dev/full"]
    )
    assert proc.wait(timeout=30) != 0
    assert proc.why() == "no space left on device"
    missing = ffproc.run(ffproc.base(ffmpeg) + ["-i", "/nonexistent/clip.mp4", "-f", "null", "-"])
    assert missing.returncode != 0
    assert "No such file" in ffproc.why(missing.stderr.splitlines(), missing.returncode, last=True)
    assert (
        ffproc.why(["[mp4 @ 0x1] error", "Read-only file system", "Conversion failed!"])
        == "read-only file system"
    )
    assert ffproc.why([], 3) == "ffmpeg exited with code 3"


def test_a_missing_ffmpeg_is_an_oserror_for_the_caller():
    with pytest.raises(OSError):
        ffproc.FfmpegProcess(["/nonexistent/ffmpeg", "-version"], stdout=subprocess.PIPE)
