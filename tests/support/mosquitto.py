"""A real Mosquitto broker (Debian's), on 127.0.0.1 and a port of its own, for the MQTT tests."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def available() -> bool:
    return os.access(MOSQUITTO, os.X_OK)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """One broker; ``users``: name -> password (a password file, anonymous refused); ``tls``: a
    self-signed CA and a server certificate for 127.0.0.1 (``.ca`` is the CA's file); ``persistent``:
    sessions and retained messages kept across restarts (``.db``, saved every second and at exit)."""

    host = "127.0.0.1"

    def __init__(self, users: Optional[dict] = None, tls: bool = False, persistent: bool = False):
        self.folder = Path(tempfile.mkdtemp(prefix="nvr-mosquitto-"))
        self.port = _free_port()  # kept across restarts: clients reconnect to the same address
        self.users = users
        self.tls = tls
        self.ca: Optional[str] = None
        self.proc: Optional[subprocess.Popen] = None
        self.log = self.folder / "mosquitto.log"
        self.db = self.folder / "mosquitto.db"
        # as root, mosquitto drops to user "mosquitto", who cannot read our temporary folder: stay ourselves
        me = pwd.getpwuid(os.getuid()).pw_name
        lines = [
            f"user {me}",
            f"listener {self.port} 127.0.0.1",
            f"log_dest file {self.log}",
        ]
        if persistent:
            lines += ["persistence true", f"persistence_location {self.folder}/", "autosave_interval 1"]
        else:
            lines += ["persistence false"]
        lines += ["log_type error", "log_type warning", "log_type notice", "log_type information"]
        if users:
            pwfile = self.folder / "passwords"
            for i, (user, password) in enumerate(users.items()):
                flags = ["-b", "-c"] if i == 0 else ["-b"]
                subprocess.run([MOSQUITTO_PASSWD, *flags, str(pwfile), user, password], check=True)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines += ["allow_anonymous true"]
        if tls:
            self.ca = str(self._certificates())
            lines += [
                f"cafile {self.ca}",
                f"certfile {self.folder / 'server.crt'}",
                f"keyfile {self.folder / 'server.key'}",
            ]
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def _certificates(self) -> Path:
        d = self.folder

        def ssl(*args):
            subprocess.run(["openssl", *args], check=True, capture_output=True)

        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=nvr-cli test CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))  # fmt: skip
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))  # fmt: skip
        (d / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
        ca = ["-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"), "-CAcreateserial"]
        ssl("x509", "-req", "-in", str(d / "server.csr"), *ca, "-days", "2",
            "-extfile", str(d / "san.ext"), "-out", str(d / "server.crt"))  # fmt: skip
        return d / "ca.crt"

    def start(self) -> "Mosquitto":
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode(errors='replace')}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused broker cannot act on SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
