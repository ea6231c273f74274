"""What a source string names (an RTSP/HTTP camera, a USB camera, a file), and how ffmpeg opens it.

Every ffmpeg that reads a camera (the packet buffer, continuous recording, the "why did it fail"
probe) and OpenCV's own ffmpeg take their input options from here, so that all of them honour the
user's RTSP_TRANSPORT and timeouts: a camera that only speaks UDP, or a slow link, must not work
for the decoder and fail for the recorder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from nvr_cli.core.errors import SourceError, unreadable_file
from nvr_cli.core.redact import redact

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")

# 0.5 s of probing finds an RTSP stream's parameters: OpenCV opens in 0.6 s instead of 1.6 s, which
# is most of the time a camera that comes back takes to record again
RTSP_ANALYZE_US = 500000


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # "rtsp", "http", "usb" or "file"
    target: object  # URL, device index or path
    text: str  # what the user typed

    @property
    def live(self) -> bool:
        return self.kind != "file"

    @property
    def display(self) -> str:
        return redact(self.text)


def parse_source(text: object) -> SourceSpec:
    """Classify a source string; a file that cannot be read is an error here, before any work."""
    text = str(text).strip()
    if not text:
        raise SourceError("empty source: give an RTSP/HTTP URL, a camera index, /dev/videoN or a video file")
    if text.isdigit():
        return SourceSpec("usb", int(text), text)
    if re.fullmatch(r"/dev/video\d+", text):
        if not os.path.exists(text):
            raise SourceError(f"{text}: no such camera device")
        return SourceSpec("usb", text, text)
    m = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*)://", text)
    if m:
        scheme = m.group(1).lower()
        if scheme not in LIVE_SCHEMES:
            raise SourceError(
                f"{redact(text)}: unsupported URL scheme {scheme!r} (use rtsp://, http:// or a file path)"
            )
        rest = text[m.end() :]
        host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
        if not host or host.startswith(":"):
            raise SourceError(f"{redact(text)}: URL has no host")
        return SourceSpec("rtsp" if scheme.startswith("rtsp") else "http", text, text)
    problem = unreadable_file(Path(text), "video file", "no such file (and not a URL or camera index)")
    if problem:
        raise SourceError(problem)
    return SourceSpec("file", text, text)


def ffmpeg_input_args(spec: SourceSpec, *, transport: str, timeout: float) -> list:
    """ffmpeg's options for reading ``spec``, ending with ``-i TARGET``.

    ``transport``: RTSP_TRANSPORT ("tcp" or "udp"). ``timeout``: seconds without data after which
    ffmpeg gives up (its socket I/O timeout, which also bounds connecting): the caller's
    READ_TIMEOUT_SECS for a reader, OPEN_TIMEOUT_SECS for a probe that only opens. A file needs
    neither."""
    us = str(max(1, int(timeout * 1e6)))
    if spec.kind == "rtsp":
        args = ["-rtsp_transport", transport, "-timeout", us]
    elif spec.kind == "http":
        args = ["-rw_timeout", us]
    elif spec.kind == "file":
        args = []
    else:  # a USB camera is OpenCV's (V4L2); nothing here reads one through ffmpeg
        raise ValueError(f"ffmpeg does not read {spec.kind} sources here")
    return args + ["-i", str(spec.target)]


def opencv_capture_options(spec: SourceSpec, *, transport: str) -> str:
    """OPENCV_FFMPEG_CAPTURE_OPTIONS for opening ``spec`` ("" for none): OpenCV's timeouts are its
    own open parameters, the transport has no parameter and goes through this variable."""
    if spec.kind == "rtsp":
        return f"rtsp_transport;{transport}|analyzeduration;{RTSP_ANALYZE_US}"
    return ""
