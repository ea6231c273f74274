"""`nvr-cli qr`: the QR codes in an image or video."""

from __future__ import annotations

import click

from nvr_cli.analysis.sampling import sample_frames, unique_qr_codes
from nvr_cli.cli.options import json_option
from nvr_cli.cli.render import echo_json


@click.command()
@click.argument("source")
@click.option(
    "--every", type=float, default=0.5, show_default=True, help="videos: seconds between scanned frames"
)
@json_option("print one JSON object with every code found")
def qr(source: str, every: float, as_json: bool) -> None:
    """Print the QR codes in an IMAGE or VIDEO, one payload per line (each once)."""
    from nvr_cli.analysis.qr import load_zbar

    codes = []
    for code in unique_qr_codes(load_zbar(), sample_frames(source, every)):
        codes.append(code)
        if not as_json:
            click.echo(code["payload"])
    if as_json:
        echo_json({"file": source, "codes": codes})
