"""`nvr-cli demo`: record a generated scene, no camera needed."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from nvr_cli.cli.options import json_option
from nvr_cli.cli.render import echo_json
from nvr_cli.runtime.logs import setup_logging


@click.command()
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False),
    default="demo-output",
    show_default=True,
    help="folder for the generated scene and the clips",
)
@json_option("print the clips as JSON lines")
def demo(output: str, as_json: bool) -> None:
    """Record a generated scene (no camera needed) and print where the clips are."""
    from nvr_cli.runtime.demo import demo_settings, run_demo

    out = Path(output)
    s = demo_settings(out)
    setup_logging(s.logging, quiet=as_json)
    records = run_demo(s, out)
    for rec in records:
        if as_json:
            echo_json(rec.as_dict())
        else:
            click.echo(
                f"{rec.clip}  ({rec.end - rec.start:.1f} s, motion at {rec.trigger:.1f} s of the scene, "
                f"{rec.pre_alarm:.1f} s pre-alarm)"
            )
    if not as_json:
        click.echo(f"{len(records)} clip(s) with JSON sidecars and thumbnails under {out / 'demo'}")
        click.echo(f"see them in a browser: nvr-cli serve --output {shlex.quote(str(out))}")
