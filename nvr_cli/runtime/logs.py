"""Logging as the settings say: level, format, rotating file, console copy; passwords masked."""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
import traceback
from pathlib import Path

from nvr_cli.config import LogSettings
from nvr_cli.core.errors import ConfigError
from nvr_cli.core.redact import RedactingFormatter, redact


def setup_logging(s: LogSettings, *, quiet: bool = False, prefix: str = "") -> logging.Logger:
    """``prefix`` goes before each message (a worker of `run` names its camera)."""
    root = logging.getLogger("nvr_cli")
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.setLevel(s.APP_LOG_LEVEL)
    root.propagate = False
    fmt = RedactingFormatter(
        s.LOG_FORMAT.replace("%(message)s", prefix + "%(message)s") if prefix else s.LOG_FORMAT
    )
    if s.LOG_FILE_PATH:
        path = Path(s.LOG_FILE_PATH)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = logging.handlers.RotatingFileHandler(
                path, maxBytes=s.MAIN_LOG_FILE_MAX_SIZE, backupCount=s.LOG_BACKUPS_COUNT
            )
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
    # warnings.warn(...) and uncaught exceptions in any thread go through the same (redacting) handlers
    logging.captureWarnings(False)  # off first: on again re-installs it, should something have replaced it
    logging.captureWarnings(True)
    py_warnings = logging.getLogger("py.warnings")
    py_warnings.setLevel(s.APP_LOG_LEVEL)
    for h in list(py_warnings.handlers):
        py_warnings.removeHandler(h)
    for h in root.handlers:
        py_warnings.addHandler(h)
    py_warnings.propagate = False
    threading.excepthook = _thread_excepthook
    sys.excepthook = _main_excepthook
    return root


def _log_uncaught(what: str, exc_info) -> None:
    """An uncaught exception, logged at ERROR with its traceback; stderr (redacted) if nothing logs."""
    log = logging.getLogger("nvr_cli")
    if any(not isinstance(h, logging.NullHandler) for h in log.handlers):
        log.error("uncaught exception in %s", what, exc_info=exc_info)
    else:
        sys.stderr.write(
            redact(f"uncaught exception in {what}\n" + "".join(traceback.format_exception(*exc_info)))
        )


def _thread_excepthook(args) -> None:
    if args.exc_type is SystemExit:  # as threading's own hook: a thread may end itself so
        return
    name = args.thread.name if args.thread is not None else "a thread"
    _log_uncaught(f"thread {name}", (args.exc_type, args.exc_value, args.exc_traceback))


def _main_excepthook(exc_type, exc_value, exc_traceback) -> None:
    if issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
        sys.__excepthook__(exc_type, exc_value, exc_traceback)
        return
    _log_uncaught("the main thread", (exc_type, exc_value, exc_traceback))
