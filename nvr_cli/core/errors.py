"""Errors the CLI turns into one line and an exit code, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


class NvrError(Exception):
    """A failure the user can act on; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(NvrError):
    """Bad settings or options: exit code 2, as for any usage error."""

    exit_code = 2


class SourceError(NvrError):
    """A source that cannot be opened or read."""


class StorageError(NvrError):
    """The output cannot be written (permissions, a full disk)."""


def unreadable_file(path: Path, what: str, missing: str = "not found") -> Optional[str]:
    """Why ``path`` cannot be read as a ``what`` file, or None if it can."""
    if path.is_dir():
        return f"{path}: is a directory, not a {what}"
    if not path.exists():
        return f"{path}: {missing}"
    if not os.access(path, os.R_OK):
        return f"{path}: {what} is not readable (permission denied)"
    return None
