"""The three ways an event becomes a clip, one class each; ClipSink picks one when it is made.

- ``ReencodedClips``: the decoded frames, encoded again as H.264 (files, USB and HTTP cameras,
  ``--reencode``); the only mode that needs the frames' images.
- ``PacketClips``: the camera's own packets, copied live from the PacketRing (RTSP cameras).
- ``SegmentCutClips``: nothing is written during the event; the clip is cut afterwards from the
  continuous segments (``EVENT_REENCODE = False`` with continuous recording).

ClipSink drives every mode the same way: ``open`` at the event's first frame, ``write`` for each
frame, ``end_input`` when the event closes it (analysis thread), then ``finish`` on the finisher
thread, which returns the finished clip or None. The sink keeps what all modes share (paths,
sidecar, thumbnail, callbacks); what differs between the modes lives here only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import nvr_cli.storage.paths as storage
from nvr_cli.config import OutputSettings
from nvr_cli.core.errors import StorageError
from nvr_cli.core.frames import Frame
from nvr_cli.output.encoders import open_writer
from nvr_cli.output.event_cut import EventCutter
from nvr_cli.output.packet_clip import open_packet_clip
from nvr_cli.source.packets import PacketRing

if TYPE_CHECKING:  # the sink's record; only named here, so no import cycle at run time
    from nvr_cli.output.sinks import EventRecord

log = logging.getLogger(__name__)


@dataclass
class ClipState:
    """One clip's state, from open to finished: handed to the finisher when the event closes it."""

    final: Optional[Path] = None
    part: Optional[Path] = None
    writer: object = None
    failed: Optional[str] = None
    fps: float = 0.0
    slots: int = 0  # output frames written, incl. duplicates that keep file time = source time
    t0: float = 0.0
    offset: float = 0.0  # wall-clock offset of this clip's frame times
    prev: Optional[Frame] = None  # the last frame given, repeated to fill a file's timing gaps


class ClipWriter:
    """A clip mode. ``cutter`` (an EventCutter), when given, also cuts each kept event from the
    continuous segments: beside the clip as ``.lossless.mp4``, or as the clip itself."""

    needs_images = True  # whether the pre-alarm buffer and the pipeline must keep decoded images
    encoding = ""  # the sidecar's "encoding"

    def __init__(
        self, settings: OutputSettings, *, ffmpeg: Optional[str] = None, cutter: Optional[EventCutter] = None
    ):
        self.s = settings
        self.ffmpeg = ffmpeg
        self.cutter = cutter

    # -- analysis thread ----------------------------------------------------------------------------
    def open(self, c: ClipState, size: tuple, first_ts: float) -> None:
        """Start writing the clip at ``c.part`` (``c.final`` is already chosen). May raise StorageError."""
        raise NotImplementedError

    def write(self, c: ClipState, frame: Frame, live: bool) -> None:
        """One frame of the event. May raise StorageError (the clip then stops, recording goes on)."""

    def end_input(self, c: ClipState) -> None:
        """The event is over, or writing failed: take nothing more in. Must not wait."""

    # -- finisher thread ----------------------------------------------------------------------------
    def finish(self, c: ClipState, rec: EventRecord, keep: bool) -> Optional[Path]:
        """Close the clip and make it final; the clip's path if it was kept and made, else None.
        May correct ``rec`` (start, end, frames) to what the file holds."""
        raise NotImplementedError

    def sidecar_clip(self, final: Path) -> Optional[str]:
        """The sidecar's "clip": the clip's file name, or None while the clip is still to come."""
        return final.name

    def submit_cut(self, c: ClipState, final: Path, rec: EventRecord) -> None:
        """Hand the kept event to the cutter, if there is one (its result goes into the sidecar)."""
        if self.cutter is not None:
            off = c.offset
            self.cutter.submit(
                rec.start + off,
                rec.end + off,
                final.with_name(final.stem + ".lossless.mp4"),
                final.with_suffix(".json"),
            )

    def log_finished(self, final: Path, rec: EventRecord, reason: str) -> None:
        log.info(
            "clip %s: %.1f s, %d frames, %.1f s pre-alarm (%s)",
            final,
            rec.end - rec.start,
            rec.frames,
            rec.pre_alarm,
            reason,
        )


class _FileClips(ClipWriter):
    """Modes that write the clip during the event, as a ``.part`` file made final at the end."""

    def finish(self, c: ClipState, rec: EventRecord, keep: bool) -> Optional[Path]:
        part, writer = c.part, c.writer
        if writer is not None:
            try:
                writer.close()
            except StorageError as e:
                c.failed = str(e)
                log.error("%s", e)
        if part is None or not part.exists():
            return None
        if not keep:
            part.unlink(missing_ok=True)
            return None
        if c.failed:
            # Not complete, so it keeps its .part name (the next start finishes it, as after a
            # crash); a file of which nothing plays is not kept at all.
            if storage.plays(part):
                log.error(
                    "clip %s is incomplete (%s): kept as written, it plays up to where writing stopped",
                    part,
                    c.failed,
                )
            else:
                part.unlink(missing_ok=True)
                log.error("nothing of clip %s could be saved (%s)", part.name, c.failed)
            return None
        try:
            final, on_disk = storage.finalize(part, self.ffmpeg)
        except OSError as e:
            log.error("cannot finish %s: %s; it stays as %s (playable)", part.name, e.strerror, part.name)
            return None
        self._account(c, final, rec, on_disk)
        return final

    def _account(self, c: ClipState, final: Path, rec: EventRecord, on_disk: Optional[int]) -> None:
        """Make ``rec`` say what reached the file (``on_disk``: its frames, None if not known)."""


class ReencodedClips(_FileClips):
    """The decoded frames, encoded as H.264 by ffmpeg (OpenCV's mp4v without ffmpeg)."""

    encoding = "re-encoded"

    def open(self, c: ClipState, size: tuple, first_ts: float) -> None:
        c.writer = open_writer(
            c.part, size, c.fps, ffmpeg=self.ffmpeg, crf=self.s.VIDEO_CRF, preset=self.s.VIDEO_PRESET
        )

    def write(self, c: ClipState, frame: Frame, live: bool) -> None:
        try:
            if live:
                c.writer.write(frame.image)
                c.slots += 1
                return
            # files: place frames by presentation time, so variable-frame-rate footage keeps its timing
            slot = int((frame.ts - c.t0) * c.fps + 0.5)
            if slot < c.slots:
                return
            fill = min(slot - c.slots, int(c.fps * 2))
            for _ in range(fill):
                c.writer.write(c.prev.image)
            c.writer.write(frame.image)
            c.slots += fill + 1
        finally:
            c.prev = frame

    def _account(self, c: ClipState, final: Path, rec: EventRecord, on_disk: Optional[int]) -> None:
        if on_disk is not None and on_disk < c.slots:
            # a write error ffmpeg did not report (a disk that filled mid-fragment): say so, never claim it
            c.failed = f"only {on_disk} of {c.slots} frames reached the disk"
            log.error("clip %s: %s", final.name, c.failed)
            rec.frames_lost = c.slots - on_disk
            rec.frames = on_disk


class PacketClips(_FileClips):
    """The camera's own packets (a PacketRing), copied into the clip as they arrive: no encoder."""

    needs_images = False
    encoding = "camera's own (stream copy)"

    def __init__(
        self,
        settings: OutputSettings,
        *,
        packets: PacketRing,
        ffmpeg: Optional[str] = None,
        cutter: Optional[EventCutter] = None,
    ):
        super().__init__(settings, ffmpeg=ffmpeg, cutter=cutter)
        self.ring = packets

    def open(self, c: ClipState, size: tuple, first_ts: float) -> None:
        c.writer = open_packet_clip(self.ring, c.part, first_ts)

    def write(self, c: ClipState, frame: Frame, live: bool) -> None:
        c.writer.write(None)  # takes no image: raises if the clip's ffmpeg failed (a full disk)
        c.slots += 1

    def end_input(self, c: ClipState) -> None:
        if c.writer is not None:
            c.writer.end_input()  # the ring feeds it no more packets from now on

    def _account(self, c: ClipState, final: Path, rec: EventRecord, on_disk: Optional[int]) -> None:
        # the clip is what the camera sent from the keyframe at or before the pre-alarm's start
        # (or from the first keyframe after a connect)
        if c.writer is None:
            return
        if c.writer.start_ts is not None:
            rec.start = c.writer.start_ts
        if c.writer.interrupted and self.ffmpeg:
            # the connection ended mid-clip, maybe mid-frame: the remux counts the packet it copied,
            # a player shows only frames that decode, and the sidecar promises those
            on_disk = storage.decoded_frames(self.ffmpeg, final) or on_disk
        rec.frames = on_disk if on_disk is not None else rec.frames
        if on_disk and c.fps:  # it holds what the camera sent until the event's end reached it
            rec.end = rec.start + on_disk / c.fps


class SegmentCutClips(ClipWriter):
    """Nothing is written during the event: the lossless cut from the continuous segments is the
    clip. The sidecar and thumbnail come at once, the clip when its last segment is complete."""

    needs_images = False
    encoding = "camera's own (stream copy)"

    def open(self, c: ClipState, size: tuple, first_ts: float) -> None:
        c.part = None

    def finish(self, c: ClipState, rec: EventRecord, keep: bool) -> Optional[Path]:
        return c.final if keep else None

    def sidecar_clip(self, final: Path) -> Optional[str]:
        return None  # the cutter names the clip in the sidecar once it is cut

    def submit_cut(self, c: ClipState, final: Path, rec: EventRecord) -> None:
        off = c.offset
        self.cutter.submit(rec.start + off, rec.end + off, final, final.with_suffix(".json"))

    def log_finished(self, final: Path, rec: EventRecord, reason: str) -> None:
        log.info(
            "event %d: %.1f s, clip %s will be cut from the segments",
            rec.event,
            rec.end - rec.start,
            final.name,
        )


def choose_clip_writer(
    settings: OutputSettings,
    *,
    reencode: Optional[bool] = None,
    ffmpeg: Optional[str],
    cutter: Optional[EventCutter] = None,
    packets: Optional[PacketRing] = None,
) -> ClipWriter:
    """The mode for what the recorder set up: a cutter with EVENT_REENCODE = False cuts the clips
    from the segments; a packet ring copies the camera's packets; anything else re-encodes frames."""
    if reencode is False and cutter is not None:
        return SegmentCutClips(settings, ffmpeg=ffmpeg, cutter=cutter)
    if packets is not None:
        return PacketClips(settings, packets=packets, ffmpeg=ffmpeg, cutter=cutter)
    return ReencodedClips(settings, ffmpeg=ffmpeg, cutter=cutter)
