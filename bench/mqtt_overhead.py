#!/usr/bin/env python3
"""What MQTT costs a recorder (issue 16): the same camera recorded without MQTT, with MQTT to a live
broker, and with that broker stopped dead (SIGSTOP: connected, but nothing read or answered).

    python3 bench/mqtt_overhead.py [--seconds 60] [--json]

The camera is the tests' GStreamer RTSP server serving the shared traffic footage at 1080p25 (busy:
motion all the time, so events, motion states and snapshots keep coming), recorded by a real
`nvr-cli record`; the broker is Debian's mosquitto on 127.0.0.1, watched by a real subscriber that
counts what arrives. Per run, after a 10 s warm-up: CPU of the recorder's process tree in % of one
core, frames analysed per second (its status file), and messages delivered. The runs take turns on the
same machine in the same invocation, so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))
from mosquitto import Mosquitto  # noqa: E402  (as the tests start it)
from mqtt_watch import Watch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import CpuMeter, Server, say, stream_file  # noqa: E402

PREFIX = "bench"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _frames(status: Path) -> int:
    try:
        return json.loads(status.read_text())["frames"]
    except (OSError, ValueError, KeyError):
        return 0


def one_run(url: str, folder: Path, seconds: float, broker=None, stall: bool = False) -> dict:
    out = folder / "video"
    cfg = folder / "cfg.py"
    lines = ["MAX_CLIP_SECONDS = 20", "STATUS_INTERVAL_SECS = 1"]
    if broker is not None:
        lines += [
            f"MQTT_HOST = {broker.host!r}",
            f"MQTT_PORT = {broker.port}",
            f"MQTT_TOPIC_PREFIX = {PREFIX!r}",
        ]
        lines += ["MQTT_HA_DISCOVERY = True"]
    cfg.write_text("\n".join(lines) + "\n")
    watch = Watch(broker, f"{PREFIX}/#") if broker is not None else None
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nvr_cli",
            "record",
            url,
            "--config",
            str(cfg),
            "--output",
            str(out),
            "--name",
            "cam",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    status = out / ".status" / "cam.json"
    try:
        time.sleep(10)  # connected, the first event open
        if stall:
            broker.pause()
        meter = CpuMeter(proc.pid)
        meter.start()
        f0, m0 = _frames(status), len(watch.messages()) if watch else 0
        time.sleep(seconds)
        cpu = meter.stop()
        f1, m1 = _frames(status), len(watch.messages()) if watch else 0
    finally:
        if stall:
            broker.resume()
        t = time.monotonic()
        proc.terminate()
        proc.wait(120)
        stop_s = time.monotonic() - t
        if watch:
            watch.close()
    return {
        "cpu_percent": round(cpu, 2),
        "analysed_fps": round((f1 - f0) / seconds, 2),
        "messages": (m1 - m0) if not stall else 0,
        "stop_seconds": round(stop_s, 2),
        "exit": proc.returncode,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    clip = stream_file(1920, 1080, 25)
    server = Server(clip, _free_port())
    broker = Mosquitto().start()
    results = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, kw in (
                ("off", {}),
                ("on", {"broker": broker}),
                ("stalled broker", {"broker": broker, "stall": True}),
            ):
                say(f"recording 1080p25 {args.seconds:g} s, MQTT {name} ...")
                folder = Path(tmp) / name.replace(" ", "-")
                folder.mkdir()
                results[name] = one_run(server.url, folder, args.seconds, **kw)
    finally:
        broker.cleanup()
        server.stop()
    base = results["off"]["cpu_percent"] or 1
    for r in results.values():
        r["cpu_vs_off"] = round(r["cpu_percent"] / base, 3)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'MQTT':<16} {'CPU %':>7} {'x off':>7} {'fps':>7} {'messages':>9} {'stop s':>7} {'exit':>5}")
    for name, r in results.items():
        print(
            f"{name:<16} {r['cpu_percent']:>7.2f} {r['cpu_vs_off']:>7.3f} {r['analysed_fps']:>7.2f} "
            f"{r['messages']:>9} {r['stop_seconds']:>7.2f} {r['exit']:>5}"
        )


if __name__ == "__main__":
    main()
