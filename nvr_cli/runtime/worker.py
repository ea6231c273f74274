"""A worker of `nvr-cli run`: one camera of CAMERAS in its own process, and what it starts with."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from nvr_cli.config import LoadedSettings, Settings, camera_settings
from nvr_cli.runtime.fleet import ENV_PARENT


def worker_settings(loaded: LoadedSettings, camera: str) -> Settings:
    """The settings of CAMERAS' ``camera`` as its worker runs them (an unknown name: ConfigError)."""
    s = camera_settings(loaded, camera)
    if s.LOG_FILE_PATH and s.LOG_FILE_PATH == loaded.settings.LOG_FILE_PATH:
        # one rotating file per process: shared, each would rotate the others' lines away
        p = Path(s.LOG_FILE_PATH)
        s = s.replace(LOG_FILE_PATH=str(p.with_name(f"{p.stem}.{camera}{p.suffix}")))
    return s


def supervisor_pid() -> Optional[int]:
    """The pid of the `run` that started this worker, if it did (else None: a service started it)."""
    parent = os.environ.get(ENV_PARENT)
    return int(parent) if parent and parent.isdigit() and int(parent) == os.getppid() else None
