"""Logging as the settings say: level, format, rotating file, console copy; passwords masked."""
from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from .errors import ConfigError
from .redact import RedactingFormatter
from .settings import Settings


def setup_logging(s: Settings, *, quiet: bool = False, prefix: str = "") -> logging.Logger:
    """``prefix`` goes before each message (a worker of `run` names its camera)."""
    root = logging.getLogger("nvr_cli")
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.setLevel(s.APP_LOG_LEVEL)
    root.propagate = False
    fmt = RedactingFormatter(s.LOG_FORMAT.replace("%(message)s", prefix + "%(message)s") if prefix else s.LOG_FORMAT)
    if s.LOG_FILE_PATH:
        path = Path(s.LOG_FILE_PATH)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = logging.handlers.RotatingFileHandler(path, maxBytes=s.MAIN_LOG_FILE_MAX_SIZE,
                                                      backupCount=s.LOG_BACKUPS_COUNT)
        except OSError as e:
            raise ConfigError(f"LOG_FILE_PATH {path}: {e.strerror}") from None
        fh.setFormatter(fmt)
        root.addHandler(fh)
    if s.LOG_TO_CONSOLE and not quiet:
        ch = logging.StreamHandler(sys.stderr)
        ch.setFormatter(fmt)
        root.addHandler(ch)
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    return root
