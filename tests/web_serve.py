"""A real `nvr-cli serve` in a subprocess on 127.0.0.1, and a small HTTP client for it (stdlib only)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers import LineCollector, free_port, wait_for

READY = "serving the review page at"


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def header(self, name: str):
        return self.headers.get(name)

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:200]!r}>"


class Served:
    """One `nvr-cli serve` process; ``get``/``post`` talk to it, keeping a cookie like a browser."""

    def __init__(self, config: Path, *extra, port: int = 0, env: dict = None, host: str = "127.0.0.1"):
        self.port = port or free_port()
        self.host = host
        self.cookie = None
        self.answers = []  # every body received: the tests grep them all for the camera password
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nvr_cli",
                "serve",
                "--config",
                str(config),
                "--port",
                str(self.port),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.log = LineCollector(self.proc.stderr)
        ok = wait_for(lambda: READY in self.log.text() or self.proc.poll() is not None, timeout=120)
        if not ok or self.proc.poll() is not None:
            self.stop()
            raise AssertionError(f"serve did not start (exit {self.proc.returncode}):\n{self.log.text()}")

    def request(self, method: str, path: str, body=None, headers: dict = None, raw: bytes = None) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if self.cookie and "Cookie" not in h:
            h["Cookie"] = self.cookie
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            answer = Response(r.status, r.headers, r.read())
        finally:
            conn.close()
        self.answers.append((path, answer.body))
        return answer

    def get(self, path: str, **headers) -> Response:
        return self.request("GET", path, headers={k.replace("_", "-"): v for k, v in headers.items()})

    def post(self, path: str, body=None, headers: dict = None) -> Response:
        return self.request("POST", path, body=body if body is not None else {}, headers=headers)

    def api(self, path: str):
        """GET a JSON answer that must be 200."""
        r = self.get(path)
        assert r.status == 200, (path, r)
        assert r.header("Content-Type").startswith("application/json"), (path, r.headers)
        return r.json()

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.join()
        return self.proc.returncode


def serve_config(source: Path, folder: Path, extra: str = "", root: Path = None) -> Path:
    """A copy of ``source`` (the recorded storage's config) with the index (and so the exports) in
    ``folder``, and ``root`` as PATH_FOR_VIDEO when given (a copy of the storage), plus ``extra``."""
    folder.mkdir(parents=True, exist_ok=True)
    text = Path(source).read_text()
    text += f"\nWEB_INDEX_FILE = {str(folder / 'index.sqlite3')!r}\n"
    if root is not None:
        text += f"PATH_FOR_VIDEO = {str(root)!r}\n"
    cfg = folder / "serve.py"
    cfg.write_text(text + extra + "\n")
    return cfg
