"""`nvr-cli config`: the effective settings, shown or checked."""

from __future__ import annotations

import json
from typing import Optional

import click

from nvr_cli.cli.options import config_option, json_option
from nvr_cli.config import FIELDS, as_plain, load_settings
from nvr_cli.config.schema import SECRET_SETTINGS
from nvr_cli.core.redact import redact


@click.group("config")
def config_group() -> None:
    """Show or check the effective settings."""


@config_group.command("show")
@config_option()
@json_option("print as JSON")
def config_show(config_path: Optional[str], as_json: bool) -> None:
    """Print every setting, its value and where the value came from."""
    loaded = load_settings(config_path)
    rows = [(name, _shown(name, getattr(loaded.settings, name)), loaded.origins[name]) for name in FIELDS]
    if as_json:
        # CAMERAS holds URLs too: the whole text is redacted, not only string values
        click.echo(redact(json.dumps({n: {"value": as_plain(v), "from": o} for n, v, o in rows}, indent=2)))
        return
    width = max(len(n) for n in FIELDS)
    for name, value, origin in rows:
        click.echo(redact(f"{name:<{width}} = {as_plain(value)!r:<40} # {origin}"))
    for w in loaded.warnings:
        click.echo(f"# warning: {w}")


def _shown(name: str, value: object) -> object:
    return "***" if name in SECRET_SETTINGS and value else value


@config_group.command("check")
@config_option()
def config_check(config_path: Optional[str]) -> None:
    """Validate the settings only: exit 0 if they are valid, 2 with one line if not."""
    loaded = load_settings(config_path)
    changed = sum(1 for o in loaded.origins.values() if not o.startswith("default"))
    for w in loaded.warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"ok: {len(FIELDS)} settings valid, {changed} set by config files")
