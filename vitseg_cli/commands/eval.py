"""`vitseg eval`: mmseg-compatible metrics for a model on a labelled dataset, or for existing masks (--pred/--gt)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..data.formats import FORMATS
from ..data.io import check_output_dir
from ..errors import VitsegError, not_one_of
from ..torchrun import rank_and_world
from .common import (BatchOption, CompileOption, CropOption, DeviceOption, FlipOption, HalfOption, ModeOption,
                     ScalesOption, SetOption, SpecOption,
                     StrideOption, WeightsOption, WorkersOption,
                     console, default_workers, friendly_errors, inference_overrides, note)


@friendly_errors
def eval_cmd(
    dataset: Optional[Path] = typer.Argument(None, help="Dataset root (not needed with --pred/--gt)."),
    fmt: str = typer.Option("folder", "--format", "-f", help=f"Dataset layout: {', '.join(FORMATS)}."),
    split: str = typer.Option("val", "--split", help="Split: val, train, ... (ADE20K: validation/training)."),
    weights: WeightsOption = None,
    spec: SpecOption = None,
    set_values: SetOption = None,
    out: Path = typer.Option(Path("vitseg-eval"), "--out", "-o", help="Report folder."),
    mode: ModeOption = None,
    crop_size: CropOption = None,
    stride: StrideOption = None,
    flip: FlipOption = None,
    scales: ScalesOption = None,
    batch_size: BatchOption = None,
    half: HalfOption = False,
    compile_model: CompileOption = False,
    device: DeviceOption = "auto",
    workers: WorkersOption = default_workers(),
    save_predictions: bool = typer.Option(False, "--save-predictions",
                                          help="Also write predict's outputs to OUT/predictions/."),
    label_offset: int = typer.Option(0, "--label-offset", min=0, max=255,
                                     help="Add N to the saved masks' class indices (--save-predictions). 1 writes "
                                          "ADE20K's 1-based benchmark labels (0 = other) for a submission."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace OUT/predictions/ made with other weights or settings."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Class names file (YAML/JSON/txt)."),
    coco_json: Optional[Path] = typer.Option(None, "--coco-json", help="COCO instances/stuff JSON (--format coco)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N images."),
    pred: Optional[Path] = typer.Option(None, "--pred", help="Folder of predicted masks (class-index PNGs)."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="Folder of ground-truth masks, matched by relative path."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", min=1, help="Class count (--pred/--gt)."),
    ignore_index: int = typer.Option(255, "--ignore-index", help="Label value left out of the metrics (--pred/--gt)."),
    reduce_zero_label: bool = typer.Option(False, "--reduce-zero-label",
                                           help="Ground truth 0 = ignore, k -> k-1 (ADE20K style; --pred/--gt)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table; errors only."),
) -> None:
    """Score a model on a labelled dataset (or --pred masks against --gt masks) and write reports to OUT:
    metrics.json, per_class.csv, per_image.csv, confusion.csv, confusion.png, report.md."""
    from ..engine.evaluate import ModelEvalOptions, PairOptions, evaluate_model, evaluate_pairs

    rank = rank_and_world()[0]
    if pred is not None or gt is not None:
        if pred is None or gt is None:
            raise VitsegError("--pred and --gt go together")
        if num_classes is None:
            raise VitsegError("--pred/--gt needs --num-classes")
        if dataset is not None or weights is not None:
            raise VitsegError("--pred/--gt scores existing masks: give no DATASET or --weights")
        check_output_dir(out)  # a read-only --out fails now, not after the whole evaluation
        result = evaluate_pairs(PairOptions(pred=pred, gt=gt, num_classes=num_classes, ignore_index=ignore_index,
                                            reduce_zero_label=reduce_zero_label, classes=classes, quiet=quiet))
    else:
        if dataset is None:
            raise VitsegError("give a DATASET folder (with --format), or --pred and --gt")
        if fmt.lower() not in FORMATS:
            raise not_one_of("--format", fmt, FORMATS)
        if not dataset.exists():
            raise VitsegError(f"{dataset}: dataset folder not found")
        if label_offset and not save_predictions:
            raise VitsegError("--label-offset changes the masks --save-predictions writes: give both")
        overrides = inference_overrides(mode, crop_size, stride, flip, scales, batch_size, half, compile_model)
        check_output_dir(out)  # a read-only --out fails now, not after the whole evaluation
        result = evaluate_model(ModelEvalOptions(
            dataset=dataset, fmt=fmt, split=split, weights=weights, spec=spec, classes=classes, coco_json=coco_json,
            overrides=overrides, spec_overrides=list(set_values or []), device=device, workers=workers,
            save_predictions=out / "predictions" if save_predictions else None, label_offset=label_offset,
            overwrite=overwrite, quiet=quiet, limit=limit), note=None if quiet else note)
    if result is None or rank != 0:  # other ranks: rank 0 writes
        return
    _report(result, out, quiet)


def _report(result, out: Path, quiet: bool) -> None:
    from ..engine.eval_report import summary_line, terminal_table, write_reports

    if out.exists() and not out.is_dir():
        raise VitsegError(f"--out {out}: exists and is not a folder")
    write_reports(out, result.summary, result.conf, result.per_image, result.meta)
    if quiet:
        return
    stdout = Console(highlight=False, markup=False)
    stdout.print(terminal_table(result.summary, title=f"{result.meta.get('num_images')} images, "
                                                      f"{result.summary['num_classes']} classes (%)"))
    stdout.print(summary_line(result.summary))
    console.print(f"reports in {out}/ ({result.elapsed_s:.1f}s)", markup=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
