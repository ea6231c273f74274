"""`nvr-cli record`: one source until stopped."""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

import click

from nvr_cli.cli.app import stop_on_signals
from nvr_cli.cli.options import json_option, load_with_options, settings_options
from nvr_cli.config import Settings


@click.command()
@click.argument("source", required=False)
@settings_options
@click.option(
    "--realtime", is_flag=True, help="play a file source at its own pace (default: as fast as possible)"
)
@json_option("print each finished clip as one JSON line on stdout")
def record(
    source: Optional[str], config_path: Optional[str], realtime: bool, as_json: bool, **opts: object
) -> None:
    """Record motion events from SOURCE (default: `cam` in the config) until stopped.

    SOURCE is an RTSP or HTTP URL, a USB camera index (0) or /dev/videoN, or a video file.
    Clips go to PATH_FOR_VIDEO/<name>/YYYY/MM/DD/ as H.264 MP4 with a JSON sidecar and a
    thumbnail. A live camera that fails is retried with backoff; SIGINT/SIGTERM finish the
    open clip and exit 0.
    """
    s, _ = load_with_options(config_path, opts, cam=source)
    record_until_stopped(s, realtime=realtime, as_json=as_json)


def record_until_stopped(
    s: Settings, *, realtime: bool = False, as_json: bool = False, parent_pid: Optional[int] = None
) -> None:
    """Record with ``s`` until SIGINT/SIGTERM (or the end of a file); ``as_json``: each clip as a JSON
    line.
    """
    from nvr_cli.runtime.recorder import Recorder

    stop = stop_on_signals(patient=parent_pid is not None)

    def on_clip(rec):
        if not as_json:
            return
        # a camera's times as epoch seconds, a file's as seconds into it
        line = {"camera": s.CAMERA_NAME, **rec.as_dict(-rec.clock_offset if rec.live else 0.0)}
        try:
            click.echo(json.dumps(line), nl=True)
            sys.stdout.flush()
        except BrokenPipeError:  # whoever read our output is gone (`| head -1`): stop as if asked
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            stop.set()

    Recorder(s, stop=stop, realtime=realtime, on_clip=on_clip, parent_pid=parent_pid).run()
