"""Opening a source once to say what it is: `nvr-cli probe`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import nvr_cli.storage.paths as storage
from nvr_cli.config import Settings
from nvr_cli.source.capture import VideoSource, parse_source


def probe(source: str, s: Settings, snapshot: Optional[Path] = None) -> dict:
    """Resolution, fps, codec (and a file's frame count) of ``source``; its first frame saved as a JPEG
    to ``snapshot`` if given (the dict then names it). Raises SourceError if it cannot be opened."""
    import cv2

    spec = parse_source(source)
    src = VideoSource(
        spec,
        rtsp_transport=s.RTSP_TRANSPORT,
        open_timeout=s.OPEN_TIMEOUT_SECS,
        read_timeout=s.READ_TIMEOUT_SECS,
    ).open()
    try:
        frame = next(src.frames(), None)
    finally:
        src.close()
    info = {
        "source": spec.display,
        "kind": spec.kind,
        "width": src.size[0],
        "height": src.size[1],
        "fps": round(src.fps, 3),
        "codec": src.codec or None,
    }
    if spec.kind == "file":
        info["frames"] = src.frame_count
    if frame is not None and snapshot is not None:
        ok, jpg = cv2.imencode(".jpg", frame.image)
        if ok:
            storage.write_atomic(Path(snapshot), jpg.tobytes())
            info["snapshot"] = str(snapshot)
    return info
