"""Who may see the review page: the refusal to serve a network without users, logins, sessions,
the rate limit, CSRF; `nvr-cli web passwd`; the page under `nvr-cli run` and as a service."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import LineCollector, free_port, pid_alive, run_cli, wait_for
from web_serve import READY, Served

from nvr_cli.web.auth import hash_password, verify

PASSWORD = "correct horse battery"


def _config(tmp_path, extra: str = "", users: bool = True):
    root = tmp_path / "video"
    root.mkdir(exist_ok=True)
    cfg = tmp_path / "web.py"
    text = f"PATH_FOR_VIDEO = {str(root)!r}\nCAMERAS = {{'gate': {{'cam': 'rtsp://u:Gate-pa55word@127.0.0.1:9/x'}}}}\n"
    if users:
        text += f"WEB_USERS = {{'anna': {hash_password(PASSWORD)!r}}}\n"
    cfg.write_text(text + extra)
    return cfg


@pytest.fixture
def home(tmp_path, monkeypatch):
    """No config files of the developer's: the tests' own only."""
    monkeypatch.setenv("NVR_CLI_HOME", str(tmp_path))
    return tmp_path


def _refused_on(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


# -- where it may listen --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "example.com"])
def test_no_users_no_network(tmp_path, home, host):
    port = free_port()
    r = run_cli(
        "serve", "--config", _config(tmp_path, users=False), "--host", host, "--port", port, timeout=60
    )
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nvr-cli: error: refusing to serve on"), r.stderr
    assert "WEB_USERS" in lines[0] and "Traceback" not in r.stderr
    assert _refused_on(port)  # nothing was bound


def test_the_setting_is_refused_as_the_option(tmp_path, home):
    cfg = _config(tmp_path, f"WEB_HOST = '0.0.0.0'\nWEB_PORT = {free_port()}\n", users=False)
    r = run_cli("serve", "--config", cfg, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "0.0.0.0" in r.stderr


def test_a_port_in_use_is_one_line(tmp_path, home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = run_cli("serve", "--config", _config(tmp_path), "--port", s.getsockname()[1], timeout=60)
    assert r.returncode == 2, r
    assert len(r.stderr.strip().splitlines()) == 1 and "in use" in r.stderr, r.stderr


def test_users_open_the_network(tmp_path, home):
    server = Served(_config(tmp_path), "--host", "0.0.0.0")
    try:
        assert server.api("/api/me") == {"user": None, "login_required": True}
        assert server.get("/api/events").status == 401
    finally:
        assert server.stop() == 0


# -- logging in -----------------------------------------------------------------------------------


def test_login_is_required_with_users(tmp_path, home):
    server = Served(_config(tmp_path))
    try:
        assert server.api("/api/me") == {"user": None, "login_required": True}
        for path in ("/api/events", "/api/cameras", "/api/status", "/api/days", "/api/exports",
                     "/api/events/gate_20261129-000000/clip.mp4", "/api/segments/x.mp4"):  # fmt: skip
            r = server.get(path)
            assert r.status == 401 and r.json() == {"error": "log in first"}, path
        assert server.post("/api/reviewed", {"reviewed": True}).status == 401
        assert server.get("/").status == 200 and server.get("/static/app.js").status == 200  # the login page

        wrong = server.post("/api/login", {"user": "anna", "password": "wrong"})
        assert wrong.status == 401 and wrong.header("Set-Cookie") is None
        assert server.post("/api/login", {"user": "bob", "password": PASSWORD}).status == 401
        assert server.post("/api/login", {"user": "anna"}).status == 400

        ok = server.post("/api/login", {"user": "anna", "password": PASSWORD})
        assert ok.status == 200 and ok.json() == {"user": "anna"}
        cookie = ok.header("Set-Cookie")
        flags = [f.strip().lower() for f in cookie.split(";")]
        assert flags[0].startswith("nvr_session=") and len(flags[0]) > 40
        assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
        server.cookie = cookie.split(";")[0]
        assert server.api("/api/me") == {"user": "anna", "login_required": True}
        assert server.api("/api/events") == {"events": [], "next_cursor": None}
        assert server.api("/api/status")["user"] == "anna"
        assert server.get("/api/me", Host="nvr.example:8080").status == 200  # a login makes any name fine

        assert server.post("/api/logout").status == 200
        assert server.get("/api/events").status == 401  # the session ended on the server, too
        server.cookie = "nvr_session=made-up"
        assert server.get("/api/events").status == 401
    finally:
        assert server.stop() == 0


def test_logins_are_rate_limited(tmp_path, home):
    server = Served(_config(tmp_path))
    try:
        for _ in range(5):
            assert server.post("/api/login", {"user": "anna", "password": "guess"}).status == 401
        limited = server.post("/api/login", {"user": "anna", "password": PASSWORD})
        assert limited.status == 429 and "too many" in limited.json()["error"]
        wait = int(limited.header("Retry-After"))
        assert 200 < wait <= 300
        assert limited.header("Set-Cookie") is None
    finally:
        assert server.stop() == 0


def test_a_burst_of_logins_gets_five_tries_and_no_forged_address(tmp_path, home):
    """Parallel attempts are counted as they begin (not after their slow check), and a client cannot
    pose as another address with X-Forwarded-For."""
    server = Served(_config(tmp_path))
    try:

        def guess(n: int) -> int:
            forged = {"X-Forwarded-For": f"10.9.{n}.1", "Content-Type": "application/json"}
            return server.request("POST", "/api/login", {"user": "anna", "password": "guess"}, forged).status

        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(guess, range(12)))
        assert sorted(answers) == [401] * 5 + [429] * 7, answers
    finally:
        assert server.stop() == 0


def test_a_huge_body_is_refused_unread(tmp_path, home):
    server = Served(_config(tmp_path))
    try:
        # a length over the cap: refused from the header, before a byte of the body is read
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.putrequest("POST", "/api/login")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(1 << 30))
        conn.endheaders()
        r = conn.getresponse()
        assert r.status == 413 and "too large" in json.loads(r.read())["error"]
        conn.close()
        # no length (chunked): refused once past the cap (64 kB), not read to its end first
        chunk = b" " * 16384
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request(
            "POST", "/api/login", body=iter([b"{}"] + [chunk] * 4), encode_chunked=True,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert conn.getresponse().status == 413
        conn.close()
        assert server.post("/api/login", {"user": "anna", "password": PASSWORD}).status == 200
    finally:
        assert server.stop() == 0


def test_login_needs_json_from_the_same_origin(tmp_path, home):
    server = Served(_config(tmp_path))
    body = json.dumps({"user": "anna", "password": PASSWORD}).encode()
    try:
        form = server.request(
            "POST",
            "/api/login",
            raw=b"user=anna&password=x",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert form.status == 403
        assert (
            server.request("POST", "/api/login", raw=body, headers={"Content-Type": "text/plain"}).status
            == 403
        )
        foreign = server.post(
            "/api/login", {"user": "anna", "password": PASSWORD}, {"Origin": "https://evil.example"}
        )
        assert foreign.status == 403 and foreign.header("Set-Cookie") is None
        cross = server.post(
            "/api/login", {"user": "anna", "password": PASSWORD}, {"Sec-Fetch-Site": "cross-site"}
        )
        assert cross.status == 403
        same = server.post(
            "/api/login",
            {"user": "anna", "password": PASSWORD},
            {"Origin": f"http://127.0.0.1:{server.port}"},
        )
        assert same.status == 200
    finally:
        assert server.stop() == 0


# -- nvr-cli web passwd ---------------------------------------------------------------------------


def test_web_passwd_makes_a_line_that_verifies(tmp_path, home):
    r = subprocess.run(
        [sys.executable, "-m", "nvr_cli", "web", "passwd", "anna", "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith('WEB_USERS = {"anna": "scrypt$16384$8$1$') and PASSWORD not in r.stdout
    users = {}
    exec(line, {}, users)  # the line is Python for the config file
    stored = users["WEB_USERS"]["anna"]
    assert verify(PASSWORD, stored) and not verify(PASSWORD + "x", stored)
    # and a config with it is valid, and the login works
    cfg = tmp_path / "c.py"
    cfg.write_text(f"PATH_FOR_VIDEO = {str(tmp_path / 'v')!r}\nCAMERAS = {{'a': {{'cam': '0'}}}}\n{line}\n")
    server = Served(cfg)
    try:
        assert server.post("/api/login", {"user": "anna", "password": PASSWORD}).status == 200
    finally:
        assert server.stop() == 0
    entry = subprocess.run(
        [sys.executable, "-m", "nvr_cli", "web", "passwd", "bob", "--password-stdin", "--entry"],
        input=PASSWORD,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert entry.returncode == 0 and entry.stdout.startswith('"bob": "scrypt$')


@pytest.mark.parametrize(
    "args, stdin, needle",
    [
        (["anna", "--password-stdin"], "short\n", "at least 8"),
        (["anna"], "", "--password-stdin"),  # no terminal to ask on
        (["an na", "--password-stdin"], PASSWORD, "user name"),
        (["a:b", "--password-stdin"], PASSWORD, "user name"),
    ],
)
def test_web_passwd_refusals_are_one_line(home, args, stdin, needle):
    r = subprocess.run(
        [sys.executable, "-m", "nvr_cli", "web", "passwd", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr and "Traceback" not in r.stderr


# -- under `run`, and as a service ----------------------------------------------------------------


def test_run_serves_the_page_when_enabled(tmp_path, home):
    port = free_port()
    cfg = _config(tmp_path, f"WEB_ENABLED = True\nWEB_PORT = {port}\nRESTART_DELAY_SECS = 0.5\n", users=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nvr_cli", "run", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = LineCollector(proc.stderr)
    try:
        assert wait_for(lambda: READY in log.text() or proc.poll() is not None, timeout=120), log.text()
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/cameras")
        r = conn.getresponse()
        cams = json.loads(r.read())
        conn.close()
        assert r.status == 200 and [c["name"] for c in cams["cameras"]] == ["gate"]
        started = [line for line in log.text().splitlines() if "review page: worker" in line]
        pid = int(started[0].split("worker ")[1].split()[0])
        assert pid_alive(pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0, log.text()
        assert not pid_alive(pid) and _refused_on(port)
        assert "review page: worker stopped (exit 0)" in log.text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_restarts_the_page_when_web_settings_change(tmp_path, home):
    port, port2 = free_port(), free_port()
    cfg = _config(tmp_path, f"WEB_ENABLED = True\nWEB_PORT = {port}\n", users=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nvr_cli", "run", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = LineCollector(proc.stderr)
    try:
        assert wait_for(lambda: f":{port}/" in log.text(), timeout=120), log.text()
        time.sleep(1.0)  # a new modification time for the watcher
        cfg.write_text(cfg.read_text().replace(f"WEB_PORT = {port}", f"WEB_PORT = {port2}"))
        assert wait_for(lambda: f":{port2}/" in log.text(), timeout=120), log.text()
        assert "restarting the review page (WEB_PORT)" in log.text()
        assert wait_for(lambda: _refused_on(port), timeout=30)
        cfg.write_text(cfg.read_text().replace("WEB_ENABLED = True", "WEB_ENABLED = False"))
        assert wait_for(lambda: _refused_on(port2), timeout=120), log.text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_service_prints_the_page_unit(tmp_path, home):
    cfg = _config(tmp_path, "WEB_ENABLED = True\n", users=False)
    per_camera = run_cli("service", "systemd", "--camera", "all", "--config", cfg, check=0).stdout
    assert "# nvr-cli-gate.service" in per_camera and "# nvr-cli-serve.service" in per_camera
    unit = per_camera.split("# nvr-cli-serve.service\n")[1]
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start[len("ExecStart=") :])
    assert argv[-3:] == ["serve", "--config", str(cfg.resolve())]
    assert "Gate-pa55word" not in per_camera
    whole = run_cli("service", "systemd", "--config", cfg, check=0).stdout
    assert whole.count("# nvr-cli") == 1 and " run --config " in whole  # `run` serves the page itself
    only = run_cli("service", "supervisor", "--web", "--config", cfg, check=0).stdout
    assert only.startswith("# nvr-cli-serve.conf\n[program:nvr-cli-serve]") and "serve --config" in only
    if __import__("shutil").which("systemd-analyze"):
        (tmp_path / "nvr-cli-serve.service").write_text(unit)
        r = subprocess.run(
            ["systemd-analyze", "verify", str(tmp_path / "nvr-cli-serve.service")],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_web_passwd_asks_twice_on_a_terminal(home):
    import os
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal of its own, as a user at a shell
        os.execv(sys.executable, [sys.executable, "-m", "nvr_cli", "web", "passwd", "anna"])
    seen = b""

    def until(text: bytes) -> bytes:
        nonlocal seen
        end = time.monotonic() + 60
        while text not in seen and time.monotonic() < end:
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # the child is gone
                break
            if not chunk:
                break
            seen += chunk
        assert text in seen, seen
        return seen

    until(b"password for anna:")
    os.write(fd, PASSWORD.encode() + b"\n")
    until(b"Repeat for confirmation:")
    os.write(fd, PASSWORD.encode() + b"\n")
    out = until(b'WEB_USERS = {"anna": "scrypt$')
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert PASSWORD.encode() not in out  # never echoed
    line = next(x for x in out.decode().splitlines() if x.startswith("WEB_USERS"))
    users = {}
    exec(line, {}, users)
    assert verify(PASSWORD, users["WEB_USERS"]["anna"])
