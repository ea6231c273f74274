"""The server's side of a recording worker's live socket (docs/web-api.md, "Live view"): one request
line, one answer line, then the data. Blocking calls, for a thread (never the event loop)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Optional

from nvr_cli.core.unix_socket import connect_unix

ANSWER_MAX = 256  # an answer line is a few words
SNAPSHOT_MAX = 32 * 1024 * 1024  # a JPEG of a 4K frame is a few MB: more is no answer of a worker


class WorkerRefused(Exception):
    """The worker answered ``error <reason>``: it cannot offer what was asked for (a USB camera)."""


class WorkerBusy(Exception):
    """The worker is there but cannot answer now: ``retry <reason>`` (its camera is reconnecting, too
    many clients), or no answer in time. Try again later; never open the camera beside it."""


def _line(sock: socket.socket) -> str:
    """The answer line, read a byte at a time: what follows it belongs to the caller (or ffmpeg)."""
    got = bytearray()
    while len(got) < ANSWER_MAX:
        b = sock.recv(1)
        if not b:
            break
        if b == b"\n":
            return got.decode("utf-8", "replace")
        got += b
    raise OSError("no answer line from the recorder")


def ask(path: Path, request: str, timeout: float = 5.0) -> Optional[tuple]:
    """(connected socket, the words of its ``ok`` line) after sending ``request``. None when no worker
    listens at ``path``; WorkerBusy when one does but answers ``retry <reason>`` or nothing within
    ``timeout``; WorkerRefused with its reason when it answers ``error``."""
    sock = connect_unix(path, timeout=timeout)
    if sock is None:
        return None
    try:
        sock.sendall(request.encode("ascii") + b"\n")
        line = _line(sock)
    except OSError:
        sock.close()
        raise WorkerBusy("the recorder did not answer") from None
    words = line.split()
    if words[:1] == ["ok"]:
        return sock, words[1:]
    sock.close()
    if words[:1] == ["retry"]:
        raise WorkerBusy(line[len("retry ") :] or "busy")
    raise WorkerRefused(line[len("error ") :] if line.startswith("error ") else line or "no answer")


def snapshot(path: Path, timeout: float = 5.0) -> Optional[bytes]:
    """The worker's newest analysed frame as JPEG bytes; None when no worker listens (see ``ask``)."""
    answer = ask(path, "snapshot", timeout)
    if answer is None:
        return None
    sock, words = answer
    with sock:
        try:
            size = int(words[1])
        except (IndexError, ValueError):
            raise WorkerRefused(f"a strange answer: ok {' '.join(words)}") from None
        if not 0 < size <= SNAPSHOT_MAX:
            raise WorkerRefused(f"a snapshot of {size} bytes")
        got = bytearray()
        try:
            while len(got) < size:
                chunk = sock.recv(min(size - len(got), 1 << 16))
                if not chunk:
                    break
                got += chunk
        except OSError:
            pass
    if len(got) < size:
        raise WorkerBusy("the snapshot was cut short")
    return bytes(got)
