"""The review page in a real browser: Debian's chromium driven by Playwright, against the real
`nvr-cli serve` over storage made by real recordings (tests/web_storage.py).

Each test asserts what the page does for a user: cards with pictures that loaded, a calendar day that
opens its events, filters and paging, a clip that plays and seeks (HTTP Range), a reviewed mark that
survives a reload, the continuous recording played from a click on the timeline and across a segment
boundary, an export made from the page and played by ffprobe, deep links, the login, a phone's width.
A screenshot of every view is kept in test-artifacts/web/ (or $NVR_CLI_ARTIFACTS/web/).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from helpers import ROOT, LineCollector, ffprobe, free_port, terminate, wait_for
from support.chromium import CHROMIUM, CHROMIUM_ARGS

ARTIFACTS = Path(os.environ.get("NVR_CLI_ARTIFACTS") or ROOT / "test-artifacts") / "web"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 20_000  # the longest any step may take before the test fails (a ceiling, not a sleep)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _need_chromium():
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"Debian's chromium is not installed ({CHROMIUM}): run scripts/install_and_test.sh"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "Playwright's Python package is missing: pip install -e '.[test]'"
    if missing:
        if os.environ.get("NVR_CLI_REQUIRE_RTSP"):
            pytest.fail(missing)
        pytest.skip(missing)


# ---------------------------------------------------------------------------------------------
# The server, the storage, the browser


class Server:
    """`nvr-cli serve` in its own process on a free port of 127.0.0.1."""

    def __init__(self, config: Path, home: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nvr_cli", "serve", "--config", str(config), "--port", str(self.port)],
            env={**os.environ, "NVR_CLI_HOME": str(home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log = LineCollector(self.proc.stderr)
        self.out = LineCollector(self.proc.stdout)
        if not wait_for(self._up, timeout=60, interval=0.2):
            self.stop()
            pytest.fail(f"`nvr-cli serve` did not answer:\n{self.log.text()}\n{self.out.text()}")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            return True  # reported by get() below
        try:
            with urllib.request.urlopen(self.url + "/api/me", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def get(self, path: str, **params) -> dict:
        query = urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.url}{path}{'?' + query if query else ''}", timeout=10) as r:
            return json.load(r)

    def events(self, **params) -> list:
        return self.get("/api/events", limit=500, **params)["events"]

    def stop(self):
        terminate(self.proc, timeout=20)


def copy_storage(storage, dest: Path, extra: str = "") -> Path:
    """A copy of the recorded storage (for a test that changes it) and a config file naming it."""
    root = dest / "video"
    shutil.copytree(storage.root, root, ignore=shutil.ignore_patterns(".nvr-index.sqlite3*", ".nvr-exports"))
    text = storage.config.read_text().replace(repr(str(storage.root)), repr(str(root)))
    config = dest / "nvr.py"
    config.write_text(text + "\n" + extra + "\n")
    return config


@pytest.fixture(scope="session")
def chromium():
    """Skip (or fail under NVR_CLI_REQUIRE_RTSP) before anything is recorded when there is no browser."""
    _need_chromium()
    return CHROMIUM


@pytest.fixture(scope="module")
def storage(chromium, recorded_storage):
    return recorded_storage


@pytest.fixture(scope="module")
def server(storage, tmp_path_factory):
    """One server for the tests that only read."""
    s = Server(storage.config, tmp_path_factory.mktemp("serve-home"))
    yield s
    s.stop()


@pytest.fixture
def own_server(storage, tmp_path):
    """A server over a copy of the storage, for a test that writes (reviewed marks, exports)."""
    servers = []

    def start(extra: str = "") -> Server:
        config = copy_storage(storage, tmp_path / f"copy{len(servers)}", extra)
        servers.append(Server(config, tmp_path))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def open_page(browser):
    """A new page (fresh context: no cookies) that fails the test on any JavaScript error."""
    contexts, errors = [], []

    def make(viewport=DESKTOP, **kwargs):
        ctx = browser.new_context(viewport=viewport, **kwargs)
        ctx.set_default_timeout(WAIT_MS)
        contexts.append(ctx)
        page = ctx.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        return page

    yield make
    for c in contexts:
        c.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page, name: str, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def expect(target):
    from playwright.sync_api import expect as _expect

    return _expect(target)


def card_ids(page) -> list:
    return page.eval_on_selector_all("#events a.card", "cards => cards.map(c => c.dataset.id)")


def wait_cards(page, ids: list):
    """Until the grid shows exactly these events, in this order."""
    page.wait_for_function(
        "ids => JSON.stringify([...document.querySelectorAll('#events a.card')].map(c => c.dataset.id))"
        " === JSON.stringify(ids) && document.querySelector('#load-more').hidden",
        arg=ids,
    )


def recorded_day(server: Server, camera: str = "gate") -> str:
    return server.get("/api/days", camera=camera)["days"][0]["day"]


def local_clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


# ---------------------------------------------------------------------------------------------
# 1. Cameras


def test_cameras_show_each_camera_with_its_latest_picture(server, storage, open_page):
    page = open_page()
    page.goto(server.url + "/")
    cards = page.locator("article.card.camera")
    expect(cards).to_have_count(len(storage.cameras))
    for name in storage.cameras:
        card = page.locator(f'article.camera[data-camera="{name}"]')
        expect(card.locator("h2")).to_have_text(name)
        expect(card.locator(".badge.state")).to_have_text(re.compile(r"^(live|down|stale|unknown)$"))
        img = card.locator("img.thumb")
        expect(img).to_have_attribute("alt", re.compile(name))
        img.evaluate("img => img.decode()")  # resolves once the picture has loaded and decoded
        assert img.evaluate("img => img.complete && img.naturalWidth") > 0
        expect(card).to_contain_text(re.compile(r"\d+ events?"))
        expect(card.locator(f'a[href^="/timeline/{name}/"]')).to_have_count(1)
    assert "Gate-pa55word" not in page.content()
    shot(page, "cameras")


# ---------------------------------------------------------------------------------------------
# 2. Calendar


def test_calendar_opens_the_recorded_day_and_offers_no_empty_day(server, open_page):
    day = recorded_day(server)
    days = {d["day"] for d in server.get("/api/days")["days"]}
    page = open_page()
    page.goto(server.url + "/calendar")
    cell = page.locator(f'.calendar [data-day="{day}"]')
    expect(cell).to_have_attribute("href", re.compile(rf"/events\?(.*&)?day={day}"))
    # an empty day of the same month: no link, and a click on it goes nowhere
    month = day[:7]
    empty = next(f"{month}-{d:02d}" for d in range(1, 29) if f"{month}-{d:02d}" not in days)
    empty_cell = page.locator(f'.calendar [data-day="{empty}"]')
    expect(empty_cell).to_have_attribute("aria-disabled", "true")
    assert empty_cell.evaluate("el => el.tagName") != "A" and empty_cell.get_attribute("href") is None
    # months without recordings are not offered
    if len({d[:7] for d in days}) == 1:
        expect(page.locator("#prev-month")).to_have_count(0)
        expect(page.locator("#next-month")).to_have_count(0)
    shot(page, "calendar")
    empty_cell.click(force=True)  # Playwright itself sees it as disabled
    assert page.url == server.url + "/calendar"

    cell.click()
    expect(page).to_have_url(re.compile(rf"/events\?day={day}$"))
    wait_cards(page, [e["id"] for e in server.events(day=day)])
    # ... and the day's timeline of each camera is one click away
    page.locator(".daylinks a", has_text="gate").click()
    expect(page).to_have_url(re.compile(rf"/timeline/gate/{day}$"))
    expect(page.locator("#track .tl-cov").first).to_be_visible()


# ---------------------------------------------------------------------------------------------
# 3. Events: filters and paging


def test_events_filter_by_camera_and_motion_only(server, open_page):
    page = open_page()
    page.goto(server.url + "/events")
    wait_cards(page, [e["id"] for e in server.events()])
    page.wait_for_function(  # the pictures in view have loaded (the others load lazily)
        "() => [...document.images].filter(i => i.getBoundingClientRect().top < innerHeight)"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    shot(page, "events")
    page.select_option("#f-camera", "gate")
    expect(page).to_have_url(re.compile(r"/events\?camera=gate$"))
    gate = [e["id"] for e in server.events(camera="gate")]
    assert gate
    wait_cards(page, gate)
    assert set(page.eval_on_selector_all("#events a.card", "cs => cs.map(c => c.dataset.camera)")) == {"gate"}

    page.locator('button[data-label="motion"]').click()
    expect(page).to_have_url(re.compile(r"camera=gate&label=motion"))
    expect(page.locator('button[data-label="motion"]')).to_have_attribute("aria-pressed", "true")
    motion = [e["id"] for e in server.events(camera="gate", label="motion")]
    assert motion and all(not e["labels"] for e in server.events(camera="gate", label="motion"))
    wait_cards(page, motion)
    shot(page, "events-gate-motion")


def test_events_filter_person(server, storage, open_page):
    if "lobby" not in storage.cameras:
        pytest.skip("../shared is absent: no lobby camera with persons, the person filter is not tried")
    page = open_page()
    page.goto(server.url + "/events")
    wait_cards(page, [e["id"] for e in server.events()])
    page.locator('button[data-label="person"]').click()
    expect(page).to_have_url(re.compile(r"/events\?label=person$"))
    persons = server.events(label="person")
    assert persons and {e["camera"] for e in persons} == {"lobby"}
    wait_cards(page, [e["id"] for e in persons])
    expect(page.locator("#events a.card .chip.label-person")).to_have_count(len(persons))
    shot(page, "events-person")


def test_events_paging_has_no_duplicates(server, open_page):
    everything = [e["id"] for e in server.events()]
    assert len(everything) >= 4
    page = open_page()
    cursors = []
    page.on("request", lambda r: "/api/events?" in r.url and "cursor=" in r.url and cursors.append(r.url))
    page.goto(server.url + "/events?limit=2")
    button = page.locator("#load-more")
    # the button, or the infinite scroll, loads every page
    page.wait_for_function(
        "() => { const b = document.querySelector('#load-more');"
        " if (b && !b.hidden && !b.disabled) b.click(); return b && b.hidden; }",
        polling=200,
    )
    expect(button).to_be_hidden()
    ids = card_ids(page)
    assert len(ids) == len(set(ids)), "a card was shown twice"
    assert ids == everything
    assert len(cursors) >= len(everything) // 2 - 1, "the pages were not fetched with the cursor"


# ---------------------------------------------------------------------------------------------
# 4. One event: plays, seeks, reviewed


def test_event_plays_seeks_and_stays_reviewed(own_server, open_page):
    server = own_server()
    gate = server.events(camera="gate")
    ev, earlier = gate[0], gate[1]
    page = open_page()
    ranges = []
    page.on(
        "response",
        lambda r: "/clip.mp4" in r.url and ranges.append((r.status, r.request.headers.get("range"))),
    )
    page.goto(server.url + "/events?camera=gate")
    card = page.locator(f'#events a.card[data-id="{ev["id"]}"]')
    expect(card).to_have_class(re.compile(r"\bunreviewed\b"))
    card.click()
    expect(page).to_have_url(re.compile(rf"/events/{ev['id']}\?camera=gate$"))

    # the clip plays (muted autoplay) ...
    page.wait_for_function(
        "() => { const v = document.querySelector('#clip');"
        " return v && v.readyState >= 2 && v.currentTime > 0.5; }"
    )
    # ... and seeks: Range requests answered 206
    seeked = page.evaluate(
        """() => new Promise((resolve, reject) => {
            const v = document.querySelector('#clip');
            v.pause();
            v.addEventListener('seeked', () => resolve(v.currentTime), {once: true});
            v.addEventListener('error', () => reject(String(v.error && v.error.message)), {once: true});
            v.currentTime = 2.0;
        })"""
    )
    assert abs(seeked - 2.0) < 0.25, seeked
    assert any(status == 206 for status, _ in ranges), f"no 206 answer for the clip: {ranges}"
    assert page.evaluate("document.querySelector('#clip').error") is None

    facts = page.locator("#facts")
    expect(facts).to_contain_text("Why it ended")
    expect(facts).to_contain_text(ev["end_reason"])
    expect(facts).to_contain_text("Length")
    expect(facts).to_contain_text("Pre-alarm")
    expect(page.locator("#download")).to_have_attribute("href", f"{ev['clip']}?download=1")
    expect(page.locator("#to-timeline")).to_have_attribute(
        "href", re.compile(rf"^/timeline/gate/{ev['day']}\?t={local_clock(ev['start_ts'])}")
    )
    page.evaluate("document.querySelector('#clip').play()")
    shot(page, "event-playing")

    expect(page.locator("#reviewed-state")).to_have_text("unreviewed")
    page.locator("#toggle-reviewed").click()
    expect(page.locator("#reviewed-state")).to_have_text("reviewed")
    expect(page.locator("#toggle-reviewed")).to_have_text("Mark unreviewed")
    assert server.get(f"/api/events/{ev['id']}")["reviewed"] is True

    # previous / next: the key p goes to the earlier event of the same list
    expect(page.locator("#prev-event")).to_be_enabled()
    page.keyboard.press("p")
    expect(page).to_have_url(re.compile(rf"/events/{earlier['id']}\?camera=gate$"))
    page.locator("#next-event").click()
    expect(page).to_have_url(re.compile(rf"/events/{ev['id']}\?camera=gate$"))

    page.get_by_role("link", name="← Events").click()
    card = page.locator(f'#events a.card[data-id="{ev["id"]}"]')
    expect(card).to_have_class(re.compile(r"\breviewed\b"))
    expect(card).not_to_have_class(re.compile(r"\bunreviewed\b"))
    expect(page.locator(f'#events a.card[data-id="{earlier["id"]}"]')).to_have_class(
        re.compile(r"\bunreviewed\b")
    )
    page.reload()
    card = page.locator(f'#events a.card[data-id="{ev["id"]}"]')
    expect(card).to_have_class(re.compile(r"\breviewed\b"))
    expect(card.locator(".badge.new")).to_have_count(0)


def test_mark_all_reviewed_for_the_filter(own_server, open_page, tmp_path):
    server = own_server()
    page = open_page()
    page.on("dialog", lambda d: d.accept())
    page.goto(server.url + "/events?camera=gate")
    gate = [e["id"] for e in server.events(camera="gate")]
    wait_cards(page, gate)
    # an event that arrives after the list was shown: nobody has seen it, so it stays unreviewed
    newest = server.get(f"/api/events/{gate[0]}")
    clip = next((tmp_path / "copy0" / "video" / "gate").rglob(f"{gate[0]}.json"))
    side = json.loads(clip.read_text())
    later = {k: datetime.fromisoformat(side[k]) + timedelta(seconds=30) for k in ("start", "end", "trigger")}
    side.update({k: v.isoformat(timespec="milliseconds") for k, v in later.items()}, clip=f"{gate[0]}-9.mp4")
    shutil.copy(clip.with_suffix(".mp4"), clip.with_name(f"{gate[0]}-9.mp4"))
    clip.with_name(f".{gate[0]}-9.json.tmp").write_text(json.dumps(side))
    os.replace(clip.with_name(f".{gate[0]}-9.json.tmp"), clip.with_name(f"{gate[0]}-9.json"))
    assert wait_for(lambda: f"{gate[0]}-9" in [e["id"] for e in server.events(camera="gate")], timeout=30)
    assert newest["start_ts"] < server.get(f"/api/events/{gate[0]}-9")["start_ts"]

    page.locator("#mark-all").click()
    page.wait_for_function(
        "n => [...document.querySelectorAll('#events a.card.reviewed')].length === n", arg=len(gate)
    )
    marks = {e["id"]: e["reviewed"] for e in server.events(camera="gate")}
    assert marks.pop(f"{gate[0]}-9") is False, "marked an event the page never showed"
    assert all(marks.values()) and set(marks) == set(gate)
    others = [e for e in server.events() if e["camera"] != "gate"]
    assert not any(e["reviewed"] for e in others), "marked events outside the filter"


# ---------------------------------------------------------------------------------------------
# 5. Timeline: a click plays the continuous recording from that moment, across segment boundaries


def zoom_of(ts: float) -> str:
    t = time.localtime(ts)
    return f"{t.tm_hour}:{t.tm_min - t.tm_min % 10:02d}"


def x_of(page, ts: float) -> tuple:
    """Where the timeline bar shows the moment ts (page coordinates), from the range it says it shows."""
    track = page.locator("#track")
    box = track.bounding_box()
    a, b = float(track.get_attribute("data-from")), float(track.get_attribute("data-to"))
    assert a <= ts <= b, (a, ts, b)
    return box["x"] + (ts - a) / (b - a) * box["width"], box["y"] + box["height"] * 0.75, box, a, b


ACTIVE = "document.querySelector('#timeline-player video.active')"


def test_timeline_click_plays_the_recording_from_that_moment(server, open_page):
    day = recorded_day(server)
    rec = server.get("/api/cameras/gate/recordings", day=day)
    segs = [s for s in rec["segments"] if s["valid"]]
    assert len(segs) >= 3
    seg, after = segs[1], segs[2]
    assert after["start_ts"] - seg["end_ts"] < 1.0, "the recorded segments should follow each other"
    target = seg["start_ts"] + 1.5
    page = open_page()
    page.goto(f"{server.url}/timeline/gate/{day}?zoom={zoom_of(target)}")
    expect(page.locator("#track .tl-cov").first).to_be_visible()
    x, y, box, a, b = x_of(page, target)
    clicked = a + (x - box["x"]) / box["width"] * (b - a)  # the moment the click means, to the pixel
    page.mouse.click(x, y)

    page.wait_for_function(
        f"id => {{ const v = {ACTIVE}; return v && v.dataset.segment === id && v.readyState >= 2"
        " && !v.paused && v.currentTime > 0; }",
        arg=seg["id"],
    )
    video = page.evaluate(
        f"(() => {{ const v = {ACTIVE}; return {{src: v.currentSrc, t: v.currentTime}}; }})()"
    )
    assert "/api/segments/" in video["src"] and video["src"].endswith(seg["url"])
    assert abs(video["t"] - (clicked - seg["start_ts"])) < 1.0, (video, clicked - seg["start_ts"])
    page.wait_for_function(f"t => {ACTIVE}.currentTime > t + 0.5", arg=video["t"])  # time advances
    playhead = float(page.locator("#playhead").get_attribute("data-ts"))
    assert seg["start_ts"] < playhead < seg["end_ts"] + 1
    expect(page).to_have_url(re.compile(r"[?&]t=\d\d:\d\d:\d\d"))
    shot(page, "timeline")

    # near the segment's end: the next segment (preloaded) takes over and plays on
    page.evaluate(f"(() => {{ const v = {ACTIVE}; v.currentTime = Math.max(0, v.duration - 0.6); }})()")
    page.wait_for_function(
        f"id => {{ const v = {ACTIVE};"
        " return v.dataset.segment === id && !v.paused && v.currentTime > 0.3; }",
        arg=after["id"],
    )
    assert page.evaluate(f"{ACTIVE}.currentSrc").endswith(after["url"])
    playhead = float(page.locator("#playhead").get_attribute("data-ts"))
    assert after["start_ts"] < playhead < after["end_ts"] + 1

    # the next-event key jumps to the next event's start (or the previous one's, at the day's end)
    now = float(page.locator("#playhead").get_attribute("data-ts"))
    events = sorted(rec["events"], key=lambda e: e["start_ts"])
    later = [e for e in events if e["start_ts"] > now + 0.5]
    key, ev = ("n", later[0]) if later else ("p", [e for e in events if e["start_ts"] < now - 1.5][-1])
    held = [s for s in segs if s["start_ts"] <= ev["start_ts"] < s["end_ts"]]
    expected = ev["start_ts"] if held else min(s["start_ts"] for s in segs if s["start_ts"] > ev["start_ts"])
    page.keyboard.press(key)
    page.wait_for_function(
        f"t => {{ const v = {ACTIVE}; const p = Number(document.querySelector('#playhead').dataset.ts);"
        " return Math.abs(p - t) < 1.0 && v.readyState >= 2; }",
        arg=expected,
    )
    expect(page.locator("#tl-message")).to_contain_text(f"Event at {local_clock(ev['start_ts'])}")


# ---------------------------------------------------------------------------------------------
# 6. Export from the page


def test_export_a_range_chosen_on_the_timeline(own_server, open_page, tmp_path):
    server = own_server()
    day = recorded_day(server)
    segs = [s for s in server.get("/api/cameras/gate/recordings", day=day)["segments"] if s["valid"]]
    end = max(s["end_ts"] for s in segs)
    # eight recorded seconds inside one ten-minute view of the bar (after hh:m0 if the first ones cross it)
    starts = [segs[0]["start_ts"] + 1.2]
    starts.append((starts[0] // 600 + 1) * 600 + 0.5)  # ten-minute views begin at whole multiples of 600 s
    start = next((t for t in starts if t + 9 < end and zoom_of(t) == zoom_of(t + 8)), None)
    page = open_page()
    if start is not None:
        page.goto(f"{server.url}/timeline/gate/{day}?zoom={zoom_of(start)}")
        expect(page.locator("#track .tl-cov").first).to_be_visible()
        x0, y, box, a, b = x_of(page, start)
        x1 = x0 + 8.0 / (b - a) * box["width"]  # eight seconds later
        page.mouse.move(x0, y)
        page.mouse.down()
        page.mouse.move((x0 + x1) / 2, y, steps=4)
        page.mouse.move(x1, y, steps=4)
        page.mouse.up()
        link = page.locator("#export-range")
        expect(link).to_be_visible()
        link.click()
        expect(page).to_have_url(re.compile(r"/export\?camera=gate&from=.+&to=.+"))
    else:  # the recording is too short to hold such eight seconds: the range is typed instead
        start = segs[0]["start_ts"] + 1.2
        page.goto(f"{server.url}/export?camera=gate")
        page.fill("#x-from", time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(start)))
        page.fill("#x-to", time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(start + 8)))
    chosen_from = page.input_value("#x-from")
    chosen_to = page.input_value("#x-to")
    wanted = datetime.fromisoformat(chosen_to).timestamp() - datetime.fromisoformat(chosen_from).timestamp()
    assert 7 <= wanted <= 10, (chosen_from, chosen_to)
    page.locator("#x-start").click()
    expect(page.locator("#x-progress")).to_be_visible()
    expect(page.locator("#x-done")).to_be_visible(timeout=60_000)
    assert page.locator("#x-progress").evaluate("p => p.value") == 1
    expect(page).to_have_url(re.compile(r"[?&]id="))
    expect(page.locator("#x-done")).to_contain_text("Segments")
    shot(page, "export-done")

    href = page.locator("#x-file").get_attribute("href")
    assert re.fullmatch(r"/api/exports/[^/]+/file\.mp4", href)
    answer = page.context.request.get(server.url + href)
    assert answer.ok
    out = tmp_path / "export.mp4"
    out.write_bytes(answer.body())
    info = ffprobe(out)
    video = [s for s in info["streams"] if s.get("codec_name")][0]
    assert video["codec_name"] == "h264"
    duration = float(info["format"]["duration"])
    assert abs(duration - wanted) < 1.5, (duration, wanted)


# ---------------------------------------------------------------------------------------------
# 7. Deep links


def test_deep_links_open_the_same_views(server, open_page):
    day = recorded_day(server)
    ev = server.events(camera="gate")[1]
    page = open_page()
    page.goto(f"{server.url}/events/{ev['id']}")
    expect(page.locator("h1")).to_contain_text("gate")
    expect(page.locator("#clip")).to_have_attribute("src", ev["clip"])
    page.wait_for_function("() => document.querySelector('#clip')?.readyState >= 2")

    segs = server.get("/api/cameras/gate/recordings", day=day)["segments"]
    seg = segs[2]
    moment = int(seg["start_ts"]) + 2  # whole seconds: t is HH:MM:SS
    hour = time.localtime(moment).tm_hour
    # Hold the segment's file back: while it loads, the playhead and the address already show the
    # moment linked to, not the segment's start (the video's currentTime is 0 until its metadata).
    held, released = [], []
    page.route(f"**{seg['url']}", lambda route: route.continue_() if released else held.append(route))
    page.goto(f"{server.url}/timeline/gate/{day}?t={local_clock(moment)}&zoom={hour}")
    expect(page.locator(".range-title")).to_contain_text(f"{hour:02d}:00")
    expect(page.locator('button[data-zoom="3600"]')).to_have_attribute("aria-pressed", "true")
    page.wait_for_function("() => document.querySelector('#playhead')?.dataset.ts")
    for _ in range(WAIT_MS // 50):
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the page never asked for the segment"
    assert float(page.locator("#playhead").get_attribute("data-ts")) == pytest.approx(moment, abs=0.01)
    assert f"t={local_clock(moment)}" in page.url.replace("%3A", ":")
    released.append(True)
    for route in held:
        route.continue_()
    page.wait_for_function(
        f"id => {{ const v = {ACTIVE}; return v && v.dataset.segment === id && v.readyState >= 2; }}",
        arg=seg["id"],
    )
    playhead = float(page.locator("#playhead").get_attribute("data-ts"))
    assert moment - 0.5 <= playhead < moment + 5, (playhead, moment)

    page.goto(f"{server.url}/events?camera=gate&label=motion")
    page.reload()
    expect(page.locator("#f-camera")).to_have_value("gate")
    expect(page.locator('button[data-label="motion"]')).to_have_attribute("aria-pressed", "true")
    wait_cards(page, [e["id"] for e in server.events(camera="gate", label="motion")])

    page.goto(f"{server.url}/calendar?camera=gate&month={day[:7]}")
    expect(page.locator("#cal-camera")).to_have_value("gate")
    expect(page.locator(f'.calendar a[data-day="{day}"]')).to_have_attribute(
        "href", f"/events?camera=gate&day={day}"
    )


# ---------------------------------------------------------------------------------------------
# 8. Login


def test_login_refuses_a_wrong_password_and_lets_the_right_one_in(own_server, storage, open_page):
    from nvr_cli.web.auth import hash_password

    server = own_server(f"WEB_USERS = {{'anna': {hash_password('correct horse')!r}}}")
    page = open_page()
    page.goto(server.url + "/events?camera=gate")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fevents%3Fcamera%3Dgate$"))
    expect(page.locator("form#login")).to_be_visible()
    page.fill("#l-user", "anna")
    page.fill("#l-pass", "wrong horse")
    page.locator("form#login button[type=submit]").click()
    expect(page.locator("#l-error")).to_have_text("Wrong user name or password.")
    expect(page).to_have_url(re.compile(r"/login"))
    shot(page, "login")

    page.fill("#l-pass", "correct horse")
    page.locator("form#login button[type=submit]").click()
    expect(page).to_have_url(server.url + "/events?camera=gate")
    expect(page.locator("#who")).to_contain_text("anna")
    expect(page.locator("#events a.card").first).to_be_visible()  # the grid loads once logged in
    assert set(page.eval_on_selector_all("#events a.card", "cs => cs.map(c => c.dataset.camera)")) == {"gate"}
    page.locator('nav a[data-nav="cameras"]').click()
    expect(page.locator("article.card.camera")).to_have_count(len(storage.cameras))
    # ?next= leads only to a page of this site ("/\\host" is "//host" to a browser)
    for evil in ("/%5Cevil.example/", "//evil.example/", "https://evil.example/"):
        page.goto(f"{server.url}/login?next={evil}")
        expect(page.locator("a.button", has_text="Continue")).to_have_attribute("href", "/")


# ---------------------------------------------------------------------------------------------
# 9. A phone


def test_phone_views_fit_the_width(server, open_page):
    day = recorded_day(server)
    page = open_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    width = "document.scrollingElement.scrollWidth"

    page.goto(server.url + "/events")
    wait_cards(page, [e["id"] for e in server.events()])
    assert page.evaluate(width) <= PHONE["width"]
    per_row = page.evaluate(
        "() => new Set([...document.querySelectorAll('#events a.card')]"
        ".map(c => c.getBoundingClientRect().top)).size"
    )
    cards = len(card_ids(page))
    assert cards / per_row >= 1.5, "a phone shows more than one card a row"
    small = page.evaluate(
        "() => [...document.querySelectorAll('button, .button')].filter(b => b.offsetParent)"
        ".filter(b => b.getBoundingClientRect().height < 36).map(b => b.textContent)"
    )
    assert not small, f"touch targets too small: {small}"
    shot(page, "phone-events")

    seg = server.get("/api/cameras/gate/recordings", day=day)["segments"][1]
    page.goto(
        f"{server.url}/timeline/gate/{day}"
        f"?t={local_clock(seg['start_ts'] + 1)}&zoom={zoom_of(seg['start_ts'])}"
    )
    page.wait_for_function(f"() => {{ const v = {ACTIVE}; return v && v.readyState >= 2; }}")
    assert page.evaluate(width) <= PHONE["width"]
    track = page.locator("#track").bounding_box()
    assert track["width"] >= PHONE["width"] - 40, "the timeline takes the phone's width"
    shot(page, "phone-timeline")

    for name, path in [("phone-cameras", "/"), ("phone-calendar", "/calendar")]:
        page.goto(server.url + path)
        page.locator("#view h1").wait_for()
        page.wait_for_function("() => !document.querySelector('#view .loading')")
        assert page.evaluate(width) <= PHONE["width"], name
        shot(page, name)
    ev = server.events()[0]
    page.goto(f"{server.url}/events/{ev['id']}")
    page.wait_for_function("() => document.querySelector('#clip')?.readyState >= 2")
    assert page.evaluate(width) <= PHONE["width"]
    shot(page, "phone-event", full_page=True)
