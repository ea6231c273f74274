"""Options shared by the commands: --config before or after the command name, and which one wins."""

import json

import pytest
from click.testing import CliRunner
from helpers import run_cli

from nvr_cli.cli import cli


@pytest.fixture
def configs(tmp_path):
    one = tmp_path / "one.py"
    one.write_text("CAMERA_NAME = 'one'\nCAMERAS = {'front': {'cam': 'front.mp4'}}\n")
    two = tmp_path / "two.py"
    two.write_text("CAMERA_NAME = 'two'\nCAMERAS = {'back': {'cam': 'back.mp4'}}\n")
    return one, two


@pytest.mark.parametrize("where", ["before", "after"])
def test_run_takes_config_before_or_after_the_command(configs, where):
    one, _ = configs
    args = (
        ["--config", one, "run", "--camera", "nosuch"]
        if where == "before"
        else ["run", "--camera", "nosuch", "--config", one]
    )
    proc = run_cli(*args)
    # the error names the cameras of one.py: it was read (without it: "CAMERAS is empty")
    assert proc.returncode == 2 and "(cameras: front)" in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_run_worker_records_with_the_group_config(tmp_path, walking):
    cfg = tmp_path / "cfg.py"
    cfg.write_text(
        f"PATH_FOR_VIDEO = {str(tmp_path / 'v')!r}\nMINIMAL_MOTION_DURATION = 1.0\n"
        f"CAMERAS = {{'walk': {{'cam': {str(walking)!r}}}}}\n"
    )
    proc = run_cli("--config", cfg, "run", "--camera", "walk", check=0)
    assert list((tmp_path / "v" / "walk").rglob("*.mp4")), proc.stderr


def show(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["CAMERA_NAME"]


def test_config_show_takes_config_before_or_after_and_the_commands_wins(configs):
    one, two = configs
    assert show("--config", one, "config", "show", "--json")["value"] == "one"
    assert show("config", "show", "--json", "--config", one)["value"] == "one"
    assert show("--config", one, "config", "show", "--json", "--config", two)["value"] == "two"
    assert show("config", "show", "--json")["from"].startswith("default")


@pytest.mark.parametrize("where", ["before", "after"])
def test_status_takes_config_before_or_after_the_command(configs, tmp_path, where):
    one, _ = configs
    opts = ["--json", "--output", tmp_path / "v"]
    args = ["--config", one, "status", *opts] if where == "before" else ["status", *opts, "--config", one]
    proc = run_cli(*args)
    assert proc.returncode == 1  # front has no status file: missing
    assert [c["camera"] for c in json.loads(proc.stdout)["cameras"]] == ["front"]


def test_group_help_says_which_config_wins():
    out = run_cli("--help", check=0).stdout
    assert "--config" in out and "wins" in out
