"""Logging as the settings say, and no password in any line."""

import json
import logging
import sys
import threading
import warnings

import pytest
from click.testing import CliRunner
from helpers import free_port, run_cli

from nvr_cli.cli import cli
from nvr_cli.config import Settings
from nvr_cli.core.redact import redact
from nvr_cli.runtime.logs import setup_logging

PASSWORD = "hunter2-pass"


def test_rotating_log_file_format_no_console_and_masked_password(tmp_path):
    log = tmp_path / "logs" / "nvr.log"
    cfg = tmp_path / "cfg.py"
    cfg.write_text(
        f"LOG_FILE_PATH = {str(log)!r}\nMAIN_LOG_FILE_MAX_SIZE = 1024\nLOG_BACKUPS_COUNT = 2\n"
        "LOG_FORMAT = 'X|%(levelname)s|%(message)s'\nLOG_TO_CONSOLE = False\nAPP_LOG_LEVEL = 'DEBUG'\n"
        "RECONNECT_DELAY_SECS = 0.1\nRECONNECT_MAX_DELAY_SECS = 0.1\n"
    )
    url = f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/cam"
    proc = run_cli(
        "record",
        url,
        "--config",
        cfg,
        "--retries",
        "40",
        "--open-timeout",
        "1",
        "--output",
        tmp_path / "v",
        timeout=120,
    )
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
        f"cam = 'rtsp://admin:{PASSWORD}@10.0.0.5/stream'\nMASKS = ['0,0 10,0 10,10']\n"
    )
    out = CliRunner().invoke(cli, ["config", "show", "--json"])
    assert out.exit_code == 0
    data = json.loads(out.output)
    assert data["cam"]["value"] == "rtsp://admin:***@10.0.0.5/stream"
    assert data["MASKS"]["value"] == ["0,0 10,0 10,10"]
    assert data["MASKS"]["from"].endswith("machine_specific_configuration.py")
    assert PASSWORD not in CliRunner().invoke(cli, ["config", "show"]).output


# (URL with SECRET in it, what redact() makes of it): every form a camera URL takes
SECRET = "s3cr3t"
URL_FORMS = [
    (f"rtsp://admin:{SECRET}@cam.lan:554/x", "rtsp://admin:***@cam.lan:554/x"),
    (f"rtsp://admin:p@ss{SECRET}@cam.lan/x", "rtsp://admin:***@cam.lan/x"),  # a raw "@" in the password
    (f"rtsp://admin:pa/ss{SECRET}@cam.lan/x", "rtsp://admin:***@cam.lan/x"),
    (f"rtsp://admin:my pass {SECRET}@cam.lan/x", "rtsp://admin:***@cam.lan/x"),
    (f"rtsp://admin:a@b/c{SECRET}@cam.lan", "rtsp://admin:***@cam.lan"),  # "@" then "/"
    (f"rtsp://admin:a@b?c#{SECRET}@cam.lan:554", "rtsp://admin:***@cam.lan:554"),
    (f"rtsp://me@mail.com:{SECRET}@cam.lan/x", "rtsp://me@mail.com:***@cam.lan/x"),
    (f"rtsp://cam.lan/x?user=admin&password={SECRET}", "rtsp://cam.lan/x?user=admin&password=***"),
    (
        f"rtsp://cam.lan/x?user=admin&PassWord={SECRET}&ch=1#f",
        "rtsp://cam.lan/x?user=admin&PassWord=***&ch=1#f",
    ),
    (f"http://cam.lan/cgi?pwd={SECRET}", "http://cam.lan/cgi?pwd=***"),
    (f"http://cam.lan/cgi?passwd={SECRET}&x=1", "http://cam.lan/cgi?passwd=***&x=1"),
    (f"http://cam.lan/cgi?PASS={SECRET}", "http://cam.lan/cgi?PASS=***"),
    (f"http://cam.lan/cgi?token={SECRET} next", "http://cam.lan/cgi?token=*** next"),
    (f"http://cam.lan/cgi?access_token={SECRET}", "http://cam.lan/cgi?access_token=***"),
    (f"http://cam.lan/cgi?auth={SECRET}", "http://cam.lan/cgi?auth=***"),
    (
        f"http://cam.lan/cgi?key={SECRET}&apikey={SECRET}&api_key={SECRET}",
        "http://cam.lan/cgi?key=***&apikey=***&api_key=***",
    ),
    (f"http://cam.lan/cgi?secret={SECRET}", "http://cam.lan/cgi?secret=***"),
    (f"http://cam.lan/cgi?signature={SECRET}&Sig={SECRET}", "http://cam.lan/cgi?signature=***&Sig=***"),
    (
        f"rtsp://admin:{SECRET}@cam.lan/x, mail me@example.com",
        "rtsp://admin:***@cam.lan/x, mail me@example.com",
    ),
    (f"rtsp://admin:p@{SECRET}@cam.lan/x me@example.com", "rtsp://admin:***@cam.lan/x me@example.com"),
    (
        f"rtsp://10.0.0.5:554/sub and rtsp://admin:{SECRET}@10.0.0.5/main",
        "rtsp://10.0.0.5:554/sub and rtsp://admin:***@10.0.0.5/main",
    ),
    (
        f"rtsp://a:{SECRET}@h1/x rtsp://b:p@{SECRET}@h2/y http://h3/z?token={SECRET}",
        "rtsp://a:***@h1/x rtsp://b:***@h2/y http://h3/z?token=***",
    ),
]
UNCHANGED = [
    "rtsp://admin@cam.lan/x",
    "rtsp://10.0.0.5:554/stream",
    "rtsp://cam.lan/x?user=admin&channel=1",
    "http://cam.lan/x bypass=1",
    "mail me@example.com",
]


@pytest.mark.parametrize("url, masked", URL_FORMS)
def test_redact_every_url_form(url, masked):
    assert redact(url) == masked
    assert redact(f'opening "{url}": failed') == f'opening "{masked}": failed'
    assert redact(masked) == masked
    quoted = redact(f"opening '{url}': failed\nnext line")  # may mask a little more: never less
    assert SECRET not in quoted and quoted.startswith("opening '" + masked.split("***")[0] + "***")
    assert quoted.endswith("\nnext line")


@pytest.mark.parametrize("text", UNCHANGED)
def test_redact_leaves_urls_without_credentials_alone(text):
    assert redact(text) == text


@pytest.fixture
def log_to_file(tmp_path, monkeypatch):
    """setup_logging into a file, undone afterwards (hooks, warnings capture, handlers)."""
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    log = tmp_path / "nvr.log"
    setup_logging(Settings(LOG_FILE_PATH=str(log), LOG_TO_CONSOLE=False).logging)
    yield log
    logging.captureWarnings(False)
    for name in ("nvr_cli", "py.warnings"):
        for h in list(logging.getLogger(name).handlers):
            logging.getLogger(name).removeHandler(h)
            h.close()


def test_thread_tracebacks_warnings_and_main_thread_crashes_are_logged_masked(log_to_file):
    def crash(url):
        raise RuntimeError(f"cannot open {url}")

    for i, (url, _) in enumerate(URL_FORMS):
        t = threading.Thread(target=crash, args=(url,), name=f"reader-{i}")
        t.start()
        t.join()
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn(f"slow camera {url}", RuntimeWarning)
    try:
        crash(URL_FORMS[1][0])
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    text = log_to_file.read_text()
    assert SECRET not in text
    assert text.count("ERROR - uncaught exception in thread reader-") == len(URL_FORMS)
    assert text.count("Traceback (most recent call last)") == len(URL_FORMS) + 1
    assert "uncaught exception in the main thread" in text
    assert text.count("RuntimeWarning: slow camera") == len(URL_FORMS)
    for _, masked in URL_FORMS:
        assert f"RuntimeError: cannot open {masked}" in text
        assert f"slow camera {masked}" in text


def test_traceback_is_masked_by_every_formatter_use(log_to_file):
    """The cached exc_text of a record is masked too, not only the formatted line."""
    url = URL_FORMS[1][0]
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("nvr_cli")
    keep = Keep()
    keep.setFormatter(logger.handlers[0].formatter)
    logger.addHandler(keep)
    try:
        raise ValueError(url)
    except ValueError:
        logger.exception("failed")
    logger.removeHandler(keep)
    keep.format(records[0])
    assert SECRET not in records[0].exc_text and "cam.lan" in records[0].exc_text


def test_config_show_json_stays_json_with_every_url_form(isolated_home):
    (isolated_home / "machine_specific_configuration.py").write_text(
        f"cam = 'rtsp://10.0.0.5/s?user=admin&password={SECRET}'\n"
        f"CAMERAS = {{'back': {{'cam': 'rtsp://admin:p@ss/w{SECRET}@10.0.0.6/s'}}, "
        f"'side': {{'cam': 'http://10.0.0.7/mjpg?token={SECRET}'}}}}\n"
    )
    out = CliRunner().invoke(cli, ["config", "show", "--json"])
    assert out.exit_code == 0 and SECRET not in out.output
    data = json.loads(out.output)
    assert data["cam"]["value"] == "rtsp://10.0.0.5/s?user=admin&password=***"
    assert data["CAMERAS"]["value"] == {
        "back": {"cam": "rtsp://admin:***@10.0.0.6/s"},
        "side": {"cam": "http://10.0.0.7/mjpg?token=***"},
    }
    assert SECRET not in CliRunner().invoke(cli, ["config", "show"]).output
