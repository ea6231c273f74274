"""Live view's figures (issue 15): latency from a frame leaving the RTSP server to the browser showing
it, the server's CPU per viewer, one relay shared by ten viewers, and memory over minutes of viewing.

How latency is measured. The camera is the tests' GStreamer RTSP server serving a 1080p25 clip with a
one-second GOP and no B-frames, made here from the shared traffic footage with each frame's number
drawn into its top rows as 10 black/white blocks (and their complement, to reject a misread). The
server logs the wall-clock time at which it hands each access unit to its RTSP pipeline. A real
`nvr-cli record` worker records the camera (packet clips: the default for an RTSP camera), and a real
`nvr-cli serve` relays the worker's packets; Debian's headless Chromium opens the live page
(/live/<camera>). In the page, `requestVideoFrameCallback` reports each frame as it is composited;
the frame is drawn to a small canvas, its number read from the blocks, and the latency is the frame's
expected display time (performance.timeOrigin + expectedDisplayTime, same machine clock) minus the
time the server logged it left. The clip loops every 20 s, far longer than any latency.

CPU: the serve process and its children (the remuxing ffmpeg), over the same window with no viewer,
one and ten viewers (WebSocket clients reading the stream as the page does, so that ten browsers'
decoding does not starve the two cores); beside it, in the same run, ffmpeg only decoding the same
stream: the least a relay that transcodes would pay. Memory: the serve tree's PSS sampled every 30 s
while Chromium and nine more clients watch for --soak-minutes.

    python3 bench/live_view.py [--seconds 30] [--soak-minutes 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
from chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (as the browser tests start it)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import CACHE, ROOT, CpuMeter, Server, ffmpeg, pss_mb, say, stream_file, tree  # noqa: E402

BITS = 10  # frame numbers 0..1023; the clip has 500 frames
BLOCK, GAP, TOP = 80, 16, 16  # block size, gap and top margin in 1080p pixels
FPS, SECONDS = 25, 20
READY = "serving the review page at"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stamped_clip() -> Path:
    """The traffic footage at 1080p25, GOP 25, no B-frames, each frame's number drawn as blocks."""
    import cv2

    out = CACHE / "live_stamped_1080p25.mp4"
    if out.exists():
        return out
    src = cv2.VideoCapture(str(stream_file(1920, 1080, FPS)))
    enc = subprocess.Popen(
        [ffmpeg(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "1920x1080",
         "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
         "-g", str(FPS), "-bf", "0", "-pix_fmt", "yuv420p", str(out)],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    for n in range(FPS * SECONDS):
        ok, img = src.read()
        if not ok:
            raise SystemExit("the traffic footage is shorter than the bench's clip")
        for b in range(2 * BITS):
            bit = (n >> (b % BITS)) & 1
            on = bit if b < BITS else 1 - bit
            x = GAP + b * (BLOCK + GAP)
            img[TOP : TOP + BLOCK, x : x + BLOCK] = 255 if on else 0
        enc.stdin.write(np.ascontiguousarray(img).tobytes())
    enc.stdin.close()
    if enc.wait():
        raise SystemExit("ffmpeg could not encode the stamped clip")
    return out


# In the page: read each composited frame's number, keep (number, display time in epoch ms).
COLLECT_JS = """
([bits, block, gap, top]) => new Promise((done) => {
  const v = document.querySelector('video');
  const scale = 4, c = document.createElement('canvas');
  c.width = 1920 / scale; c.height = (top + block + gap) / scale;
  const g = c.getContext('2d', {willReadFrequently: true});
  window.__samples = [];
  const read = () => {
    g.drawImage(v, 0, 0, v.videoWidth, top + block + gap, 0, 0, c.width, c.height);
    const px = g.getImageData(0, 0, c.width, c.height).data;
    let n = 0, m = 0;
    for (let b = 0; b < 2 * bits; b++) {
      const x = Math.round((gap + b * (block + gap) + block / 2) / scale);
      const y = Math.round((top + block / 2) / scale);
      const on = px[(y * c.width + x) * 4 + 1] > 128 ? 1 : 0;
      if (b < bits) n |= on << b; else m |= (1 - on) << (b - bits);
    }
    return n === m ? n : -1;
  };
  const tick = (now, meta) => {
    window.__samples.push([read(), performance.timeOrigin + meta.expectedDisplayTime]);
    v.requestVideoFrameCallback(tick);
  };
  v.requestVideoFrameCallback(tick);
  done(true);
})
"""


def latencies(samples: list, log: Path, units: int) -> list:
    """Seconds from the server's send to display, for each sample whose number was read."""
    sent: dict = {}
    for line in log.read_text().splitlines():
        i, t = line.split()
        sent.setdefault(int(i), []).append(float(t))
    out = []
    for n, shown_ms in samples:
        if n < 0 or n >= units or n not in sent:
            continue
        shown = shown_ms / 1000
        before = [t for t in sent[n] if t <= shown]
        if before:
            out.append(shown - max(before))
    return out


class Viewer(threading.Thread):
    """A WebSocket client reading a camera's live stream as the page does (counts what it gets)."""

    def __init__(self, port: int, camera: str):
        super().__init__(daemon=True)
        self.url = f"ws://127.0.0.1:{port}/api/cameras/{camera}/live"
        self.origin = f"http://127.0.0.1:{port}"
        self.fragments = 0
        self.stop = threading.Event()

    def run(self) -> None:
        from websockets.sync.client import connect

        with connect(self.url, origin=self.origin, max_size=None) as ws:
            while not self.stop.is_set():
                try:
                    msg = ws.recv(timeout=1)
                except TimeoutError:
                    continue
                if isinstance(msg, bytes) and msg[4:8] == b"moof":
                    self.fragments += 1

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=10)


def _start(cmd: list, env: dict, ready: str) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stderr:
        if ready in line:
            break
    else:
        raise SystemExit(f"{cmd[3]} did not start (exit {proc.wait()})")
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # drain
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _cpu(pid: int, seconds: float) -> float:
    meter = CpuMeter(pid)
    meter.start()
    time.sleep(seconds)
    return meter.stop()


def _api(port: int, path: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.load(r)


def measure(seconds: float, soak_minutes: float) -> dict:
    from playwright.sync_api import sync_playwright

    clip = stamped_clip()
    units = FPS * SECONDS
    work = Path(tempfile.mkdtemp(prefix="nvr-live-bench-"))
    log = work / "sent.log"
    camera = Server(clip, _free_port(), log_times=log)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NVR_CLI_HOME": str(work)}
    storage = work / "storage"
    cfg = work / "config.py"
    cfg.write_text(
        f"PATH_FOR_VIDEO = {str(storage)!r}\nCAMERAS = {{'cam': {{'cam': {camera.url!r}}}}}\n"
        "LOG_TO_CONSOLE = True\n"
    )
    port = _free_port()
    py = [sys.executable, "-m", "nvr_cli"]
    worker = _start([*py, "record", camera.url, "--output", str(storage), "--name", "cam"], env, "recording")
    serve = _start([*py, "serve", "--config", str(cfg), "--port", str(port)], env, READY)
    out: dict = {"clip": "1080p25, GOP 1 s, no B-frames (traffic footage, frame numbers drawn in)"}
    try:
        time.sleep(3)
        # -- latency, in Chromium -----------------------------------------------------------------
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"http://127.0.0.1:{port}/live/cam")
            page.wait_for_function(
                "() => { const v = document.querySelector('video'); return v && v.currentTime > 1; }",
                timeout=60000,
            )
            out["browser"] = f"Chromium {browser.version}"
            time.sleep(5)  # joined at the replayed keyframe: measure once it has caught up
            via = _api(port, "/api/status")
            out["via"] = [c.get("live", {}).get("via") for c in via.get("cameras", [])]
            page.evaluate(COLLECT_JS, [BITS, BLOCK, GAP, TOP])
            time.sleep(max(seconds, 20))
            samples = page.evaluate("() => window.__samples")
            lat = sorted(latencies(samples, log, units))
            if not lat:
                raise SystemExit(f"no frame number could be read from {len(samples)} frames")
            q = page.evaluate(
                "() => { const q = document.querySelector('video').getVideoPlaybackQuality();"
                " return {totalVideoFrames: q.totalVideoFrames, droppedVideoFrames: q.droppedVideoFrames}; }"
            )
            out["latency"] = {
                "frames": len(samples),
                "read": len(lat),
                "median_ms": round(1000 * statistics.median(lat)),
                "p95_ms": round(1000 * lat[int(len(lat) * 0.95)]),
                "max_ms": round(1000 * lat[-1]),
                "decoded_frames": q["totalVideoFrames"],
                "dropped_frames": q["droppedVideoFrames"],
            }
            say(f"latency: {out['latency']}")

            # -- memory over minutes of viewing: Chromium and nine clients -----------------------
            others = [Viewer(port, "cam") for _ in range(9)]
            for v in others:
                v.start()
            marks, t0 = [], time.monotonic()
            while time.monotonic() - t0 < soak_minutes * 60:
                marks.append((round((time.monotonic() - t0) / 60, 2), round(pss_mb(tree(serve.pid)), 1)))
                time.sleep(30)
            marks.append((round((time.monotonic() - t0) / 60, 2), round(pss_mb(tree(serve.pid)), 1)))
            for v in others:
                v.close()
            settled = [m for t, m in marks if t >= 1] or [marks[-1][1]]
            out["memory"] = {
                "minutes": soak_minutes,
                "viewers": 10,
                "pss_mb_first": marks[0][1],
                "pss_mb_after_1_min": settled[0],
                "pss_mb_last": marks[-1][1],
                "pss_mb_max": max(m for _, m in marks),
                "samples": marks,
            }
            say(f"memory: {out['memory']['pss_mb_after_1_min']} -> {out['memory']['pss_mb_last']} MB")
            browser.close()
        # -- CPU: 0, 1 and 10 viewers; the worker's share; a decoder of the same stream ------------
        time.sleep(5)  # the browser's relay stopped
        cpu: dict = {"window_s": seconds}
        cpu["serve_idle"] = round(_cpu(serve.pid, seconds), 2)
        for n in (1, 10):
            viewers = [Viewer(port, "cam") for _ in range(n)]
            for v in viewers:
                v.start()
            time.sleep(5)  # connected, the relay running
            status = _api(port, "/api/status").get("live", {})
            worker_meter = CpuMeter(worker.pid)
            worker_meter.start()
            cpu[f"serve_{n}_viewers"] = round(_cpu(serve.pid, seconds), 2)
            cpu[f"worker_{n}_viewers"] = round(worker_meter.stop(), 2)
            cpu[f"relays_{n}_viewers"] = status.get("relays")
            got = [v.fragments for v in viewers]
            for v in viewers:
                v.close()
            cpu[f"fragments_per_viewer_{n}"] = [min(got), max(got)]
            time.sleep(5)
        worker_meter = CpuMeter(worker.pid)
        worker_meter.start()
        time.sleep(seconds)
        cpu["worker_no_viewer"] = round(worker_meter.stop(), 2)
        dec = subprocess.Popen(
            [ffmpeg(), "-v", "error", "-rtsp_transport", "tcp", "-i", camera.url, "-f", "null", "-"]
        )
        time.sleep(3)
        cpu["decode_only_ffmpeg"] = round(_cpu(dec.pid, seconds), 2)
        dec.terminate()
        dec.wait()
        cpu["per_extra_viewer"] = round((cpu["serve_10_viewers"] - cpu["serve_1_viewers"]) / 9, 2)
        out["cpu_percent_of_a_core"] = cpu
        say(f"cpu: {cpu}")
    finally:
        _stop(serve)
        _stop(worker)
        camera.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30, help="each CPU window (default 30)")
    ap.add_argument("--soak-minutes", type=float, default=10, help="memory watch (default 10)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = measure(args.seconds, args.soak_minutes)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    lat, cpu, mem = res["latency"], res["cpu_percent_of_a_core"], res["memory"]
    print(f"live view, {res['clip']}, {res['browser']}, via {res['via']}")
    print(
        f"latency (RTSP server send -> shown): median {lat['median_ms']} ms, p95 {lat['p95_ms']} ms, "
        f"max {lat['max_ms']} ms ({lat['read']} of {lat['frames']} frames read; "
        f"{lat['decoded_frames']} decoded, {lat['dropped_frames']} dropped)"
    )
    print(
        f"serve CPU: idle {cpu['serve_idle']} %, 1 viewer {cpu['serve_1_viewers']} %, "
        f"10 viewers {cpu['serve_10_viewers']} % ({cpu['relays_10_viewers']} relay), "
        f"+{cpu['per_extra_viewer']} points per extra viewer"
    )
    print(
        f"worker CPU: no viewer {cpu['worker_no_viewer']} %, 1 viewer {cpu['worker_1_viewers']} %, "
        f"10 viewers {cpu['worker_10_viewers']} %"
    )
    ratio = cpu["decode_only_ffmpeg"] / max(cpu["serve_1_viewers"], 0.01)
    print(
        f"a transcoding relay's floor (ffmpeg decoding the stream): {cpu['decode_only_ffmpeg']} %, "
        f"{ratio:.0f}x the relay with one viewer"
    )
    print(
        f"serve memory (PSS) over {mem['minutes']} min with {mem['viewers']} viewers: "
        f"{mem['pss_mb_after_1_min']} MB after 1 min -> {mem['pss_mb_last']} MB (max {mem['pss_mb_max']})"
    )


if __name__ == "__main__":
    main()
