"""`nvr-cli scan`: motion events in recorded files, as a table, JSON lines or CSV."""

from __future__ import annotations

import sys
from typing import Optional

import click

from nvr_cli.cli.options import json_option, load_with_options, option_name, settings_options
from nvr_cli.cli.render import Progress, echo_json, print_scan_table, write_csv
from nvr_cli.core.errors import SourceError
from nvr_cli.core.redact import redact
from nvr_cli.ffmpeg.binary import find_ffmpeg
from nvr_cli.runtime.scan import scan_file


@click.command()
@click.argument("files", nargs=-1, required=True)
@settings_options
@json_option('one JSON line per file: {"file": ..., "events": [...]}')
@click.option("--csv", "csv_path", help="write the events as CSV to this file ('-' for stdout)")
@click.option(
    "--extract", is_flag=True, help="also write each event's clip, sidecar and thumbnail, as record does"
)
@click.option(
    "--progress/--no-progress", default=None, help="progress bar on stderr (default: when it is a terminal)"
)
def scan(
    files: tuple[str, ...],
    config_path: Optional[str],
    as_json: bool,
    csv_path: Optional[str],
    extract: bool,
    progress: Optional[bool],
    **opts: object,
) -> None:
    """Find motion events in recorded FILES, as fast as the machine allows.

    Times are seconds from the start of each file, pre-alarm and post-capture included.
    The connect wait (INITIAL_WAIT_...) is 0 here unless given with --initial-wait, and the
    log level WARNING unless given with --log-level.
    Exits 0 whether or not events were found, 1 if a file could not be read.
    """
    # a file has no camera to settle, and its report is the output: quiet logs unless asked
    wait = opts.get(option_name("INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS"))
    level = opts.get(option_name("APP_LOG_LEVEL"))
    s, _ = load_with_options(
        config_path,
        opts,
        INITIAL_WAIT_INTERVAL_BEFORE_MOTION_DETECTION_SECS=wait if wait is not None else 0,
        APP_LOG_LEVEL=level or "WARNING",
    )
    ffmpeg = find_ffmpeg(s.FFMPEG_PATH, required=False) if extract else None
    show_progress = sys.stderr.isatty() if progress is None else progress
    rows, failed = [], 0
    for name in files:
        try:
            result = scan_file(
                s, name, extract=extract, ffmpeg=ffmpeg, progress=Progress if show_progress else None
            )
        except SourceError as e:
            failed += 1
            click.echo(f"nvr-cli: error: {redact(e)}", err=True)
            if as_json:
                echo_json({"file": name, "error": redact(e), "events": []})
            continue
        if as_json:
            echo_json(result.as_dict())
        if result.error:  # the events before the damage are still reported
            failed += 1
            click.echo(f"nvr-cli: error: {result.error}", err=True)
        rows.extend({"file": name, **e} for e in result.events)
        if not as_json and not csv_path == "-":
            print_scan_table(result)
    if csv_path:
        write_csv(csv_path, rows)
    sys.exit(1 if failed else 0)
