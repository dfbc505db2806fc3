"""`vitseg data ...`: dataset utilities; `vitseg data synth` writes a synthetic labelled dataset (folder format)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .common import console, friendly_errors, results_console

data_app = typer.Typer(help="Dataset utilities.", no_args_is_help=True, rich_markup_mode=None)


@data_app.command("synth")
@friendly_errors
def synth(
    out: Path = typer.Argument(..., help="Output folder (images/, masks/, classes.yaml are written inside)."),
    num: int = typer.Option(100, "--num", "-n", min=1, help="Number of image/mask pairs."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed: the same seed gives the same files."),
    size: str = typer.Option("256x256", "--size", help="Image size as WxH (width x height)."),
    workers: int = typer.Option(min(8, os.cpu_count() or 1), "--workers", min=1,
                                help="Processes drawing images (the files do not depend on it)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty folder (replaces a synthetic "
                                                              "dataset there)."),
    easy: bool = typer.Option(False, "--easy", help="Paint each class in its own colour (same scenes and masks as "
                                                    "without): a small model learns it from scratch in a few hundred "
                                                    "CPU iterations, for smoke-testing training. The default data "
                                                    "needs shape."),
) -> None:
    """Write a synthetic 6-class dataset (background, disc, square, triangle, ring, stripe) in the folder format."""
    from ..data.synth import make_synthetic, parse_size

    hw = parse_size(size)
    start = time.perf_counter()
    with Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=num < 200 or not console.is_terminal) as bar:
        task = bar.add_task("synth", total=num)
        make_synthetic(out, num, seed, hw, workers=workers, progress=lambda done: bar.update(task, completed=done),
                       overwrite=overwrite, easy=easy)
    results_console.print(f"wrote {num} images ({hw[1]}x{hw[0]}) to {out} in {time.perf_counter() - start:.1f}s "
                  f"(use: --format folder)")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
