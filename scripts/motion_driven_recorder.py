#!/usr/bin/env python3
"""The original entry point, kept for existing setups: the same as `nvr-cli record [SOURCE] [OPTIONS]`."""

import sys

from nvr_cli.cli import cli

if __name__ == "__main__":
    cli(["record", *sys.argv[1:]], prog_name="motion_driven_recorder.py")
