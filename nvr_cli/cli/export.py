"""`nvr-cli export`: a time range of a camera's continuous recording as one file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

from nvr_cli.cli.options import config_option, json_option, load_with_root, output_option
from nvr_cli.cli.render import Progress, echo_json
from nvr_cli.ffmpeg.binary import find_ffmpeg
from nvr_cli.runtime.logs import setup_logging


@click.command("export")
@click.argument("camera")
@click.argument("outfile")
@click.option("--from", "from_", required=True, help="start: ISO time, HH:MM today, or -15m / -2h / -1d")
@click.option("--to", "to", default="now", show_default=True, help="end, in the same forms")
@click.option("--allow-gaps", is_flag=True, help="export what exists even if the recording has gaps")
@output_option()
@config_option()
@click.option("--progress/--no-progress", default=None, help="progress on stderr (default: on a terminal)")
@json_option("print the export's sidecar as JSON")
def export_cmd(
    camera: str,
    outfile: str,
    from_: str,
    to: str,
    allow_gaps: bool,
    root: Optional[str],
    config_path: Optional[str],
    progress: Optional[bool],
    as_json: bool,
) -> None:
    """Join CAMERA's continuous segments from --from to --to into OUTFILE, losslessly.

    Stream copy, no re-encode: the cut starts at the keyframe at or before --from. A sidecar
    OUTFILE.json lists the segments included and any gaps.
    """
    from nvr_cli.storage.export import export, parse_time

    s = load_with_root(config_path, root).settings
    setup_logging(s.logging, quiet=True)
    start, end = parse_time(from_), parse_time(to)
    bar = (
        Progress(Path(outfile).name, int((end - start) * 10))
        if (progress or (progress is None and sys.stderr.isatty()))
        else None
    )
    ffmpeg = find_ffmpeg(s.FFMPEG_PATH)
    info, _ = export(
        s.PATH_FOR_VIDEO,
        camera,
        start,
        end,
        Path(outfile),
        ffmpeg=ffmpeg,
        allow_gaps=allow_gaps,
        local_time=s.LOCAL_TIME,
        progress=(lambda t: bar.update(int(t * 10) - bar.done)) if bar else None,
    )
    if bar:
        bar.close()
    if as_json:
        echo_json(info)
    else:
        click.echo(
            f"{outfile}: {info['duration_seconds']:.1f} s from {len(info['segments'])} segment(s)"
            + (f", {len(info['gaps'])} gap(s) skipped" if info["gaps"] else "")
        )
