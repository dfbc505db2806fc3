"""`vitseg predict`: segment images, folders, globs or lists of images into an output folder (resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..engine.predict import PredictOptions, parse_save, run_predict
from .common import console, friendly_errors, inference_overrides


@friendly_errors
def predict(
    sources: list[str] = typer.Argument(..., metavar="SOURCE...",
                                        help="Image files, folders (searched recursively), globs or .txt lists."),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w",
                                           help="vitseg .safetensors or official .pth (default: the shipped model)."),
    spec: Optional[str] = typer.Option(None, "--spec", "-s", help="Spec YAML or preset (for official .pth files)."),
    out: Path = typer.Option(Path("vitseg-out"), "--out", "-o", help="Output folder."),
    mode: Optional[str] = typer.Option(None, "--mode", help="whole or slide (default: the spec's test.mode)."),
    crop_size: Optional[int] = typer.Option(None, "--crop-size", min=1, help="Slide window size in pixels."),
    stride: Optional[int] = typer.Option(None, "--stride", min=1, help="Slide window stride in pixels."),
    flip: Optional[bool] = typer.Option(None, "--flip/--no-flip", help="Left-right flip test-time augmentation."),
    scales: Optional[str] = typer.Option(None, "--scales", help="Multi-scale TTA ratios, e.g. 0.75,1,1.25."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Windows per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    half: bool = typer.Option(False, "--half", help="float16 inference (CUDA only)."),
    save: str = typer.Option("masks,color,overlay", "--save", help="Outputs: masks, color, overlay, probs."),
    alpha: float = typer.Option(0.5, "--alpha", min=0.0, max=1.0, help="Overlay opacity of the colours."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo images whose outputs exist."),
    workers: int = typer.Option(2, "--workers", min=0, help="Image decoding processes (0: in the main process)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, notes or summary; errors only."),
    backend: str = typer.Option("torch", "--backend", help="torch or onnx."),
) -> None:
    """Segment every image: OUT/masks (class indices), OUT/color, OUT/overlay, OUT/probs, OUT/predict.json.

    Existing outputs are skipped (rerun to resume); unreadable files are reported and the exit code is 1."""
    overrides = inference_overrides(mode, crop_size, stride, flip, scales, batch_size, half)
    opts = PredictOptions(sources=list(sources), out=out, weights=weights, spec=spec, overrides=overrides,
                          device=device, save=parse_save(save), alpha=alpha, overwrite=overwrite, workers=workers,
                          quiet=quiet, backend=backend.lower())
    summary = run_predict(opts, console=console)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
