"""`nvr-cli service`: systemd units or supervisor programs that run `nvr-cli run`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

import nvr_cli.storage.paths as storage
from nvr_cli.cli.options import config_option
from nvr_cli.config import load_settings


@click.command()
@click.argument("kind", type=click.Choice(["systemd", "supervisor"]))
@click.option(
    "--camera",
    "cameras",
    multiple=True,
    help="one unit/program per camera that runs `run --camera NAME`; repeat, or 'all' for every camera",
)
@config_option(help="settings file the service should use")
@click.option("--user", help="run the service as this user")
@click.option(
    "--web",
    is_flag=True,
    help="only the review page's unit (`nvr-cli serve`), e.g. on a machine that only shows recordings",
)
@click.option(
    "--write",
    "write_dir",
    type=click.Path(file_okay=False),
    help="write the files into this folder instead of printing them",
)
def service(
    kind: str,
    cameras: tuple[str, ...],
    config_path: Optional[str],
    user: Optional[str],
    web: bool,
    write_dir: Optional[str],
) -> None:
    """Print ready-to-use systemd units or supervisor programs for `run` (or per camera).

    The review page (WEB_ENABLED) is served by `run` in the unit for all cameras; beside per-camera
    units it gets a unit of its own, nvr-cli-serve (`nvr-cli serve`); --web prints only that one.

    systemd: save as /etc/systemd/system/nvr-cli.service (or nvr-cli-NAME.service), then
    `systemctl daemon-reload && systemctl enable --now nvr-cli`. supervisor: append to a file in
    /etc/supervisor/conf.d/, then `supervisorctl reread && supervisorctl update`.
    """
    from nvr_cli.config import camera_settings, home_dir
    from nvr_cli.runtime.units import service_files

    loaded = load_settings(config_path)
    config = str(Path(config_path).resolve()) if config_path else None
    if "all" in cameras:
        cameras = tuple(loaded.cameras) or ("all",)
    for name in cameras:
        camera_settings(loaded, name)  # an unknown name is an error now, not when the service starts
    out = service_files(
        kind,
        cameras,
        settings=loaded.settings,
        config=config,
        home=str(home_dir().resolve()),
        user=user,
        web=web,
    )
    if write_dir:
        folder = Path(write_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in out:
            storage.write_atomic(folder / name, text.encode())
            click.echo(str(folder / name))
        return
    for i, (name, text) in enumerate(out):
        click.echo(("\n" if i else "") + f"# {name}\n{text}", nl=False)
