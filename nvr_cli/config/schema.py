"""The settings' schema: every name, its check, its help line and option, grouped into the frozen
sections the pipeline's stages receive (``MotionDetector(settings.motion)``, as Frigate hands each stage
its own typed slice of config).

Defaults are not written here: they are read from ``defaults.py`` beside this file, the documented
defaults users read (the project root's ``config.py`` is that file), so there is one copy of each.
Users keep writing the flat names they know (``PRE_ALARM_RECORDING_SECONDS``, ``scaleFrameTo``); a
``Settings`` reads them through to their section.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import types
from dataclasses import dataclass, field
from typing import Callable, Optional

from nvr_cli.config import defaults as _defaults
from nvr_cli.core.errors import ConfigError
from nvr_cli.core.geometry import Polygon, parse_polygon

DEFAULTS = {k: v for k, v in vars(_defaults).items() if not k.startswith("_")}


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
    if (
        isinstance(v, (tuple, list))
        and len(v) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) and 16 <= x <= 8192 for x in v)
    ):
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
        # from the command line: "person,car", or the config file's form, "['person', 'car']"
        v = [x.strip().strip("'\"") for x in v.strip().strip("[]").split(",") if x.strip()]
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) and x for x in v):
        raise ValueError(f"expected a list of label names, e.g. ['person', 'car'], got {v!r}")
    return tuple(v)


_OVERRIDE_KEYS = {"min_score", "min_area", "max_area", "confirm_score"}


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
            raise ValueError(
                f"{label}: unknown key {sorted(unknown)[0]!r} (use {', '.join(sorted(_OVERRIDE_KEYS))})"
            )
        out[label] = {k: _number(float, 0, 1)(x) for k, x in conf.items()}
    return types.MappingProxyType(out)  # settings are frozen, all the way down


def _command(v):
    if v is None:
        return None
    if isinstance(v, str):
        raise ValueError(
            f"expected an argument list such as ['/usr/local/bin/notify', '--urgent'] "
            f"(it is never run through a shell), got the string {v!r}"
        )
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
            if key.startswith("MQTT_"):
                raise ValueError(f"{name!r}: {key} cannot be set per camera (one broker serves all cameras)")
            if key not in FIELDS:
                raise ValueError(f"{name!r}: {unknown_setting(key, 'camera').args[0].split(': ', 1)[1]}")
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


def _setting(check, doc: str, option: Optional[str] = None, *, secret: bool = False):
    """A setting of a section: its default is filled in from defaults.py by ``_section``; a ``secret``
    one is left out of the section's repr (a traceback or debug line never shows it)."""
    return field(metadata={"check": check, "doc": doc, "option": option}, repr=not secret)


def default_of(f: dataclasses.Field) -> object:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


class _Section:
    def __post_init__(self):
        """However a section is made (a config file, ``replace()``, a test), its values are valid and
        typed.
        """
        for f in dataclasses.fields(self):
            try:
                typed = f.metadata["check"](getattr(self, f.name))
            except ValueError as e:
                raise ConfigError(f"{f.name}: {e}") from None
            object.__setattr__(self, f.name, typed)


def _section(cls):
    """A frozen dataclass whose defaults are the values of defaults.py, checked once here."""
    for name, f in list(vars(cls).items()):
        if isinstance(f, dataclasses.Field):
            if name not in DEFAULTS:
                raise RuntimeError(f"{name} has no default in nvr_cli/config/defaults.py")
            typed = f.metadata["check"](DEFAULTS[name])
            f.default_factory = lambda v=typed: v  # typed values are immutable: one can be shared
    return dataclass(frozen=True)(cls)


@_section
class SourceSettings(_Section):
    """Where the pictures come from and how a lost camera is reopened."""

    cam: Optional[str] = _setting(
        _source, "camera: RTSP/HTTP URL, USB index, /dev/videoN or a file", "SOURCE"
    )
    CAMERA_NAME: str = _setting(_camera_name, "camera name: folder and file prefix", "--name")
    RTSP_TRANSPORT: str = _setting(_text(choices=("tcp", "udp")), "RTSP transport", "--rtsp-transport")
    OPEN_TIMEOUT_SECS: float = _setting(
        _number(float, 0.5, 300), "give up opening a source after this", "--open-timeout"
    )
    READ_TIMEOUT_SECS: float = _setting(
        _number(float, 0.5, 300), "a live source silent this long is lost", "--read-timeout"
    )
    RECONNECT_DELAY_SECS: float = _setting(_number(float, 0.1, 600), "first wait before reconnecting")
    RECONNECT_MAX_DELAY_SECS: float = _setting(_number(float, 0.1, 3600), "longest wait between reconnects")
    RECONNECT_ATTEMPTS: int = _setting(
        _number(int, 0), "give up after this many failed opens in a row (0: never)", "--retries"
    )
    DETECT_SOURCE: Optional[str] = _setting(
        _source,
        "stream analysed for motion, e.g. a camera's low-resolution sub-stream; None: cam",
        "--detect-source",
    )
    RECORD_SOURCE: Optional[str] = _setting(
        _source, "stream recorded continuously, e.g. the main stream; None: cam", "--record-source"
    )


@_section
class MotionSettings(_Section):
    """How a frame is scored for motion (grey, blur, difference, dilate, erode), what is lighting, where to
    look.
    """

    scaleFrameTo: Optional[tuple] = _setting(
        _scale, "(width, height) to analyse at; None: MOTION_FRAME_WIDTH keeping aspect", None
    )
    MOTION_FRAME_WIDTH: int = _setting(
        _number(int, 32, 4096), "width analysed when scaleFrameTo is None", "--frame-width"
    )
    MOTION_BLUR_SIZE: int = _setting(_odd_blur, "Gaussian blur kernel (odd)", "--blur")
    MOTION_PIXEL_THRESHOLD: int = _setting(
        _number(int, 1, 255), "grey-level change that marks a pixel changed", "--threshold"
    )
    MOTION_DILATE_ITERATIONS: int = _setting(_number(int, 0, 50), "dilate iterations (3x3)", "--dilate")
    MOTION_ERODE_ITERATIONS: int = _setting(_number(int, 0, 50), "erode iterations (3x3)", "--erode")
    MOTION_MIN_SCORE: float = _setting(
        _number(float, 0, 1), "changed-pixel fraction that counts as motion", "--min-score"
    )
    MOTION_MIN_CONTOUR_AREA: int = _setting(
        _number(int, 0), "smallest contour kept, in analysed pixels", "--min-area"
    )
    LIGHTING_REJECT: bool = _setting(
        _flag, "treat whole-frame changes as lighting, not motion", "--lighting-reject/--no-lighting-reject"
    )
    LIGHTING_MAX_CHANGED_FRACTION: float = _setting(
        _number(float, 0.01, 1), "changed fraction above which it is lighting"
    )
    LIGHTING_BRIGHTNESS_JUMP: float = _setting(
        _number(float, 0.5, 255), "mean grey-level jump between frames that is lighting"
    )
    MASKS: tuple = _setting(_polygons, "exclusion polygons in source pixels", "--mask")
    REGIONS: tuple = _setting(_polygons, "include-only polygons in source pixels", "--region")
    MAX_ANALYSIS_FPS: float = _setting(
        _number(float, 0, 240),
        "analyse at most this many frames a second when no clip is re-encoded from them (0: all)",
        "--max-analysis-fps",
    )
    MOTION_COMPARE_SECONDS: float = _setting(
        _number(float, 0, 5),
        "compare each frame with the one this long before (0: the previous frame)",
        "--compare-seconds",
    )


@_section
class TrackSettings(_Section):
    """How motion boxes are followed as tracks, and which tracks count as motion."""

    MOTION_TRACKING: bool = _setting(
        _flag, "judge motion by tracks: only what persists and moves counts", "--tracking/--no-tracking"
    )
    TRACK_MIN_SECONDS: float = _setting(
        _number(float, 0, 60), "a track counts once it has lived this long", "--track-min-seconds"
    )
    TRACK_STEADY_SECONDS: float = _setting(
        _number(float, 0, 60),
        "... or this long when seen in TRACK_STEADY_HIT_RATE of its frames (0: never sooner)",
        "--track-steady-seconds",
    )
    TRACK_STEADY_HIT_RATE: float = _setting(
        _number(float, 0, 1),
        "the share of its frames a track must be seen in to count after TRACK_STEADY_SECONDS",
        "--track-steady-hit-rate",
    )
    TRACK_MIN_TRAVEL: float = _setting(
        _number(float, 0, 100),
        "... and its centre has moved this many times its own size from where it began",
        "--track-min-travel",
    )
    TRACK_MIN_HIT_RATE: float = _setting(
        _number(float, 0, 1),
        "... and it was seen in this share of the frames since it began",
        "--track-min-hit-rate",
    )
    TRACK_MAX_GAP_SECONDS: float = _setting(
        _number(float, 0, 60), "a track not seen for this long ends", "--track-max-gap"
    )
    TRACK_MAX_STEP: float = _setting(
        _number(float, 0.1, 100),
        "a box joins a track within this many times its size of the track's last box",
        "--track-max-step",
    )


@_section
class EventSettings(_Section):
    """When motion starts, prolongs and ends an event, and what its clip holds before and after."""

    MOTION_TRIGGER_FRAMES: int = _setting(
        _number(int, 1, 100), "consecutive motion frames that start an event", "--trigger-frames"
    )
    INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS: float = _setting(
        _number(float, 0, 600), "no motion detection this long after each (re)connect", "--initial-wait"
    )
    MINIMAL_MOTION_DURATION: float = _setting(
        _number(float, 0, 3600), "each motion keeps the event going this long", "--motion-duration"
    )
    PRE_ALARM_RECORDING_SECONDS: float = _setting(
        _number(float, 0, 120), "seconds before the trigger included in the clip", "--pre-alarm"
    )
    PRE_ALARM_MAX_MB: float = _setting(
        _number(float, 1, 65536), "memory cap of the pre-alarm buffer", "--pre-alarm-max-mb"
    )
    POST_CAPTURE_SECONDS: float = _setting(
        _number(float, 0, 3600), "seconds recorded after the motion window closes", "--post-capture"
    )
    MIN_EVENT_SECONDS: float = _setting(
        _number(float, 0, 3600), "drop events whose motion lasted less than this", "--min-event"
    )
    MAX_CLIP_SECONDS: float = _setting(
        _number(float, 1, 86400), "split longer events into consecutive clips", "--max-clip"
    )


@_section
class ObjectSettings(_Section):
    """The TFLite detector that confirms events, and what counts as a wanted object."""

    OBJECT_MODEL: Optional[str] = _setting(
        _opt_path, "TFLite detection model (SSD or YOLO style); None: motion only", "--model"
    )
    OBJECT_LABELS: Optional[str] = _setting(_opt_path, "labels file of the model", "--labels")
    OBJECT_CONFIRM: str = _setting(
        _text(choices=("off", "tag", "require")),
        "off | tag: list what was seen | require: keep only events a wanted object's track confirmed",
        "--confirm",
    )
    OBJECT_LABELS_OF_INTEREST: tuple = _setting(
        _labels, "labels that count, e.g. person,car; empty: all", "--objects"
    )
    OBJECT_MIN_SCORE: float = _setting(_number(float, 0, 1), "minimum detection score", "--object-min-score")
    OBJECT_MIN_AREA: float = _setting(_number(float, 0, 1), "smallest box, as a fraction of the picture")
    OBJECT_MAX_AREA: float = _setting(_number(float, 0, 1), "largest box, as a fraction of the picture")
    OBJECT_LABEL_OVERRIDES: dict = _setting(
        _label_overrides, "per label: {'car': {'min_score': 0.6, 'min_area': 0.01, 'confirm_score': 0.8}}"
    )
    OBJECT_CONFIRM_DETECTIONS: int = _setting(
        _number(int, 1, 1000), "detections a track needs before it confirms an event", "--confirm-detections"
    )
    OBJECT_CONFIRM_SCORE: float = _setting(
        _number(float, 0, 1), "median score a track needs before it confirms an event", "--confirm-score"
    )
    OBJECT_TRACK_MAX_GAP_SECONDS: float = _setting(
        _number(float, 0.1, 3600), "a track not detected for this long ends"
    )
    OBJECT_STATIONARY_SECONDS: float = _setting(
        _number(float, 0, 86400), "a track in place this long is stationary and confirms nothing; 0: never"
    )
    OBJECT_MAX_RATE: float = _setting(
        _number(float, 0.01, 100), "at most this many detections a second", "--object-rate"
    )
    DETECT_EVERY_SECONDS: float = _setting(
        _number(float, 0, 3600),
        "also detect this often without motion (a still person); 0: only on motion",
        "--detect-every",
    )
    OBJECT_THREADS: int = _setting(_number(int, 1, 64), "TFLite threads")
    OBJECT_INPUT_COLOR: str = _setting(
        _text(choices=("auto", "rgb", "bgr")),
        "channel order the model wants; auto: BGR for YOLO, RGB for SSD",
    )
    OBJECT_LETTERBOX: str = _setting(
        _text(choices=("auto", "on", "off")), "keep the aspect with grey bars; auto: on for YOLO"
    )
    OBJECT_INPUT_SCALE: str = _setting(
        _text(choices=("auto", "0-255", "0-1", "-1-1")),
        "float inputs: value range; auto: 0-255 YOLO, -1-1 SSD",
    )


@_section
class QrSettings(_Section):
    """Reading QR codes in analysed frames."""

    QR_ENABLED: bool = _setting(_flag, "look for QR codes in analysed frames", "--qr/--no-qr")
    QR_EVERY_SECONDS: float = _setting(_number(float, 0, 3600), "scan for QR codes at most this often")
    QR_AREA: str = _setting(
        _text(choices=("frame", "motion")), "scan the full frame, or only the motion region"
    )
    QR_REPEAT_WINDOW_SECS: float = _setting(
        _number(float, 0, 86400), "the same payload again within this is the same sighting"
    )
    QR_STARTS_EVENT: bool = _setting(_flag, "a new QR code starts an event (kind 'qr') even without motion")


@_section
class ContinuousSettings(_Section):
    """Continuous stream-copy recording, and which clips an event gets."""

    CONTINUOUS_RECORDING: bool = _setting(
        _flag, "also record everything, stream-copied into segments", "--continuous/--events-only"
    )
    SEGMENT_SECONDS: float = _setting(
        _number(float, 2, 3600), "length of continuous segments", "--segment-seconds"
    )
    MOTION_DETECTION: bool = _setting(
        _flag, "decode and analyse for events (off: continuous only, no decoding)", "--motion/--no-motion"
    )
    LOSSLESS_EVENT_CLIPS: bool = _setting(
        _flag,
        "with continuous recording, also cut each event from the segments (no re-encode)",
        "--lossless-events/--no-lossless-events",
    )
    EVENT_REENCODE: Optional[bool] = _setting(
        _flag_or_auto,
        "clips re-encoded from the decoded frames, or (off) the camera's own packets; default: packets for "
        "RTSP cameras",
        "--reencode/--no-reencode",
    )


@_section
class RetentionSettings(_Section):
    """What the reaper deletes, oldest first, and how often it looks."""

    RETENTION_SEGMENT_DAYS: float = _setting(
        _number(float, 0, 36500), "delete continuous segments older than this; 0: keep"
    )
    RETENTION_EVENT_DAYS: float = _setting(
        _number(float, 0, 36500), "delete event clips older than this; 0: keep"
    )
    RETENTION_MAX_GB_PER_CAMERA: float = _setting(_number(float, 0), "cap on each camera's footage; 0: none")
    RETENTION_MAX_GB_TOTAL: float = _setting(_number(float, 0), "cap on the whole storage root; 0: none")
    RETENTION_MIN_FREE_GB: float = _setting(
        _number(float, 0), "keep at least this much free on the disk; 0: no floor"
    )
    RETENTION_CHECK_SECONDS: float = _setting(_number(float, 5, 86400), "how often record runs the reaper")


@_section
class OutputSettings(_Section):
    """Where clips and segments go, how they are named, and how clips are encoded."""

    PATH_FOR_VIDEO: str = _setting(_text(), "storage root", "--output")
    subFolderNameGeneratorFunc: Optional[Callable] = _setting(
        _subfolder_func, "subFolderNameGeneratorFunc(dts) -> subfolder; dts is UTC"
    )
    LOCAL_TIME: bool = _setting(
        _flag, "folders and file names in local time (False: UTC)", "--local-time/--utc"
    )
    VIDEO_CRF: int = _setting(_number(int, 0, 51), "H.264 quality (lower is better)", "--crf")
    VIDEO_PRESET: str = _setting(
        _text(choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")),
        "x264 preset",
        "--preset",
    )
    FFMPEG_PATH: Optional[str] = _setting(
        _opt_path, "ffmpeg to use; None: system ffmpeg, else imageio-ffmpeg's"
    )


@_section
class LogSettings(_Section):
    """The log file and console lines (names of the original recorder)."""

    LOG_FILE_PATH: Optional[str] = _setting(_opt_path, "rotating log file; None: no file", "--log-file")
    APP_LOG_LEVEL: str = _setting(_log_level, "log level", "--log-level")
    MAIN_LOG_FILE_MAX_SIZE: int = _setting(_number(int, 1024), "rotate the log file at this many bytes")
    LOG_BACKUPS_COUNT: int = _setting(_number(int, 0, 1000), "rotated log files kept")
    LOG_FORMAT: str = _setting(_text(), "logging format string")
    LOG_TO_CONSOLE: bool = _setting(_flag, "copy log lines to stderr")


@_section
class RunSettings(_Section):
    """`nvr-cli run`: the cameras it looks after and how it restarts and stops their workers."""

    CAMERAS: dict = _setting(_cameras, "name -> {setting: value} for each camera `run` looks after")
    RESTART_DELAY_SECS: float = _setting(
        _number(float, 0.1, 600), "run: first wait before restarting a dead worker; doubles"
    )
    RESTART_MAX_DELAY_SECS: float = _setting(
        _number(float, 0.1, 3600), "run: longest wait before restarting a worker"
    )
    RESTARTS_PER_HOUR: int = _setting(
        _number(int, 1, 10000), "run: restarts of one camera per hour before it waits (logged as CRITICAL)"
    )
    STOP_TIMEOUT_SECS: float = _setting(
        _number(float, 1, 3600), "run: a worker still running this long after SIGTERM is killed"
    )


@_section
class HookSettings(_Section):
    """Commands run on events, QR codes and camera loss: argument lists, no shell, in the background."""

    ON_EVENT_START: Optional[tuple] = _setting(
        _command, "command run when an event starts, e.g. ['/usr/local/bin/notify']"
    )
    ON_EVENT_END: Optional[tuple] = _setting(_command, "command run when an event's clip is finished")
    ON_CAMERA_LOST: Optional[tuple] = _setting(
        _command, "command run when the camera is lost or cannot be opened"
    )
    ON_CAMERA_FOUND: Optional[tuple] = _setting(_command, "command run when a lost camera is back")
    ON_QR_CODE: Optional[tuple] = _setting(_command, "command run for each new QR code seen")
    HOOK_TIMEOUT_SECS: float = _setting(
        _number(float, 0.1, 3600), "a hook still running after this is killed"
    )
    HOOK_MAX_RUNNING: int = _setting(
        _number(int, 1, 100), "hooks running at once per camera; more are skipped (logged)"
    )


@_section
class StatusSettings(_Section):
    """Each camera's status file and when `nvr-cli status` calls it stale."""

    STATUS_DIR: Optional[str] = _setting(
        _opt_path, "where each camera's status file goes; None: PATH_FOR_VIDEO/.status"
    )
    STATUS_INTERVAL_SECS: float = _setting(
        _number(float, 0.2, 600), "how often a camera rewrites its status file"
    )
    STATUS_STALE_SECS: float = _setting(
        _number(float, 1, 86400), "status: a camera not heard from (or without frames) this long is stale"
    )


def _web_users(v):
    """user -> scrypt hash (from `nvr-cli web passwd`)."""
    if v is None:
        return types.MappingProxyType({})
    if not isinstance(v, (dict, types.MappingProxyType)):
        raise ValueError("expected a dict like {'anna': 'scrypt$...'} (hashes from `nvr-cli web passwd`)")
    for user, h in v.items():
        if not isinstance(user, str) or not user or any(c.isspace() or c == ":" for c in user):
            raise ValueError(f"user name {user!r}: expected a non-empty name without spaces or ':'")
        if not isinstance(h, str) or not h.startswith("scrypt$") or h.count("$") != 5:
            raise ValueError(
                f"{user!r}: expected a hash made by `nvr-cli web passwd` (scrypt$...), not a password"
            )
    return types.MappingProxyType(dict(v))


@_section
class WebSettings(_Section):
    """`nvr-cli serve`: where the review page listens, who may log in, where its index lives."""

    WEB_ENABLED: bool = _setting(_flag, "run: also serve the review page (nvr-cli serve) as a worker")
    WEB_HOST: str = _setting(_text(), "serve: address to listen on; not the loopback: WEB_USERS required")
    WEB_PORT: int = _setting(_number(int, 1, 65535), "serve: port to listen on")
    WEB_USERS: dict = _setting(_web_users, "serve: user -> password hash from `nvr-cli web passwd`")
    WEB_INDEX_FILE: Optional[str] = _setting(
        _opt_path, "serve: the SQLite index (a cache); None: PATH_FOR_VIDEO/.nvr-index.sqlite3"
    )
    WEB_EXPORT_KEEP_HOURS: float = _setting(
        _number(float, 0.1, 8760), "serve: exports made in the page are deleted after this"
    )
    WEB_LIVE_DIRECT: bool = _setting(
        _flag, "serve: live view may open a camera itself when no recorder offers its packets"
    )


def _secret(v):
    if v is None:
        return None
    if not isinstance(v, str) or not v:
        # never echo the value: it is a password, perhaps only mistyped
        raise ValueError(f"expected None or a non-empty string, got a {type(v).__name__}")
    return v


# shown as *** by `nvr-cli config show` (passwords in URLs are masked by redact())
SECRET_SETTINGS = ("MQTT_PASSWORD",)  # each also declared secret=True below


def _ca_file(v):
    """A CA certificate file that loads: checked with the settings, so a bad edit is refused as one
    (``run`` keeps its cameras on the settings they had) instead of failing each recorder's start."""
    if v is None:
        return None
    v = _text()(v)
    import ssl  # only when TLS is asked for

    try:
        ssl.create_default_context(cafile=v)
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        raise ValueError(
            f"cannot load {v!r} as CA certificates: {getattr(e, 'strerror', None) or e}"
        ) from None
    return v


def _topic_prefix(v):
    v = _text()(v)
    if any(c in v for c in "+#\0") or v.startswith("/") or v.endswith("/"):
        raise ValueError(f"must be a topic without wildcards (+, #) or a leading or trailing '/', got {v!r}")
    return v


@_section
class MqttSettings(_Section):
    """The MQTT broker each camera publishes to, and Home Assistant's discovery."""

    MQTT_HOST: Optional[str] = _setting(_opt_path, "MQTT broker's host; None: no MQTT")
    MQTT_PORT: int = _setting(_number(int, 1, 65535), "MQTT broker's port")
    MQTT_USER: Optional[str] = _setting(_opt_path, "MQTT user name")
    MQTT_PASSWORD: Optional[str] = _setting(
        _secret, "MQTT password (masked in config show, never logged)", secret=True
    )
    MQTT_TLS_CA: Optional[str] = _setting(
        _ca_file, "CA certificate file: TLS to the broker, checked against it"
    )
    MQTT_CLIENT_ID: Optional[str] = _setting(
        _opt_path, "MQTT client id; None: nvr-cli-<hostname>; a camera's adds -<camera>"
    )
    MQTT_TOPIC_PREFIX: str = _setting(_topic_prefix, "topics are <prefix>/<camera>/...")
    MQTT_HA_DISCOVERY: bool = _setting(_flag, "announce cameras to Home Assistant (MQTT discovery)")
    MQTT_HA_PREFIX: str = _setting(_topic_prefix, "Home Assistant's discovery prefix")
    MQTT_QOS: int = _setting(_number(int, 0, 2), "MQTT quality of service for everything")
    MQTT_KEEPALIVE_SECS: float = _setting(
        _number(float, 5, 3600), "MQTT keepalive: a lost worker shows offline within ~1.5x this"
    )
    MQTT_QUEUE_MAX: int = _setting(
        _number(int, 10, 1000000), "messages kept while the broker is away (older state messages go first)"
    )


SECTIONS = {
    "source": SourceSettings,
    "motion": MotionSettings,
    "tracks": TrackSettings,
    "events": EventSettings,
    "objects": ObjectSettings,
    "qr": QrSettings,
    "continuous": ContinuousSettings,
    "retention": RetentionSettings,
    "output": OutputSettings,
    "logging": LogSettings,
    "run": RunSettings,
    "hooks": HookSettings,
    "status": StatusSettings,
    "web": WebSettings,
    "mqtt": MqttSettings,
}
_FIELDS = {f.name: f for cls in SECTIONS.values() for f in dataclasses.fields(cls)}
FIELDS = {name: _FIELDS[name] for name in DEFAULTS}  # in the documented order of defaults.py
SECTION_OF = {f.name: name for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
_extra = set(DEFAULTS) - set(_FIELDS)
if _extra:
    raise RuntimeError(f"nvr_cli/config/defaults.py has names the schema does not know: {sorted(_extra)}")


@dataclass(frozen=True, init=False)
class Settings:
    """Every knob of one camera, validated, in the sections its stages receive.

    Made from the flat names (``Settings(cam=..., PRE_ALARM_RECORDING_SECONDS=3)``), which also read
    through: ``settings.PRE_ALARM_RECORDING_SECONDS is settings.events.PRE_ALARM_RECORDING_SECONDS``.
    """

    source: SourceSettings
    motion: MotionSettings
    tracks: TrackSettings
    events: EventSettings
    objects: ObjectSettings
    qr: QrSettings
    continuous: ContinuousSettings
    retention: RetentionSettings
    output: OutputSettings
    logging: LogSettings
    run: RunSettings
    hooks: HookSettings
    status: StatusSettings
    web: WebSettings
    mqtt: MqttSettings

    def __init__(self, **values: object):
        for name in values:
            if name not in FIELDS:
                raise unknown_setting(name, "Settings()")
        for name, cls in SECTIONS.items():
            mine = {k: v for k, v in values.items() if SECTION_OF[k] == name}
            object.__setattr__(self, name, cls(**mine))

    def __getattr__(self, name: str):
        section = SECTION_OF.get(name)
        if section is None:
            raise AttributeError(f"Settings has no setting {name!r}")
        return getattr(object.__getattribute__(self, section), name)

    def values(self) -> dict:
        """name -> value of every setting, flat, in the order of defaults.py."""
        return {name: getattr(self, name) for name in FIELDS}

    def replace(self, **changes: object) -> "Settings":
        return Settings(**{**self.values(), **changes})


def unknown_setting(name: str, origin: str) -> ConfigError:
    """A one-line error for a name that is no setting, with the nearest real one."""
    guess = difflib.get_close_matches(name, FIELDS, n=1, cutoff=0.6)
    if not guess:
        lower = {k.lower(): k for k in FIELDS}
        guess = [lower[g] for g in difflib.get_close_matches(name.lower(), lower, n=1, cutoff=0.6)]
    hint = f"; did you mean {guess[0]}?" if guess else ""
    return ConfigError(f"{origin}: unknown setting {name!r}{hint}")


def as_plain(value: object) -> object:
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
