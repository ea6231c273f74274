"""The review page's figures at the API (bench/web.py's ``serve_figures``): the queries the page makes,
through a real `nvr-cli serve` over HTTP on 127.0.0.1 (one keep-alive connection, as a browser
keeps), and the server's CPU while one browser plays a clip: Debian's headless Chromium, driven by
Playwright, opens the event's page and plays it to the end (without Chromium, a client that reads
the clip with Range requests at its own bitrate stands in, and the figures say so).

The clip to play is a real H.264 file made once with ffmpeg (720p, 15 fps, a minute), put in a
camera of its own ("play") in a folder beside the storage, so the storage's counts stay as made.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
from chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (as the browser tests start it)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import cpu_seconds, timed  # noqa: E402

READY = "serving the review page at"
PLAY_SECONDS = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _play_camera(folder: Path) -> Path:
    """A camera folder with one real clip and its sidecar (made once)."""
    day = folder / "play" / "2026" / "10" / "01"
    clip = day / "play_20261001-120000.mp4"
    if clip.exists():
        return folder
    day.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi",
         "-i", f"testsrc2=size=1280x720:rate=15:duration={PLAY_SECONDS}",
         "-c:v", "libx264", "-preset", "veryfast", "-b:v", "2M", "-pix_fmt", "yuv420p",
         "-movflags", "+faststart", str(clip)],
        check=True,
    )  # fmt: skip
    start = dt.datetime(2026, 10, 1, 12, 0, 0).astimezone()
    side = {
        "camera": "play",
        "event": 1,
        "part": 1,
        "kind": "motion",
        "start": start.isoformat(timespec="milliseconds"),
        "end": (start + dt.timedelta(seconds=PLAY_SECONDS)).isoformat(timespec="milliseconds"),
        "duration_seconds": PLAY_SECONDS,
        "labels": [],
        "objects": [],
        "qr": [],
        "clip": clip.name,
        "end_reason": "motion ended",
    }
    clip.with_suffix(".json").write_text(json.dumps(side))
    return folder


class _Client:
    """One keep-alive HTTP connection."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes]:
        self.conn.request("GET", path, headers=headers or {})
        r = self.conn.getresponse()
        return r.status, r.read()

    def json(self, path: str) -> dict:
        status, body = self.get(path)
        if status != 200:
            raise RuntimeError(f"{path}: {status} {body[:200]!r}")
        return json.loads(body)


def _play(client: _Client, url: str, size: int, seconds: float) -> None:
    """Read the clip as a video element plays it: a first megabyte, then 256 kB at a time, each when
    the playback reaches it (the clip's bytes spread evenly over its length)."""
    rate = size / seconds
    t0 = time.monotonic()
    pos = 0
    while pos < size:
        chunk = 1 << 20 if pos == 0 else 256 << 10
        end = min(size, pos + chunk) - 1
        status, body = client.get(url, {"Range": f"bytes={pos}-{end}"})
        if status != 206 or len(body) != end - pos + 1:
            raise RuntimeError(f"range {pos}-{end}: {status}, {len(body)} bytes")
        pos = end + 1
        due = t0 + max(0, pos - (1 << 20)) / rate
        time.sleep(max(0.0, due - time.monotonic()))


def _play_in_chromium(port: int, event_id: str) -> str:
    """Play the event's clip to its end in the review page, in headless Chromium; returns what played."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/events/{event_id}")
            page.wait_for_function(
                "() => { const v = document.querySelector('video'); return v && v.currentTime > 1; }"
            )
            page.wait_for_function(
                "() => { const v = document.querySelector('video'); return v.ended; }",
                timeout=(PLAY_SECONDS + 60) * 1000,
            )
            return f"Chromium {browser.version} (the event's page, to the end)"
        finally:
            browser.close()


def serve_figures(root: Path, repeat: int) -> dict:
    """The same queries as the index's, through `nvr-cli serve` (ms, median and 95th percentile),
    and the server's CPU (% of one core) while a browser plays a minute-long clip."""
    repo = Path(__file__).resolve().parent.parent
    play = _play_camera(root.parent / (root.name + "-play"))
    port = _free_port()
    cfg = play / "serve.py"
    cfg.write_text(
        f"PATH_FOR_VIDEO = {str(root)!r}\n"
        f"WEB_INDEX_FILE = {str(root / '.nvr-index.sqlite3')!r}\n"
        f"CAMERAS = {{'play': {{'cam': '0', 'PATH_FOR_VIDEO': {str(play)!r}}}}}\n"
        "LOG_TO_CONSOLE = True\n"
    )
    env = {**os.environ, "PYTHONPATH": str(repo), "NVR_CLI_HOME": str(play)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nvr_cli", "serve", "--config", str(cfg), "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        t0 = time.monotonic()
        for line in proc.stderr:
            if READY in line:
                break
        else:
            raise RuntimeError(f"serve did not start (exit {proc.wait()})")
        ready_s = time.monotonic() - t0
        # drain its log so that it never blocks on a full pipe
        import threading

        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        c = _Client(port)
        cams = [x for x in c.json("/api/cameras")["cameras"] if x["name"] != "play"]
        names = [x["name"] for x in cams]
        days = c.json("/api/days")["days"]
        busy = days[len(days) // 2]["day"]
        first = c.json("/api/events?limit=50")
        some = first["events"][0]["id"]
        queries = {
            "first events page (50)": "/api/events?limit=50",
            "filtered page (camera, person, min_score 0.8)": (
                f"/api/events?camera={names[3]}&label=person&min_score=0.8&limit=50"
            ),
            "filtered page (2 cameras, qr)": (
                f"/api/events?camera={names[0]}&camera={names[1]}&label=qr&limit=50"
            ),
            "unreviewed, a day": f"/api/events?day={busy}&reviewed=false&limit=50",
            "next page (cursor)": f"/api/events?limit=50&cursor={first['next_cursor']}",
            "day timeline (one camera)": f"/api/cameras/{names[3]}/recordings?day={busy}",
            "days (calendar)": "/api/days",
            "one event": f"/api/events/{some}",
            "cameras (with status and today's counts)": "/api/cameras",
        }
        rows = {name: timed(lambda p=path: c.json(p), repeat) for name, path in queries.items()}
        clip = c.json("/api/events?camera=play")["events"][0]["clip"]
        size = len(c.get(clip)[1])
        event_id = clip.split("/")[3]
        cpu0, wall0 = cpu_seconds([proc.pid]), time.monotonic()
        player = _play_in_chromium(port, event_id) if Path(CHROMIUM).exists() else None
        if player is None:
            player = "a client reading at the clip's bitrate (no Chromium here)"
            _play(_Client(port), clip, size, PLAY_SECONDS)
        cpu = (cpu_seconds([proc.pid]) - cpu0) / (time.monotonic() - wall0) * 100
        return {
            "ready_s": round(ready_s, 2),
            "queries": rows,
            "playing": {
                "clip_mb": round(size / 2**20, 1),
                "seconds": PLAY_SECONDS,
                "player": player,
                "server_cpu_percent": round(cpu, 2),
            },
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
