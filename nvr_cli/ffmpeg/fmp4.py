"""Fragmented MP4 read as it streams: ffmpeg's ``-movflags empty_moov+default_base_moof`` output cut
into the init segment (ftyp+moov) and media fragments (moof+mdat), for live view over Media Source
Extensions.

The player needs three facts the boxes hold: the codec string for ``MediaSource.isTypeSupported``
(RFC 6381, from avcC/hvcC), the picture size, and whether a fragment starts with a keyframe (a
client that fell behind may only resume at one). Pure: bytes in, segments out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator, Optional, Union

MAX_BOX = 64 * 1024 * 1024  # one frame of a camera is far smaller: larger is a broken stream
NON_SYNC = 0x10000  # sample_is_non_sync_sample in the sample flags (ISO/IEC 14496-12 8.8.3.1)
VISUAL_ENTRY = 78  # bytes of a VisualSampleEntry before its child boxes (avcC, hvcC, ...)
CODECS = {b"avc1": "h264", b"avc3": "h264", b"hvc1": "hevc", b"hev1": "hevc"}


class Fmp4Error(ValueError):
    """The stream is not fragmented MP4 this reader can follow."""


@dataclass(frozen=True)
class InitSegment:
    data: bytes  # ftyp + moov
    codec: str  # "h264", "hevc" or "other"
    codecs: str  # RFC 6381, e.g. "avc1.64001f"
    width: int
    height: int

    @property
    def mime(self) -> str:
        return f'video/mp4; codecs="{self.codecs}"'


@dataclass(frozen=True)
class Fragment:
    data: bytes  # moof + mdat
    key: bool  # its first sample is a sync sample (a keyframe)


Segment = Union[InitSegment, Fragment]


def boxes(data: bytes, start: int = 0, end: Optional[int] = None) -> Iterator[tuple]:
    """(type, payload start, payload end) of each box in ``data[start:end]``."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:
            if pos + 16 > end:
                return
            size, head = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            return
        yield kind, pos + head, pos + size
        pos += size


def _child(data: bytes, start: int, end: int, *path: bytes) -> Optional[tuple]:
    """(payload start, payload end) of the first box along ``path`` below ``data[start:end]``."""
    for name in path:
        for kind, s, e in boxes(data, start, end):
            if kind == name:
                start, end = s, e
                break
        else:
            return None
    return start, end


def _reversed_bits(value: int) -> int:
    return int(f"{value:032b}"[::-1], 2)


def _hevc_codecs(fourcc: str, hvcc: bytes) -> str:
    """RFC 6381 / ISO 14496-15 E.3: hvc1.<space><profile>.<compat>.<tier><level>[.<constraints>]."""
    if len(hvcc) < 13:
        return fourcc
    space = "" if hvcc[1] >> 6 == 0 else "ABC"[(hvcc[1] >> 6) - 1]
    tier = "H" if hvcc[1] & 0x20 else "L"
    compat = _reversed_bits(struct.unpack_from(">I", hvcc, 2)[0])
    constraints = list(hvcc[6:12])
    while constraints and constraints[-1] == 0:
        constraints.pop()
    parts = [fourcc, f"{space}{hvcc[1] & 0x1F}", f"{compat:X}", f"{tier}{hvcc[12]}"]
    return ".".join(parts + [f"{b:02X}" for b in constraints])


def _sample_entry(data: bytes, start: int, end: int) -> tuple:
    """(codec, codecs string, width, height) of the first visual sample entry in a stsd payload."""
    for kind, s, e in boxes(data, start + 8, end):  # past the full box header and entry count
        if e - s < VISUAL_ENTRY:
            continue
        width, height = struct.unpack_from(">HH", data, s + 24)
        fourcc = kind.decode("latin-1")
        config = {k: data[cs:ce] for k, cs, ce in boxes(data, s + VISUAL_ENTRY, e)}
        if kind in (b"avc1", b"avc3") and len(config.get(b"avcC", b"")) >= 4:
            avcc = config[b"avcC"]
            return "h264", f"{fourcc}.{avcc[1]:02x}{avcc[2]:02x}{avcc[3]:02x}", width, height
        if kind in (b"hvc1", b"hev1") and b"hvcC" in config:
            return "hevc", _hevc_codecs(fourcc, config[b"hvcC"]), width, height
        return CODECS.get(kind, "other"), fourcc, width, height
    raise Fmp4Error("the moov has no video track")


def read_init(data: bytes) -> tuple:
    """(InitSegment, {track id: trex default sample flags}) from ftyp+moov bytes."""
    moov = _child(data, 0, len(data), b"moov")
    if moov is None:
        raise Fmp4Error("no moov box")
    found = None
    for kind, s, e in boxes(data, *moov):
        if kind != b"trak":
            continue
        stsd = _child(data, s, e, b"mdia", b"minf", b"stbl", b"stsd")
        if stsd is not None:
            try:
                found = _sample_entry(data, *stsd)
                break
            except Fmp4Error:
                continue
    if found is None:
        raise Fmp4Error("the moov has no video track")
    defaults = {}
    mvex = _child(data, *moov, b"mvex")
    for kind, s, e in boxes(data, *mvex) if mvex else ():
        if kind == b"trex" and e - s >= 24:
            track, flags = struct.unpack_from(">I", data, s + 4)[0], struct.unpack_from(">I", data, s + 20)[0]
            defaults[track] = flags
    return InitSegment(bytes(data), *found), defaults


def _u32(data: bytes, pos: int, end: int) -> int:
    """The 32-bit number at ``pos``, which must lie before ``end`` (its box's payload end)."""
    if pos + 4 > end:
        raise Fmp4Error("a box too short for its fields")
    return struct.unpack_from(">I", data, pos)[0]


def first_sample_flags(moof: bytes, defaults: dict) -> Optional[int]:
    """The sample flags of a moof's first sample (its first track fragment), None if it has none;
    Fmp4Error when its tfhd or trun is shorter than its flags say."""
    traf = _child(moof, 0, len(moof), b"moof", b"traf")
    if traf is None:
        return None
    tfhd, trun = _child(moof, *traf, b"tfhd"), _child(moof, *traf, b"trun")
    if tfhd is None or trun is None:
        return None
    flags, track = _u32(moof, tfhd[0], tfhd[1]), _u32(moof, tfhd[0] + 4, tfhd[1])
    fallback = defaults.get(track)
    pos = tfhd[0] + 8 + (8 if flags & 0x1 else 0)
    pos += sum(4 for bit in (0x2, 0x8, 0x10) if flags & bit)
    if flags & 0x20:
        fallback = _u32(moof, pos, tfhd[1])
    rflags, count = _u32(moof, trun[0], trun[1]), _u32(moof, trun[0] + 4, trun[1])
    if count == 0:
        return None
    pos = trun[0] + 8 + (4 if rflags & 0x1 else 0)
    if rflags & 0x4:
        return _u32(moof, pos, trun[1])
    if rflags & 0x400:
        pos += sum(4 for bit in (0x100, 0x200) if rflags & bit)
        return _u32(moof, pos, trun[1])
    return fallback


class Fmp4Reader:
    """Cuts a fragmented MP4 stream, fed in chunks of any size, into its init segment and fragments.

    Boxes other than ftyp, moov, moof and mdat (free, sidx, mfra at the end) are skipped. A second
    ftyp starts a new stream (a new init segment)."""

    def __init__(self, max_box: int = MAX_BOX):
        self.max_box = max_box
        self.buf = bytearray()
        self.ftyp = b""
        self.moof = b""
        self.defaults: dict = {}
        self.init: Optional[InitSegment] = None

    def feed(self, chunk: bytes) -> list:
        """The init segments and fragments that ``chunk`` completes; Fmp4Error on a broken stream."""
        self.buf += chunk
        out = []
        while len(self.buf) >= 8:
            size, kind = struct.unpack_from(">I4s", self.buf, 0)
            head = 8
            if size == 1:  # a 64-bit size follows the type: the header is 16 bytes
                if len(self.buf) < 16:
                    break
                size, head = struct.unpack_from(">Q", self.buf, 8)[0], 16
            if size < head or size > self.max_box:
                raise Fmp4Error(f"a {kind!r} box of {size} bytes")
            if len(self.buf) < size:
                break
            box = bytes(self.buf[:size])
            del self.buf[:size]
            try:
                seg = self._box(kind, box)
            except struct.error as e:  # a field past its box's end that no bound above caught
                raise Fmp4Error(f"a broken {kind!r} box: {e}") from None
            if seg is not None:
                out.append(seg)
        return out

    def _box(self, kind: bytes, box: bytes) -> Optional[Segment]:
        if kind == b"ftyp":
            self.ftyp, self.init, self.moof = box, None, b""
        elif kind == b"moov":
            self.init, self.defaults = read_init(self.ftyp + box)
            return self.init
        elif kind == b"moof":
            if self.init is None:
                raise Fmp4Error("a fragment before the moov")
            self.moof = box
        elif kind == b"mdat" and self.moof:
            flags = first_sample_flags(self.moof, self.defaults)
            fragment = Fragment(self.moof + box, flags is not None and not flags & NON_SYNC)
            self.moof = b""
            return fragment
        return None
