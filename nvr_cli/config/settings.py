"""Typed, validated settings: defaults, then config.py, then the machine's overrides, then options.

Config files are plain Python (the format users of the original recorder already have). They
are read once here, at the edge, into a frozen ``Settings``; the rest of the package never
looks at a config file or a raw dict.
"""
from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import runpy
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from nvr_cli.core.errors import ConfigError, unreadable_file
from nvr_cli.core.geometry import Polygon, parse_polygon

ENV_HOME = "NVR_CLI_HOME"
MACHINE_FILE = "machine_specific_configuration.py"

# Names from the original recorder's config that no longer do anything: accepted with a warning
# so an old machine_specific_configuration.py keeps working.
LEGACY_NAMES = {"FOURCC_CODEC", "OUTPUT_FILES_EXTENSION", "OUTPUT_FRAME_RATE", "APP_ROOT"}


# --- checkers: each takes a raw value and returns the typed one, or raises ValueError ---------

def _number(kind=float, lo=None, hi=None):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"expected a number, got {type(v).__name__} {v!r}")
        if kind is int and float(v) != int(v):
            raise ValueError(f"expected a whole number, got {v!r}")
        v = kind(v)
        if lo is not None and v < lo:
            raise ValueError(f"must be at least {lo}, got {v}")
        if hi is not None and v > hi:
            raise ValueError(f"must be at most {hi}, got {v}")
        return v
    check.kind = kind
    return check


def _flag(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return v.lower() in ("1", "true", "yes", "on")
    raise ValueError(f"expected True or False, got {v!r}")


def _flag_or_auto(v):
    if v is None or (isinstance(v, str) and v.lower() == "auto"):
        return None
    try:
        return _flag(v)
    except ValueError:
        raise ValueError(f"expected True, False or None (automatic), got {v!r}") from None


def _text(*, allow_none=False, choices=None):
    def check(v):
        if v is None and allow_none:
            return None
        if not isinstance(v, str) or not v:
            raise ValueError(f"expected a non-empty string, got {v!r}")
        if choices and v not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {v!r}")
        return v
    return check


def _odd_blur(v):
    v = _number(int, 1, 101)(v)
    if v % 2 == 0:
        raise ValueError(f"must be odd (a Gaussian kernel size), got {v}")
    return v


_odd_blur.kind = int


def _camera_name(v):
    v = _text()(v)
    if any(c in v for c in "/\\\0") or v in (".", ".."):
        raise ValueError(f"must be usable as a folder name, got {v!r}")
    return v


def _source(v):
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int)) or (isinstance(v, str) and not v.strip()):
        raise ValueError(f"expected a URL, a file path or a camera index, got {v!r}")
    return str(v)


def _scale(v):
    if v is None:
        return None
    if (isinstance(v, (tuple, list)) and len(v) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) and 16 <= x <= 8192 for x in v)):
        return (int(v[0]), int(v[1]))
    raise ValueError(f"expected None or (width, height) in pixels, got {v!r}")


def _polygons(v):
    if v is None:
        return ()
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)):
        raise ValueError(f"expected a list of polygons, got {v!r}")
    return tuple(p if isinstance(p, Polygon) else parse_polygon(p) for p in v)


def _subfolder_func(v):
    if v is None or callable(v):
        return v
    raise ValueError(f"expected a function subFolderNameGeneratorFunc(dts) or None, got {v!r}")


def _labels(v):
    if isinstance(v, str):
        v = [x.strip() for x in v.split(",") if x.strip()]
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) and x for x in v):
        raise ValueError(f"expected a list of label names, e.g. ['person', 'car'], got {v!r}")
    return tuple(v)


_OVERRIDE_KEYS = {"min_score", "min_area", "max_area"}


def _label_overrides(v):
    if v is None:
        return types.MappingProxyType({})
    if not isinstance(v, (dict, types.MappingProxyType)):
        raise ValueError(f"expected a dict like {{'car': {{'min_score': 0.6}}}}, got {v!r}")
    out = {}
    for label, conf in v.items():
        if not isinstance(label, str) or not isinstance(conf, dict):
            raise ValueError(f"expected label -> {{'min_score': ..}}, got {label!r}: {conf!r}")
        unknown = set(conf) - _OVERRIDE_KEYS
        if unknown:
            raise ValueError(f"{label}: unknown key {sorted(unknown)[0]!r} (use {', '.join(sorted(_OVERRIDE_KEYS))})")
        out[label] = {k: _number(float, 0, 1)(x) for k, x in conf.items()}
    return types.MappingProxyType(out)  # settings are frozen, all the way down


def _command(v):
    if v is None:
        return None
    if isinstance(v, str):
        raise ValueError(f"expected an argument list such as ['/usr/local/bin/notify', '--urgent'] "
                         f"(it is never run through a shell), got the string {v!r}")
    if not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, str) for x in v) or not v[0]:
        raise ValueError(f"expected None or a non-empty list of strings, got {v!r}")
    return tuple(v)


def _cameras(v):
    """name -> {setting: value}; the values are checked when each camera's settings are made."""
    if v is None:
        return types.MappingProxyType({})
    if not isinstance(v, (dict, types.MappingProxyType)):
        raise ValueError(f"expected a dict like {{'front': {{'cam': 'rtsp://...'}}}}, got {v!r}")
    out = {}
    for name, conf in v.items():
        try:
            _camera_name(name)
        except ValueError as e:
            raise ValueError(f"camera name {name!r}: {e}") from None
        if not isinstance(conf, (dict, types.MappingProxyType)):
            raise ValueError(f"{name!r}: expected a dict of settings, got {conf!r}")
        for key in conf:
            if key in ("CAMERAS", "CAMERA_NAME"):
                raise ValueError(f"{name!r}: {key} cannot be set per camera (the key names the camera)")
            if key not in FIELDS:
                raise ValueError(f"{name!r}: {_unknown(key, 'camera').args[0].split(': ', 1)[1]}")
        out[name] = types.MappingProxyType(dict(conf))
    return types.MappingProxyType(out)


def _log_level(v):
    if isinstance(v, int) and not isinstance(v, bool) and v in (10, 20, 30, 40, 50):
        return logging.getLevelName(v)
    if isinstance(v, str) and v.upper() in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        return v.upper()
    raise ValueError(f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {v!r}")


def _opt_path(v):
    if v is None:
        return None
    return _text()(v)


def _setting(default, check, doc, option=None):
    meta = {"check": check, "doc": doc, "option": option}
    if isinstance(default, types.MappingProxyType):  # unhashable: dataclasses want a factory
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


def default_of(f):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


@dataclass(frozen=True)
class Settings:
    """Every knob of the recorder, validated. ``config.py`` documents the same names."""

    # source
    cam: Optional[str] = _setting(None, _source, "camera: RTSP/HTTP URL, USB index, /dev/videoN or a file", "SOURCE")
    CAMERA_NAME: str = _setting("camera", _camera_name, "camera name: folder and file prefix", "--name")
    RTSP_TRANSPORT: str = _setting("tcp", _text(choices=("tcp", "udp")), "RTSP transport", "--rtsp-transport")
    OPEN_TIMEOUT_SECS: float = _setting(10.0, _number(float, 0.5, 300), "give up opening a source after this", "--open-timeout")
    READ_TIMEOUT_SECS: float = _setting(10.0, _number(float, 0.5, 300), "a live source silent this long is lost", "--read-timeout")
    RECONNECT_DELAY_SECS: float = _setting(1.0, _number(float, 0.1, 600), "first wait before reconnecting")
    RECONNECT_MAX_DELAY_SECS: float = _setting(3.0, _number(float, 0.1, 3600), "longest wait between reconnects")
    RECONNECT_ATTEMPTS: int = _setting(0, _number(int, 0), "give up after this many failed opens in a row (0: never)", "--retries")
    # motion
    scaleFrameTo: Optional[tuple] = _setting(None, _scale, "(width, height) to analyse at; None: MOTION_FRAME_WIDTH keeping aspect", None)
    MOTION_FRAME_WIDTH: int = _setting(500, _number(int, 32, 4096), "width analysed when scaleFrameTo is None", "--frame-width")
    MOTION_BLUR_SIZE: int = _setting(21, _odd_blur, "Gaussian blur kernel (odd)", "--blur")
    MOTION_PIXEL_THRESHOLD: int = _setting(25, _number(int, 1, 255), "grey-level change that marks a pixel changed", "--threshold")
    MOTION_DILATE_ITERATIONS: int = _setting(8, _number(int, 0, 50), "dilate iterations (3x3)", "--dilate")
    MOTION_ERODE_ITERATIONS: int = _setting(4, _number(int, 0, 50), "erode iterations (3x3)", "--erode")
    MOTION_MIN_SCORE: float = _setting(0.003, _number(float, 0, 1), "changed-pixel fraction that counts as motion", "--min-score")
    MOTION_MIN_CONTOUR_AREA: int = _setting(150, _number(int, 0), "smallest contour kept, in analysed pixels", "--min-area")
    MOTION_TRIGGER_FRAMES: int = _setting(3, _number(int, 1, 100), "consecutive motion frames that start an event", "--trigger-frames")
    LIGHTING_REJECT: bool = _setting(True, _flag, "treat whole-frame changes as lighting, not motion", "--lighting-reject/--no-lighting-reject")
    LIGHTING_MAX_CHANGED_FRACTION: float = _setting(0.5, _number(float, 0.01, 1), "changed fraction above which it is lighting")
    LIGHTING_BRIGHTNESS_JUMP: float = _setting(8.0, _number(float, 0.5, 255), "mean grey-level jump between frames that is lighting")
    MASKS: tuple = _setting((), _polygons, "exclusion polygons in source pixels", "--mask")
    REGIONS: tuple = _setting((), _polygons, "include-only polygons in source pixels", "--region")
    MAX_ANALYSIS_FPS: float = _setting(15.0, _number(float, 0, 240), "analyse at most this many frames a second when no clip is re-encoded from them (0: all)", "--max-analysis-fps")
    INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS: float = _setting(5.0, _number(float, 0, 600), "no motion detection this long after each (re)connect", "--initial-wait")
    # events
    MINIMAL_MOTION_DURATION: float = _setting(10.0, _number(float, 0, 3600), "each motion keeps the event going this long", "--motion-duration")
    PRE_ALARM_RECORDING_SECONDS: float = _setting(5.0, _number(float, 0, 120), "seconds before the trigger included in the clip", "--pre-alarm")
    PRE_ALARM_MAX_MB: float = _setting(512.0, _number(float, 1, 65536), "memory cap of the pre-alarm buffer", "--pre-alarm-max-mb")
    POST_CAPTURE_SECONDS: float = _setting(2.0, _number(float, 0, 3600), "seconds recorded after the motion window closes", "--post-capture")
    MIN_EVENT_SECONDS: float = _setting(0.0, _number(float, 0, 3600), "drop events whose motion lasted less than this", "--min-event")
    MAX_CLIP_SECONDS: float = _setting(600.0, _number(float, 1, 86400), "split longer events into consecutive clips", "--max-clip")
    # object confirmation (TFLite)
    OBJECT_MODEL: Optional[str] = _setting(None, _opt_path, "TFLite detection model (SSD or YOLO style); None: motion only", "--model")
    OBJECT_LABELS: Optional[str] = _setting(None, _opt_path, "labels file of the model", "--labels")
    OBJECT_CONFIRM: str = _setting("tag", _text(choices=("off", "tag", "require")), "off | tag: list what was seen | require: keep only events that showed a wanted object", "--confirm")
    OBJECT_LABELS_OF_INTEREST: tuple = _setting(("person",), _labels, "labels that count, e.g. ['person', 'car']; empty: all", "--objects")
    OBJECT_MIN_SCORE: float = _setting(0.5, _number(float, 0, 1), "minimum detection score", "--object-min-score")
    OBJECT_MIN_AREA: float = _setting(0.0, _number(float, 0, 1), "smallest box, as a fraction of the picture")
    OBJECT_MAX_AREA: float = _setting(1.0, _number(float, 0, 1), "largest box, as a fraction of the picture")
    OBJECT_LABEL_OVERRIDES: dict = _setting(types.MappingProxyType({}), _label_overrides, "per label: {'car': {'min_score': 0.6, 'min_area': 0.01}}")
    OBJECT_MAX_RATE: float = _setting(4.0, _number(float, 0.01, 100), "at most this many detections a second", "--object-rate")
    DETECT_EVERY_SECONDS: float = _setting(0.0, _number(float, 0, 3600), "also detect this often without motion (a still person); 0: only on motion", "--detect-every")
    OBJECT_THREADS: int = _setting(2, _number(int, 1, 64), "TFLite threads")
    OBJECT_INPUT_COLOR: str = _setting("auto", _text(choices=("auto", "rgb", "bgr")), "channel order the model wants; auto: BGR for YOLO, RGB for SSD")
    OBJECT_LETTERBOX: str = _setting("auto", _text(choices=("auto", "on", "off")), "keep the aspect with grey bars; auto: on for YOLO")
    OBJECT_INPUT_SCALE: str = _setting("auto", _text(choices=("auto", "0-255", "0-1", "-1-1")), "float inputs: value range; auto: 0-255 YOLO, -1-1 SSD")
    # QR codes
    QR_ENABLED: bool = _setting(False, _flag, "look for QR codes in analysed frames", "--qr/--no-qr")
    QR_EVERY_SECONDS: float = _setting(0.5, _number(float, 0, 3600), "scan for QR codes at most this often")
    QR_AREA: str = _setting("frame", _text(choices=("frame", "motion")), "scan the full frame, or only the motion region")
    QR_REPEAT_WINDOW_SECS: float = _setting(60.0, _number(float, 0, 86400), "the same payload again within this is the same sighting")
    QR_STARTS_EVENT: bool = _setting(False, _flag, "a new QR code starts an event (kind 'qr') even without motion")
    # continuous recording (stream copy)
    CONTINUOUS_RECORDING: bool = _setting(False, _flag, "also record everything, stream-copied into segments", "--continuous/--events-only")
    SEGMENT_SECONDS: float = _setting(60.0, _number(float, 2, 3600), "length of continuous segments", "--segment-seconds")
    MOTION_DETECTION: bool = _setting(True, _flag, "decode and analyse for events (off: continuous only, no decoding)", "--motion/--no-motion")
    LOSSLESS_EVENT_CLIPS: bool = _setting(True, _flag, "with continuous recording, also cut each event from the segments (no re-encode)", "--lossless-events/--no-lossless-events")
    EVENT_REENCODE: Optional[bool] = _setting(None, _flag_or_auto, "clips re-encoded from the decoded frames, or (off) the camera's own packets; default: packets for RTSP cameras", "--reencode/--no-reencode")
    DETECT_SOURCE: Optional[str] = _setting(None, _source, "stream analysed for motion, e.g. a camera's low-resolution sub-stream; None: cam", "--detect-source")
    RECORD_SOURCE: Optional[str] = _setting(None, _source, "stream recorded continuously, e.g. the main stream; None: cam", "--record-source")
    # retention
    RETENTION_SEGMENT_DAYS: float = _setting(7.0, _number(float, 0, 36500), "delete continuous segments older than this; 0: keep")
    RETENTION_EVENT_DAYS: float = _setting(30.0, _number(float, 0, 36500), "delete event clips older than this; 0: keep")
    RETENTION_MAX_GB_PER_CAMERA: float = _setting(0.0, _number(float, 0), "cap on each camera's footage; 0: none")
    RETENTION_MAX_GB_TOTAL: float = _setting(0.0, _number(float, 0), "cap on the whole storage root; 0: none")
    RETENTION_MIN_FREE_GB: float = _setting(1.0, _number(float, 0), "keep at least this much free on the disk; 0: no floor")
    RETENTION_CHECK_SECONDS: float = _setting(300.0, _number(float, 5, 86400), "how often record runs the reaper")
    # output
    PATH_FOR_VIDEO: str = _setting("./video", _text(), "storage root", "--output")
    subFolderNameGeneratorFunc: Optional[Callable] = _setting(None, _subfolder_func, "subFolderNameGeneratorFunc(dts) -> subfolder; dts is UTC")
    LOCAL_TIME: bool = _setting(True, _flag, "folders and file names in local time (False: UTC)", "--local-time/--utc")
    VIDEO_CRF: int = _setting(23, _number(int, 0, 51), "H.264 quality (lower is better)", "--crf")
    VIDEO_PRESET: str = _setting("veryfast", _text(choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")), "x264 preset", "--preset")
    FFMPEG_PATH: Optional[str] = _setting(None, _opt_path, "ffmpeg to use; None: system ffmpeg, else imageio-ffmpeg's")
    # logging (names of the original recorder)
    LOG_FILE_PATH: Optional[str] = _setting(None, _opt_path, "rotating log file; None: no file", "--log-file")
    APP_LOG_LEVEL: str = _setting("INFO", _log_level, "log level", "--log-level")
    MAIN_LOG_FILE_MAX_SIZE: int = _setting(32 * 1024 * 1024, _number(int, 1024), "rotate the log file at this many bytes")
    LOG_BACKUPS_COUNT: int = _setting(20, _number(int, 0, 1000), "rotated log files kept")
    LOG_FORMAT: str = _setting("%(asctime)s - %(levelname)s - %(message)s", _text(), "logging format string")
    LOG_TO_CONSOLE: bool = _setting(True, _flag, "copy log lines to stderr")
    # many cameras: `nvr-cli run`
    CAMERAS: dict = _setting(types.MappingProxyType({}), _cameras, "name -> {setting: value} for each camera `run` looks after")
    RESTART_DELAY_SECS: float = _setting(1.0, _number(float, 0.1, 600), "run: first wait before restarting a dead worker; doubles")
    RESTART_MAX_DELAY_SECS: float = _setting(60.0, _number(float, 0.1, 3600), "run: longest wait before restarting a worker")
    RESTARTS_PER_HOUR: int = _setting(30, _number(int, 1, 10000), "run: restarts of one camera per hour before it waits (logged as CRITICAL)")
    STOP_TIMEOUT_SECS: float = _setting(60.0, _number(float, 1, 3600), "run: a worker still running this long after SIGTERM is killed")
    # hooks: argument lists run without a shell, in the background
    ON_EVENT_START: Optional[tuple] = _setting(None, _command, "command run when an event starts, e.g. ['/usr/local/bin/notify']")
    ON_EVENT_END: Optional[tuple] = _setting(None, _command, "command run when an event's clip is finished")
    ON_CAMERA_LOST: Optional[tuple] = _setting(None, _command, "command run when the camera is lost or cannot be opened")
    ON_CAMERA_FOUND: Optional[tuple] = _setting(None, _command, "command run when a lost camera is back")
    ON_QR_CODE: Optional[tuple] = _setting(None, _command, "command run for each new QR code seen")
    HOOK_TIMEOUT_SECS: float = _setting(30.0, _number(float, 0.1, 3600), "a hook still running after this is killed")
    HOOK_MAX_RUNNING: int = _setting(4, _number(int, 1, 100), "hooks running at once per camera; more are skipped (logged)")
    # status
    STATUS_DIR: Optional[str] = _setting(None, _opt_path, "where each camera's status file goes; None: PATH_FOR_VIDEO/.status")
    STATUS_INTERVAL_SECS: float = _setting(2.0, _number(float, 0.2, 600), "how often a camera rewrites its status file")
    STATUS_STALE_SECS: float = _setting(30.0, _number(float, 1, 86400), "status: a camera not heard from (or without frames) this long is stale")

    def __post_init__(self):
        """However they are made (here, ``replace()``, a test), settings are valid and typed."""
        for f in dataclasses.fields(self):
            try:
                typed = f.metadata["check"](getattr(self, f.name))
            except ValueError as e:
                raise ConfigError(f"{f.name}: {e}") from None
            object.__setattr__(self, f.name, typed)

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)


FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def as_plain(value):
    """A setting's value as JSON can hold it: polygons as their "x,y x,y ..." text."""
    if isinstance(value, Polygon):
        return str(value)
    if isinstance(value, (types.MappingProxyType, dict)):
        return {k: as_plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [as_plain(v) for v in value]
    if callable(value):
        return getattr(value, "__name__", repr(value))
    return value
DEFAULT_SOURCE = "default"


@dataclass
class LoadedSettings:
    """The effective settings and, for each name, where its value came from."""

    settings: Settings
    origins: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    cameras: dict = field(default_factory=dict)  # name -> Settings, for each of CAMERAS
    files: list = field(default_factory=list)  # the config files read, in order


def home_dir() -> Path:
    """Where config.py and machine_specific_configuration.py live."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2]


def read_config_file(path: Path) -> dict:
    """Run a Python config file and return its public data names."""
    path = Path(path)
    problem = unreadable_file(path, "config file", "config file not found")
    if problem:
        raise ConfigError(problem)
    try:
        names = runpy.run_path(str(path), run_name="nvr_cli_config")
    except SyntaxError as e:
        raise ConfigError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:  # noqa: BLE001 - any failure in user code is a config error
        raise ConfigError(f"{path}: error while reading: {type(e).__name__}: {e}") from None
    return {k: v for k, v in names.items() if not k.startswith("_")}


def _is_helper(value: Any) -> bool:
    """Functions, classes and imported modules in a config file are helpers, not settings."""
    return isinstance(value, (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType))


def _misspelt_function(name: str, value: Any) -> bool:
    """``def subFolderNameGeneratorFun(dts)``: a function named almost like a setting is a typo, not a helper."""
    return isinstance(value, types.FunctionType) and bool(difflib.get_close_matches(name, FIELDS, n=1, cutoff=0.85))


def _unknown(name: str, origin: str) -> ConfigError:
    guess = difflib.get_close_matches(name, FIELDS, n=1, cutoff=0.6)
    if not guess:
        lower = {k.lower(): k for k in FIELDS}
        guess = difflib.get_close_matches(name.lower(), lower, n=1, cutoff=0.6)
        guess = [lower[g] for g in guess]
    hint = f"; did you mean {guess[0]}?" if guess else ""
    return ConfigError(f"{origin}: unknown setting {name!r}{hint}")


def load_settings(config_path: Optional[str] = None, overrides: Optional[dict] = None) -> LoadedSettings:
    """Layer defaults < config.py < machine file (or ``config_path``) < ``overrides``; validate once."""
    raw = {name: default_of(f) for name, f in FIELDS.items()}
    origins = {name: DEFAULT_SOURCE for name in FIELDS}
    warnings = []
    home = home_dir()
    layers = []
    if (home / "config.py").is_file():
        layers.append(home / "config.py")
    if config_path:
        layers.append(Path(config_path))
    elif (home / MACHINE_FILE).is_file():
        layers.append(home / MACHINE_FILE)

    for path in layers:
        label = f"{DEFAULT_SOURCE} ({path})" if path.name == "config.py" and path.parent == home else str(path)
        for name, value in read_config_file(path).items():
            if name in FIELDS:
                raw[name], origins[name] = value, label
            elif name in LEGACY_NAMES:
                warnings.append(f"{path}: {name} is no longer used (clips are H.264 MP4); ignored")
            elif (not _is_helper(value) and name not in ("os", "logging")) or _misspelt_function(name, value):
                raise _unknown(name, str(path))
    for name in overrides or {}:
        if name not in FIELDS:
            raise _unknown(name, "command line")
    files_raw, files_origins = dict(raw), dict(origins)
    for name, value in (overrides or {}).items():
        raw[name], origins[name] = value, "command line"
    settings = _typed(raw, origins)
    cameras = {}
    # each camera: the files' settings, then its own entry, then the command line
    for cam, conf in settings.CAMERAS.items():
        cam_raw, cam_origins = dict(files_raw), dict(files_origins)
        where = f"{files_origins['CAMERAS']}: CAMERAS[{cam!r}]"
        for name, value in {**conf, "CAMERA_NAME": cam}.items():
            cam_raw[name], cam_origins[name] = value, where
        for name, value in (overrides or {}).items():
            if name != "CAMERA_NAME":
                cam_raw[name], cam_origins[name] = value, "command line"
        cameras[cam] = _typed(cam_raw, cam_origins)
    return LoadedSettings(settings, origins, warnings, cameras, layers)


def _typed(raw: dict, origins: dict) -> Settings:
    typed = {}
    for name, f in FIELDS.items():
        try:
            typed[name] = f.metadata["check"](raw[name])
        except ValueError as e:
            raise ConfigError(f"{origins[name]}: {name}: {e}") from None
    return Settings(**typed)


def camera_settings(loaded: LoadedSettings, name: str) -> Settings:
    """One camera of CAMERAS, or a one-line error naming the ones there are."""
    if name in loaded.cameras:
        return loaded.cameras[name]
    if not loaded.cameras:
        raise ConfigError(f"no camera {name!r}: CAMERAS is empty in the config ({_files(loaded)})")
    guess = difflib.get_close_matches(name, loaded.cameras, n=1)
    hint = f"did you mean {guess[0]!r}? " if guess else ""
    raise ConfigError(f"no camera {name!r} in CAMERAS: {hint}(cameras: {', '.join(loaded.cameras)})")


def _files(loaded: LoadedSettings) -> str:
    return ", ".join(str(p) for p in loaded.files) or "no config file was found"
