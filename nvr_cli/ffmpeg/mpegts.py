"""A small, bounds-safe MPEG-TS parser: sync, PAT, PMT, the video PID and its keyframes.

Pure: no I/O, no threads. It takes any bytes and raises nothing but :class:`TsError`. The hot path
(``keyframe_starts`` and the sync check in ``TsParser.feed``) runs in C through strided slices,
``bytes.translate`` and big-integer ANDs: no Python loop over the packets of a chunk.

Only what ffmpeg's TS muxer writes is needed: a PAT and a PMT that each fit one packet (ffmpeg
repeats them before keyframes), the video stream's random access indicator on the first packet of
every keyframe.
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import Optional

TS = 188  # MPEG-TS packet size
SYNC = 0x47
PAT_PID = 0x0000
NULL_PID = 0x1FFF
VIDEO_STREAM_TYPES = frozenset((0x01, 0x02, 0x10, 0x1B, 0x24))  # MPEG-1/2 video, MPEG-4 part 2, H.264, H.265
SYNC_CHECK = 4  # a sync byte at this many packet starts in a row is where the packets are
_SYNC_RUN = bytes([SYNC]) * SYNC_CHECK


class TsError(ValueError):
    """The bytes are not an MPEG-TS stream (no sync found)."""

    def __init__(self, why: str):
        super().__init__(f"not an MPEG-TS stream: {why}")


# -- keyframes ------------------------------------------------------------------------------------
def _table(pred) -> bytes:
    """A ``bytes.translate`` table: byte b -> 1 if pred(b) else 0."""
    return bytes(1 if pred(b) else 0 for b in range(256))


_IS_SYNC = _table(lambda b: b == SYNC)
_HAS_AF = _table(lambda b: b & 0x20)  # adaptation_field_control: an adaptation field is present
_AF_LEN_OK = _table(lambda b: 0 < b <= TS - 5)  # room for its flags byte, and inside the packet
_RANDOM_ACCESS = _table(lambda b: b & 0x40)  # random_access_indicator among the adaptation field flags


@lru_cache(maxsize=16)
def _pid_tables(pid: int) -> tuple:
    hi, lo = pid >> 8, pid & 0xFF
    # byte 1: payload_unit_start set and the PID's top 5 bits (error and priority bits don't matter)
    return _table(lambda b: b & 0x40 and b & 0x1F == hi), _table(lambda b: b == lo)


def keyframe_starts(data: bytes, video_pid: Optional[int]) -> list:
    """Offsets of the TS packets in ``data`` that begin a keyframe of ``video_pid``.

    ``data`` is read as whole 188-byte packets from offset 0 (a partial tail is ignored). A packet
    counts when it has the sync byte, the PID, payload_unit_start, an adaptation field of a sane
    length and the random access indicator set in it (which ffmpeg's muxer sets on the first packet
    of every keyframe). Same meaning as ``packets.ts_keyframe_starts``, but every field is checked.
    """
    if video_pid is None or not 0 <= video_pid < NULL_PID:
        return []
    if not isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(memoryview(data))
        except TypeError:
            return []
    n = len(data) // TS
    if not n:
        return []
    end = n * TS
    pid_hi, pid_lo = _pid_tables(video_pid)
    # one byte per packet and per condition, 1 where it holds; ANDed as big integers: all in C
    hits = -1
    for pos, table in (
        (1, pid_hi),
        (2, pid_lo),
        (0, _IS_SYNC),
        (3, _HAS_AF),
        (4, _AF_LEN_OK),
        (5, _RANDOM_ACCESS),
    ):
        hits &= int.from_bytes(data[pos:end:TS].translate(table), "big")
        if not hits:
            return []
    flags = hits.to_bytes(n, "big")
    starts = []
    i = flags.find(1)
    while i >= 0:
        starts.append(i * TS)
        i = flags.find(1, i + 1)
    return starts


# -- PSI: PAT and PMT -----------------------------------------------------------------------------
_BIT_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def _crc_ok(section: bytes) -> bool:
    """Whether a PSI section (its CRC_32 included) checks: CRC-32/MPEG-2 over it all is 0.

    That CRC is zlib's with each byte's bits reversed (and the result's, but 0 reversed is 0)."""
    return zlib.crc32(section.translate(_BIT_REVERSED)) == 0xFFFFFFFF


def _section(packet, table_id: int) -> Optional[bytes]:
    """The PSI section with ``table_id`` that starts in this packet and ends in it (CRC checked)."""
    if not isinstance(packet, (bytes, bytearray)):
        try:
            packet = bytes(memoryview(packet))
        except TypeError:
            return None
    size = min(len(packet), TS)
    if size < 5 or packet[0] != SYNC or not packet[1] & 0x40:
        return None  # too short, no sync, or no payload_unit_start: no section starts here
    control = packet[3] & 0x30
    if not control & 0x10:
        return None  # no payload
    pos = 4
    if control & 0x20:  # adaptation field first: its length byte, then that many bytes
        pos += 1 + packet[4]
    if pos >= size:
        return None
    pos += 1 + packet[pos]  # pointer_field: where the section starts
    if pos + 3 > size or packet[pos] != table_id:
        return None
    if not packet[pos + 1] & 0x80:
        return None  # section_syntax_indicator must be set for a PAT and a PMT
    length = ((packet[pos + 1] & 0x0F) << 8) | packet[pos + 2]
    # after section_length: 5 bytes of header (PAT) or 9 (PMT), entries, then the CRC_32
    if length < 9 or length > 1021 or pos + 3 + length > size:
        return None  # malformed, or spread over packets (ffmpeg's never are)
    section = bytes(packet[pos : pos + 3 + length])
    return section if _crc_ok(section) else None


def _valid_pid(pid: int) -> bool:
    return 0x0010 <= pid < NULL_PID  # 0x00-0x0F are reserved for tables, 0x1FFF is padding


def pmt_pid_of(pat_packet: bytes) -> Optional[int]:
    """The PMT PID of the first program in a PAT packet; None for anything malformed."""
    section = _section(pat_packet, 0x00)
    if section is None:
        return None
    end = len(section) - 4  # the CRC
    for pos in range(8, end - 3, 4):  # program_number(16) reserved(3) PID(13)
        program = (section[pos] << 8) | section[pos + 1]
        if program:  # program 0 is the network PID, not a program
            pid = ((section[pos + 2] & 0x1F) << 8) | section[pos + 3]
            return pid if _valid_pid(pid) else None
    return None


def _video_stream(pmt_packet: bytes) -> Optional[tuple]:
    """(stream_type, PID) of the first video stream in a PMT packet; None for anything malformed."""
    section = _section(pmt_packet, 0x02)
    if section is None:
        return None
    end = len(section) - 4
    # table_id(8) length(16) program_number(16) version(8) section_number(8) last(8) PCR_PID(16)
    pos = 12 + (((section[10] & 0x0F) << 8) | section[11])  # program_info_length: skip descriptors
    while pos + 5 <= end:
        stype = section[pos]
        pid = ((section[pos + 1] & 0x1F) << 8) | section[pos + 2]
        if stype in VIDEO_STREAM_TYPES:
            return (stype, pid) if _valid_pid(pid) else None
        pos += 5 + (((section[pos + 3] & 0x0F) << 8) | section[pos + 4])  # ES_info_length
    return None


def video_pid_of(pmt_packet: bytes) -> Optional[int]:
    """The PID of the first video stream (MPEG-1/2/4 video, H.264, H.265) in a PMT packet; None for
    anything malformed or a PMT with no video."""
    found = _video_stream(pmt_packet)
    return found[1] if found else None


CODEC_NAMES = {0x1B: "h264", 0x24: "hevc"}  # stream_type -> codec, as a live viewer names it


def video_codec_of(header: bytes) -> str:
    """``h264``, ``hevc`` or ``other``: the video codec named by a ``TsParser.header`` (PAT + PMT)."""
    found = _video_stream(header[TS : 2 * TS])
    return CODEC_NAMES.get(found[0], "other") if found else "other"


# -- the stream -----------------------------------------------------------------------------------
class TsParser:
    """Feed it chunks of a TS byte stream as they arrive; it finds sync, PAT, PMT and the video PID.

    ``feed`` returns whole, aligned packets only and keeps every byte of a good stream, however it is
    cut into chunks: the same stream gives the same packets and keyframes whatever the chunking.
    """

    def __init__(self, max_resync_bytes: int = TS * 64):
        self.max_resync_bytes = max_resync_bytes
        self.header = b""  # the PAT packet + PMT packet (b"" until both are known)
        self.video_pid: Optional[int] = None
        self.pmt_pid: Optional[int] = None
        self._pat = b""
        self._pending = b""  # a partial packet (in sync), or bytes to look for sync in
        self._synced = False
        self._dropped = 0  # bytes thrown away since sync was last seen
        self._failed = False  # sync was not found within max_resync_bytes: raise on the next call

    def feed(self, chunk: bytes) -> tuple:
        """Returns (aligned whole TS packets ready to keep, offsets within them of the packets that
        start a keyframe of the video PID). Bytes before the video PID is known are returned too
        (offsets []). Keeps a partial trailing packet for the next call. Re-finds sync after garbage
        (a 0x47 byte every 188 bytes, checked over a few packets), dropping what is not TS.

        Raises TsError when no sync was found within ``max_resync_bytes`` of input; those bytes are
        dropped and the next call goes on looking from there. A call that has packets to return
        returns them, keeping what follows the failure, and the next call raises (keeping its chunk).
        So the packets (and the errors, in order) are the same however the stream is cut in chunks.
        """
        if not isinstance(chunk, bytes):
            try:
                chunk = bytes(memoryview(chunk))  # bytes-like only (bytes(5) would be 5 zeros)
            except TypeError:
                raise TsError(f"expected bytes, not {type(chunk).__name__}") from None
        buf = self._pending + chunk if self._pending else chunk
        if self._failed:
            self._failed, self._pending = False, buf
            raise TsError(f"no sync byte every {TS} bytes in {self.max_resync_bytes + 1} bytes")
        pieces = []
        pos = 0
        size = len(buf)
        while pos < size:
            if self._synced:
                n = (size - pos) // TS
                if not n:
                    if buf[pos] != SYNC:  # the next packet is already known not to start here
                        self._synced = False
                        continue
                    break
                heads = buf[pos : pos + n * TS : TS]
                good = n if heads.count(SYNC) == n else n - len(heads.lstrip(b"\x47"))
                if good:
                    pieces.append(buf[pos : pos + good * TS])
                    pos += good * TS
                if good < n:
                    self._synced = False  # lost: look again from the byte that should have been 0x47
                continue
            found, at = self._find_sync(buf, pos)
            allowed = self.max_resync_bytes - self._dropped  # bytes that may still go before it's an error
            if at - pos > allowed:
                pos += allowed + 1  # dropped one byte too many: no sync within max_resync_bytes
                self._dropped = 0
                if pieces:
                    self._failed = True  # return these first
                    break
                self._pending = buf[pos:]
                raise TsError(f"no sync byte every {TS} bytes in {self.max_resync_bytes + 1} bytes")
            self._dropped += at - pos
            pos = at
            if not found:
                break  # too few bytes to tell yet: keep them
            self._synced, self._dropped = True, 0
        self._pending = buf[pos:]
        if not pieces:
            return b"", []
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        first = 0
        if self.video_pid is None:
            first = self._find_tables(data)
            if first is None:
                return data, []
        keys = keyframe_starts(data[first:] if first else data, self.video_pid)
        return data, [first + k for k in keys] if first else keys

    @staticmethod
    def _find_sync(buf: bytes, pos: int) -> tuple:
        """(True, i) for the first i >= pos where SYNC_CHECK packets in a row start with 0x47;
        (False, i) when there is none yet: bytes from i on may still hold one (keep them)."""
        size = len(buf)
        span = (SYNC_CHECK - 1) * TS + 1
        i = buf.find(SYNC, pos)
        while i >= 0:
            if i + span > size:
                return False, i  # can't tell yet: wait for more bytes
            if buf[i : i + span : TS] == _SYNC_RUN:
                return True, i
            i = buf.find(SYNC, i + 1)
        return False, size

    def _find_tables(self, data: bytes) -> Optional[int]:
        """Look for the PAT and PMT in these packets; the offset just after the PMT packet that names
        the video PID, or None while it is not known."""
        for off in range(0, len(data), TS):
            b1 = data[off + 1]
            if not b1 & 0x40:
                continue
            pid = ((b1 & 0x1F) << 8) | data[off + 2]
            if pid == PAT_PID:
                pmt_pid = pmt_pid_of(data[off : off + TS])
                if pmt_pid is not None:
                    self.pmt_pid, self._pat = pmt_pid, data[off : off + TS]
            elif pid == self.pmt_pid:
                pmt = data[off : off + TS]
                video_pid = video_pid_of(pmt)
                if video_pid is not None:
                    self.video_pid = video_pid
                    self.header = self._pat + pmt
                    return off + TS
        return None
