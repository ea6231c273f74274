"""`nvr-cli serve`: the review page; `nvr-cli web passwd`: a WEB_USERS entry."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import click

from nvr_cli.cli.options import config_option, output_option
from nvr_cli.config import load_settings
from nvr_cli.core.errors import ConfigError
from nvr_cli.runtime.logs import setup_logging

log = logging.getLogger(__name__)

MIN_PASSWORD = 8


@click.command()
@config_option()
@click.option("--host", help="address to listen on [WEB_HOST, 127.0.0.1]; not the loopback: needs WEB_USERS")
@click.option("--port", type=int, help="port to listen on [WEB_PORT, 8080]")
@output_option("the storage to show [PATH_FOR_VIDEO], e.g. demo-output after `nvr-cli demo`")
def serve(config_path: Optional[str], host: Optional[str], port: Optional[int], root: Optional[str]) -> None:
    """Serve the review page (live view, events, calendar, day timelines, playback, export) and its
    JSON API (docs/web-api.md) in a browser, at http://HOST:PORT/.

    Live view takes each camera's packets from the recorder that records it (no extra camera
    connection, no re-encode); with no recorder running, it opens an RTSP camera itself while
    someone watches, unless WEB_LIVE_DIRECT is False.

    It reads what the recorders write under PATH_FOR_VIDEO, while they record or not, through an
    index it keeps current (WEB_INDEX_FILE). On 127.0.0.1 (the default) anyone on this machine may
    look; with WEB_USERS set every visitor logs in; on any other address WEB_USERS is required and
    the server refuses to start without it. Make the entries with `nvr-cli web passwd USER`.
    `nvr-cli run` serves the page itself when WEB_ENABLED is set.
    """
    from nvr_cli.runtime.worker import supervisor_pid
    from nvr_cli.web.server import serve as do_serve

    given = {
        k: v for k, v in (("WEB_HOST", host), ("WEB_PORT", port), ("PATH_FOR_VIDEO", root)) if v is not None
    }
    loaded = load_settings(config_path, given)
    s = loaded.settings
    log_settings = s.logging
    if s.LOG_FILE_PATH and supervisor_pid():
        # a worker of `run`: a file of its own, as each camera's (one rotating file per process)
        p = Path(s.LOG_FILE_PATH)
        log_settings = s.replace(LOG_FILE_PATH=str(p.with_name(f"{p.stem}.web{p.suffix}"))).logging
    setup_logging(log_settings)
    for w in loaded.warnings:
        log.warning("%s", w)
    sys.exit(do_serve(loaded, s.WEB_HOST, s.WEB_PORT))


@click.group("web")
def web_group() -> None:
    """The review page's users (`nvr-cli serve`)."""


@web_group.command("passwd")
@click.argument("user")
@click.option("--password-stdin", is_flag=True, help="read the password from the first line of stdin")
@click.option(
    "--entry", is_flag=True, help='print only the entry ("anna": "scrypt$..."), to add to WEB_USERS'
)
def passwd(user: str, password_stdin: bool, entry: bool) -> None:
    """Make the password hash of USER for WEB_USERS (scrypt): prints the line to put in the config,
    e.g. WEB_USERS = {"anna": "scrypt$..."}. Asks twice on a terminal; --password-stdin for scripts."""
    from nvr_cli.web.auth import hash_password

    if any(c.isspace() or c == ":" for c in user) or not user:
        raise ConfigError(f"user name {user!r}: expected a name without spaces or ':'")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = click.prompt(f"password for {user}", hide_input=True, confirmation_prompt=True, err=True)
    else:
        raise ConfigError("no terminal to ask for the password: pipe it with --password-stdin")
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password must have at least {MIN_PASSWORD} characters")
    line = f"{json.dumps(user)}: {json.dumps(hash_password(password))}"
    if entry:
        click.echo(line)
    else:
        click.echo(f"WEB_USERS = {{{line}}}")
        click.echo(
            "# in your config file; for more users, add their entries (--entry) to the same dict", err=True
        )
