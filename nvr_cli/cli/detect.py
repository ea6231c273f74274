"""`nvr-cli detect`: what an object detector sees in an image or video, and how sure it is."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

import nvr_cli.storage.paths as storage
from nvr_cli.analysis.sampling import BestFrame, sample_frames
from nvr_cli.cli.options import json_option
from nvr_cli.cli.render import echo_json


@click.command()
@click.argument("source")
@click.option("--model", required=True, help="TFLite detection model [OBJECT_MODEL]")
@click.option("--labels", required=True, help="its labels file [OBJECT_LABELS]")
@click.option("--min-score", type=float, default=0.3, show_default=True, help="lowest score shown")
@click.option("--objects", help="only these labels, comma-separated (default: all)")
@click.option(
    "--every", type=float, default=1.0, show_default=True, help="videos: seconds between analysed frames"
)
@click.option("--max-frames", type=int, default=0, help="videos: stop after this many analysed frames")
@click.option("--annotate", help="write the image (for a video: its best frame) with the boxes drawn")
@json_option("one JSON line per analysed image or frame")
@click.option("--threads", type=int, default=2, show_default=True, help="TFLite threads [OBJECT_THREADS]")
def detect(
    source: str,
    model: str,
    labels: str,
    min_score: float,
    objects: Optional[str],
    every: float,
    max_frames: int,
    annotate: Optional[str],
    as_json: bool,
    threads: int,
) -> None:
    """Run an object detector on an IMAGE or VIDEO: what it sees, and how sure it is.

    Use it to pick OBJECT_MIN_SCORE. The model's kind (SSD or YOLO style) is read off its tensors.
    """
    from nvr_cli.analysis.objects import ObjectDetector

    det = ObjectDetector(model, labels, threads=threads)
    wanted = {x.strip() for x in objects.split(",")} if objects else None
    best = BestFrame()
    for t, image in sample_frames(source, every, max_frames):
        found = [d for d in det.detect(image, min_score) if wanted is None or d.label in wanted]
        best.offer(image, found)
        if as_json:
            line = {"file": source, "detections": [d.as_dict() for d in found]}
            if t is not None:
                line = {"file": source, "time": round(t, 3), "detections": line["detections"]}
            echo_json(line)
            continue
        when = f"{t:8.2f} s  " if t is not None else ""
        if not found:
            click.echo(f"{when}(nothing above {min_score})")
        for d in found:
            x, y, w, h = d.box
            click.echo(f"{when}{d.label:<16} {d.score:5.2f}  x={x} y={y} w={w} h={h}")
    if annotate and best.image is not None:
        storage.write_thumbnail(
            Path(annotate),
            best.image,
            [d.box for d in best.detections],
            [f"{d.label} {d.score:.2f}" for d in best.detections],
        )
        if not as_json:
            click.echo(f"annotated: {annotate}")
