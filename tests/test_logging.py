"""Logging as the settings say, and no password in any line."""
import json

from click.testing import CliRunner

from helpers import free_port, run_cli
from nvr_cli.cli import cli
from nvr_cli.redact import redact

PASSWORD = "hunter2-pass"


def test_rotating_log_file_format_no_console_and_masked_password(tmp_path):
    log = tmp_path / "logs" / "nvr.log"
    cfg = tmp_path / "cfg.py"
    cfg.write_text(f"LOG_FILE_PATH = {str(log)!r}\nMAIN_LOG_FILE_MAX_SIZE = 1024\nLOG_BACKUPS_COUNT = 2\n"
                   "LOG_FORMAT = 'X|%(levelname)s|%(message)s'\nLOG_TO_CONSOLE = False\nAPP_LOG_LEVEL = 'DEBUG'\n"
                   "RECONNECT_DELAY_SECS = 0.1\nRECONNECT_MAX_DELAY_SECS = 0.1\n")
    url = f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/cam"
    proc = run_cli("record", url, "--config", cfg, "--retries", "40", "--open-timeout", "1",
                   "--output", tmp_path / "v", timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0  # only the final error: logging goes to the file
    files = sorted(log.parent.iterdir())
    assert [f.name for f in files] == ["nvr.log", "nvr.log.1", "nvr.log.2"]  # rotated, 2 backups kept
    text = "".join(f.read_text() for f in files)
    assert all(line.startswith("X|") for line in text.splitlines())
    assert "X|DEBUG|reconnect attempt" in text and "admin:***@" in text
    assert PASSWORD not in text + proc.stderr + proc.stdout


def test_redact_covers_every_url_in_a_line():
    line = "a rtsp://u:p1@h/x b http://v:p%402@h2:80/y c rtsp://nouser@h/z"
    assert redact(line) == "a rtsp://u:***@h/x b http://v:***@h2:80/y c rtsp://nouser@h/z"


def test_config_show_json_masks_the_camera_password(tmp_path, isolated_home):
    (isolated_home / "machine_specific_configuration.py").write_text(
        f"cam = 'rtsp://admin:{PASSWORD}@10.0.0.5/stream'\nMASKS = ['0,0 10,0 10,10']\n")
    out = CliRunner().invoke(cli, ["config", "show", "--json"])
    assert out.exit_code == 0
    data = json.loads(out.output)
    assert data["cam"]["value"] == "rtsp://admin:***@10.0.0.5/stream"
    assert data["MASKS"]["value"] == ["0,0 10,0 10,10"]
    assert data["MASKS"]["from"].endswith("machine_specific_configuration.py")
    assert PASSWORD not in CliRunner().invoke(cli, ["config", "show"]).output
