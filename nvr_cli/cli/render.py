"""How results look: tables for people, JSON lines and CSV for programs, progress on stderr."""

from __future__ import annotations

import csv
import json
import sys
import time
from typing import Any

import click

from nvr_cli.core.redact import redact
from nvr_cli.runtime.scan import ScanResult


def echo_json(obj: object, **kwargs: Any) -> None:
    """One JSON document (a line, unless ``indent`` is given) on stdout."""
    click.echo(json.dumps(obj, **kwargs))


class Progress:
    """A bar redrawn in place on a terminal; elsewhere (when asked for) a line every 10 %."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done = label, max(1, total), 0
        self.tty = sys.stderr.isatty()
        self._shown = -1
        self._start = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        pct = min(100, self.done * 100 // self.total)
        if self.tty:
            if pct != self._shown:
                fps = self.done / max(1e-6, time.monotonic() - self._start)
                bar = "#" * (pct // 4)
                sys.stderr.write(f"\r{self.label} [{bar:<25}] {pct:3d}% {fps:6.0f} fps")
                sys.stderr.flush()
        elif pct // 10 != self._shown // 10:
            sys.stderr.write(f"{self.label}: {pct}%\n")
        self._shown = pct

    def close(self) -> None:
        if self._shown < 100:
            self.done = self.total - 1
            self.update()
        if self.tty:
            sys.stderr.write("\n")


def print_scan_table(result: ScanResult) -> None:
    """A file's events, one line each, under a line that sums them up."""
    events = result.events
    click.echo(f"{result.file}: {len(events)} event(s) in {result.duration:.1f} s ({result.frames} frames)")
    if events:
        click.echo(f"  {'#':>3} {'start':>9} {'end':>9} {'length':>7} {'trigger':>9} {'peak':>7}  clip")
        for e in events:
            click.echo(
                f"  {e['event']:>3} {e['start']:>9.2f} {e['end']:>9.2f} {e['duration']:>7.2f} "
                f"{e['trigger']:>9.2f} {e['peak_score']:>7.4f}  {e['clip'] or ''}"
            )


SCAN_CSV_COLUMNS = [
    "file",
    "event",
    "part",
    "start",
    "end",
    "duration",
    "trigger",
    "pre_alarm_seconds",
    "frames",
    "peak_score",
    "motion_seconds",
    "clip",
]


def write_csv(path: str, rows: list) -> None:
    """``rows`` (scan's events, each with its file) as CSV to ``path``, or stdout for '-'."""
    out = sys.stdout if path == "-" else open(path, "w", newline="")
    try:
        w = csv.DictWriter(out, fieldnames=SCAN_CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    finally:
        if out is not sys.stdout:
            out.close()


def print_status(verdicts: list) -> None:
    """One line per camera: its verdict and the figures of its status file."""
    now = time.time()
    click.echo(
        f"{'camera':<14} {'state':<34} {'last frame':>10} {'fps':>6} {'dropped':>7} {'event':>6} "
        f"{'today':>6} {'MB':>8}  last error"
    )
    for v in verdicts:
        st = v.status or {}
        age = f"{now - st['last_frame']:.1f} s" if st.get("last_frame") else "-"
        ev = st.get("event")
        # an event column of "off": motion events disarmed (MQTT detect/set OFF)
        event = f"#{ev['event']}" if ev else ("off" if st.get("detect") is False else "-")
        click.echo(
            f"{v.camera:<14} {v.why[:34]:<34} {age:>10} {st.get('fps', 0):>6.1f} "
            f"{st.get('dropped_frames', 0):>7} {event:>6} "
            f"{st.get('events_today', 0):>6} {st.get('bytes_today', 0) / 2**20:>8.1f}  "
            f"{redact(st.get('last_error') or '')}"
        )
