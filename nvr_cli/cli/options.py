"""Options more than one command takes, declared once: --config, --json, --output, and one option
per setting (generated from the settings' schema); and loading the settings they name."""

from __future__ import annotations

import logging
from typing import Callable, Optional

import click

from nvr_cli.config import FIELDS, LoadedSettings, Settings, load_settings
from nvr_cli.runtime.logs import setup_logging

log = logging.getLogger(__name__)

CONFIG_HELP = "settings file used instead of machine_specific_configuration.py"


def _config_from_group(ctx: click.Context, _param, value: Optional[str]) -> Optional[str]:
    # `nvr-cli --config F CMD` and `nvr-cli CMD --config F` both work; given twice, the command's wins
    if value is None and ctx.parent is not None:
        return ctx.find_root().params.get("config_path")
    return value


def config_option(help: str = CONFIG_HELP) -> Callable:
    """``--config FILE`` as ``config_path``; a command's falls back to the group's (``nvr-cli --config
    F``).
    """
    return click.option("--config", "config_path", help=help, callback=_config_from_group)


def json_option(help: str) -> Callable:
    """``--json`` as ``as_json``: machine-readable output; ``help`` says its shape."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def output_option(help: str = "storage root [PATH_FOR_VIDEO]") -> Callable:
    """``--output DIR`` as ``root``: the storage root, instead of PATH_FOR_VIDEO."""
    return click.option("--output", "root", help=help)


def option_name(field_name: str) -> str:
    """The parameter name of a setting's option (prefixed: no clash with a command's own)."""
    return "s_" + field_name.lower()


def settings_options(func: Callable) -> Callable:
    """One option for every setting whose schema names one; help text from the schema."""
    for name, fld in reversed(list(FIELDS.items())):
        opt = fld.metadata["option"]
        if not opt or opt == "SOURCE":
            continue
        check = fld.metadata["check"]
        helptext = f"{fld.metadata['doc']} [{name}]"
        kind = getattr(check, "kind", str)
        if "/" in opt:
            func = click.option(opt, option_name(name), default=None, help=helptext)(func)
        elif name in ("MASKS", "REGIONS"):
            func = click.option(
                opt,
                option_name(name),
                multiple=True,
                metavar='"X,Y X,Y X,Y ..."',
                help=f"{helptext}; repeat for more",
            )(func)
        else:
            func = click.option(opt, option_name(name), type=kind, default=None, help=helptext)(func)
    return config_option()(func)


def overrides(opts: dict) -> dict:
    """The settings given on the command line, taken out of ``opts`` (a command's keyword arguments)."""
    out = {}
    for name in FIELDS:
        v = opts.pop(option_name(name), None)
        if v is not None and v != ():
            out[name] = list(v) if isinstance(v, tuple) else v
    return out


def load_with_options(config_path: Optional[str], opts: dict, **extra: object) -> tuple[Settings, dict]:
    """Settings from the config files and the settings' options in ``opts`` (and ``extra``, where not
    None), with logging set up as they say: (settings, the overrides given)."""
    given = overrides(opts)
    given.update({k: v for k, v in extra.items() if v is not None})
    loaded = load_settings(config_path, given)
    s = loaded.settings
    setup_logging(s.logging)
    for w in loaded.warnings:
        log.warning("%s", w)
    return s, given


def load_with_root(config_path: Optional[str], root: Optional[str]) -> LoadedSettings:
    """The settings, with PATH_FOR_VIDEO replaced by ``root`` (--output) if given."""
    return load_settings(config_path, {"PATH_FOR_VIDEO": root} if root else {})
