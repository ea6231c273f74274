"""What the review page's application needs to know besides the index, from the settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

from nvr_cli.config import LoadedSettings, OutputSettings
from nvr_cli.core.errors import NvrError
from nvr_cli.core.redact import redact
from nvr_cli.runtime.status import Verdict, fleet_status


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
        )

    def output_of(self, camera: str) -> Optional[OutputSettings]:
        return self.outputs.get(camera) or self.default_output
