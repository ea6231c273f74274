#!/usr/bin/env python3
"""Every benchmark against its peers, in one run, printing markdown tables of ratios.

    python3 bench/run_all.py [scan] [live] [prealarm] [latency] [--quick]

Peers are installed on first use into their own environments: DVR-Scan from PyPI into
bench/.peers/dvr-scan, Motion from Debian with apt-get (root). Needs ../shared for the real footage
(the other streams are generated). About 25 minutes on 2 cores (--quick: about 6).
"""

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency  # noqa: E402
import live_vs_motion  # noqa: E402
import prealarm_memory  # noqa: E402
import scan_vs_dvrscan  # noqa: E402
from peers import SHARED, dvr_scan, motion  # noqa: E402

SECTIONS = ("scan", "live", "prealarm", "latency")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "sections", nargs="*", metavar="SECTION", help=f"any of {', '.join(SECTIONS)} (default: all)"
    )
    ap.add_argument("--quick", action="store_true", help="shorter windows, fewer repeats and cameras")
    args = ap.parse_args()
    unknown = [x for x in args.sections if x not in SECTIONS]
    if unknown:
        ap.error(f"unknown section {unknown[0]!r}: choose from {', '.join(SECTIONS)}")
    wanted = args.sections or SECTIONS
    if not (SHARED / "traffic_camera.mp4").exists():
        sys.exit(f"needs the real footage in {SHARED} (../shared beside the project)")
    dvr_scan(), motion()  # install first, so no section's timing includes it
    print(
        f"# nvr-cli benchmarks, {time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores"
    )
    t = time.monotonic()
    if "scan" in wanted:
        scan_vs_dvrscan.report(
            scan_vs_dvrscan.run([SHARED / "traffic_camera.mp4"], repeat=1 if args.quick else 3)
        )
    if "live" in wanted:
        live_vs_motion.report(
            live_vs_motion.run(
                seconds=8 if args.quick else 15,
                ladder={"720p15": [1, 2], "1080p25": [1]} if args.quick else None,
            )
        )
    if "prealarm" in wanted:
        prealarm_memory.report(prealarm_memory.run(seconds=5 if args.quick else 10))
    if "latency" in wanted:
        latency.report(latency.run())
    print(f"\n(all sections: {time.monotonic() - t:.0f} s)")


if __name__ == "__main__":
    main()
