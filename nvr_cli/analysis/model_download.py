"""Fetching detection models into the user's data folder, checked by SHA-256."""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from nvr_cli.core.errors import NvrError


def _coco90() -> list:
    """COCO's 90 class ids as SSD models number them (0-based, "n/a" where COCO left an id unused)."""
    words = (
        "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant n/a "
        "stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe n/a "
        "backpack umbrella n/a n/a handbag tie suitcase frisbee skis snowboard sports_ball kite "
        "baseball_bat baseball_glove skateboard surfboard tennis_racket bottle n/a wine_glass cup fork "
        "knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake chair "
        "couch potted_plant bed n/a dining_table n/a n/a toilet n/a tv laptop mouse remote keyboard "
        "cell_phone microwave oven toaster sink refrigerator n/a book clock vase scissors teddy_bear "
        "hair_drier toothbrush"
    ).split()
    return [w.replace("_", " ") for w in words]


@dataclass(frozen=True)
class KnownModel:
    name: str
    url: str
    sha256: str
    filename: str
    labels: tuple
    about: str


KNOWN = {
    "ssd-mobilenet-v1": KnownModel(
        "ssd-mobilenet-v1",
        "https://tfhub.dev/tensorflow/lite-model/ssd_mobilenet_v1/1/metadata/1?lite-format=tflite",
        "df027205054d6fd9af22337dd27010fb03701c9d9b122a54468a03c5078db64f",
        "ssd_mobilenet_v1_1_metadata_1.tflite",
        tuple(_coco90()),
        "COCO SSD-MobileNet v1, uint8 300x300, built-in post-processing (TF Hub, Apache-2.0)",
    ),
}


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "nvr-cli" / "models"


def _mirror(url: str) -> str:
    """NVR_CLI_MODEL_MIRROR=http://host/dir/ fetches known models from there instead (by file name)."""
    mirror = os.environ.get("NVR_CLI_MODEL_MIRROR")
    return url if not mirror else mirror.rstrip("/") + "/"


def download(
    name_or_url: str, *, sha256: Optional[str] = None, dest: Optional[Path] = None, progress: bool = True
) -> tuple:
    """Fetch a known model by name, or any URL; verify it; returns (model path, labels path or None)."""
    dest = Path(dest) if dest else data_dir()
    known = KNOWN.get(name_or_url)
    if known:
        url = _mirror(known.url)
        if url != known.url:
            url += known.filename
        expected, filename = known.sha256, known.filename
    elif urllib.parse.urlparse(name_or_url).scheme in ("http", "https"):
        url, expected = name_or_url, sha256
        filename = Path(urllib.parse.urlparse(url).path).name or "model.tflite"
    else:
        raise NvrError(f"unknown model {name_or_url!r}: use one of {', '.join(KNOWN)} or an http(s) URL")
    if sha256 and expected and sha256.lower() != expected:
        raise NvrError(f"--sha256 does not match the known checksum of {name_or_url}")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NvrError(f"cannot create {dest}: {e.strerror}") from None
    target = dest / filename
    tmp = target.with_name("." + target.name + ".download")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=30) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress and total and sys.stderr.isatty():
                    sys.stderr.write(f"\r{filename}: {done * 100 // total:3d}% of {total / 2**20:.1f} MB")
        if progress and sys.stderr.isatty():
            sys.stderr.write("\n")
    except (urllib.error.URLError, OSError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, urllib.error.HTTPError):
            reason = f"HTTP {e.code} {e.reason}"
        else:
            reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise NvrError(f"download of {url} failed: {reason}") from None
    got = digest.hexdigest()
    if expected and got != expected.lower():
        tmp.unlink(missing_ok=True)
        raise NvrError(f"{filename}: SHA-256 is {got}, expected {expected}: not saved")
    os.replace(tmp, target)
    labels = None
    if known:
        labels = dest / (Path(filename).stem + ".labels.txt")
        labels.write_text("\n".join(known.labels) + "\n")
    return target, labels, got
