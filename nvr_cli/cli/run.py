"""`nvr-cli run`: every camera of CAMERAS, or (``--camera``) one of them as a worker."""

from __future__ import annotations

import logging
import sys
from typing import Optional

import click

from nvr_cli.cli.app import stop_on_signals, to_log_file
from nvr_cli.cli.options import config_option
from nvr_cli.cli.record import record_until_stopped
from nvr_cli.config import load_settings
from nvr_cli.core.errors import NvrError
from nvr_cli.runtime.logs import setup_logging

log = logging.getLogger(__name__)


@click.command()
@config_option()
@click.option(
    "--camera", help="run this one camera of CAMERAS in this process (what a per-camera service calls)"
)
def run(config_path: Optional[str], camera: Optional[str]) -> None:
    """Record every camera of CAMERAS, one worker process each, until stopped.

    Workers that die are restarted with backoff (RESTART_*); edits to the config files are
    applied while running: an invalid edit is reported and ignored, and only cameras whose
    settings changed are restarted. SIGINT/SIGTERM stop every worker, each finishing its open clip.
    """
    loaded = load_settings(config_path)
    if camera:
        from nvr_cli.runtime.worker import supervisor_pid, worker_settings

        s = worker_settings(loaded, camera)
        setup_logging(s.logging, prefix=f"[{camera}] ")
        for w in loaded.warnings:
            log.warning("%s", w)
        try:
            record_until_stopped(s, parent_pid=supervisor_pid())
        except NvrError as e:  # in the supervisor's log, say which camera
            e.args = (f"[{camera}] {e}",)
            to_log_file(
                f"worker exits: {e}"
            )  # stderr gets the one line; the camera's log file the reason too
            raise
        return
    from nvr_cli.runtime.fleet import Supervisor

    setup_logging(loaded.settings.logging)
    for w in loaded.warnings:
        log.warning("%s", w)
    stop = stop_on_signals(patient=True)
    sys.exit(Supervisor(config_path, loaded, stop).run())
