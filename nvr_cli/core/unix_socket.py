"""Unix domain sockets at any path: a worker's live-view socket beside its status file.

A socket's path must fit in 107 bytes (sun_path). A longer one is reached through the folder's file
descriptor, ``/proc/self/fd/N/name``, which the kernel resolves at bind and connect time.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path
from typing import Iterator, Optional

MAX_PATH = 107  # sun_path is 108 bytes, one of them the terminating NUL


@contextlib.contextmanager
def _short(path: Path) -> Iterator[str]:
    """A name for ``path`` that fits in sun_path while the context lasts."""
    text = os.fsdecode(path)
    if len(os.fsencode(text)) <= MAX_PATH:
        yield text
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def bind_unix(path: Path, backlog: int = 8) -> socket.socket:
    """A listening socket at ``path``, readable and writable by its owner only. A socket file left by a
    killed process (nobody answers on it) is replaced; one that answers is an OSError (EADDRINUSE)."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if connect_unix(path, timeout=0.5) is not None:
            raise OSError(errno.EADDRINUSE, f"another process answers on {path}")
        path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _short(path) as name:
            sock.bind(name)
            # 0600 before listen(): nobody can connect until then. Not through the umask, which is the
            # whole process's (a recorder's other threads create files meanwhile).
            os.chmod(name, 0o600)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def connect_unix(path: Path, timeout: float = 2.0) -> Optional[socket.socket]:
    """A connected socket to ``path``, or None when nothing listens there (no file, refused, timeout)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with _short(Path(path)) as name:
            sock.connect(name)
    except OSError:
        sock.close()
        return None
    return sock
