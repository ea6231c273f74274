"""`nvr-cli prune`: the retention limits applied now."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from nvr_cli.cli.options import config_option, json_option, load_with_root, output_option
from nvr_cli.cli.render import echo_json
from nvr_cli.runtime.logs import setup_logging


@click.command()
@click.option("--dry-run", is_flag=True, help="only say what would be deleted")
@output_option()
@config_option()
@json_option("one JSON line per file")
def prune(dry_run: bool, root: Optional[str], config_path: Optional[str], as_json: bool) -> None:
    """Apply the retention limits (RETENTION_*) to the storage root now: for cron."""
    from nvr_cli.storage.retention import prune as do_prune

    s = load_with_root(config_path, root).settings
    setup_logging(s.logging, quiet=True)
    done = do_prune(Path(s.PATH_FOR_VIDEO), s.retention, dry_run=dry_run)
    for item, reason in done:
        if as_json:
            echo_json(
                {
                    "file": str(item.path),
                    "kind": item.kind,
                    "bytes": item.size,
                    "reason": reason,
                    "deleted": not dry_run,
                }
            )
        else:
            click.echo(f"{'would delete' if dry_run else 'deleted'} {item.path} ({reason})")
    if not as_json:
        click.echo(
            f"{len(done)} file(s) {'would be ' if dry_run else ''}deleted, "
            f"{sum(i.size for i, _ in done) / 2**20:.1f} MB"
        )
