"""The review page's Starlette application: the JSON API of docs/web-api.md, the media it streams
(by ids looked up in the index, never by a path from the client), the page and its static files.

Endpoints are plain functions: Starlette runs them in its thread pool, where the catalog lends each
call a reading connection. The guard (guard.py) stands in front of them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import mimetypes
import os
import re
import stat
import time
from pathlib import Path
from typing import Any, Callable, Optional

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from nvr_cli import __version__
from nvr_cli.core.errors import NvrError
from nvr_cli.core.redact import redact
from nvr_cli.runtime.status import Verdict, judge
from nvr_cli.storage.catalog import Catalog
from nvr_cli.web.auth import COOKIE, LoginLimiter, Sessions, check_login
from nvr_cli.web.config import WebConfig
from nvr_cli.web.exports import ExportError, ExportJobs
from nvr_cli.web.guard import Guard, error_response
from nvr_cli.web.live import LiveHub, Viewer
from nvr_cli.web.snapshots import NoFrame, Snapshots

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}")
DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
PAGES = (
    "/",
    "/live",
    "/live/{camera}",
    "/events",
    "/events/{eid}",
    "/calendar",
    "/timeline/{camera}/{day}",
    "/export",
    "/login",
)
CAMERAS_TTL = 5.0  # seconds a list of the index's cameras is used again
# how often an open live view looks whether its session still is (logged out, expired): it then closes
SESSION_CHECK = 30.0
LOGGED_OUT = 4401  # the WebSocket close code for a session that ended while watching
MAX_BODY = 64 * 1024  # a JSON body larger than this is no request of the page's
MEDIA_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".map": "application/json",
}


# -- helpers -------------------------------------------------------------------------------------


def _fail(status: int, message: str, headers: Optional[dict] = None) -> HTTPException:
    return HTTPException(status, message, headers)


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def _redacted(value: Any) -> Any:
    """Every string in ``value`` (a parsed JSON document) with URL passwords masked."""
    if isinstance(value, str):
        return redact(value) if ("://" in value or "=" in value) else value
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return value


def _with_urls(summary: dict) -> dict:
    """An event summary as the API gives it: its URLs added, the server's paths taken out."""
    out = {k: v for k, v in summary.items() if k != "paths"}
    base = f"/api/events/{summary['id']}"
    out["clip"] = f"{base}/clip.mp4"
    out["thumbnail"] = f"{base}/thumbnail.jpg" if summary.get("has_thumbnail") else None
    out["sidecar"] = f"{base}/sidecar.json"
    return out


def _valid_id(value: str) -> str:
    if not ID_RE.fullmatch(value):
        raise _fail(404, "no such id")
    return value


def _bool(text: Optional[str], name: str) -> Optional[bool]:
    if text is None or text == "":
        return None
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise _fail(400, f"{name}: expected true or false, got {text!r}")


def _score(value: Any) -> Optional[float]:
    if value is None or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise _fail(400, f"min_score: expected a number from 0 to 1, got {value!r}") from None
    if not 0 <= v <= 1:
        raise _fail(400, f"min_score: expected a number from 0 to 1, got {value!r}")
    return v


def _list(value: Any, name: str) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise _fail(400, f"{name}: expected a string or a list of strings")


def _filters(get: Callable[[str], Any], get_list: Callable[[str], list]) -> dict:
    """The events filters of docs/web-api.md as the catalog's keyword arguments."""
    day = get("day") or None
    if day is not None and (not isinstance(day, str) or not DAY_RE.fullmatch(day)):
        raise _fail(400, f"day: expected YYYY-MM-DD, got {day!r}")
    return {
        "cameras": get_list("camera"),
        "day": day,
        "start": get("from"),
        "end": get("to"),
        "labels": get_list("label"),
        "min_score": _score(get("min_score")),
    }


def _time(value: Any, name: str) -> float:
    """An epoch number, or a time as `nvr-cli export` takes it (ISO, HH:MM, -15m)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise _fail(400, f"{name}: expected an ISO time or epoch seconds")
    try:
        return float(value)
    except ValueError:
        pass
    from nvr_cli.storage.export import parse_time

    try:
        return parse_time(value)
    except NvrError as e:
        raise _fail(400, f"{name}: {e}") from None


def _state(v: Verdict) -> str:
    if v.ok:
        return "live"
    if v.why.startswith("stale"):
        return "stale"
    if v.why.startswith("missing"):
        return "unknown"
    return "down"


def _static_files(folder: Path) -> dict:
    """name -> (path, media type) of every file under ``folder``: the only files /static/ serves."""
    files = {}
    if folder.is_dir():
        for p in sorted(folder.rglob("*")):
            rel = p.relative_to(folder).as_posix()
            if p.is_file() and not any(part.startswith(".") for part in rel.split("/")):
                kind = (
                    MEDIA_TYPES.get(p.suffix) or mimetypes.guess_type(p.name)[0] or "application/octet-stream"
                )
                files[rel] = (p, kind)
    return files


async def _pump(websocket: WebSocket, viewer: Viewer, session_gone: Callable[[], bool]) -> None:
    """Send ``viewer``'s queue until it is closed or the browser leaves (what it sends is ignored);
    close with LOGGED_OUT once ``session_gone()`` (asked every SESSION_CHECK seconds)."""

    async def send() -> None:
        after_init = False
        while True:
            item = await viewer.next()
            if item is None:
                await websocket.close(1000)
                return
            kind, data = item
            if kind == "text":
                await websocket.send_text(data)
            else:
                await websocket.send_bytes(data)
            if kind == "init":
                after_init = True
            elif kind == "frag" and after_init:
                after_init = False
                await websocket.send_text(json.dumps({"type": "state", "state": "live"}))

    async def receive() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    async def session() -> None:
        while not session_gone():
            await asyncio.sleep(SESSION_CHECK)

    checked = asyncio.ensure_future(session())
    tasks = [asyncio.ensure_future(send()), asyncio.ensure_future(receive()), checked]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        # a browser that left makes send() fail: that is its leaving, no error
        await asyncio.gather(*tasks, return_exceptions=True)
    if checked.done() and not checked.cancelled():
        with contextlib.suppress(Exception):  # the browser may be gone as well
            await websocket.close(LOGGED_OUT, "logged out")


# -- the application -----------------------------------------------------------------------------


def create_app(
    catalog: Catalog,
    config: WebConfig,
    *,
    exports: Optional[ExportJobs] = None,
    static_dir: Path = STATIC_DIR,
    watching: Callable[[], bool] = lambda: False,
    sessions: Optional[Sessions] = None,
    limiter: Optional[LoginLimiter] = None,
) -> Starlette:
    """The review page's application over ``catalog``. ``exports``: the export jobs (None: exports
    are refused); ``watching()``: whether the index follows the storage (for /api/status)."""
    sessions = sessions or Sessions()
    limiter = limiter or LoginLimiter()
    static = _static_files(static_dir)
    live = LiveHub(config.live_of)
    snapshots = Snapshots(config.live_of)
    index_html = static_dir / "index.html"

    def today() -> str:
        now = dt.datetime.now() if config.local_time else dt.datetime.now(dt.timezone.utc)
        return now.strftime("%Y-%m-%d")

    known = {"at": -1e9, "names": []}

    def camera_names() -> list:
        # listing the index's cameras scans its tables (tens of ms with 100,000 events): cameras come
        # and go rarely, so a list a few seconds old serves every request in between
        now = time.monotonic()
        if now - known["at"] > CAMERAS_TTL:
            known["names"], known["at"] = catalog.cameras(), now
        return known["names"]

    def known_camera(camera: str) -> str:
        if camera not in camera_names():
            raise _fail(404, f"no camera {camera!r}")
        return camera

    def served(path: Optional[Path], camera: str) -> tuple:
        """(real path, stat) of a file of ``camera``'s storage folder, else 404: a symbolic link out
        of it, or a file retention deleted, is not served."""
        if path is None:
            raise _fail(404, "no such file")
        real = os.path.realpath(path)
        for root in config.roots:
            base = os.path.realpath(os.path.join(root, camera))
            if real.startswith(base + os.sep):
                try:
                    st = os.stat(real)
                except OSError:
                    break
                if stat.S_ISREG(st.st_mode):
                    return real, st
                break
        raise _fail(404, "the file is gone (deleted by retention?)")

    def body(request: Request) -> dict:
        import anyio.from_thread

        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > MAX_BODY:
            raise _fail(413, "request too large")

        async def capped() -> bytes:  # read no more than the cap, whatever the header said
            got = bytearray()
            async for chunk in request.stream():
                got += chunk
                if len(got) > MAX_BODY:
                    raise _fail(413, "request too large")
            return bytes(got)

        raw = anyio.from_thread.run(capped)
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            raise _fail(400, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise _fail(400, "the body must be a JSON object")
        return data

    def user_of(request: Request) -> Optional[str]:
        return request.state.user

    # -- login -----------------------------------------------------------------------------------
    def me(request: Request) -> Response:
        return _json({"user": user_of(request), "login_required": config.login_required})

    def login(request: Request) -> Response:
        if not config.login_required:
            raise _fail(400, "this server has no users (WEB_USERS): no login needed")
        address = request.client.host if request.client else "?"  # the peer: proxy headers not trusted
        data = body(request)
        user, password = data.get("user"), data.get("password")
        if not isinstance(user, str) or not isinstance(password, str):
            raise _fail(400, 'expected {"user": ..., "password": ...}')
        wait = limiter.begin(address)
        if wait:
            raise _fail(429, f"too many failed logins: try again in {wait} s", {"Retry-After": str(wait)})
        with limiter.checking:
            right = check_login(config.users, user, password)
        if not right:
            log.warning("failed login for %r from %s", user[:64], address)
            raise _fail(401, "wrong user or password")
        limiter.succeeded(address)
        sessions.end(request.state.token)
        token = sessions.start(user)
        log.info("%s logged in from %s", user, address)
        response = _json({"user": user})
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(sessions.seconds),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    def logout(request: Request) -> Response:
        sessions.end(request.state.token)
        response = _json({"user": None})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # -- cameras and status ----------------------------------------------------------------------
    def cameras(request: Request) -> Response:
        verdicts = config.verdicts()
        day = today()
        out = []
        for name in camera_names():
            v = verdicts.get(name) or judge(name, None, config.stale_after)
            st = v.status or {}
            summary = catalog.camera_summary(name, day)
            last = _with_urls(summary["last_event"]) if summary["last_event"] else None
            source = config.sources.get(name) or st.get("source")
            out.append(
                {
                    "name": name,
                    "state": _state(v),
                    "verdict": redact(v.why),
                    "fps": st.get("fps"),
                    "source": redact(source) if source is not None else None,
                    "last_event": last,
                    "thumbnail": last["thumbnail"] if last else None,
                    "events_today": summary["events_today"],
                    "unreviewed_today": summary["unreviewed_today"],
                    "has_recordings": summary["has_recordings"],
                    "live": live.of(name),
                }
            )
        return _json({"cameras": out})

    def status(request: Request) -> Response:
        verdicts = config.verdicts()
        names = list(dict.fromkeys([*camera_names(), *verdicts]))
        return _json(
            {
                "version": __version__,
                "login_required": config.login_required,
                "user": user_of(request),
                "index": {**catalog.stats(), "watching": watching()},
                "live": live.stats(),
                "cameras": [
                    {"camera": n, "ok": v.ok, "verdict": redact(v.why), "live": live.of(n)}
                    for n in names
                    for v in [verdicts.get(n) or judge(n, None, config.stale_after)]
                ],
            }
        )

    # -- live view -------------------------------------------------------------------------------
    async def latest(request: Request) -> Response:
        camera = await run_in_threadpool(known_camera, request.path_params["camera"])
        try:
            jpeg = await snapshots.latest(camera)
        except NoFrame as e:
            raise _fail(503, str(e)) from None
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def watch(websocket: WebSocket) -> None:
        camera = websocket.path_params["camera"]
        if camera not in await run_in_threadpool(camera_names):
            await websocket.send_denial_response(error_response(404, f"no camera {camera!r}"))
            return
        await websocket.accept()
        viewer = live.join(camera)
        if viewer is None:
            if live.closing:
                await websocket.close(1001, "the server is stopping")
                return
            await websocket.send_json({"type": "state", "state": "unavailable", "reason": "no way to it"})
            await websocket.close(1000)
            return
        token = websocket.scope.get("state", {}).get("token")
        try:
            await _pump(websocket, viewer, lambda: config.login_required and sessions.user(token) is None)
        finally:
            live.leave(viewer)

    # -- events ----------------------------------------------------------------------------------
    def events(request: Request) -> Response:
        q = request.query_params
        filters = _filters(q.get, q.getlist)
        try:
            limit = int(q.get("limit") or 50)
        except ValueError:
            raise _fail(400, f"limit: expected a number from 1 to 500, got {q.get('limit')!r}") from None
        if not 1 <= limit <= 500:
            raise _fail(400, f"limit: expected a number from 1 to 500, got {limit}")
        try:
            page, cursor = catalog.events(
                **filters,
                reviewed=_bool(q.get("reviewed"), "reviewed"),
                limit=limit,
                cursor=q.get("cursor") or None,
            )
        except ValueError as e:
            raise _fail(400, str(e)) from None
        return _json({"events": [_with_urls(e) for e in page], "next_cursor": cursor})

    def found(eid: str) -> dict:
        ev = catalog.event(_valid_id(eid))
        if ev is None:
            raise _fail(404, f"no event {eid}")
        return ev

    def event(request: Request) -> Response:
        ev = found(request.path_params["eid"])
        out = _with_urls(ev)
        out["facts"] = _redacted(ev.get("facts") or {})
        return _json(out)

    def clip(request: Request) -> Response:
        ev = found(request.path_params["eid"])
        if (ev.get("facts") or {}).get("clip_pending"):
            raise _fail(404, "the clip is still being cut from the recording")
        real, st = served(ev["paths"]["clip"], ev["camera"])
        download = _bool(request.query_params.get("download"), "download")
        return FileResponse(
            real,
            media_type="video/mp4",
            stat_result=st,
            filename=os.path.basename(real) if download else None,
            content_disposition_type="attachment",
        )

    def thumbnail(request: Request) -> Response:
        ev = found(request.path_params["eid"])
        real, st = served(ev["paths"]["thumbnail"], ev["camera"])
        return FileResponse(real, media_type="image/jpeg", stat_result=st)

    def sidecar(request: Request) -> Response:
        ev = found(request.path_params["eid"])
        real, _ = served(ev["paths"]["sidecar"], ev["camera"])
        try:
            with open(real, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            raise _fail(404, "the sidecar is unreadable") from None
        return _json(_redacted(data))

    def mark(request: Request) -> Response:
        eid = _valid_id(request.path_params["eid"])
        data = body(request)
        reviewed = data.get("reviewed", True)
        if not isinstance(reviewed, bool):
            raise _fail(400, 'expected {"reviewed": true or false}')
        found(eid)
        catalog.set_reviewed([eid], reviewed)
        return _json(_with_urls({k: v for k, v in found(eid).items() if k != "facts"}))

    def mark_matching(request: Request) -> Response:
        data = body(request)
        reviewed = data.get("reviewed", True)
        if not isinstance(reviewed, bool):
            raise _fail(400, 'expected {"reviewed": true or false, ...filters}')
        filters = _filters(data.get, lambda k: _list(data.get(k), k))
        try:
            changed = catalog.set_reviewed_matching(reviewed, **filters)
        except ValueError as e:
            raise _fail(400, str(e)) from None
        return _json({"changed": changed})

    # -- days and recordings ---------------------------------------------------------------------
    def days(request: Request) -> Response:
        q = request.query_params
        try:
            found_days = catalog.days(cameras=q.getlist("camera"), month=q.get("month") or None)
        except ValueError as e:
            raise _fail(400, str(e)) from None
        return _json({"days": found_days})

    def recordings(request: Request) -> Response:
        camera = known_camera(request.path_params["camera"])
        day = request.query_params.get("day") or today()
        if not DAY_RE.fullmatch(day):
            raise _fail(400, f"day: expected YYYY-MM-DD, got {day!r}")
        try:
            tl = catalog.timeline(camera, day)
        except ValueError as e:
            raise _fail(400, f"day: {e}") from None
        for seg in tl["segments"]:
            seg["url"] = f"/api/segments/{seg['id']}.mp4"
        tl["events"] = [_with_urls(e) for e in tl["events"]]
        return _json(tl)

    def segment(request: Request) -> Response:
        seg = catalog.segment(_valid_id(request.path_params["sid"]))
        if seg is None:
            raise _fail(404, "no such segment")
        real, st = served(seg["path"], seg["camera"])
        return FileResponse(real, media_type="video/mp4", stat_result=st)

    # -- exports ---------------------------------------------------------------------------------
    def jobs() -> ExportJobs:
        if exports is None:
            raise _fail(404, "exports are not available on this server")
        return exports

    def export_list(request: Request) -> Response:
        return _json({"exports": jobs().all()})

    def export_create(request: Request) -> Response:
        data = body(request)
        camera = data.get("camera")
        if not isinstance(camera, str) or not camera:
            raise _fail(400, "camera: expected a camera's name")
        known_camera(camera)
        start, end = _time(data.get("from"), "from"), _time(data.get("to"), "to")
        allow = data.get("allow_gaps", False)
        if not isinstance(allow, bool):
            raise _fail(400, "allow_gaps: expected true or false")
        try:
            job = jobs().submit(camera, start, end, allow)
        except ExportError as e:
            raise _fail(e.status, str(e)) from None
        return _json(job, 202)

    def export_get(request: Request) -> Response:
        job = jobs().get(_valid_id(request.path_params["xid"]))
        if job is None:
            raise _fail(404, "no such export")
        return _json(job)

    def export_file(request: Request) -> Response:
        xid = _valid_id(request.path_params["xid"])
        path, job = jobs().file(xid), jobs().get(xid)  # the job as it was found: it may expire meanwhile
        base = os.path.realpath(jobs().folder)
        real = os.path.realpath(path) if path else ""
        if job is None or not real.startswith(base + os.sep) or not os.path.isfile(real):
            raise _fail(404, "no such export, or it is not done")
        download = _bool(request.query_params.get("download"), "download")
        return FileResponse(
            real,
            media_type="video/mp4",
            filename=f"{job['camera']}_{xid}.mp4" if download else None,
        )

    def export_sidecar(request: Request) -> Response:
        info = jobs().sidecar(_valid_id(request.path_params["xid"]))
        if info is None:
            raise _fail(404, "no such export, or it is not done")
        return _json(_redacted(info))

    # -- the page --------------------------------------------------------------------------------
    def page(request: Request) -> Response:
        if not index_html.is_file():
            return PlainTextResponse("the page is not installed (nvr_cli/web/static/index.html)", 500)
        return FileResponse(
            index_html, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"}
        )

    def static_file(request: Request) -> Response:
        hit = static.get(request.path_params["name"])
        if hit is None:
            raise _fail(404, "not found")
        return FileResponse(hit[0], media_type=hit[1], headers={"Cache-Control": "no-cache"})

    def api_unknown(request: Request) -> Response:
        raise _fail(404, f"no such API: {request.url.path}")

    routes = [
        Route("/api/me", me),
        Route("/api/login", login, methods=["POST"]),
        Route("/api/logout", logout, methods=["POST"]),
        Route("/api/status", status),
        Route("/api/cameras", cameras),
        Route("/api/cameras/{camera}/recordings", recordings),
        Route("/api/cameras/{camera}/latest.jpg", latest),
        WebSocketRoute("/api/cameras/{camera}/live", watch),
        Route("/api/events", events),
        Route("/api/events/{eid}", event),
        Route("/api/events/{eid}/clip.mp4", clip),
        Route("/api/events/{eid}/thumbnail.jpg", thumbnail),
        Route("/api/events/{eid}/sidecar.json", sidecar),
        Route("/api/events/{eid}/reviewed", mark, methods=["POST"]),
        Route("/api/reviewed", mark_matching, methods=["POST"]),
        Route("/api/days", days),
        Route("/api/segments/{sid}.mp4", segment),
        Route("/api/exports", export_list, methods=["GET"]),
        Route("/api/exports", export_create, methods=["POST"]),
        Route("/api/exports/{xid}", export_get),
        Route("/api/exports/{xid}/file.mp4", export_file),
        Route("/api/exports/{xid}/sidecar.json", export_sidecar),
        Route("/api/{rest:path}", api_unknown, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
        *(Route(p, page) for p in PAGES),
        Route("/static/{name:path}", static_file),
    ]

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith("/api/"):
            return error_response(exc.status_code, str(exc.detail), exc.headers)
        return PlainTextResponse(str(exc.detail), exc.status_code, headers=exc.headers)

    def crash(request: Request, exc: Exception) -> Response:
        log.error(
            "%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc, exc_info=exc
        )
        return error_response(500, "internal error (in the server's log)")

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: crash})
    app.add_middleware(Guard, config=config, sessions=sessions)
    app.state.sessions, app.state.limiter, app.state.started = sessions, limiter, time.time()
    app.state.live = live
    return app
