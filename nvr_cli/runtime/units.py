"""Unit files for systemd and program blocks for supervisor, to run nvr-cli as a service: `run` (all
cameras, and the review page when WEB_ENABLED), `run --camera NAME` per camera, and `serve` (the
review page) on its own, for per-camera services or a machine that only shows recordings."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from nvr_cli.config import Settings


def executable() -> list:
    """How to start nvr-cli from a service: this installation's script, else its Python with -m."""
    beside = Path(sys.executable).parent / "nvr-cli"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("nvr-cli")
    if found:
        return [str(Path(found).resolve())]
    return [sys.executable, "-m", "nvr_cli"]


SERVE = "serve"  # the unit name's part for the review page: nvr-cli-serve.service


def _command(camera: Optional[str], config: Optional[str], serve: bool = False) -> str:
    what = ["serve"] if serve else ["run"] + (["--camera", camera] if camera else [])
    argv = executable() + what + (["--config", config] if config else [])
    return " ".join(shlex.quote(a) for a in argv)


def unit_name(camera: Optional[str]) -> str:
    """systemd allows letters, digits and ``:_.-`` in unit names: the rest as ``\\xNN``, as systemd-escape
    does.
    """
    if not camera:
        return "nvr-cli.service"
    safe = "".join(
        c if (c.isascii() and c.isalnum()) or c in ":_.-" else "".join(f"\\x{b:02x}" for b in c.encode())
        for c in camera
    )
    return f"nvr-cli-{safe}.service"


def systemd_unit(
    camera: Optional[str],
    *,
    config: Optional[str],
    home: str,
    user: Optional[str],
    stop_timeout: float,
    restarts_per_hour: int,
    serve: bool = False,
) -> str:
    """A systemd unit that runs ``camera`` (None: all of them), or (``serve``) the review page."""
    what = "review page (nvr-cli serve)" if serve else f"camera {camera}" if camera else "all cameras"
    lines = [
        "[Unit]",
        f"Description=nvr-cli {'' if serve else 'motion recorder: '}{what}",
        "After=network-online.target",
        "Wants=network-online.target",
        # systemd's own restart limit, as RESTARTS_PER_HOUR is for `run`'s workers
        "StartLimitIntervalSec=3600",
        f"StartLimitBurst={restarts_per_hour}",
        "",
        "[Service]",
        "Type=simple",
        # systemd expands % specifiers and $VARIABLES in ExecStart
        f"ExecStart={_command(camera, config, serve).replace('%', '%%').replace('$', '$$')}",
        f"Environment=NVR_CLI_HOME={home}",
        f"WorkingDirectory={home}",
        *([f"User={user}"] if user else []),
        "Restart=always",
        "RestartSec=5",
        # SIGTERM to nvr-cli only: `run` stops its workers itself, each finishing its open clip
        "KillSignal=SIGTERM",
        "KillMode=mixed",
        f"TimeoutStopSec={int(stop_timeout + 30)}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def supervisor_program(
    camera: Optional[str],
    *,
    config: Optional[str],
    home: str,
    user: Optional[str],
    stop_timeout: float,
    serve: bool = False,
) -> str:
    """A supervisor program block that runs ``camera`` (None: all of them), or (``serve``) the page."""
    name = f"nvr-cli-{SERVE}" if serve else f"nvr-cli-{camera}" if camera else "nvr-cli"
    lines = [
        f"[program:{name}]",
        f"command={_command(camera, config, serve).replace('%', '%%')}",  # supervisor expands %(name)s
        f"directory={home}",
        f'environment=NVR_CLI_HOME="{home}"',
        *([f"user={user}"] if user else []),
        "autostart=true",
        "autorestart=true",
        "startsecs=5",
        "startretries=100",
        "stopsignal=TERM",
        f"stopwaitsecs={int(stop_timeout + 30)}",
        # the group gets SIGKILL only if nvr-cli did not finish in time
        "stopasgroup=false",
        "killasgroup=true",
        "redirect_stderr=true",
    ]
    return "\n".join(lines) + "\n"


def service_files(
    kind: str,
    cameras: tuple,
    *,
    settings: Settings,
    config: Optional[str],
    home: str,
    user: Optional[str],
    web: bool = False,
) -> list:
    """(file name, text) of each systemd unit (``kind`` "systemd") or supervisor program ("supervisor"):
    one per camera of ``cameras``, or one for all cameras if there are none. The review page: in the
    unit for all cameras when WEB_ENABLED (`run` serves it), a unit of its own beside per-camera
    units when WEB_ENABLED, and only that unit with ``web``."""
    from nvr_cli.core.errors import ConfigError

    out = []
    wanted = [] if web else [(cam, False) for cam in cameras or (None,)]
    if web or (cameras and settings.WEB_ENABLED):
        if SERVE in cameras:
            raise ConfigError(f"a camera named {SERVE!r} has the review page's unit name: rename one of them")
        wanted.append((None, True))
    for cam, serve in wanted:
        if kind == "systemd":
            text = systemd_unit(
                cam,
                config=config,
                home=home,
                user=user,
                stop_timeout=30.0 if serve else settings.STOP_TIMEOUT_SECS,
                restarts_per_hour=settings.RESTARTS_PER_HOUR,
                serve=serve,
            )
            name = unit_name(SERVE if serve else cam)
        else:
            text = supervisor_program(
                cam,
                config=config,
                home=home,
                user=user,
                stop_timeout=30.0 if serve else settings.STOP_TIMEOUT_SECS,
                serve=serve,
            )
            name = f"nvr-cli-{SERVE if serve else cam}.conf" if serve or cam else "nvr-cli.conf"
        out.append((name, text))
    return out
