"""Cut any time range out of the continuous segments, losslessly (stream copy, keyframe-snapped)."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import nvr_cli.ffmpeg.process as ffproc
import nvr_cli.storage.paths as storage
from nvr_cli.core.errors import ConfigError, NvrError
from nvr_cli.storage.segments import read_index

GAP_TOLERANCE = 1.0  # seconds between segments that still count as contiguous


def parse_time(text: str, now: Optional[float] = None) -> float:
    """ISO date-time (local unless it has an offset), HH:MM[:SS] today, 'now', or -15m / -2h / -30s / -1d."""
    now = time.time() if now is None else now
    t = text.strip()
    if t == "now":
        return now
    m = re.fullmatch(r"-(\d+(?:\.\d+)?)([smhd])", t)
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    m = re.fullmatch(r"(\d{1,2}):(\d\d)(?::(\d\d(?:\.\d+)?))?", t)
    if m:
        today = dt.datetime.fromtimestamp(now).replace(
            hour=int(m.group(1)), minute=int(m.group(2)), second=0, microsecond=0
        )
        return today.timestamp() + float(m.group(3) or 0)
    try:
        d = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"bad time {text!r}: use ISO (2026-11-21T14:05:00), HH:MM today, or -15m/-2h/-1d"
        ) from None
    return d.timestamp() if d.tzinfo else d.astimezone().timestamp()


def plan(
    root: Union[str, Path], camera: str, start: float, end: float, folders: Optional[Iterable[Path]] = None
) -> tuple[list[dict], list[tuple[float, float]]]:
    """(segments overlapping [start, end], gaps inside it as (from, to)), from the index (of
    ``folders`` only, when given: see continuous.index_folders)."""
    if end <= start:
        raise ConfigError("--to must be after --from")
    entries = read_index(Path(root) / camera, folders, overlapping=(start, end))
    chosen = [e for e in entries if e["path"].exists()]
    gaps, cursor = [], start
    for e in chosen:
        if e["start"] - cursor > GAP_TOLERANCE:
            gaps.append((cursor, e["start"]))
        cursor = max(cursor, e["end"])
    if end - cursor > GAP_TOLERANCE:
        gaps.append((cursor, end))
    return chosen, gaps


def export(
    root: Union[str, Path],
    camera: str,
    start: float,
    end: float,
    out: Path,
    *,
    ffmpeg: str,
    allow_gaps: bool = False,
    local_time: bool = True,
    progress: Optional[Callable[[float], None]] = None,
    folders: Optional[Iterable[Path]] = None,
    write_sidecar: bool = True,
) -> tuple[dict, tuple[float, float]]:

    chosen, gaps = plan(root, camera, start, end, folders)
    when = f"{storage.iso(start, local_time)} to {storage.iso(end, local_time)}"
    if not chosen:
        raise NvrError(f"no recording of {camera!r} from {when} under {Path(root) / camera}")
    if gaps and not allow_gaps:
        a, b = gaps[0]
        raise NvrError(
            f"the recording has a gap from {storage.iso(a, local_time)} to {storage.iso(b, local_time)} "
            f"({b - a:.1f} s){' and more' if len(gaps) > 1 else ''}: --allow-gaps exports what there is"
        )
    out = Path(out)
    if out.parent and not out.parent.exists():
        raise NvrError(f"{out.parent}: no such folder")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as lst:
        for i, e in enumerate(chosen):
            lst.write(f"file '{str(e['path']).replace(chr(39), chr(39) + chr(92) + chr(39) + chr(39))}'\n")
            if i == 0 and start > e["start"]:
                lst.write(f"inpoint {start - e['start']:.3f}\n")
            if i == len(chosen) - 1 and end < e["end"]:
                lst.write(f"outpoint {end - e['start']:.3f}\n")
    tmp = out.with_name("." + out.name + ".part.mp4")
    cmd = ffproc.base(ffmpeg) + [
        "-y",
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        lst.name,
        "-map",
        "0",
        "-c",
        "copy",
        "-movflags",
        "+faststart",
        "-progress",
        "pipe:1",
        "-f",
        "mp4",
        str(tmp),
    ]
    try:
        proc = ffproc.FfmpegProcess(cmd, stdout=subprocess.PIPE, text=True)
        for line in proc.stdout:
            if line.startswith("out_time_us=") and progress and line.strip()[12:].isdigit():
                progress(int(line.strip()[12:]) / 1e6)
        if proc.wait() != 0:
            tmp.unlink(missing_ok=True)
            raise NvrError(f"export failed: {proc.why(last=True)}")
    finally:
        os.unlink(lst.name)
    os.replace(tmp, out)
    covered = (max(start, chosen[0]["start"]), min(end, max(e["end"] for e in chosen)))
    info = {
        "camera": camera,
        "file": out.name,
        "requested": {"from": storage.iso(start, local_time), "to": storage.iso(end, local_time)},
        "duration_seconds": round(storage.demux(ffmpeg, out).seconds, 3),
        "segments": [
            {
                "file": str(e["path"]),
                "start": storage.iso(e["start"], local_time),
                "end": storage.iso(e["end"], local_time),
                "partial": e.get("partial", False),
            }
            for e in chosen
        ],
        "gaps": [
            {"from": storage.iso(a, local_time), "to": storage.iso(b, local_time), "seconds": round(b - a, 3)}
            for a, b in gaps
        ],
        "covered": {"from": storage.iso(covered[0], local_time), "to": storage.iso(covered[1], local_time)},
        "note": "stream copy: packets start at the keyframe at or before the requested start; an edit list "
        "makes players begin at the requested time",
    }
    if write_sidecar:
        storage.write_json(out.with_suffix(".json"), info)
    return info, covered
