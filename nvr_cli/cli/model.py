"""`nvr-cli model`: fetching detection models."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click


@click.group("model")
def model_group() -> None:
    """Fetch detection models."""


@model_group.command("download")
@click.argument("name_or_url")
@click.option("--sha256", help="expected SHA-256 of a URL's file (known names carry their own)")
@click.option("--dest", help="folder to save into (default: the user's data folder)")
def model_download(name_or_url: str, sha256: Optional[str], dest: Optional[str]) -> None:
    """Fetch a known model by NAME (ssd-mobilenet-v1) or any http(s) URL, check its SHA-256,
    and print the config lines that use it."""
    from nvr_cli.analysis.model_download import KNOWN, download

    path, labels, digest = download(name_or_url, sha256=sha256, dest=Path(dest) if dest else None)
    click.echo(
        f"# {path.name}: SHA-256 {digest}"
        + (" (verified)" if sha256 or name_or_url in KNOWN else " (not verified: give --sha256)")
    )
    click.echo(f"OBJECT_MODEL = {str(path)!r}")
    click.echo(
        f"OBJECT_LABELS = {str(labels)!r}" if labels else "OBJECT_LABELS = '...'  # the model's labels file"
    )
