"""`vitseg visualize`: overlays, comparison panels and an offline HTML gallery from images and masks."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import List, Optional

import typer

from ..data.storage import redact
from ..data.url_stage import refuse_url_out_inside, staged_input, staged_output
from ..errors import VitsegError
from .common import console, friendly_errors, renamed


@friendly_errors
def visualize(
    images: List[str] = typer.Argument(..., help="Images: files, folders (recursive), globs or .txt lists."),
    pred: Optional[str] = typer.Option(None, "--pred", help="Folder (or URL prefix) of predicted index masks (e.g. "
                                                            "vitseg-out/masks), as eval's --pred."),
    masks: Optional[str] = typer.Option(None, "--masks", "-m", hidden=True),  # the old name of --pred
    gt: Optional[str] = typer.Option(None, "--gt", help="Folder (or URL prefix) of ground-truth index masks: adds "
                                                         "panels with an error map, pixel accuracy and mIoU per image."),
    out: str = typer.Option("vitseg-viz", "--out", "-o", help="Output folder, or an fsspec URL prefix (each file "
                                                               "uploaded whole once drawn)."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Class names (+ palette): YAML, JSON or txt."),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w",
                                           help="Take class names and palette from this checkpoint or zoo name "
                                                "[default: the shipped model's, when --classes is not given]"),
    alpha: float = typer.Option(0.5, "--alpha", min=0.0, max=1.0, help="Opacity of the mask colours over the image."),
    legend: bool = typer.Option(True, "--legend/--no-legend", help="Add a legend of the classes present."),
    panels: bool = typer.Option(False, "--panel", help="Also draw image | prediction panels (always with --gt)."),
    gallery: bool = typer.Option(False, "--gallery", help="Write OUT/index.html with a thumbnail of every panel "
                                                          "(worst mIoU first with --gt); opens offline."),
    ignore_index: int = typer.Option(255, "--ignore-index", help="Ground-truth value that marks unlabelled pixels."),
    reduce_zero_label: bool = typer.Option(False, "--reduce-zero-label",
                                           help="Ground truth 0 is 'unlabelled' and k means class k-1 (ADE20K)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Draw overlays with a legend, image | ground truth | prediction | error panels, and an HTML gallery."""
    from ..engine.visualize import VisualizeOptions, run_visualize

    masks = renamed(pred, masks, "--pred", "--masks")
    if masks is None:
        raise VitsegError("give --pred FOLDER: the predicted masks to draw (e.g. vitseg-out/masks)")
    refuse_url_out_inside(out, [("--pred", masks), ("--gt", gt), *(("the image source", s) for s in images)])
    with ExitStack() as stack:  # URL folders: downloaded, and the drawings uploaded, through local stand-ins
        masks, gt = (stack.enter_context(staged_input(value, flag)) for flag, value in (("--pred", masks),
                                                                                          ("--gt", gt)))
        opts = VisualizeOptions(images=images, masks=masks, gt=gt, out=stack.enter_context(staged_output(out)),
                                classes=classes, weights=weights, alpha=alpha, legend=legend, panel=panels,
                                gallery=gallery, ignore_index=ignore_index, reduce_zero_label=reduce_zero_label,
                                quiet=quiet, shown_out=redact(out))
        _, failures = run_visualize(opts, console)
    if failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("visualize")(visualize)
