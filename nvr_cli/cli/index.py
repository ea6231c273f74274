"""`nvr-cli index`: build (or rebuild) the review page's index of events and segments now."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

from nvr_cli.cli.options import config_option, json_option, load_with_root, output_option
from nvr_cli.cli.render import echo_json
from nvr_cli.runtime.logs import setup_logging


@click.command("index")
@click.option("--rebuild", is_flag=True, help="start afresh from the files (the reviewed marks are kept)")
@output_option()
@config_option()
@json_option('print one JSON object: {"events", "segments", "seconds", "read", "index"}')
def index_cmd(rebuild: bool, root: Optional[str], config_path: Optional[str], as_json: bool) -> None:
    """Bring the index that `nvr-cli serve` reads (WEB_INDEX_FILE, else PATH_FOR_VIDEO/.nvr-index.sqlite3)
    up to date with the sidecars and segments.jsonl of every camera. The files stay the truth: the
    index can be deleted at any time, losing only the reviewed marks."""
    from nvr_cli.core.errors import ConfigError
    from nvr_cli.storage.catalog import catalog_for

    loaded = load_with_root(config_path, root)
    setup_logging(loaded.settings.logging, quiet=True)
    roots = {loaded.settings.PATH_FOR_VIDEO, *(c.PATH_FOR_VIDEO for c in loaded.cameras.values())}
    if not any(Path(r).is_dir() for r in roots):
        raise ConfigError(f"nothing to index: no storage folder {', '.join(sorted(map(str, roots)))}")
    catalog = catalog_for(loaded)
    tty = sys.stderr.isatty() and not as_json

    def progress(read: int) -> None:
        sys.stderr.write(f"\rindexing: {read} file(s) read")
        sys.stderr.flush()

    try:
        if rebuild:
            done = catalog.rebuild(progress if tty else None)
        else:
            done = catalog.build(progress if tty else None, full=True)
    finally:
        catalog.close()
    if tty:
        sys.stderr.write("\n")
    if as_json:
        echo_json({**done, "index": str(catalog.db_path)})
    else:
        click.echo(
            f"{catalog.db_path}: {done['events']} event(s), {done['segments']} segment(s); "
            f"{done['read']} file(s) read in {done['seconds']:.1f} s"
        )
