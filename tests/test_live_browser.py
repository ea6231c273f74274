"""Live view in a real browser: Debian's chromium driven by Playwright, against a real `nvr-cli serve`
whose cameras are the real RTSP test server (the server reads them itself: no recorder runs).

Each test asserts what a user sees: every camera's tile plays (its time advances and the browser
decodes frames), one camera full size, snapshots where Media Source Extensions are missing (with the
reason said), the login before any live video, nothing left on the server once the viewer left, a
phone's width. Screenshots go to test-artifacts/web/ (or $NVR_CLI_ARTIFACTS/web/).
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import cv2
import numpy as np
import pytest
import test_web_browser as web
from helpers import RtspServer, decode_all, rtsp_available, start_recorder, terminate, wait_for
from test_web_browser import DESKTOP, PHONE, _need_chromium, expect, shot
from web_serve import Served
from websockets.sync.client import connect

from nvr_cli.ffmpeg.process import base
from nvr_cli.web.auth import hash_password

PASSWORD = "Yard-pa55word"  # in a camera's URL: no page may show it
NO_MSE = "delete window.MediaSource; delete window.ManagedMediaSource;"
TILE_STATE = "(name) => document.querySelector(`.live-tile[data-camera='${name}']`)?.dataset.state"

# the browser, and a new page of it that fails the test on a JavaScript error: the review page's own
browser, chromium, open_page = web.browser, web.chromium, web.open_page

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def cameras(scene_cache):
    """Two cameras, each its own RTSP server showing someone walking (one asks for a password)."""
    _need_chromium()
    if not rtsp_available():
        pytest.skip("GStreamer's RTSP server is not installed: run scripts/install_and_test.sh")
    clip = scene_cache("walking", seconds=12, walkers=[(0, 4), (4, 8), (8, 12)])
    servers = [RtspServer(clip), RtspServer(clip, user="viewer", password=PASSWORD)]
    yield {"gate": servers[0].url, "yard": servers[1].url}
    for s in servers:
        s.stop()


def start_server(folder, cameras: dict, extra: str = "", root=None) -> Served:
    """`nvr-cli serve` of these cameras (name -> URL) over the storage ``root`` (default: a new one)."""
    folder.mkdir(parents=True, exist_ok=True)
    root = root or folder / "video"
    root.mkdir(parents=True, exist_ok=True)
    entries = ", ".join(f"{name!r}: {{'cam': {url!r}}}" for name, url in cameras.items())
    config = folder / "serve.py"
    config.write_text(
        f"PATH_FOR_VIDEO = {str(root)!r}\n"
        f"WEB_INDEX_FILE = {str(folder / 'index.sqlite3')!r}\n"
        f"CAMERAS = {{{entries}}}\n{extra}\n"
    )
    return Served(config, env={"NVR_CLI_HOME": str(folder)})


@pytest.fixture(scope="module")
def server(cameras, tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("live-serve"), cameras)
    s.url = f"http://127.0.0.1:{s.port}"
    yield s
    s.stop()


def relays(server: Served) -> int:
    return server.api("/api/status")["live"]["relays"]


def playback(page, camera: str) -> dict:
    return page.evaluate(
        """(name) => {
            const v = document.querySelector(`.live-tile[data-camera='${name}'] video`);
            const b = v.buffered;
            return {t: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames,
                    end: b.length ? b.end(b.length - 1) : null, paused: v.paused};
        }""",
        camera,
    )


def plays(page, camera: str) -> dict:
    """Wait until the camera's tile is live and its video plays on: time advances, frames decode."""
    page.wait_for_function(f"name => ({TILE_STATE})(name) === 'live'", arg=camera, timeout=60_000)
    page.wait_for_function(
        """(name) => { const v = document.querySelector(`.live-tile[data-camera='${name}'] video`);
            return v.currentTime > 0.5 && v.getVideoPlaybackQuality().totalVideoFrames > 10; }""",
        arg=camera,
        timeout=60_000,
    )
    before = playback(page, camera)
    page.wait_for_function(
        """([name, t, n]) => { const v = document.querySelector(`.live-tile[data-camera='${name}'] video`);
            return v.currentTime > t + 1 && v.getVideoPlaybackQuality().totalVideoFrames > n + 10; }""",
        arg=[camera, before["t"], before["frames"]],
    )
    after = playback(page, camera)
    assert not after["paused"]
    assert after["end"] - after["t"] < 2.5, f"{camera} plays far behind the newest frame: {after}"
    return after


def test_the_grid_plays_every_camera(server, cameras, open_page):
    page = open_page()
    page.goto(server.url + "/")
    page.locator("nav a", has_text="Live").click()  # the first thing in the nav
    expect(page).to_have_url(server.url + "/live")
    tiles = page.locator(".live-tile")
    expect(tiles).to_have_count(len(cameras))
    for name in cameras:
        tile = page.locator(f'.live-tile[data-camera="{name}"]')
        expect(tile.locator("h2")).to_have_text(name)
        expect(tile.locator("video")).to_have_js_property("muted", True)
        plays(page, name)
    assert wait_for(lambda: relays(server) == len(cameras), timeout=10)
    assert PASSWORD not in page.content()
    shot(page, "live-grid")

    # a tile leads to the camera full size; the grid's relays go, the one camera's stays
    page.locator('.live-tile[data-camera="gate"] h2 a').click()
    expect(page).to_have_url(server.url + "/live/gate")
    plays(page, "gate")
    assert wait_for(lambda: relays(server) == 1, timeout=15)
    box = page.locator(".live-frame").bounding_box()
    assert box["width"] > 0.9 * DESKTOP["width"] - 40 or box["height"] > 0.6 * DESKTOP["height"]
    shot(page, "live-one")


def test_leaving_the_live_view_frees_the_relay(server, open_page):
    page = open_page()
    page.goto(server.url + "/")
    page.locator('article.camera[data-camera="yard"] a', has_text="Live").click()  # from the cameras view
    expect(page).to_have_url(server.url + "/live/yard")
    plays(page, "yard")
    assert relays(server) == 1
    page.locator("nav a", has_text="Events").click()  # another view of the page
    assert wait_for(lambda: relays(server) == 0, timeout=15), server.api("/api/status")["live"]

    page.go_back()  # back to the live view: it plays again
    expect(page).to_have_url(server.url + "/live/yard")
    plays(page, "yard")
    page.close()  # the tab closed
    assert wait_for(lambda: relays(server) == 0, timeout=15), server.api("/api/status")["live"]


def test_without_media_source_extensions_snapshots_refresh(server, cameras, open_page):
    page = open_page()
    page.add_init_script(NO_MSE)
    page.goto(server.url + "/live")
    expect(page.locator(".live-tile")).to_have_count(len(cameras))
    for name in cameras:
        tile = page.locator(f'.live-tile[data-camera="{name}"]')
        expect(tile).to_have_attribute("data-state", "snapshot")
        expect(tile.locator(".live-why")).to_contain_text("no Media Source Extensions")
        expect(tile.locator("video")).to_be_hidden()
        img = tile.locator("img.live-snap")
        expect(img).to_be_visible()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
        first = img.get_attribute("src")
        page.wait_for_function(
            "([img, src]) => img.getAttribute('src') !== src && img.complete && img.naturalWidth > 0",
            arg=[img.element_handle(), first],
        )
        expect(tile.locator(".live-why")).to_contain_text("showing a snapshot every second")
    assert relays(server) == 0, "a browser that cannot play live video opened a relay"
    shot(page, "live-snapshots")


def test_an_h265_camera_this_browser_cannot_play_shows_snapshots_and_says_why(open_page, tmp_path, ffmpeg):
    """A camera sending H.265 (headless Chromium, without a GPU, plays none): the server relays it as
    it is (no re-encode), the page sees it cannot play and shows snapshots, saying why."""
    _need_chromium()
    if not rtsp_available():
        pytest.skip("GStreamer's RTSP server is not installed: run scripts/install_and_test.sh")
    clip = tmp_path / "h265.mp4"
    source = ["-f", "lavfi", "-i", "testsrc2=s=640x360:r=15:d=6"]
    enc = ["-c:v", "libx265", "-x265-params", "log-level=error", "-g", "15", "-pix_fmt", "yuv420p"]
    made = subprocess.run(
        [*base(ffmpeg), "-y", *source, *enc, "-tag:v", "hvc1", str(clip)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"this ffmpeg cannot encode H.265 (libx265): {made.stderr.decode()[-200:]}")
    camera = RtspServer(clip)
    server = start_server(tmp_path / "serve", {"hevc": camera.url})
    try:
        page = open_page()
        page.goto(f"http://127.0.0.1:{server.port}/live/hevc")
        tile = page.locator('.live-tile[data-camera="hevc"]')
        expect(tile).to_have_attribute("data-state", "snapshot", timeout=60_000)
        expect(tile.locator(".live-why")).to_contain_text("H.265 cannot play in this browser")
        expect(tile.locator("video")).to_be_hidden()
        img = tile.locator("img.live-snap")
        expect(img).to_be_visible()
        page.wait_for_function("img => img.complete && img.naturalWidth === 640", arg=img.element_handle())
        # (a grab that failed is kept for 5 s, saying "No new picture" meanwhile)
        expect(tile.locator(".live-why")).to_contain_text("showing a snapshot every second", timeout=20_000)
        shot(page, "live-h265")
        assert wait_for(lambda: relays(server) == 0, timeout=15), server.api("/api/status")["live"]
        # each snapshot is a whole picture of the camera's, never one decoded from before a keyframe:
        # grabbed while another viewer's relay keeps the camera streaming, so a grab joins mid-GOP
        frames = decode_all(clip)
        origin = f"http://127.0.0.1:{server.port}"
        with connect(
            f"ws://127.0.0.1:{server.port}/api/cameras/hevc/live", origin=origin, max_size=None
        ) as ws:
            while not (isinstance(m := ws.recv(timeout=60), str) and json.loads(m)["type"] == "init"):
                pass
            assert json.loads(m)["codec"] == "hevc"  # relayed as it came
            diffs, refused = [], []
            while len(diffs) < 4:
                r = server.get(f"/api/cameras/hevc/latest.jpg?t={time.monotonic()}")
                if r.status != 200:  # a grab the camera refused: said, kept 5 s, then tried again
                    refused.append(r.json()["error"])
                    assert len(refused) < 5, refused
                else:
                    jpeg = cv2.imdecode(np.frombuffer(r.body, np.uint8), cv2.IMREAD_COLOR)
                    diffs.append(min(float(cv2.absdiff(jpeg, f).mean()) for f in frames))
                time.sleep(1.3)  # past the kept one: the next is a new grab
            assert max(diffs) < 8, f"a snapshot is no frame of the camera's (mean differences {diffs})"
    finally:
        server.stop()
        camera.stop()


def test_a_browser_that_cannot_take_the_video_gives_up_for_snapshots(server, open_page):
    # the browser is real; only its SourceBuffer refuses every append, as on a decode failure
    page = open_page()
    page.add_init_script(
        "SourceBuffer.prototype.appendBuffer = function () {"
        " throw new DOMException('refused by the test', 'InvalidStateError'); };"
    )
    page.goto(server.url + "/live/gate")
    tile = page.locator('.live-tile[data-camera="gate"]')
    # a few attempts, with a backoff between them, then snapshots with the reason
    expect(tile).to_have_attribute("data-state", "snapshot", timeout=60_000)
    expect(tile.locator(".live-why")).to_contain_text("could not play this camera's video")
    expect(tile.locator(".live-why")).to_contain_text("InvalidStateError")
    page.wait_for_function(
        "img => !img.hidden && img.complete && img.naturalWidth > 0",
        arg=tile.locator("img.live-snap").element_handle(),
    )
    assert wait_for(lambda: relays(server) == 0, timeout=15), server.api("/api/status")["live"]


def test_a_camera_without_live_video_says_why_and_shows_snapshots(cameras, open_page, tmp_path, scene_cache):
    # a file is no RTSP camera, and no recorder offers its packets: the server says unavailable
    clip = scene_cache("walking", seconds=12, walkers=[(0, 4), (4, 8), (8, 12)])
    server = start_server(tmp_path, {"gate": cameras["gate"], "desk": str(clip)})
    try:
        page = open_page()
        page.goto(f"http://127.0.0.1:{server.port}/live")
        tile = page.locator('.live-tile[data-camera="desk"]')
        expect(tile).to_have_attribute("data-state", "unavailable")
        expect(tile.locator(".live-why")).to_contain_text("no recorder offers this camera's video")
        # nor can the server make a snapshot of it: the reason why not is over the tile
        expect(tile.locator(".live-note")).to_contain_text("No picture: no recorder runs for this camera")
        expect(tile.locator("video")).to_be_hidden()
        plays(page, "gate")  # the other camera is not held up
        shot(page, "live-unavailable")
    finally:
        server.stop()


def test_live_view_needs_the_login(cameras, open_page, tmp_path):
    users = f"WEB_USERS = {{'anna': {hash_password('correct horse')!r}}}"
    server = start_server(tmp_path, cameras, users)
    url = f"http://127.0.0.1:{server.port}"
    try:
        page = open_page()
        page.goto(url + "/live")
        expect(page).to_have_url(re.compile(r"/login\?next=%2Flive$"))
        assert page.locator(".live-tile").count() == 0
        refused = page.evaluate(
            """() => new Promise((done) => {
                const ws = new WebSocket(`ws://${location.host}/api/cameras/gate/live`);
                ws.onopen = () => { ws.close(); done("open"); };
                ws.onclose = (e) => done(`closed ${e.code}`);
            })"""
        )
        assert refused != "open", "a WebSocket without a session was accepted"
        page.fill("#l-user", "anna")
        page.fill("#l-pass", "correct horse")
        page.locator("form#login button[type=submit]").click()
        expect(page).to_have_url(url + "/live")
        for name in cameras:
            plays(page, name)
        shot(page, "live-after-login")
        # logged out in another tab: the open live view hears it (4401) and asks for the login
        other = page.context.new_page()
        other.goto(url + "/events")
        other.locator("#who button", has_text="Log out").click()
        expect(other).to_have_url(re.compile(r"/login"))
        expect(page).to_have_url(re.compile(r"/login\?next=%2Flive$"), timeout=90_000)
        other.close()
        page.fill("#l-user", "anna")
        page.fill("#l-pass", "correct horse")
        page.locator("form#login button[type=submit]").click()
        expect(page).to_have_url(url + "/live")
        plays(page, "gate")
        page.locator("#who button", has_text="Log out").click()
        expect(page).to_have_url(re.compile(r"/login"))
        page.goto(url + "/live/gate")
        expect(page).to_have_url(re.compile(r"/login\?next=%2Flive%2Fgate$"))
    finally:
        server.stop()


def test_phone_width_one_column(server, cameras, open_page):
    page = open_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page.goto(server.url + "/live")
    for name in cameras:
        plays(page, name)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    lefts = page.eval_on_selector_all(
        ".live-tile", "ts => ts.map(t => Math.round(t.getBoundingClientRect().left))"
    )
    assert len(set(lefts)) == 1, f"a phone shows more than one tile a row: {lefts}"
    shot(page, "phone-live", full_page=True)
    page.goto(server.url + "/live/gate")
    plays(page, "gate")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    shot(page, "phone-live-one")


def test_a_recorders_camera_plays_from_the_recorder_and_resumes_after_a_restart(
    cameras, open_page, tmp_path, scene_cache
):
    """The page opened before the recorder started shows snapshots and why, then plays once the
    recorder runs; the server takes the recorder's packets (it may not open the camera itself here);
    the recorder restarts, then the camera drops and comes back: the viewer resumes each time, all
    without a reload."""
    camera = RtspServer(scene_cache("walking", seconds=12, walkers=[(0, 4), (4, 8), (8, 12)]))
    root = tmp_path / "video"
    sock = root / ".status" / "porch.live.sock"
    recorders = []

    def record():
        proc, log = start_recorder(camera.url, root, name="porch")
        recorders.append(proc)
        assert wait_for(sock.exists, timeout=60), f"no live socket\n{log.text()}"

    server = start_server(tmp_path / "serve", {"porch": camera.url}, "WEB_LIVE_DIRECT = False", root=root)
    try:
        page = open_page()
        page.goto(f"http://127.0.0.1:{server.port}/live/porch")
        tile = page.locator('.live-tile[data-camera="porch"]')
        expect(tile).to_have_attribute("data-state", "unavailable")
        expect(tile.locator(".live-why")).to_contain_text("no recorder offers this camera's video")
        expect(tile.locator(".live-note")).to_contain_text("no recorder runs for this camera")
        record()  # the page asks again by itself
        plays(page, "porch")
        expect(tile.locator("video")).to_be_visible()
        expect(tile.locator("img.live-snap")).to_be_hidden()
        expect(tile.locator(".live-note")).to_be_hidden()
        assert server.api("/api/cameras")["cameras"][0]["live"]["via"] == "recorder"
        shot(page, "live-recorder")

        terminate(recorders[0], timeout=60)
        page.wait_for_function(
            f"name => ({TILE_STATE})(name) === 'reconnecting'", arg="porch", timeout=60_000
        )
        record()
        plays(page, "porch")  # the same page, no reload

        # the camera drops (its server killed, no goodbye) and comes back: the tile says so, then
        # plays again by itself; the server never opens the camera beside the recorder
        camera.kill()
        page.wait_for_function(
            f"name => ({TILE_STATE})(name) === 'reconnecting'", arg="porch", timeout=60_000
        )
        camera.start()
        plays(page, "porch")
        assert server.api("/api/cameras")["cameras"][0]["live"]["via"] == "recorder"

        page.close()
        assert wait_for(lambda: relays(server) == 0, timeout=15), server.api("/api/status")["live"]
    finally:
        server.stop()
        for proc in recorders:
            terminate(proc, timeout=60)
        camera.stop()
