#!/usr/bin/env python3
"""Render the motion detector's stages into one four-panel video, for tuning.

    python scripts/motion_detection_test_with_contours.py SOURCE [-o debug.mp4] [--max-frames N]
        [--config FILE] [any `nvr-cli record` motion option, e.g. --threshold 20 --mask "..."]

Panels: source | blurred difference / after threshold, dilate and erode | contours and boxes.
"""

import sys

import click

from nvr_cli.cli.app import NvrGroup
from nvr_cli.cli.options import load_with_options, settings_options
from nvr_cli.ffmpeg.binary import find_ffmpeg
from nvr_cli.output.debug_video import render_debug_video


@click.group(cls=NvrGroup, invoke_without_command=True, add_help_option=False)
def _wrapper():
    pass


@_wrapper.command(name="render")
@click.argument("source")
@click.option("-o", "--out", default="motion_debug.mp4", show_default=True, help="output video")
@click.option("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
@settings_options
def render(source, out, max_frames, config_path, **opts):
    s, _ = load_with_options(config_path, opts)
    n = render_debug_video(
        s, source, out, ffmpeg=find_ffmpeg(s.FFMPEG_PATH, required=False), max_frames=max_frames
    )
    click.echo(f"{out}: {n} frames, four panels")


if __name__ == "__main__":
    _wrapper(["render", *sys.argv[1:]], prog_name="motion_detection_test_with_contours.py")
