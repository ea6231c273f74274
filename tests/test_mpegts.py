"""The bounds-safe MPEG-TS parser (nvr_cli.mpegts) on real ffmpeg output, from a file and from the real
RTSP server, and fuzzed with hypothesis: random bytes, the real stream mutated, any chunking. It returns
whole aligned packets and keyframe offsets, or raises TsError; never anything else."""

import json
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nvr_cli.ffmpeg.mpegts import TS, TsError, TsParser, keyframe_starts, pmt_pid_of, video_pid_of

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    # the autouse isolated_home fixture is function-scoped; nothing here depends on it
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
VIDEO_TYPES = (0x01, 0x02, 0x10, 0x1B, 0x24)
PID_OR_NONE = {None, *range(0x10, 0x1FFF)}  # what the table readers may answer: no reserved or null PID


# -- helpers --------------------------------------------------------------------------------------
def ffprobe_bin():
    return shutil.which("ffprobe") or "ffprobe"


def probe(path):
    """(the video stream's PID, byte positions of its keyframe packets) as ffprobe sees them."""
    out = subprocess.run(
        [
            ffprobe_bin(),
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_streams",
            "-show_packets",
            "-show_entries",
            "stream=id:packet=pos,flags",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    info = json.loads(out)
    pid = int(info["streams"][0]["id"], 16)
    return pid, [int(p["pos"]) for p in info["packets"] if "K" in p["flags"]]


def pid_of(pkt) -> int:
    return ((pkt[1] & 0x1F) << 8) | pkt[2]


def crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2, bit by bit (independent of the module's zlib trick)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def psi_packet(pid, table_id, body, *, pointer=0, af=None, pusi=True):
    """A TS packet carrying one PSI section (``body``: what follows section_length, CRC excluded)."""
    length = len(body) + 4
    section = bytes([table_id, 0xB0 | (length >> 8), length & 0xFF]) + body
    section += crc32_mpeg2(section).to_bytes(4, "big")
    head = bytes([0x47, (0x40 if pusi else 0) | (pid >> 8), pid & 0xFF, (0x30 if af is not None else 0x10)])
    if af is not None:
        head += bytes([len(af)]) + af
    pkt = head + bytes([pointer]) + b"\xff" * pointer + section
    return pkt + b"\xff" * (TS - len(pkt))


def pat_packet(programs, **kwargs):
    body = b"\x00\x01\xc1\x00\x00" + b"".join(
        n.to_bytes(2, "big") + (0xE000 | p).to_bytes(2, "big") for n, p in programs
    )
    return psi_packet(0, 0x00, body, **kwargs)


def pmt_packet(pmt_pid, streams, program_info=b"", **kwargs):
    body = (
        b"\x00\x01\xc1\x00\x00"
        + (0xE100).to_bytes(2, "big")
        + (0xF000 | len(program_info)).to_bytes(2, "big")
    )
    body += program_info
    for stype, pid, info in streams:
        body += (
            bytes([stype])
            + (0xE000 | pid).to_bytes(2, "big")
            + (0xF000 | len(info)).to_bytes(2, "big")
            + info
        )
    return psi_packet(pmt_pid, 0x02, body, **kwargs)


def fix_crc(pkt: bytearray, off: int):
    """Rewrite the CRC of the section in the packet at ``off`` (after whatever mutation), where it fits."""
    ptr = off + 4 + (1 + pkt[off + 4] if pkt[off + 3] & 0x20 and off + 4 < len(pkt) else 0)
    if ptr >= min(len(pkt), off + TS):
        return
    start = ptr + 1 + pkt[ptr]
    if start + 3 > min(len(pkt), off + TS):
        return
    end = start + 3 + (((pkt[start + 1] & 0x0F) << 8) | pkt[start + 2])
    if start + 7 <= end <= min(len(pkt), off + TS):
        pkt[end - 4 : end] = crc32_mpeg2(bytes(pkt[start : end - 4])).to_bytes(4, "big")


def feed_all(chunks, parser=None):
    """Feed every chunk, then drain; checks what each call returns. (all packets, keyframe offsets
    in them, number of TsErrors, the parser)."""
    parser = parser or TsParser()
    out, keys, errors = bytearray(), [], 0

    def take(chunk):
        nonlocal errors
        try:
            data, offs = parser.feed(chunk)
        except TsError as e:
            assert str(e).startswith("not an MPEG-TS stream")
            errors += 1
            return True
        assert isinstance(data, bytes) and isinstance(offs, list)
        check_packets(data, offs, parser)
        keys.extend(len(out) + k for k in offs)
        out.extend(data)
        return bool(data)

    for chunk in chunks:
        take(chunk)
    for _ in range(10_000):  # a call that neither raises nor returns packets has nothing left to do
        if not take(b""):
            break
    return bytes(out), keys, errors, parser


def check_packets(data: bytes, offs: list, parser: TsParser):
    assert len(data) % TS == 0
    n = len(data) // TS
    assert data[0::TS] == b"\x47" * n, "a returned packet does not start with the sync byte"
    assert offs == sorted(set(offs))
    for k in offs:
        assert k % TS == 0 and 0 <= k < len(data)
        pkt = data[k : k + TS]
        assert parser.video_pid is not None and pid_of(pkt) == parser.video_pid
        assert pkt[1] & 0x40 and pkt[3] & 0x20 and 0 < pkt[4] <= 183 and pkt[5] & 0x40
    assert parser.video_pid is None or 0x10 <= parser.video_pid < 0x1FFF
    assert parser.pmt_pid is None or 0x10 <= parser.pmt_pid < 0x1FFF
    if parser.header:
        assert len(parser.header) == 2 * TS and pid_of(parser.header) == 0
        assert pid_of(parser.header[TS:]) == parser.pmt_pid
        assert pmt_pid_of(parser.header[:TS]) == parser.pmt_pid
        assert video_pid_of(parser.header[TS:]) == parser.video_pid
    else:
        assert parser.video_pid is None


def in_order_within(out: bytes, source: bytes):
    """Every returned packet is 188 bytes of the input, in order, none overlapping: nothing invented."""
    at = 0
    for off in range(0, len(out), TS):
        found = source.find(out[off : off + TS], at)
        assert found >= 0, f"returned packet {off // TS} is not in the input"
        at = found + TS


def cut(data: bytes, points) -> list:
    bounds = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def check_real(ts: bytes, path):
    """The parser on a whole real TS: every byte kept, ffprobe's video PID and keyframes."""
    pid, key_pos = probe(path)
    assert key_pos, "ffprobe sees no keyframe"
    parser = TsParser()
    out, keys = parser.feed(ts)
    assert out == ts[: len(ts) - len(ts) % TS] and not len(ts) % TS
    assert parser.video_pid == pid
    assert keys == key_pos, "keyframe offsets differ from ffprobe's keyframe packets"
    assert keys == keyframe_starts(ts, pid)
    assert parser.header[:TS] in ts and parser.header[TS:] in ts
    return parser


# -- real streams ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scene(scene_cache):
    return scene_cache("mpegts", seconds=8.0)


@pytest.fixture(scope="module")
def real_ts(scene, ffmpeg, tmp_path_factory):
    path = tmp_path_factory.mktemp("mpegts") / "scene.ts"
    subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(scene),
            "-c",
            "copy",
            "-f",
            "mpegts",
            str(path),
        ],
        check=True,
        timeout=60,
    )
    return path


@pytest.fixture(scope="module")
def ts_bytes(real_ts):
    return real_ts.read_bytes()


@pytest.fixture(scope="module")
def ts_head(ts_bytes):
    """The first packets: SDT, PAT, PMT, the first keyframe and the next (fuzzed as a whole)."""
    keys = keyframe_starts(ts_bytes, 0x100)
    end = (keys[1] if len(keys) > 1 else TS * 150) + TS * 10
    return ts_bytes[:end]


def test_real_ts_from_a_file(real_ts, ts_bytes):
    parser = check_real(ts_bytes, real_ts)
    assert parser.pmt_pid == 0x1000 and parser.video_pid == 0x100  # ffmpeg's muxer defaults
    assert len(keyframe_starts(ts_bytes, parser.video_pid)) >= 5


@pytest.mark.rtsp
def test_real_ts_over_rtsp(scene, ffmpeg, rtsp_server, tmp_path):
    server = rtsp_server(scene)
    path = tmp_path / "camera.ts"
    cmd = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-rtsp_transport",
        "tcp",
        "-timeout",
        "10000000",
        "-i",
        server.url,
        "-map",
        "0:v:0",
        "-c",
        "copy",
        "-bsf:v",
        "setts=pts=if(eq(PTS\\,NOPTS)\\,0\\,PTS):dts=if(eq(DTS\\,NOPTS)\\,0\\,DTS)",  # as PacketRing
        "-f",
        "mpegts",
        "-t",
        "3",
        str(path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    ts = path.read_bytes()
    assert len(ts) > 50 * TS
    check_real(ts, path)
    # cut as the pipe would be
    whole = feed_all([ts])
    for step in (1000, TS * 512, 4093):
        assert feed_all([ts[i : i + step] for i in range(0, len(ts), step)])[:3] == whole[:3]


def test_tiny_chunks_give_the_same_as_whole(ts_head):
    whole = feed_all([ts_head])
    assert whole[0] == ts_head and whole[2] == 0 and len(whole[1]) >= 2
    for step in (1, 7, TS - 1, TS, TS + 1, 3 * TS + 5):
        assert feed_all([ts_head[i : i + step] for i in range(0, len(ts_head), step)])[:3] == whole[:3]
    view = memoryview(ts_head)
    assert feed_all([bytearray(view[:1000]), view[1000:5000], view[5000:]])[:3] == whole[:3]


@FUZZ
@given(points=st.lists(st.integers(0, 10**9), max_size=120), near=st.lists(st.integers(0, 3000), max_size=60))
def test_any_chunking_gives_the_same_packets_and_keyframes(ts_bytes, points, near):
    whole = feed_all([ts_bytes])
    got = feed_all(cut(ts_bytes, points + near))
    assert got[:3] == whole[:3]
    assert got[0] == ts_bytes and got[2] == 0
    assert got[3].header == whole[3].header and got[3].video_pid == whole[3].video_pid == 0x100


# -- crafted tables -------------------------------------------------------------------------------
def test_tables_are_read_within_bounds():
    pat = pat_packet([(0, 0x10), (1, 0x1000)])  # program 0 is the network PID: skipped
    assert pmt_pid_of(pat) == pmt_pid_of(bytearray(pat)) == pmt_pid_of(memoryview(pat)) == 0x1000
    assert pmt_pid_of(None) is None and video_pid_of("text") is None and video_pid_of(-1) is None
    assert pmt_pid_of(pat_packet([(1, 0x20)], pointer=3, af=b"\x00" * 6)) == 0x20
    assert pmt_pid_of(pat_packet([])) is None
    assert pmt_pid_of(pat_packet([(1, 0x1000)], pusi=False)) is None
    assert pmt_pid_of(pat_packet([(1, 0x1FFF)])) is None  # the null PID is no PMT
    assert pmt_pid_of(pat[:20]) is None and pmt_pid_of(b"") is None and pmt_pid_of(b"\x47") is None
    bad_crc = bytearray(pat)
    bad_crc[15] ^= 0x01
    assert pmt_pid_of(bytes(bad_crc)) is None
    streams = [(0x0F, 0x101, b"\x0a\x04und\x00"), (0x1B, 0x100, b""), (0x24, 0x102, b"")]
    assert video_pid_of(pmt_packet(0x1000, streams, program_info=b"\x05\x02ab")) == 0x100
    for stype in VIDEO_TYPES:
        assert video_pid_of(pmt_packet(0x1000, [(stype, 0x123, b"")])) == 0x123
    assert video_pid_of(pmt_packet(0x1000, [(0x0F, 0x101, b"")])) is None  # audio only
    assert video_pid_of(pat) is None and pmt_pid_of(pmt_packet(0x1000, streams)) is None  # wrong table
    # lengths that point past the section, with a valid CRC: nothing read beyond it
    assert video_pid_of(pmt_packet(0x1000, [(0x0F, 0x101, b"")], program_info=b"")[:30]) is None
    huge_info = bytearray(pmt_packet(0x1000, [(0x0F, 0x101, b""), (0x1B, 0x100, b"")]))
    huge_info[20:22] = b"\xff\xff"  # the first ES_info_length: 0xFFF
    fix_crc(huge_info, 0)
    assert video_pid_of(bytes(huge_info)) is None
    huge_prog = bytearray(pmt_packet(0x1000, [(0x1B, 0x100, b"")]))
    huge_prog[15:17] = b"\xff\xff"  # program_info_length: 0xFFF
    fix_crc(huge_prog, 0)
    assert video_pid_of(bytes(huge_prog)) is None


def test_keyframe_starts_checks_the_adaptation_field():
    pkt = bytearray(TS)
    pkt[0:6] = bytes([0x47, 0x41, 0x00, 0x30, 7, 0x50])  # PUSI, PID 0x100, AF of 7 bytes with RAI
    assert keyframe_starts(bytes(pkt) * 3, 0x100) == [0, TS, 2 * TS]
    assert keyframe_starts(bytes(pkt) * 3 + b"\x47", 0x100) == [0, TS, 2 * TS]
    assert keyframe_starts(bytes(pkt), 0x101) == [] and keyframe_starts(bytes(pkt), None) == []
    for i, v in [(0, 0x46), (1, 0x01), (3, 0x10), (4, 0), (4, 184), (4, 255), (5, 0x10)]:
        bad = bytearray(pkt)
        bad[i] = v
        assert keyframe_starts(bytes(bad), 0x100) == []
    pkt[4] = 183  # an adaptation field that fills the packet: still a keyframe start
    assert keyframe_starts(bytes(pkt), 0x100) == [0]
    assert keyframe_starts(memoryview(bytes(pkt)), 0x100) == keyframe_starts(bytearray(pkt), 0x100) == [0]


# -- sync ----------------------------------------------------------------------------------------
def test_sync_is_found_again_after_garbage(ts_head):
    garbage = bytes(range(1, 71)) * 10  # 700 bytes, no 0x47
    stream = garbage + ts_head[: TS * 20] + b"garbage!" + ts_head[TS * 20 :]
    out, keys, errors, parser = feed_all([stream])
    assert errors == 0 and out == ts_head and parser.video_pid == 0x100
    assert keys == keyframe_starts(ts_head, 0x100)
    assert feed_all(cut(stream, range(0, len(stream), 61)))[:3] == (out, keys, errors)
    # garbage inside a packet: that one packet is kept as it came (it starts right), the next is found
    stream = ts_head[: TS * 30 + 50] + b"\x47garbage" + ts_head[TS * 30 + 50 :]
    out, keys, errors, _ = feed_all([stream])
    assert errors == 0 and out == ts_head[: TS * 30] + stream[TS * 30 : TS * 31] + ts_head[TS * 31 :]
    assert feed_all(cut(stream, range(0, len(stream), 97)))[:3] == (out, keys, errors)


def test_no_sync_raises_ts_error_then_goes_on(ts_head):
    parser = TsParser(max_resync_bytes=TS * 8)
    with pytest.raises(TsError, match="^not an MPEG-TS stream"):
        parser.feed(b"\x00" * (TS * 9))
    assert parser.feed(ts_head)[0] == ts_head  # a stream that becomes TS is then read
    # packets before the failure come first; the error on the next call
    parser = TsParser(max_resync_bytes=TS * 8)
    out, _ = parser.feed(ts_head[: TS * 10] + b"\x00" * (TS * 10) + ts_head[TS * 10 :])
    assert out == ts_head[: TS * 10]
    with pytest.raises(TsError):
        parser.feed(b"")
    assert parser.feed(b"")[0] == ts_head[TS * 10 :]
    for not_bytes in ("text", -1, 5, None):
        with pytest.raises(TsError):
            TsParser().feed(not_bytes)
    assert TsParser(max_resync_bytes=TS * 64).feed(b"\x00" * (TS * 64)) == (b"", [])


# -- fuzzing --------------------------------------------------------------------------------------
positions = st.integers(0, 10**9)
FIELD_VALUES = st.one_of(st.sampled_from([0, 1, 2, 5, 9, 12, 13, 182, 183, 184, 255]), st.integers(0, 255))
LENGTHS = st.one_of(
    st.sampled_from([0, 1, 4, 5, 8, 9, 13, 170, 175, 180, 1021, 1022, 0x3FF, 0xFFF]), st.integers(0, 0xFFF)
)
mutation = st.one_of(
    st.tuples(st.just("flip"), positions, st.integers(1, 255)),
    st.tuples(st.just("insert"), positions, st.binary(min_size=1, max_size=400)),
    st.tuples(st.just("insert47"), positions, st.integers(1, 400)),  # garbage that looks like sync
    st.tuples(st.just("delete"), positions, st.integers(1, 400)),
    st.tuples(st.just("truncate"), positions),
    st.tuples(st.just("pointer"), st.sampled_from(["pat", "pmt", "any"]), positions, FIELD_VALUES),
    st.tuples(st.just("section_length"), st.sampled_from(["pat", "pmt"]), LENGTHS, st.booleans()),
    st.tuples(st.just("info_length"), st.sampled_from([15, 20]), LENGTHS),  # PMT program_info / ES_info
    st.tuples(st.just("afc"), st.sampled_from(["pat", "pmt", "key", "any"]), positions, st.integers(0, 3)),
    st.tuples(
        st.just("af_length"),
        st.sampled_from(["pat", "pmt", "key", "any"]),
        positions,
        st.sampled_from([0, 1, 182, 183, 184, 255]),
    ),
    st.tuples(
        st.just("psi_byte"),
        st.sampled_from(["pat", "pmt"]),
        st.integers(0, TS - 1),
        st.integers(0, 255),
        st.booleans(),
    ),
    st.tuples(st.just("rai"), positions),
)


def locate(data, which, pos):
    """Offset of a packet of the (current) data: the PAT, the PMT, the first keyframe or any."""
    n = len(data) // TS
    if not n:
        return None
    if which == "any":
        return pos % n * TS
    for off in range(0, n * TS, TS):
        pid, pusi = pid_of(data[off : off + 3]), data[off + 1] & 0x40
        if (
            data[off] == 0x47
            and pusi
            and (
                (which == "pat" and pid == 0)
                or (which == "pmt" and pid == 0x1000)
                or (which == "key" and pid == 0x100 and data[off + 3] & 0x20)
            )
        ):
            return off
    return None


def mutate(data: bytes, mutations) -> bytes:
    buf = bytearray(data)
    for m in mutations:
        kind = m[0]
        if kind in ("flip", "insert", "insert47", "delete", "truncate"):
            at = m[1] % (len(buf) + 1)
            if kind == "flip" and at < len(buf):
                buf[at] ^= m[2]
            elif kind == "insert":
                buf[at:at] = m[2]
            elif kind == "insert47":
                buf[at:at] = (b"\x47" + bytes(TS - 1)) * (m[2] // TS) + b"\x47" * (m[2] % TS)
            elif kind == "delete":
                del buf[at : at + m[2]]
            elif kind == "truncate":
                del buf[at:]
            continue
        if kind == "section_length":
            off = locate(buf, m[1], 0)
            if off is not None:
                buf[off + 6] = (buf[off + 6] & 0xF0) | (m[2] >> 8)
                buf[off + 7] = m[2] & 0xFF
                if m[3]:
                    fix_crc(buf, off)
        elif kind == "info_length":
            off = locate(buf, "pmt", 0)
            if off is not None:
                buf[off + m[1]] = (buf[off + m[1]] & 0xF0) | (m[2] >> 8)
                buf[off + m[1] + 1] = m[2] & 0xFF
                fix_crc(buf, off)
        elif kind == "psi_byte":
            off = locate(buf, m[1], 0)
            if off is not None:
                buf[off + m[2]] = m[3]
                if m[4]:
                    fix_crc(buf, off)
        elif kind == "rai":
            off = locate(buf, "any", m[1])
            if off is not None:
                buf[off + 3] |= 0x20
                buf[off + 5] ^= 0x40
        else:
            off = locate(buf, m[1], m[2])
            if off is None:
                continue
            if kind == "pointer":
                buf[off + 4] = m[3]
            elif kind == "afc":
                buf[off + 3] = (buf[off + 3] & 0xCF) | (m[3] << 4)
            elif kind == "af_length":
                buf[off + 3] |= 0x20
                buf[off + 4] = m[3]
    return bytes(buf)


@FUZZ
@given(
    data=st.binary(max_size=6000),
    points=st.lists(positions, max_size=20),
    max_resync=st.sampled_from([0, 1, TS, TS * 4, TS * 64]),
)
def test_fuzz_random_bytes(data, points, max_resync):
    out, keys, errors, parser = feed_all(cut(data, points), TsParser(max_resync_bytes=max_resync))
    in_order_within(out, data)
    assert not keys or parser.video_pid is not None


@FUZZ
@given(
    packets_=st.lists(
        st.tuples(
            st.sampled_from([0, 0x1000, 0x100, 0x11, 0x1FFF]),
            st.integers(0, 255),
            st.binary(min_size=TS - 3, max_size=TS - 3),
        ),
        min_size=4,
        max_size=30,
    ),
    points=st.lists(positions, max_size=10),
)
def test_fuzz_random_packets_in_sync(packets_, points):
    """Garbage that keeps sync: random PAT/PMT/video packets (headers and payload at random)."""
    data = b"".join(bytes([0x47, (b1 & 0xE0) | (pid >> 8), pid & 0xFF]) + body for pid, b1, body in packets_)
    out, keys, errors, parser = feed_all(cut(data, points))
    assert out == data and errors == 0
    for off in range(0, len(data), TS):
        assert pmt_pid_of(data[off : off + TS]) in PID_OR_NONE
        assert video_pid_of(data[off : off + TS]) in PID_OR_NONE
        assert pmt_pid_of(data[off : off + TS + 5]) == pmt_pid_of(data[off : off + TS])


@FUZZ
@given(
    mutations=st.lists(mutation, min_size=1, max_size=8),
    points=st.lists(positions, max_size=40),
    near=st.lists(st.integers(0, 2000), max_size=20),
)
def test_fuzz_mutated_real_stream(ts_head, mutations, points, near):
    data = mutate(ts_head, mutations)
    whole = feed_all([data])
    in_order_within(whole[0], data)
    got = feed_all(cut(data, points + near))
    assert got[:3] == whole[:3], "the chunking changed the packets, keyframes or errors"
    for off in range(0, len(data), TS):  # the table readers on every (mutated) packet and on slices of it
        for pkt in (data[off : off + TS], data[off : off + 7], data[off + 1 : off + TS]):
            assert pmt_pid_of(pkt) in PID_OR_NONE
            assert video_pid_of(pkt) in PID_OR_NONE
    for pid in (0x100, None, 0, 0x1FFF):
        for part in (data, data[1:], data[TS // 2 :]):
            assert all(k % TS == 0 and k < len(part) for k in keyframe_starts(part, pid))


@FUZZ
@given(
    pat=st.binary(max_size=TS + 10),
    pmt=st.binary(max_size=TS + 10),
    head=st.sampled_from([b"", b"\x47\x40\x00\x10", b"\x47\x50\x00\x10"]),
    pid=st.one_of(st.none(), st.integers(-2, 0x2001)),
)
def test_fuzz_table_readers_on_any_bytes(pat, pmt, head, pid):
    assert pmt_pid_of(head + pat) in PID_OR_NONE
    assert video_pid_of(head + pmt) in PID_OR_NONE
    starts = keyframe_starts(head + pat + pmt, pid)
    assert all(k % TS == 0 for k in starts)
