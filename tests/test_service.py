"""Service files are checked by the real tools: systemd-analyze, and a real supervisord running one."""

import configparser
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers import NUMBER_MASK, pid_alive, run_cli, terminate, wait_for


def _config(home: Path, cams: str, out="video"):
    (home / "machine_specific_configuration.py").write_text(
        f"PATH_FOR_VIDEO = {out!r}\nSTATUS_INTERVAL_SECS = 0.5\nCAMERAS = {cams}\n"
    )


def test_systemd_units_verify(tmp_path, isolated_home):
    _config(isolated_home, "{'front': {'cam': 'rtsp://u:p@127.0.0.1/a'}, 'back yard': {'cam': '0'}}")
    run_cli("service", "systemd", "--write", tmp_path, check=0)
    run_cli("service", "systemd", "--camera", "all", "--user", "daemon", "--write", tmp_path, check=0)
    units = sorted(p.name for p in tmp_path.glob("*.service"))
    assert units == ["nvr-cli-back\\x20yard.service", "nvr-cli-front.service", "nvr-cli.service"]
    for name in units:
        text = (tmp_path / name).read_text()
        ini = configparser.ConfigParser(interpolation=None, strict=True)
        ini.optionxform = str
        ini.read_string(text)
        svc = ini["Service"]
        assert svc["Restart"] == "always" and svc["KillMode"] == "mixed" and svc["KillSignal"] == "SIGTERM"
        assert svc["Environment"] == f"NVR_CLI_HOME={isolated_home.resolve()}"
        argv = shlex.split(svc["ExecStart"])
        # the command it names is this installation's nvr-cli, and it runs
        i = argv.index("run")
        assert subprocess.run(argv[:i] + ["--version"], capture_output=True, text=True).stdout.startswith(
            "nvr-cli"
        )
        if "front" in name:
            assert argv[i:] == ["run", "--camera", "front"] and svc["User"] == "daemon"
        if shutil.which("systemd-analyze"):
            r = subprocess.run(
                ["systemd-analyze", "verify", str(tmp_path / name)], capture_output=True, text=True
            )
            # what systemd would warn about (unknown keys, bad values) goes to stderr
            assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    printed = run_cli("service", "systemd", check=0).stdout
    assert printed.startswith("# nvr-cli.service\n[Unit]")
    assert "p@" not in printed


def test_service_errors(isolated_home):
    _config(isolated_home, "{'front': {'cam': '0'}}")
    r = run_cli("service", "systemd", "--camera", "fornt")
    assert r.returncode == 2 and "did you mean 'front'" in r.stderr
    r = run_cli("service", "launchd")
    assert r.returncode == 2 and "launchd" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.rtsp
def test_supervisord_runs_the_printed_program(tmp_path, isolated_home, scene_cache, rtsp_server):
    if not shutil.which("supervisord"):
        pytest.skip("supervisord is not installed (pip install supervisor; scripts/install_and_test.sh does)")
    server = rtsp_server(scene_cache())
    out = tmp_path / "video"
    _config(isolated_home, f"{{'front': {{'cam': {server.url!r}, 'MASKS': [{NUMBER_MASK!r}]}}}}", str(out))
    program = run_cli("service", "supervisor", "--camera", "front", check=0).stdout
    # a short folder: unix socket paths are limited to ~100 characters
    run_dir = Path(tempfile.mkdtemp(prefix="nvr-sv-"))
    conf = run_dir / "supervisord.conf"
    conf.write_text(f"""[supervisord]
nodaemon=true
logfile={run_dir}/supervisord.log
pidfile={run_dir}/supervisord.pid
childlogdir={run_dir}
[unix_http_server]
file={run_dir}/s.sock
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{run_dir}/s.sock

{program}""")
    status_file = out / ".status" / "front.json"

    def state():
        try:
            return json.loads(status_file.read_text())
        except (OSError, ValueError):
            return None

    sv = subprocess.Popen(
        [shutil.which("supervisord"), "-c", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ctl = [shutil.which("supervisorctl"), "-c", str(conf)]
    try:
        first = wait_for(lambda: (st := state()) and st["state"] == "connected" and st, timeout=40)
        assert first, (run_dir / "supervisord.log").read_text()
        assert run_cli("status", check=0)
        os.kill(first["pid"], signal.SIGKILL)  # supervisord's autorestart brings it back
        again = wait_for(
            lambda: (st := state()) and st["state"] == "connected" and st["pid"] != first["pid"] and st,
            timeout=40,
        )
        assert again, (run_dir / "supervisord.log").read_text()
        r = subprocess.run(ctl + ["stop", "nvr-cli-front"], capture_output=True, text=True, timeout=120)
        assert "stopped" in r.stdout, r.stdout + r.stderr
        assert state()["state"] == "stopped" and not pid_alive(again["pid"])
        assert run_cli("status").returncode == 1
    finally:
        terminate(sv)
        shutil.rmtree(run_dir, ignore_errors=True)
