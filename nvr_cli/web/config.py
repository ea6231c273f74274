"""What the review page's application needs to know besides the index, from the settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

from nvr_cli.config import LoadedSettings, OutputSettings, Settings
from nvr_cli.core.errors import NvrError, SourceError
from nvr_cli.core.redact import redact
from nvr_cli.runtime.status import Verdict, fleet_status, live_socket_path
from nvr_cli.source.spec import parse_source


@dataclass(frozen=True)
class LiveSource:
    """How live view reaches one camera: its recorder's socket, else (``url``) the camera itself."""

    socket: Path  # the recording worker's live socket (live_socket_path)
    url: Optional[str] = field(default=None, repr=False)  # unredacted: only ever given to ffmpeg
    transport: str = "tcp"  # RTSP_TRANSPORT
    timeout: float = 10.0  # READ_TIMEOUT_SECS: ffmpeg gives up on a camera silent this long
    ffmpeg: Optional[str] = None  # FFMPEG_PATH


@dataclass
class WebConfig:
    """What the application needs besides the index, from the settings (``from_settings``) or a test."""

    users: Mapping[str, str] = field(default_factory=dict)  # WEB_USERS: a login is required if any
    local_time: bool = True
    sources: Mapping[str, Optional[str]] = field(default_factory=dict)  # camera -> its source, redacted
    roots: tuple = ()  # storage roots: a file is served only from a camera's folder under one
    outputs: Mapping[str, OutputSettings] = field(default_factory=dict)  # camera -> where it records
    default_output: Optional[OutputSettings] = None  # for cameras found in the storage only
    verdicts: Callable[[], Mapping[str, Verdict]] = dict  # camera -> whether it is recording now
    stale_after: float = 30.0
    live: Mapping[str, LiveSource] = field(default_factory=dict)  # camera -> how to watch it live
    live_socket: Optional[Callable[[str], Path]] = None  # camera -> its worker's socket, for any camera
    ffmpeg: Optional[str] = None  # FFMPEG_PATH

    @property
    def login_required(self) -> bool:
        return bool(self.users)

    @classmethod
    def from_settings(cls, loaded: LoadedSettings) -> WebConfig:
        s = loaded.settings
        cams = dict(loaded.cameras) or ({s.CAMERA_NAME: s} if s.cam is not None else {})

        def verdicts() -> dict:
            try:
                return {v.camera: v for v in fleet_status(loaded)}
            except NvrError:  # no camera configured and no status file: nothing to say
                return {}

        return cls(
            users=dict(s.WEB_USERS),
            local_time=s.LOCAL_TIME,
            sources={n: redact(c.cam) if c.cam is not None else None for n, c in cams.items()},
            roots=tuple(
                dict.fromkeys(Path(p) for p in [s.PATH_FOR_VIDEO, *(c.PATH_FOR_VIDEO for c in cams.values())])
            ),
            outputs={n: c.output for n, c in cams.items()},
            default_output=s.output,
            verdicts=verdicts,
            stale_after=s.STATUS_STALE_SECS,
            live={n: _live_source(c, n) for n, c in cams.items()},
            live_socket=lambda name: live_socket_path(s, name),
            ffmpeg=s.FFMPEG_PATH,
        )

    def live_of(self, camera: str) -> Optional[LiveSource]:
        """How to watch ``camera`` live; a camera of the storage only has its recorder's socket."""
        if camera in self.live:
            return self.live[camera]
        if self.live_socket is None:
            return None
        return LiveSource(socket=self.live_socket(camera), ffmpeg=self.ffmpeg)

    def output_of(self, camera: str) -> Optional[OutputSettings]:
        return self.outputs.get(camera) or self.default_output


def _live_source(c: Settings, name: str) -> LiveSource:
    """A configured camera's live source: its URL only for an RTSP camera and WEB_LIVE_DIRECT."""
    url = c.cam if c.WEB_LIVE_DIRECT and c.cam is not None and _is_rtsp(c.cam) else None
    return LiveSource(
        socket=live_socket_path(c, name),
        url=url,
        transport=c.RTSP_TRANSPORT,
        timeout=c.READ_TIMEOUT_SECS,
        ffmpeg=c.FFMPEG_PATH,
    )


def _is_rtsp(source: object) -> bool:
    try:
        return parse_source(source).kind == "rtsp"
    except SourceError:
        return False
