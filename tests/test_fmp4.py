"""The fragmented MP4 reader of live view, on what ffmpeg writes here: the init segment and the
fragments, the codec string a browser is asked about, which fragments start with a keyframe."""

from __future__ import annotations

import random
import struct
import subprocess

import pytest
from helpers import decode_all, video_packets

from nvr_cli.ffmpeg.fmp4 import Fmp4Error, Fmp4Reader, Fragment, InitSegment
from nvr_cli.ffmpeg.process import base
from nvr_cli.web.live import output_args


def _live_mp4(ffmpeg, tmp_path, codec: str, gop: int, frames: int = 30, known: bool = False) -> tuple:
    """(a camera-like MPEG-TS file, ffmpeg's fragmented MP4 of it as the relay makes it; ``known``:
    the relay knows the codec, as from a recorder)."""
    ts = tmp_path / f"{codec}.ts"
    if codec == "h264":
        enc = ["-c:v", "libx264", "-profile:v", "high"]
    else:  # x265 sets its own GOP: a fixed one, so that the keyframes are known
        enc = ["-c:v", "libx265", "-x265-params", f"log-level=none:keyint={gop}:min-keyint={gop}:scenecut=0"]
    source = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-frames:v", str(frames)]
    subprocess.run(
        [*base(ffmpeg), "-y", *source, "-pix_fmt", "yuv420p", *enc, "-g", str(gop), str(ts)], check=True
    )
    remux = [*base(ffmpeg), "-f", "mpegts", "-i", str(ts), *output_args(codec if known else None)]
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


def test_hevc_from_a_recorder_is_tagged_hvc1(ffmpeg, tmp_path):
    """Safari's MSE plays hvc1, not ffmpeg's default hev1: the relay tags H.265 it knows of."""
    ts, data = _live_mp4(ffmpeg, tmp_path, "hevc", gop=12, frames=25, known=True)
    init, *fragments = _read(data)
    assert init.codec == "hevc" and init.codecs.startswith("hvc1."), init.codecs
    assert len(fragments) == 25
    whole = tmp_path / "hvc1.mp4"
    whole.write_bytes(init.data + b"".join(f.data for f in fragments))
    assert len(decode_all(whole)) == 25


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


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


@pytest.mark.parametrize(
    "tfhd, trun",
    [
        (b"\x00\x00\x00\x00", struct.pack(">II", 0, 1)),  # a tfhd without its track id
        (struct.pack(">II", 0x20, 1), struct.pack(">II", 0, 1)),  # default flags said, not there
        (struct.pack(">II", 0, 1), b"\x00\x00\x04"),  # a trun cut inside its flags
        (struct.pack(">II", 0, 1), struct.pack(">II", 0x4, 1)),  # first sample flags said, not there
        (struct.pack(">II", 0, 1), struct.pack(">II", 0x400, 1)),  # sample flags said, not there
    ],
)
def test_short_fragment_boxes_are_errors(ffmpeg, tmp_path, tfhd, trun):
    """A tfhd or trun shorter than its flags say is a broken stream (Fmp4Error), read no further
    than its box even when more bytes follow it in the moof."""
    _, data = _live_mp4(ffmpeg, tmp_path, "h264", gop=10, frames=1)
    init = _read(data)[0]
    traf = _box(b"traf", _box(b"tfhd", tfhd) + _box(b"trun", trun) + _box(b"free", b"\xff" * 16))
    reader = Fmp4Reader()
    reader.feed(init.data)
    with pytest.raises(Fmp4Error):
        reader.feed(_box(b"moof", traf) + _box(b"mdat", b"\x00" * 8))


def test_a_64_bit_size_below_its_header_is_an_error():
    # a largesize of 12 cut at 12 bytes would leave "\0\0\0\x0cfree\0\0\0\0": a box that reads on
    with pytest.raises(Fmp4Error):
        Fmp4Reader().feed(struct.pack(">I4sQ", 1, b"free", 12) + b"free" + b"\x00" * 4)
    assert Fmp4Reader().feed(struct.pack(">I4sQ", 1, b"free", 16) + _box(b"free", b"")) == []
