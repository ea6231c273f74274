"""Where clips go and how they become final: date folders, unique names, atomic completion."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Sequence, Union

import cv2

import nvr_cli.ffmpeg.process as ffproc
from nvr_cli.core.errors import StorageError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

PART_SUFFIX = ".part.mp4"


def local_datetime(wall_ts: float, local_time: bool = True) -> dt.datetime:
    utc = dt.datetime.fromtimestamp(wall_ts, dt.timezone.utc)
    return utc.astimezone() if local_time else utc


def _repeated_hour(wall_ts: float) -> bool:
    """Whether local wall time at ``wall_ts`` is a second pass: clocks went back (the local UTC offset,
    which follows TZ, dropped by at least h) within the last h seconds, for h of half an hour or an hour."""
    offset = time.localtime(wall_ts).tm_gmtoff
    return any(time.localtime(wall_ts - h).tm_gmtoff - offset >= h for h in (1800, 3600))


def name_stamp(wall_ts: float, local_time: bool = True) -> str:
    """``%Y%m%d-%H%M%S`` for file names; in the second pass of a repeated local hour (clocks going back)
    the hour is followed by ``R`` (``20261025-02R0010``), so names stay unique and sort in time order:
    after every first-pass ``02xxxx`` and before ``03xxxx``. UTC names never repeat, so never have it."""
    d = local_datetime(wall_ts, local_time)
    mark = "R" if local_time and _repeated_hour(wall_ts) else ""
    return f"{d:%Y%m%d-%H}{mark}{d:%M%S}"


def iso(wall_ts: float, local_time: bool = True) -> str:
    return local_datetime(wall_ts, local_time).isoformat(timespec="milliseconds")


def clip_dir(
    root: Union[str, Path],
    camera: str,
    wall_ts: float,
    local_time: bool = True,
    subfolder_func: Optional[Callable] = None,
) -> Path:
    """``root/camera/YYYY/MM/DD``; ``subfolder_func(dts)`` (dts in UTC, as the original recorder) overrides
    the date part.
    """
    base = Path(root) / camera
    if subfolder_func is not None:
        try:
            sub = subfolder_func(dt.datetime.fromtimestamp(wall_ts, dt.timezone.utc).replace(tzinfo=None))
        except Exception as e:  # noqa: BLE001 - user code
            raise StorageError(f"subFolderNameGeneratorFunc failed: {type(e).__name__}: {e}") from None
        sub = str(sub or "").strip("/")
        if ".." in Path(sub).parts:
            raise StorageError(f"subFolderNameGeneratorFunc returned {sub!r}, which leaves the storage root")
        return base / sub
    d = local_datetime(wall_ts, local_time)
    return base / f"{d:%Y}" / f"{d:%m}" / f"{d:%d}"


def new_clip_path(folder: Path, camera: str, wall_ts: float, local_time: bool = True) -> Path:
    """A final clip name not yet taken by a clip, a part or a sidecar."""
    stem = f"{camera}_{name_stamp(wall_ts, local_time)}"
    n = 0
    while True:
        name = stem if n == 0 else f"{stem}-{n}"
        final = folder / f"{name}.mp4"
        if not (final.exists() or part_path(final).exists() or final.with_suffix(".json").exists()):
            return final
        n += 1


def part_path(final: Path) -> Path:
    return final.with_name(final.stem + PART_SUFFIX)


def final_path(part: Path) -> Path:
    return part.with_name(part.name[: -len(PART_SUFFIX)] + ".mp4")


def make_dirs(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"cannot create {folder}: {e.strerror}") from None


def finalize(part: Path, ffmpeg: Optional[str]) -> tuple:
    """Turn a finished part into its final name, remuxed (stream copy) so it has an index up front.
    Returns (final path, video frames on disk, or None when not known)."""
    final = final_path(part)
    if ffmpeg:
        tmp = final.with_name("." + final.stem + ".remux.mp4")
        r = ffproc.run(
            ffproc.base(ffmpeg)
            + [
                "-y",
                "-i",
                str(part),
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
        )
        if r.returncode == 0 and tmp.exists() and tmp.stat().st_size > 0:
            os.replace(tmp, final)
            part.unlink(missing_ok=True)
            return final, _progress_totals(r.stdout)[0]  # the remux read every packet: no second pass
        tmp.unlink(missing_ok=True)
        log.warning(
            "could not remux %s (%s); keeping it as written (fragmented MP4, still playable)",
            part.name,
            ffproc.why(r.stderr.splitlines(), r.returncode, last=True),
        )
    os.replace(part, final)
    return final, (demux(ffmpeg, final).frames if ffmpeg else None)


@dataclass
class Demuxed:
    ok: bool  # every packet read cleanly
    frames: Optional[int]  # video packets
    seconds: float  # video duration


def demux(ffmpeg: str, path: Path) -> Demuxed:
    """Read every packet of ``path`` by stream copy to nowhere (no decoding): validity, frames, duration."""
    r = ffproc.run(
        ffproc.base(ffmpeg)
        + ["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-progress", "pipe:1", "-"]
    )
    return Demuxed(r.returncode == 0 and not r.stderr.strip(), *_progress_totals(r.stdout))


def decoded_frames(ffmpeg: str, path: Path) -> Optional[int]:
    """How many video frames of ``path`` decode (a full decode: for the rare clip that may end mid-frame)."""
    # passthrough: each decoded frame counted once (no frame duplicated or dropped to a constant rate)
    args = [
        "-i",
        str(path),
        "-map",
        "0:v:0",
        "-fps_mode",
        "passthrough",
        "-f",
        "null",
        "-progress",
        "pipe:1",
        "-",
    ]
    r = ffproc.run(ffproc.base(ffmpeg) + args)
    return _progress_totals(r.stdout)[0] if r.returncode == 0 else None


def _progress_totals(progress: str):
    """(frames, seconds) from ffmpeg's -progress output."""
    frames, seconds = None, 0.0
    for line in progress.splitlines():
        key, _, value = line.partition("=")
        if key == "frame" and value.strip().isdigit():
            frames = int(value)
        elif key == "out_time_us" and value.strip().lstrip("-").isdigit():
            seconds = max(seconds, int(value) / 1e6)
    return frames, seconds


def plays(path: Path) -> bool:
    """Whether at least one frame of ``path`` decodes."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    cap = cv2.VideoCapture(str(path))
    try:
        return cap.isOpened() and cap.read()[0]
    finally:
        cap.release()


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {e.strerror}") from None


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def thumbnail_jpeg(
    image: np.ndarray, boxes: Sequence[tuple[int, int, int, int]], labels: Sequence[str] = ()
) -> Optional[bytes]:
    """The picture as a JPEG with ``boxes`` drawn in red (and ``labels`` over them); None if it cannot
    be encoded."""
    img = image.copy()
    thickness = max(2, img.shape[1] // 400)
    labels = list(labels) + [""] * (len(boxes) - len(labels))
    for (x, y, w, h), text in zip(boxes, labels):
        cv2.rectangle(img, (x, y), (x + w, y + h), (0, 0, 255), thickness)
        if text:
            cv2.putText(img, text, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1)
    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return jpg.tobytes() if ok else None


def write_thumbnail(
    path: Path, image: np.ndarray, boxes: Sequence[tuple[int, int, int, int]], labels: Sequence[str] = ()
) -> None:
    jpg = thumbnail_jpeg(image, boxes, labels)
    if jpg is not None:
        write_atomic(path, jpg)


def open_elsewhere(paths: Iterable[Union[str, Path]]) -> set:
    """Which of ``paths`` another process has open (a writer still at work), from /proc."""
    wanted = {os.path.realpath(p) for p in paths}
    found, me = set(), os.getpid()
    if not wanted:
        return found
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            fds = os.listdir(f"/proc/{d}/fd")
        except OSError:  # gone, or not ours to look at
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{d}/fd/{fd}")
            except OSError:
                continue
            if target in wanted:
                found.add(target)
    return found


def recover_parts(root: Path, camera: str, ffmpeg: Optional[str]) -> list:
    """Finish clips a killed process left as parts; they play, so they are kept, marked recovered.
    Never a part that a process is still writing (another recorder, a writer that outlived its
    recorder), nor a hidden temporary file (an export's, a lossless cut's)."""
    recovered = []
    base = Path(root) / camera
    if not base.is_dir():
        return recovered
    parts = [p for p in sorted(base.rglob("*" + PART_SUFFIX)) if not p.name.startswith(".")]
    remuxes = sorted(base.rglob(".*.remux.mp4"))  # a finishing step cut short: the part is still there
    busy = open_elsewhere(parts + remuxes)
    for tmp in remuxes:
        if os.path.realpath(tmp) not in busy:
            tmp.unlink(missing_ok=True)
    for part in parts:
        if os.path.realpath(part) in busy:
            log.info("leaving %s: another process is writing it", part)
            continue
        if not plays(part):
            log.warning("deleting %s left by an interrupted run: not one frame of it plays", part)
            part.unlink(missing_ok=True)
            continue
        final, _ = finalize(part, ffmpeg)
        sidecar = final.with_suffix(".json")
        if not sidecar.exists():
            write_json(
                sidecar,
                {
                    "camera": camera,
                    "clip": final.name,
                    "recovered": True,
                    "note": "finished after the recorder stopped unexpectedly; times not known",
                },
            )
        log.warning("recovered clip %s left by an interrupted run", final)
        recovered.append(final)
    return recovered
