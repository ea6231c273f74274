"""`nvr-cli status`: every camera's state, for people, cron and monitoring."""

from __future__ import annotations

import sys
from typing import Optional

import click

from nvr_cli.cli.options import config_option, json_option, load_with_root, output_option
from nvr_cli.cli.render import echo_json, print_status
from nvr_cli.runtime.logs import setup_logging


@click.command()
@config_option()
@output_option("storage root whose .status folder to read [PATH_FOR_VIDEO]")
@json_option("print one JSON object with every camera")
@click.option(
    "--stale-after", type=float, help="seconds without news that make a camera stale [STATUS_STALE_SECS]"
)
def status(
    config_path: Optional[str], root: Optional[str], as_json: bool, stale_after: Optional[float]
) -> None:
    """Show each camera's state; exit 1 if any is down, stale or missing (for cron and monitoring).

    The cameras are those of CAMERAS (or `cam`'s CAMERA_NAME) and any with a status file.
    """
    from nvr_cli.runtime.status import fleet_status

    loaded = load_with_root(config_path, root)
    setup_logging(loaded.settings.logging, quiet=True)
    verdicts = fleet_status(loaded, stale_after)
    ok = all(v.ok for v in verdicts)
    if as_json:
        echo_json({"ok": ok, "cameras": [v.as_dict() for v in verdicts]}, default=str)
    else:
        print_status(verdicts)
    sys.exit(0 if ok else 1)
