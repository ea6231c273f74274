"""Errors the CLI turns into one line and an exit code, never a traceback."""


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
