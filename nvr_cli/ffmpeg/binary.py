"""Which ffmpeg to run: the configured one, the system's, else the one imageio-ffmpeg ships."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from typing import Optional

from nvr_cli.core.errors import NvrError


@functools.lru_cache(maxsize=None)
def _lookup(configured: Optional[str]) -> Optional[str]:
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    forced = os.environ.get("NVR_CLI_FFMPEG")
    if forced:  # "none" simulates a machine without any ffmpeg
        return None if forced == "none" else forced
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001 - not installed, or its binary is missing
        return None


def find_ffmpeg(configured: Optional[str] = None, *, required: bool = True) -> Optional[str]:
    exe = _lookup(configured)
    if exe is None and required:
        if configured:
            raise NvrError(f"FFMPEG_PATH {configured}: not an executable file")
        raise NvrError("no ffmpeg found: install Debian's ffmpeg or `pip install imageio-ffmpeg`")
    return exe


@functools.lru_cache(maxsize=None)
def bitstream_filters(ffmpeg: str) -> frozenset:
    """The bitstream filters ``ffmpeg`` has (``-bsfs``), asked once per binary; none if it cannot say."""
    try:
        out = subprocess.run(
            [ffmpeg, "-hide_banner", "-bsfs"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    # "Bitstream filters:" then one name a line
    return frozenset(line.strip() for line in out.splitlines()[1:] if line.strip())
