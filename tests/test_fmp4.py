"""The fragmented MP4 reader of live view, on what ffmpeg writes here: the init segment and the
fragments, the codec string a browser is asked about, which fragments start with a keyframe."""

from __future__ import annotations

import random
import subprocess

import pytest
from helpers import decode_all, video_packets

from nvr_cli.ffmpeg.fmp4 import Fmp4Error, Fmp4Reader, Fragment, InitSegment
from nvr_cli.ffmpeg.process import base
from nvr_cli.web.live import OUTPUT


def _live_mp4(ffmpeg, tmp_path, codec: str, gop: int, frames: int = 30) -> tuple:
    """(a camera-like MPEG-TS file, ffmpeg's fragmented MP4 of it as the relay makes it)."""
    ts = tmp_path / f"{codec}.ts"
    if codec == "h264":
        enc = ["-c:v", "libx264", "-profile:v", "high"]
    else:  # x265 sets its own GOP: a fixed one, so that the keyframes are known
        enc = ["-c:v", "libx265", "-x265-params", f"log-level=none:keyint={gop}:min-keyint={gop}:scenecut=0"]
    source = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-frames:v", str(frames)]
    subprocess.run(
        [*base(ffmpeg), "-y", *source, "-pix_fmt", "yuv420p", *enc, "-g", str(gop), str(ts)], check=True
    )
    remux = [*base(ffmpeg), "-f", "mpegts", "-i", str(ts), *OUTPUT]
    return ts, subprocess.run(remux, check=True, capture_output=True).stdout


def _keyframes(ts) -> list:
    """The index of each keyframe of ``ts`` in decoding order, by ffprobe."""
    return [i for i, (_, key) in enumerate(video_packets(ts)) if key]


def _read(data: bytes, seed: int = 1) -> list:
    """Everything the reader makes of ``data`` fed in chunks of random sizes (as a pipe gives it)."""
    rng = random.Random(seed)
    reader, out, pos = Fmp4Reader(), [], 0
    while pos < len(data):
        n = rng.randint(1, 5000)
        out += reader.feed(data[pos : pos + n])
        pos += n
    return out


def test_h264_init_and_one_fragment_per_frame(ffmpeg, tmp_path):
    ts, data = _live_mp4(ffmpeg, tmp_path, "h264", gop=10)
    segments = _read(data)
    init, fragments = segments[0], segments[1:]
    assert isinstance(init, InitSegment)
    assert init.data[4:8] == b"ftyp" and b"moov" in init.data
    assert init.codec == "h264" and (init.width, init.height) == (320, 240)
    assert init.codecs.startswith("avc1.64")  # High profile, then its constraints and level bytes
    assert len(init.codecs) == len("avc1.64001f")
    assert init.mime == f'video/mp4; codecs="{init.codecs}"'
    assert all(isinstance(f, Fragment) and f.data[4:8] == b"moof" for f in fragments)
    assert len(fragments) == 30
    assert [i for i, f in enumerate(fragments) if f.key] == _keyframes(ts) == [0, 10, 20]
    whole = tmp_path / "whole.mp4"
    whole.write_bytes(init.data + b"".join(f.data for f in fragments))
    assert len(decode_all(whole)) == 30


def test_joining_at_a_keyframe_fragment_decodes(ffmpeg, tmp_path):
    """A viewer that joins late gets the init segment and the fragments from a keyframe on."""
    _, data = _live_mp4(ffmpeg, tmp_path, "h264", gop=10)
    init, *fragments = _read(data, seed=2)
    late = tmp_path / "late.mp4"
    late.write_bytes(init.data + b"".join(f.data for f in fragments[20:]))
    assert len(decode_all(late)) == 10


def test_hevc_codec_string_and_keyframes(ffmpeg, tmp_path):
    ts, data = _live_mp4(ffmpeg, tmp_path, "hevc", gop=12, frames=25)
    init, *fragments = _read(data)
    assert init.codec == "hevc"
    # Main profile (1), compatible with Main (reversed bits: 6), Main tier, level 2 (60) or so
    parts = init.codecs.split(".")
    assert parts[0] in ("hev1", "hvc1") and parts[1] == "1" and parts[2] == "6", init.codecs
    assert parts[3].startswith("L"), init.codecs
    keys = [i for i, f in enumerate(fragments) if f.key]
    assert keys == _keyframes(ts) and len(keys) == 3  # in decoding order: B-frames move them


def test_a_new_ftyp_starts_a_new_init(ffmpeg, tmp_path):
    _, data = _live_mp4(ffmpeg, tmp_path, "h264", gop=10, frames=5)
    kinds = [type(s).__name__ for s in _read(data + data)]
    assert kinds == ["InitSegment"] + ["Fragment"] * 5 + ["InitSegment"] + ["Fragment"] * 5


def test_broken_streams_are_errors(ffmpeg, tmp_path):
    _, data = _live_mp4(ffmpeg, tmp_path, "h264", gop=10, frames=5)
    init, first, *_ = _read(data)
    with pytest.raises(Fmp4Error):
        Fmp4Reader().feed(first.data)  # a fragment before any moov
    with pytest.raises(Fmp4Error):
        Fmp4Reader(max_box=1000).feed(b"\x7f\x00\x00\x00mdat")  # a box of 2 GB
    assert Fmp4Reader().feed(init.data[:-1]) == []  # incomplete: waits for more
