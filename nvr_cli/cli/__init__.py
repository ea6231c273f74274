"""The command line: parses options, wires the library together, turns errors into one line.

Exit codes: 0 done; 1 a source or the storage failed; 2 bad options or settings; 130 interrupted.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import click

from nvr_cli import __version__
import nvr_cli.storage.paths as storage
from nvr_cli.core.errors import NvrError, SourceError
from nvr_cli.ffmpeg.binary import find_ffmpeg
from nvr_cli.core.geometry import parse_polygon
from nvr_cli.runtime.logs import setup_logging
from nvr_cli.runtime.pipeline import Pipeline
from nvr_cli.core.redact import redact
from nvr_cli.config.settings import FIELDS, Settings, as_plain, load_settings
from nvr_cli.output.sinks import ClipSink, EventLogSink
from nvr_cli.source.capture import VideoSource, parse_source

log = logging.getLogger(__name__)


class NvrGroup(click.Group):
    """Any error becomes ``nvr-cli: error: <one line>`` and its exit code; never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:  # Click's own three-line usage block, made one line
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
            _fail(f"{e.format_message()}{where}", 2)
        except click.ClickException as e:
            _fail(e.format_message(), e.exit_code)
        except click.Abort:
            click.echo("nvr-cli: interrupted", err=True)
            sys.exit(130)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NvrError as e:
            _fail(e, e.exit_code)
        except BrokenPipeError:  # the reader (head, less) is done: so are we
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as e:
            _fail(f"{e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", 1)
        except KeyboardInterrupt:
            click.echo("nvr-cli: interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - the promise is one line, even for our own bugs
            # the traceback goes to the log file, where an unattended box's owner will look
            _to_log_file(f"internal error: {type(e).__name__}: {e}", exc_info=sys.exc_info())
            _fail(f"internal error: {type(e).__name__}: {e} (please report it)", 1)


def _to_log_file(message: str, exc_info=None):
    """An error for the log file alone (stderr already shows it as the one-line error)."""
    import logging.handlers

    root = logging.getLogger("nvr_cli")
    record = root.makeRecord(root.name, logging.ERROR, __file__, 0, message, (), exc_info)
    for h in root.handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(record)


def _fail(message, code):
    click.echo(f"nvr-cli: error: {redact(message)}", err=True)
    sys.exit(code)


def _option_name(field_name: str) -> str:
    return "s_" + field_name.lower()


def settings_options(func):
    """One option for every setting whose schema names one; help text from the schema."""
    for name, fld in reversed(list(FIELDS.items())):
        opt = fld.metadata["option"]
        if not opt or opt == "SOURCE":
            continue
        check = fld.metadata["check"]
        helptext = f"{fld.metadata['doc']} [{name}]"
        kind = getattr(check, "kind", str)
        if "/" in opt:
            func = click.option(opt, _option_name(name), default=None, help=helptext)(func)
        elif name in ("MASKS", "REGIONS"):
            func = click.option(opt, _option_name(name), multiple=True, metavar='"X,Y X,Y X,Y ..."',
                                help=f"{helptext}; repeat for more")(func)
        else:
            func = click.option(opt, _option_name(name), type=kind, default=None, help=helptext)(func)
    return click.option("--config", "config_path", 
                        help="settings file used instead of machine_specific_configuration.py")(func)


def _overrides(opts: dict) -> dict:
    out = {}
    for name in FIELDS:
        v = opts.pop(_option_name(name), None)
        if v is not None and v != ():
            out[name] = list(v) if isinstance(v, tuple) else v
    return out


def _load(config_path, opts, **extra) -> tuple:
    overrides = _overrides(opts)
    overrides.update({k: v for k, v in extra.items() if v is not None})
    loaded = load_settings(config_path, overrides)
    s = loaded.settings
    setup_logging(s)
    for w in loaded.warnings:
        log.warning("%s", w)
    return s, overrides


def _stop_on_signals(patient: bool = False) -> threading.Event:
    """SIGINT/SIGTERM set the returned event; a second one means now, unless ``patient`` (a worker
    of `run`, which may get SIGTERM from both systemd and its parent and must finish its clip)."""
    stop = threading.Event()
    asked = threading.Event()  # the stop event is also set from inside (a part that cannot recover)

    def handler(signum, _frame):
        if asked.is_set():
            if patient:
                return
            raise KeyboardInterrupt
        log.info("%s received: finishing the open clip", signal.Signals(signum).name)
        asked.set()
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@click.group(cls=NvrGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="nvr-cli")
def cli():
    """Motion-triggered event recorder for RTSP, HTTP, USB cameras and video files.

    Settings come from config.py, then machine_specific_configuration.py (or --config),
    then the command line. `nvr-cli config show` prints what is in effect and why.
    """


@cli.command()
@click.argument("source", required=False)
@settings_options
@click.option("--realtime", is_flag=True, help="play a file source at its own pace (default: as fast as possible)")
@click.option("--json", "as_json", is_flag=True, help="print each finished clip as one JSON line on stdout")
def record(source, config_path, realtime, as_json, **opts):
    """Record motion events from SOURCE (default: `cam` in the config) until stopped.

    SOURCE is an RTSP or HTTP URL, a USB camera index (0) or /dev/videoN, or a video file.
    Clips go to PATH_FOR_VIDEO/<name>/YYYY/MM/DD/ as H.264 MP4 with a JSON sidecar and a
    thumbnail. A live camera that fails is retried with backoff; SIGINT/SIGTERM finish the
    open clip and exit 0.
    """
    s, _ = _load(config_path, opts, cam=source)
    _record(s, realtime=realtime, as_json=as_json)


def _record(s: Settings, *, realtime=False, as_json=False, parent_pid=None):
    from nvr_cli.runtime.recorder import Recorder

    stop = _stop_on_signals(patient=parent_pid is not None)

    def on_clip(rec):
        if not as_json:
            return
        # a camera's times as epoch seconds, a file's as seconds into it
        line = {"camera": s.CAMERA_NAME, **rec.as_dict(-rec.clock_offset if rec.live else 0.0)}
        try:
            click.echo(json.dumps(line), nl=True)
            sys.stdout.flush()
        except BrokenPipeError:  # whoever read our output is gone (`| head -1`): stop as if asked
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            stop.set()

    Recorder(s, stop=stop, realtime=realtime, on_clip=on_clip, parent_pid=parent_pid).run()


@cli.command()
@click.option("--config", "config_path", help="settings file used instead of machine_specific_configuration.py")
@click.option("--camera", help="run this one camera of CAMERAS in this process (what a per-camera service calls)")
def run(config_path, camera):
    """Record every camera of CAMERAS, one worker process each, until stopped.

    Workers that die are restarted with backoff (RESTART_*); edits to the config files are
    applied while running: an invalid edit is reported and ignored, and only cameras whose
    settings changed are restarted. SIGINT/SIGTERM stop every worker, each finishing its open clip.
    """
    from nvr_cli.config.settings import camera_settings

    loaded = load_settings(config_path)
    if camera:
        s = camera_settings(loaded, camera)
        if s.LOG_FILE_PATH and s.LOG_FILE_PATH == loaded.settings.LOG_FILE_PATH:
            # one rotating file per process: shared, each would rotate the others' lines away
            p = Path(s.LOG_FILE_PATH)
            s = s.replace(LOG_FILE_PATH=str(p.with_name(f"{p.stem}.{camera}{p.suffix}")))
        setup_logging(s, prefix=f"[{camera}] ")
        for w in loaded.warnings:
            log.warning("%s", w)
        from nvr_cli.runtime.fleet import ENV_PARENT

        parent = os.environ.get(ENV_PARENT)
        parent_pid = int(parent) if parent and parent.isdigit() and int(parent) == os.getppid() else None
        try:
            _record(s, parent_pid=parent_pid)
        except NvrError as e:  # in the supervisor's log, say which camera
            e.args = (f"[{camera}] {e}",)
            _to_log_file(f"worker exits: {e}")  # stderr gets the one line; the camera's log file the reason too
            raise
        return
    from nvr_cli.runtime.fleet import Supervisor

    setup_logging(loaded.settings)
    for w in loaded.warnings:
        log.warning("%s", w)
    stop = _stop_on_signals(patient=True)
    sys.exit(Supervisor(config_path, loaded, stop).run())


@cli.command()
@click.option("--config", "config_path", help="settings file")
@click.option("--output", "root", help="storage root whose .status folder to read [PATH_FOR_VIDEO]")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object with every camera")
@click.option("--stale-after", type=float, help="seconds without news that make a camera stale [STATUS_STALE_SECS]")
def status(config_path, root, as_json, stale_after):
    """Show each camera's state; exit 1 if any is down, stale or missing (for cron and monitoring).

    The cameras are those of CAMERAS (or `cam`'s CAMERA_NAME) and any with a status file.
    """
    from nvr_cli.runtime.status import judge, read_all, status_dir

    loaded = load_settings(config_path, {"PATH_FOR_VIDEO": root} if root else {})
    s = loaded.settings
    setup_logging(s, quiet=True)
    found = read_all(status_dir(s))
    expected = list(loaded.cameras) or ([s.CAMERA_NAME] if s.cam else [])
    for cam in loaded.cameras.values():  # a camera may keep its status elsewhere
        if cam.CAMERA_NAME not in found:
            found.update({k: v for k, v in read_all(status_dir(cam)).items() if k == cam.CAMERA_NAME})
    names = expected + sorted(n for n in found if n not in expected)
    if not names:
        raise NvrError(f"no cameras: no CAMERAS or cam in the config and no status files in {status_dir(s)}")
    limit = stale_after or s.STATUS_STALE_SECS
    verdicts = [judge(n, found.get(n), limit) for n in names]
    if as_json:
        click.echo(json.dumps({"ok": all(v.ok for v in verdicts), "cameras": [v.as_dict() for v in verdicts]},
                              default=str))
    else:
        _print_status(verdicts)
    sys.exit(0 if all(v.ok for v in verdicts) else 1)


def _print_status(verdicts):
    now = time.time()
    click.echo(f"{'camera':<14} {'state':<34} {'last frame':>10} {'fps':>6} {'dropped':>7} {'event':>6} "
               f"{'today':>6} {'MB':>8}  last error")
    for v in verdicts:
        st = v.status or {}
        age = f"{now - st['last_frame']:.1f} s" if st.get("last_frame") else "-"
        ev = st.get("event")
        click.echo(f"{v.camera:<14} {v.why[:34]:<34} {age:>10} {st.get('fps', 0):>6.1f} "
                   f"{st.get('dropped_frames', 0):>7} {('#' + str(ev['event'])) if ev else '-':>6} "
                   f"{st.get('events_today', 0):>6} {st.get('bytes_today', 0) / 2**20:>8.1f}  "
                   f"{redact(st.get('last_error') or '')}")


@cli.command()
@click.argument("kind", type=click.Choice(["systemd", "supervisor"]))
@click.option("--camera", "cameras", multiple=True,
              help="one unit/program per camera that runs `run --camera NAME`; repeat, or 'all' for every camera")
@click.option("--config", "config_path", help="settings file the service should use")
@click.option("--user", help="run the service as this user")
@click.option("--write", "write_dir", type=click.Path(file_okay=False),
              help="write the files into this folder instead of printing them")
def service(kind, cameras, config_path, user, write_dir):
    """Print ready-to-use systemd units or supervisor programs for `run` (or per camera).

    systemd: save as /etc/systemd/system/nvr-cli.service (or nvr-cli-NAME.service), then
    `systemctl daemon-reload && systemctl enable --now nvr-cli`. supervisor: append to a file in
    /etc/supervisor/conf.d/, then `supervisorctl reread && supervisorctl update`.
    """
    import nvr_cli.runtime.units as svc
    from nvr_cli.config.settings import camera_settings, home_dir

    loaded = load_settings(config_path)
    s = loaded.settings
    config = str(Path(config_path).resolve()) if config_path else None
    if "all" in cameras:
        cameras = tuple(loaded.cameras) or ("all",)
    for name in cameras:
        camera_settings(loaded, name)  # an unknown name is an error now, not when the service starts
    home = str(home_dir().resolve())
    out = []
    for cam in cameras or (None,):
        if kind == "systemd":
            text = svc.systemd_unit(cam, config=config, home=home, user=user, stop_timeout=s.STOP_TIMEOUT_SECS,
                                    restarts_per_hour=s.RESTARTS_PER_HOUR)
            name = svc.unit_name(cam)
        else:
            text = svc.supervisor_program(cam, config=config, home=home, user=user, stop_timeout=s.STOP_TIMEOUT_SECS)
            name = f"nvr-cli-{cam}.conf" if cam else "nvr-cli.conf"
        out.append((name, text))
    if write_dir:
        folder = Path(write_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in out:
            storage.write_atomic(folder / name, text.encode())
            click.echo(str(folder / name))
        return
    for i, (name, text) in enumerate(out):
        click.echo(("\n" if i else "") + f"# {name}\n{text}", nl=False)


@cli.command()
@click.argument("files", nargs=-1, required=True)
@settings_options
@click.option("--json", "as_json", is_flag=True, help='one JSON line per file: {"file": ..., "events": [...]}')
@click.option("--csv", "csv_path", help="write the events as CSV to this file ('-' for stdout)")
@click.option("--extract", is_flag=True, help="also write each event's clip, sidecar and thumbnail, as record does")
@click.option("--progress/--no-progress", default=None, help="progress bar on stderr (default: when it is a terminal)")
def scan(files, config_path, as_json, csv_path, extract, progress, **opts):
    """Find motion events in recorded FILES, as fast as the machine allows.

    Times are seconds from the start of each file, pre-alarm and post-capture included.
    The connect wait (INITIAL_WAIT_...) is 0 here unless given with --initial-wait, and the
    log level WARNING unless given with --log-level.
    Exits 0 whether or not events were found, 1 if a file could not be read.
    """
    # a file has no camera to settle, and its report is the output: quiet logs unless asked
    wait = opts.get(_option_name("INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS"))
    level = opts.get(_option_name("APP_LOG_LEVEL"))
    s, _ = _load(config_path, opts, INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS=wait if wait is not None else 0,
                 APP_LOG_LEVEL=level or "WARNING")
    ffmpeg = find_ffmpeg(s.FFMPEG_PATH, required=False) if extract else None
    show_progress = sys.stderr.isatty() if progress is None else progress
    rows, failed = [], 0
    for name in files:
        try:
            spec = parse_source(name)
            if spec.live:
                raise SourceError(f"{spec.display}: scan takes video files; use `record` for cameras")
            sink = ClipSink(s, ffmpeg=ffmpeg) if extract else EventLogSink()
            result = _scan_one(s, spec, sink, show_progress)
        except SourceError as e:
            failed += 1
            click.echo(f"nvr-cli: error: {redact(e)}", err=True)
            if as_json:
                click.echo(json.dumps({"file": name, "error": redact(e), "events": []}))
            continue
        events = _scan_events(sink, result["origin"])
        if as_json:
            line = {"file": name, "duration": result["duration"], "frames": result["frames"],
                    "analysed_frames": result["analysed_frames"],
                    "fps": result["fps"], "events": events}
            if result["error"]:
                line["error"] = result["error"]
            click.echo(json.dumps(line))
        if result["error"]:  # the events before the damage are still reported
            failed += 1
            click.echo(f"nvr-cli: error: {result['error']}", err=True)
        rows.extend({"file": name, **e} for e in events)
        if not as_json and not csv_path == "-":
            _print_table(name, events, result)
    if csv_path:
        _write_csv(csv_path, rows)
    sys.exit(1 if failed else 0)


class _Progress:
    """A bar redrawn in place on a terminal; elsewhere (when asked for) a line every 10 %."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done = label, max(1, total), 0
        self.tty = sys.stderr.isatty()
        self._shown = -1
        self._start = time.monotonic()

    def update(self, n=1):
        self.done += n
        pct = min(100, self.done * 100 // self.total)
        if self.tty:
            if pct != self._shown:
                fps = self.done / max(1e-6, time.monotonic() - self._start)
                bar = "#" * (pct // 4)
                sys.stderr.write(f"\r{self.label} [{bar:<25}] {pct:3d}% {fps:6.0f} fps")
                sys.stderr.flush()
        elif pct // 10 != self._shown // 10:
            sys.stderr.write(f"{self.label}: {pct}%\n")
        self._shown = pct

    def close(self):
        if self._shown < 100:
            self.done = self.total - 1
            self.update()
        if self.tty:
            sys.stderr.write("\n")


def _scan_events(sink, origin: float) -> list:
    """The events found in one file, as ``scan --json`` and ``--csv`` give them: the fields every
    event output shares, times in seconds from the start of the file."""
    return [r.as_dict(origin) for r in sink.records]


def _scan_one(s, spec, sink, show_progress):
    info = {}
    bar = None

    def on_open(src: VideoSource):
        nonlocal bar
        info.update(fps=src.fps, total=src.frame_count)
        if show_progress and src.frame_count:
            bar = _Progress(Path(spec.text).name, src.frame_count)

    def on_frame(index):
        if bar is not None:  # by position: with MAX_ANALYSIS_FPS not every frame comes through here
            bar.update(index + 1 - bar.done)

    stats = Pipeline(s, spec, sink, on_open=on_open, on_frame=on_frame).run()
    if bar is not None:
        bar.close()
    fps = info.get("fps") or 0
    duration = 0.0
    if stats.last_ts is not None:  # from timestamps: right for variable frame rates too
        duration = stats.last_ts + (1.0 / fps if fps else 0.0)
    return {"origin": 0.0, "frames": stats.frames, "analysed_frames": stats.analysed, "fps": round(fps, 3),
            "duration": round(duration, 3), "error": stats.error}


def _print_table(name, events, result):
    click.echo(f"{name}: {len(events)} event(s) in {result['duration']:.1f} s ({result['frames']} frames)")
    if events:
        click.echo(f"  {'#':>3} {'start':>9} {'end':>9} {'length':>7} {'trigger':>9} {'peak':>7}  clip")
        for e in events:
            click.echo(f"  {e['event']:>3} {e['start']:>9.2f} {e['end']:>9.2f} {e['duration']:>7.2f} "
                       f"{e['trigger']:>9.2f} {e['peak_score']:>7.4f}  {e['clip'] or ''}")


def _write_csv(path, rows):
    cols = ["file", "event", "part", "start", "end", "duration", "trigger", "pre_alarm_seconds",
            "frames", "peak_score", "motion_seconds", "clip"]
    out = sys.stdout if path == "-" else open(path, "w", newline="")
    try:
        w = csv.DictWriter(out, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    finally:
        if out is not sys.stdout:
            out.close()


@cli.command()
@click.argument("source")
@click.option("--config", "config_path", help="settings file")
@click.option("--snapshot", type=click.Path(dir_okay=False), default="snapshot.jpg", show_default=True,
              help="where to save one frame as JPEG")
@click.option("--no-snapshot", is_flag=True, help="do not save a frame")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.option("--open-timeout", type=float, default=None, help="seconds to wait for the source [OPEN_TIMEOUT_SECS]")
def probe(source, config_path, snapshot, no_snapshot, as_json, open_timeout):
    """Open SOURCE once: print resolution, fps and codec, and save a snapshot."""
    import cv2

    s = load_settings(config_path, {"OPEN_TIMEOUT_SECS": open_timeout} if open_timeout else {}).settings
    setup_logging(s, quiet=True)
    spec = parse_source(source)
    src = VideoSource(spec, rtsp_transport=s.RTSP_TRANSPORT, open_timeout=s.OPEN_TIMEOUT_SECS,
                      read_timeout=s.READ_TIMEOUT_SECS).open()
    try:
        frame = next(src.frames(), None)
    finally:
        src.close()
    info = {"source": spec.display, "kind": spec.kind, "width": src.size[0], "height": src.size[1],
            "fps": round(src.fps, 3), "codec": src.codec or None}
    if spec.kind == "file":
        info["frames"] = src.frame_count
    if frame is not None and not no_snapshot:
        ok, jpg = cv2.imencode(".jpg", frame.image)
        if ok:
            storage.write_atomic(Path(snapshot), jpg.tobytes())
            info["snapshot"] = str(snapshot)
    if as_json:
        click.echo(json.dumps(info))
    else:
        for k, v in info.items():
            click.echo(f"{k:>9}: {v}")


@cli.command()
@click.option("--output", "-o", type=click.Path(file_okay=False), default="demo-output", show_default=True,
              help="folder for the generated scene and the clips")
@click.option("--json", "as_json", is_flag=True, help="print the clips as JSON lines")
def demo(output, as_json):
    """Record a generated scene (no camera needed) and print where the clips are."""
    from nvr_cli.runtime.synthetic import NUMBER_MASK, Scene

    out = Path(output)
    storage.make_dirs(out)
    s = Settings().replace(CAMERA_NAME="demo", PATH_FOR_VIDEO=str(out), MASKS=(parse_polygon(NUMBER_MASK),),
                           PRE_ALARM_RECORDING_SECONDS=3.0, MINIMAL_MOTION_DURATION=2.0, POST_CAPTURE_SECONDS=1.0,
                           INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS=2.0)
    setup_logging(s, quiet=as_json)
    ffmpeg = find_ffmpeg(required=False)
    scene = Scene()
    src_file = scene.write(out / "demo_scene.mp4", ffmpeg)
    log.info("generated %s: %.0f s with people walking through at %s s", src_file, scene.seconds,
             ", ".join(f"{a:g}-{b:g}" for a, b in scene.walkers))
    sink = ClipSink(s, ffmpeg=ffmpeg)
    Pipeline(s, parse_source(str(src_file)), sink).run()
    for rec in sink.records:
        if as_json:
            click.echo(json.dumps(rec.as_dict()))
        else:
            click.echo(f"{rec.clip}  ({rec.end - rec.start:.1f} s, motion at {rec.trigger:.1f} s of the scene, "
                       f"{rec.pre_alarm:.1f} s pre-alarm)")
    if not as_json:
        click.echo(f"{len(sink.records)} clip(s) with JSON sidecars and thumbnails under {out / 'demo'}")


def _frames_of(path: str, every: float, max_frames: int = 0):
    """(time, BGR image) of an image file, or of a video every ``every`` seconds."""
    import cv2

    spec = parse_source(path)
    if spec.kind == "file":
        image = cv2.imread(path)
        if image is not None:
            yield None, image
            return
    src = VideoSource(spec).open()
    try:
        last, n = float("-inf"), 0
        for frame in src.frames():
            if frame.ts - last >= every:
                last = frame.ts
                n += 1
                yield frame.ts, frame.image
                if max_frames and n >= max_frames:
                    break
    finally:
        src.close()


@cli.command()
@click.argument("source")
@click.option("--model", required=True, help="TFLite detection model [OBJECT_MODEL]")
@click.option("--labels", required=True, help="its labels file [OBJECT_LABELS]")
@click.option("--min-score", type=float, default=0.3, show_default=True, help="lowest score shown")
@click.option("--objects", help="only these labels, comma-separated (default: all)")
@click.option("--every", type=float, default=1.0, show_default=True, help="videos: seconds between analysed frames")
@click.option("--max-frames", type=int, default=0, help="videos: stop after this many analysed frames")
@click.option("--annotate", help="write the image (for a video: its best frame) with the boxes drawn")
@click.option("--json", "as_json", is_flag=True, help="one JSON line per analysed image or frame")
@click.option("--threads", type=int, default=2, show_default=True, help="TFLite threads [OBJECT_THREADS]")
def detect(source, model, labels, min_score, objects, every, max_frames, annotate, as_json, threads):
    """Run an object detector on an IMAGE or VIDEO: what it sees, and how sure it is.

    Use it to pick OBJECT_MIN_SCORE. The model's kind (SSD or YOLO style) is read off its tensors.
    """
    from nvr_cli.analysis.objects import ObjectDetector

    det = ObjectDetector(model, labels, threads=threads)
    wanted = {x.strip() for x in objects.split(",")} if objects else None
    best = (-1.0, None, [])
    for t, image in _frames_of(source, every, max_frames):
        found = [d for d in det.detect(image, min_score) if wanted is None or d.label in wanted]
        if found and max(d.score for d in found) > best[0]:
            best = (max(d.score for d in found), image, found)
        if best[1] is None:
            best = (best[0], image, found)
        if as_json:
            line = {"file": source, "detections": [d.as_dict() for d in found]}
            if t is not None:
                line = {"file": source, "time": round(t, 3), "detections": line["detections"]}
            click.echo(json.dumps(line))
            continue
        when = f"{t:8.2f} s  " if t is not None else ""
        if not found:
            click.echo(f"{when}(nothing above {min_score})")
        for d in found:
            x, y, w, h = d.box
            click.echo(f"{when}{d.label:<16} {d.score:5.2f}  x={x} y={y} w={w} h={h}")
    if annotate and best[1] is not None:
        storage.write_thumbnail(Path(annotate), best[1], [d.box for d in best[2]],
                                [f"{d.label} {d.score:.2f}" for d in best[2]])
        if not as_json:
            click.echo(f"annotated: {annotate}")


@cli.command()
@click.argument("source")
@click.option("--every", type=float, default=0.5, show_default=True, help="videos: seconds between scanned frames")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object with every code found")
def qr(source, every, as_json):
    """Print the QR codes in an IMAGE or VIDEO, one payload per line (each once)."""
    from nvr_cli.analysis.analysers import decode_qr, load_zbar

    decode = load_zbar()
    seen, codes = set(), []
    for t, image in _frames_of(source, every):
        for payload, box in decode_qr(decode, image):
            if payload in seen:
                continue
            seen.add(payload)
            code = {"payload": payload, "box": list(box)}
            if t is not None:
                code["time"] = round(t, 3)
            codes.append(code)
            if not as_json:
                click.echo(payload)
    if as_json:
        click.echo(json.dumps({"file": source, "codes": codes}))


@cli.group("model")
def model_group():
    """Fetch detection models."""


@model_group.command("download")
@click.argument("name_or_url")
@click.option("--sha256", help="expected SHA-256 of a URL's file (known names carry their own)")
@click.option("--dest", help="folder to save into (default: the user's data folder)")
def model_download(name_or_url, sha256, dest):
    """Fetch a known model by NAME (ssd-mobilenet-v1) or any http(s) URL, check its SHA-256,
    and print the config lines that use it."""
    from nvr_cli.analysis.model_download import KNOWN, download

    path, labels, digest = download(name_or_url, sha256=sha256, dest=Path(dest) if dest else None)
    click.echo(f"# {path.name}: SHA-256 {digest}" + (" (verified)" if sha256 or name_or_url in KNOWN else
                                                     " (not verified: give --sha256)"))
    click.echo(f"OBJECT_MODEL = {str(path)!r}")
    click.echo(f"OBJECT_LABELS = {str(labels)!r}" if labels else "OBJECT_LABELS = '...'  # the model's labels file")


@cli.command("export")
@click.argument("camera")
@click.argument("outfile")
@click.option("--from", "from_", required=True, help="start: ISO time, HH:MM today, or -15m / -2h / -1d")
@click.option("--to", "to", default="now", show_default=True, help="end, in the same forms")
@click.option("--allow-gaps", is_flag=True, help="export what exists even if the recording has gaps")
@click.option("--output", "root", help="storage root [PATH_FOR_VIDEO]")
@click.option("--config", "config_path", help="settings file")
@click.option("--progress/--no-progress", default=None, help="progress on stderr (default: on a terminal)")
@click.option("--json", "as_json", is_flag=True, help="print the export's sidecar as JSON")
def export_cmd(camera, outfile, from_, to, allow_gaps, root, config_path, progress, as_json):
    """Join CAMERA's continuous segments from --from to --to into OUTFILE, losslessly.

    Stream copy, no re-encode: the cut starts at the keyframe at or before --from. A sidecar
    OUTFILE.json lists the segments included and any gaps.
    """
    from nvr_cli.storage.export import export, parse_time

    s = load_settings(config_path, {"PATH_FOR_VIDEO": root} if root else {}).settings
    setup_logging(s, quiet=True)
    start, end = parse_time(from_), parse_time(to)
    bar = _Progress(Path(outfile).name, int((end - start) * 10)) if (
        progress or (progress is None and sys.stderr.isatty())) else None
    ffmpeg = find_ffmpeg(s.FFMPEG_PATH)
    info, _ = export(s.PATH_FOR_VIDEO, camera, start, end, Path(outfile), ffmpeg=ffmpeg, allow_gaps=allow_gaps,
                  local_time=s.LOCAL_TIME, progress=(lambda t: bar.update(int(t * 10) - bar.done)) if bar else None)
    if bar:
        bar.close()
    if as_json:
        click.echo(json.dumps(info))
    else:
        click.echo(f"{outfile}: {info['duration_seconds']:.1f} s from {len(info['segments'])} segment(s)"
                   + (f", {len(info['gaps'])} gap(s) skipped" if info["gaps"] else ""))


@cli.command()
@click.option("--dry-run", is_flag=True, help="only say what would be deleted")
@click.option("--output", "root", help="storage root [PATH_FOR_VIDEO]")
@click.option("--config", "config_path", help="settings file")
@click.option("--json", "as_json", is_flag=True, help="one JSON line per file")
def prune(dry_run, root, config_path, as_json):
    """Apply the retention limits (RETENTION_*) to the storage root now: for cron."""
    from nvr_cli.storage.retention import prune as do_prune

    s = load_settings(config_path, {"PATH_FOR_VIDEO": root} if root else {}).settings
    setup_logging(s, quiet=True)
    done = do_prune(Path(s.PATH_FOR_VIDEO), s, dry_run=dry_run)
    for item, reason in done:
        if as_json:
            click.echo(json.dumps({"file": str(item.path), "kind": item.kind, "bytes": item.size,
                                   "reason": reason, "deleted": not dry_run}))
        else:
            click.echo(f"{'would delete' if dry_run else 'deleted'} {item.path} ({reason})")
    if not as_json:
        click.echo(f"{len(done)} file(s) {'would be ' if dry_run else ''}deleted, "
                   f"{sum(i.size for i, _ in done) / 2**20:.1f} MB")


@cli.group("config")
def config_group():
    """Show or check the effective settings."""


@config_group.command("show")
@click.option("--config", "config_path", help="settings file")
@click.option("--json", "as_json", is_flag=True, help="print as JSON")
def config_show(config_path, as_json):
    """Print every setting, its value and where the value came from."""
    loaded = load_settings(config_path)
    rows = [(name, getattr(loaded.settings, name), loaded.origins[name]) for name in FIELDS]
    if as_json:
        # CAMERAS holds URLs too: the whole text is redacted, not only string values
        click.echo(redact(json.dumps({n: {"value": as_plain(v), "from": o} for n, v, o in rows}, indent=2)))
        return
    width = max(len(n) for n in FIELDS)
    for name, value, origin in rows:
        click.echo(redact(f"{name:<{width}} = {as_plain(value)!r:<40} # {origin}"))
    for w in loaded.warnings:
        click.echo(f"# warning: {w}")


@config_group.command("check")
@click.option("--config", "config_path", help="settings file")
def config_check(config_path):
    """Validate the settings only: exit 0 if they are valid, 2 with one line if not."""
    loaded = load_settings(config_path)
    changed = sum(1 for o in loaded.origins.values() if not o.startswith("default"))
    for w in loaded.warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"ok: {len(FIELDS)} settings valid, {changed} set by config files")


def main():
    cli(prog_name="nvr-cli")
