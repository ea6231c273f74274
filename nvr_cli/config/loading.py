"""Loading settings: defaults, then config.py, then the machine's overrides, then options.

Config files are plain Python (the format users of the original recorder already have). They are
read once here, at the edge, into a frozen ``Settings``; the rest of the package never looks at a
config file or a raw dict. ``CAMERAS`` entries are layered over the files' settings, one ``Settings``
per camera.
"""

from __future__ import annotations

import difflib
import os
import runpy
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from nvr_cli.config import defaults
from nvr_cli.config.schema import FIELDS, Settings, default_of, unknown_setting
from nvr_cli.core.errors import ConfigError, unreadable_file

ENV_HOME = "NVR_CLI_HOME"
MACHINE_FILE = "machine_specific_configuration.py"

# Names from the original recorder's config that no longer do anything: accepted with a warning
# so an old machine_specific_configuration.py keeps working.
LEGACY_NAMES = {"FOURCC_CODEC", "OUTPUT_FILES_EXTENSION", "OUTPUT_FRAME_RATE", "APP_ROOT"}

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


def _is_defaults_file(path: Path) -> bool:
    try:
        return path.resolve().samefile(Path(defaults.__file__).resolve())
    except OSError:
        return False


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
    """``def subFolderNameGeneratorFun(dts)``: a function named almost like a setting is a typo, not a
    helper.
    """
    return isinstance(value, types.FunctionType) and bool(
        difflib.get_close_matches(name, FIELDS, n=1, cutoff=0.85)
    )


def load_settings(config_path: Optional[str] = None, overrides: Optional[dict] = None) -> LoadedSettings:
    """Layer defaults < config.py < machine file (or ``config_path``) < ``overrides``; validate once."""
    raw = {name: default_of(f) for name, f in FIELDS.items()}
    origins = {name: DEFAULT_SOURCE for name in FIELDS}
    warnings = []
    home = home_dir()
    layers = []
    home_config = home / "config.py"
    # the project root's config.py is the defaults file itself (a link to it): already applied
    if home_config.is_file() and not _is_defaults_file(home_config):
        layers.append(home_config)
    if config_path:
        layers.append(Path(config_path))
    elif (home / MACHINE_FILE).is_file():
        layers.append(home / MACHINE_FILE)

    for path in layers:
        label = (
            f"{DEFAULT_SOURCE} ({path})" if path.name == "config.py" and path.parent == home else str(path)
        )
        for name, value in read_config_file(path).items():
            if name in FIELDS:
                raw[name], origins[name] = value, label
            elif name in LEGACY_NAMES:
                warnings.append(f"{path}: {name} is no longer used (clips are H.264 MP4); ignored")
            elif (not _is_helper(value) and name not in ("os", "logging")) or _misspelt_function(name, value):
                raise unknown_setting(name, str(path))
    for name in overrides or {}:
        if name not in FIELDS:
            raise unknown_setting(name, "command line")
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
