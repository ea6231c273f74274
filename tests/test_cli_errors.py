"""Bad input: one line on stderr, a non-zero exit, never a traceback or a password."""

import pytest
from helpers import run_cli


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["record", "ftp://user:pw@cam/x"], 1, "unsupported URL scheme"),
        (["record", "rtsp://user:pw@/x"], 1, "no host"),
        (["record", "/no/such/file.mp4"], 1, "no such file"),
        (["record", "/tmp"], 1, "is a directory"),
        (["record"], 2, "no source"),
        (["record", "/dev/video99"], 1, "no such camera device"),
        (["probe", "/no/such/file.mp4"], 1, "no such file"),
        (["probe", "rtsp://user:pw@127.0.0.1:1/x", "--open-timeout", "2"], 1, "connection refused"),
        (["record", "x.mp4", "--blur", "4"], 2, "must be odd"),
        (["record", "x.mp4", "--rtsp-transport", "carrier-pigeon"], 2, "must be one of tcp, udp"),
        (["record", "--pre-alarm", "abc", "x.mp4"], 2, "'abc' is not a valid float"),
        (["recrod", "x.mp4"], 2, "No such command 'recrod'"),
        (["scan"], 2, "Missing argument 'FILES...'"),
    ],
)
def test_one_line_errors(args, code, words):
    proc = run_cli(*args)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nvr-cli: error:"), proc.stderr
    assert words in lines[0]
    assert ":pw@" not in proc.stderr and "Traceback" not in proc.stderr


def test_unwritable_output_is_one_line(tmp_path, scene_cache):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = run_cli("record", scene_cache(), "--output", blocker / "video")
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "cannot create" in proc.stderr


def test_help_and_version():
    assert "record" in run_cli("--help", check=0).stdout
    assert "--pre-alarm" in run_cli("record", "--help", check=0).stdout
    assert run_cli("--version", check=0).stdout.startswith("nvr-cli, version")
