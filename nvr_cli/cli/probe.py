"""`nvr-cli probe`: what a source is, and one frame of it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from nvr_cli.cli.options import config_option, json_option
from nvr_cli.cli.render import echo_json
from nvr_cli.config import load_settings
from nvr_cli.runtime.logs import setup_logging


@click.command()
@click.argument("source")
@config_option()
@click.option(
    "--snapshot",
    type=click.Path(dir_okay=False),
    default="snapshot.jpg",
    show_default=True,
    help="where to save one frame as JPEG",
)
@click.option("--no-snapshot", is_flag=True, help="do not save a frame")
@json_option("print the result as JSON")
@click.option(
    "--open-timeout", type=float, default=None, help="seconds to wait for the source [OPEN_TIMEOUT_SECS]"
)
def probe(
    source: str,
    config_path: Optional[str],
    snapshot: str,
    no_snapshot: bool,
    as_json: bool,
    open_timeout: Optional[float],
) -> None:
    """Open SOURCE once: print resolution, fps and codec, and save a snapshot."""
    from nvr_cli.runtime.probe import probe as probe_source

    s = load_settings(config_path, {"OPEN_TIMEOUT_SECS": open_timeout} if open_timeout else {}).settings
    setup_logging(s.logging, quiet=True)
    info = probe_source(source, s, snapshot=None if no_snapshot else Path(snapshot))
    if as_json:
        echo_json(info)
    else:
        for k, v in info.items():
            click.echo(f"{k:>9}: {v}")
