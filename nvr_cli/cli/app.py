"""The `nvr-cli` group: errors as one line and an exit code, signals as a stop request.

Exit codes: 0 done; 1 a source or the storage failed; 2 bad options or settings; 130 interrupted.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any, NoReturn, Optional, Sequence

import click

from nvr_cli import __version__
from nvr_cli.cli.options import config_option
from nvr_cli.core.errors import NvrError
from nvr_cli.core.redact import redact

log = logging.getLogger(__name__)


class NvrGroup(click.Group):
    """Any error becomes ``nvr-cli: error: <one line>`` and its exit code; never a traceback."""

    def main(
        self,
        args: Optional[Sequence[str]] = None,
        prog_name: Optional[str] = None,
        complete_var: Optional[str] = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:  # Click's own three-line usage block, made one line
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
            fail(f"{e.format_message()}{where}", 2)
        except click.ClickException as e:
            fail(e.format_message(), e.exit_code)
        except click.Abort:
            click.echo("nvr-cli: interrupted", err=True)
            sys.exit(130)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NvrError as e:
            fail(e, e.exit_code)
        except BrokenPipeError:  # the reader (head, less) is done: so are we
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except OSError as e:
            fail(f"{e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", 1)
        except KeyboardInterrupt:
            click.echo("nvr-cli: interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - the promise is one line, even for our own bugs
            # the traceback goes to the log file, where an unattended box's owner will look
            to_log_file(f"internal error: {type(e).__name__}: {e}", exc_info=sys.exc_info())
            fail(f"internal error: {type(e).__name__}: {e} (please report it)", 1)


def to_log_file(message: str, exc_info: Optional[tuple] = None) -> None:
    """An error for the log file alone (stderr already shows it as the one-line error)."""
    import logging.handlers

    root = logging.getLogger("nvr_cli")
    record = root.makeRecord(root.name, logging.ERROR, __file__, 0, message, (), exc_info)
    for h in root.handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(record)


def fail(message: object, code: int) -> NoReturn:
    """The one-line error on stderr (passwords masked), then exit with ``code``."""
    click.echo(f"nvr-cli: error: {redact(message)}", err=True)
    sys.exit(code)


def stop_on_signals(patient: bool = False) -> threading.Event:
    """SIGINT/SIGTERM set the returned event; a second one means now, unless ``patient`` (a worker
    of `run`, which may get SIGTERM from both systemd and its parent and must finish its clip)."""
    stop = threading.Event()
    asked = threading.Event()  # the stop event is also set from inside (a part that cannot recover)

    def handler(signum, _frame):
        if asked.is_set():
            if patient:
                return
            raise KeyboardInterrupt
        log.info("%s received: finishing the open clip", signal.Signals(signum).name)
        asked.set()
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@click.group(cls=NvrGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="nvr-cli")
@config_option(
    help="settings file used instead of machine_specific_configuration.py, for every command that "
    "reads settings; also accepted after the command name, where it wins if given in both places"
)
def cli(config_path: Optional[str]) -> None:
    """Motion-triggered event recorder for RTSP, HTTP, USB cameras and video files.

    Settings come from config.py, then machine_specific_configuration.py (or --config),
    then the command line. `nvr-cli config show` prints what is in effect and why.
    """
    # commands read --config through their own option, which falls back to this one (options.config_option)


def main() -> None:
    cli(prog_name="nvr-cli")
