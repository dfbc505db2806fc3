"""`vitseg eval`: mmseg-compatible metrics for a model on a labelled dataset, or for existing masks (--pred/--gt)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import typer

from ..data.formats import FORMATS
from ..data.io import check_output_dir
from ..data.storage import is_url, join, redact
from ..data.url_stage import refuse_url_out_inside, staged_input, staged_output
from ..errors import VitsegError, not_one_of
from ..torchrun import rank_and_world
from .common import (BackboneWeightsOption, BatchOption, CompileOption, CropOption, DeviceOption, FlipOption,
                     HalfOption, ModeOption, ScalesOption, SetOption, SpecOption,
                     TtaOption,
                     StrideOption, ThreadsOption, WeightsOption, WorkersOption,
                     console, default_workers, friendly_errors, inference_overrides, renamed, results_console,
                     set_threads, tta_overrides, note)


@friendly_errors
def eval_cmd(
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset root, a folder or an fsspec URL prefix "
                                                                 "(s3://bucket/ds; not with --pred/--gt)."),
    dataset: Optional[str] = typer.Argument(None, hidden=True),  # the old spelling of --data
    fmt: Optional[str] = typer.Option(None, "--format", "-f",
                                      help=f"Dataset layout: {', '.join(FORMATS)} [default: the release's for a zoo name "
                                           "or official preset, else folder]"),
    split: str = typer.Option("val", "--split", help="Split: val, train, ... (ADE20K: validation/training)."),
    weights: WeightsOption = None,
    backbone_weights: BackboneWeightsOption = None,
    spec: SpecOption = None,
    set_values: SetOption = None,
    out: str = typer.Option("vitseg-eval", "--out", "-o", help="Report folder, or an fsspec URL prefix."),
    mode: ModeOption = None,
    crop_size: CropOption = None,
    stride: StrideOption = None,
    flip: FlipOption = None,
    scales: ScalesOption = None,
    tta: TtaOption = False,
    batch_size: BatchOption = None,
    half: HalfOption = False,
    compile_model: CompileOption = False,
    device: DeviceOption = "auto",
    backend: Optional[str] = typer.Option(None, "--backend", help="torch or onnx [default: onnx for a .onnx "
                                                                  "--weights file, else torch]"),
    workers: WorkersOption = default_workers(),
    threads: ThreadsOption = None,
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
    pred: Optional[str] = typer.Option(None, "--pred", help="Folder (or URL prefix) of predicted masks (class-index "
                                                            "PNGs)."),
    gt: Optional[str] = typer.Option(None, "--gt", help="Folder (or URL prefix) of ground-truth masks, matched by "
                                                        "relative path."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", min=1, help="Class count (--pred/--gt)."),
    ignore_index: int = typer.Option(255, "--ignore-index", help="Label value left out of the metrics (--pred/--gt)."),
    reduce_zero_label: bool = typer.Option(False, "--reduce-zero-label",
                                           help="Ground truth 0 = ignore, k -> k-1 (ADE20K style). With --data: "
                                                "the same as --set data.reduce_zero_label=true."),
    label_map: Optional[str] = typer.Option(None, "--label-map",
                                            help="mapillary/mmseg: raw label values -> classes, a YAML/JSON file or "
                                                 "mapillary_to_cityscapes."),
    img_dir: Optional[str] = typer.Option(None, "--img-dir", help="mmseg format: image folder under --data."),
    ann_dir: Optional[str] = typer.Option(None, "--ann-dir", help="mmseg format: label folder under --data."),
    img_suffix: str = typer.Option(".jpg", "--img-suffix", help="mmseg format: image file ending."),
    seg_map_suffix: str = typer.Option(".png", "--seg-map-suffix", help="mmseg format: label file ending."),
    split_file: Optional[str] = typer.Option(None, "--split-file",
                                             help="mmseg format: file under --data listing the image names."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table; errors only."),
) -> None:
    """Score a model on a labelled dataset (or --pred masks against --gt masks) and write reports to OUT:
    metrics.json, per_class.csv, per_image.csv, confusion.csv, confusion.png, report.md."""
    from ..engine.evaluate import ModelEvalOptions, PairOptions, evaluate_model, evaluate_pairs

    rank = rank_and_world()[0]
    dataset = renamed(data, dataset, "--data", "a positional DATASET")
    if pred is not None or gt is not None:
        _check_pair_mode(pred, gt, num_classes, dataset, weights)
    elif dataset is None:
        raise VitsegError("give --data DATASET (with --format), or --pred and --gt")
    urls = {"--data": dataset, "--pred": pred, "--gt": gt}
    refuse_url_out_inside(out, urls.items(), nested=dataset is None)
    with ExitStack() as stack:  # URL folders: downloaded, and the reports uploaded, through local stand-ins
        local = {flag: stack.enter_context(staged_input(value, flag)) for flag, value in urls.items()}
        dataset, pred, gt = local["--data"], local["--pred"], local["--gt"]
        local_out = stack.enter_context(staged_output(out))
        if pred is not None:
            _refuse_out_inside(local_out, {"--pred": pred, "--gt": gt})
            check_output_dir(local_out)  # a read-only --out fails now, not after the whole evaluation
            result = evaluate_pairs(PairOptions(pred=pred, gt=gt, num_classes=num_classes, ignore_index=ignore_index,
                                                reduce_zero_label=reduce_zero_label, classes=classes, quiet=quiet))
        else:
            fmt = _dataset_format(dataset, fmt, weights, spec)
            if label_offset and not save_predictions:
                raise VitsegError("--label-offset changes the masks --save-predictions writes: give both")
            layout = custom_layout(fmt, img_dir, ann_dir, img_suffix, seg_map_suffix, split_file)
            if reduce_zero_label:
                set_values = [*(set_values or []), "data.reduce_zero_label=true"]
            overrides = inference_overrides(mode, crop_size, stride, flip, scales, batch_size, half, compile_model)
            # a dataset's formats read only their own subfolders: a report folder inside --data is fine, not --data
            _refuse_out_inside(local_out, {"--data": dataset}, nested=False)
            check_output_dir(local_out)  # a read-only --out fails now, not after the whole evaluation
            set_threads(threads, workers)
            result = evaluate_model(ModelEvalOptions(
                dataset=dataset, fmt=fmt, split=split, weights=weights, spec=spec, classes=classes,
                coco_json=coco_json, backbone_weights=backbone_weights, backend=backend,
                overrides=overrides, spec_overrides=tta_overrides(tta, weights, spec, set_values), device=device,
                workers=workers,
                save_predictions=local_out / "predictions" if save_predictions else None, label_offset=label_offset,
                overwrite=overwrite, quiet=quiet, limit=limit, label_map=label_map, layout=layout),
                note=None if quiet else note)
        if result is None or rank != 0:  # other ranks: rank 0 writes
            return
        _name_urls(result.meta, urls, out)
        _report(result, local_out, quiet, shown=redact(out))


def _name_urls(meta: dict, urls: dict, out: str) -> None:
    """The records name a URL input or --out (credentials redacted), not its temporary local stand-in."""
    for flag, value in urls.items():
        if value is not None and is_url(value) and flag.lstrip("-") in ("data", "pred", "gt"):
            meta["dataset" if flag == "--data" else flag.lstrip("-")] = redact(value)
    if is_url(out) and "predictions" in meta:
        meta["predictions"] = join(redact(out), "predictions")


def _refuse_out_inside(out: Path, inputs: dict[str, Path], nested: bool = True) -> None:
    """The reports (and saved predictions) must never land among the inputs: the next eval would read them.
    `nested`: a folder below an input counts as inside it too."""
    where = out.resolve()
    for option, folder in inputs.items():
        if where == folder.resolve() or (nested and folder.resolve() in where.parents):
            raise VitsegError(f"--out {out}: is inside {option} {folder}, where the reports would mix with the "
                              "inputs; choose an --out folder outside them")


def _check_pair_mode(pred, gt, num_classes, dataset, weights) -> None:
    if pred is None or gt is None:
        raise VitsegError("--pred and --gt go together")
    if num_classes is None:
        raise VitsegError("--pred/--gt needs --num-classes")
    if dataset is not None or weights is not None:
        raise VitsegError("--pred/--gt scores existing masks: give no --data or --weights")


def _dataset_format(dataset: Path, fmt: Optional[str], weights: Optional[Path], spec: Optional[str]) -> str:
    fmt = fmt or default_format(weights, spec)
    if fmt.lower() not in FORMATS:
        raise not_one_of("--format", fmt, FORMATS)
    if not dataset.exists():
        raise VitsegError(f"{dataset}: dataset folder not found")
    return fmt


def default_format(weights: Optional[Path], spec: Optional[str]) -> str:
    """The dataset format of the release named by --spec or --weights (a zoo name), else folder."""
    from ..releases import dataset_format, find_release

    for name in (spec, str(weights) if weights is not None else None):
        release = find_release(name) if name else None
        if release is not None:
            return dataset_format(release)
    return "folder"


def custom_layout(fmt: str, img_dir, ann_dir, img_suffix: str, seg_map_suffix: str, split_file):
    """The mmseg format's folders from the options (None for other formats; giving them there is an error)."""
    from ..data.official_layouts import CustomLayout

    given = [name for name, value in (("--img-dir", img_dir), ("--ann-dir", ann_dir), ("--split-file", split_file),
                                      ("--img-suffix", img_suffix != ".jpg" or None),
                                      ("--seg-map-suffix", seg_map_suffix != ".png" or None)) if value]
    if fmt.lower() != "mmseg":
        if given:
            raise VitsegError(f"{given[0]} describes the mmseg format's layout, not {fmt}")
        return None
    if not img_dir or not ann_dir:
        raise VitsegError("--format mmseg needs --img-dir and --ann-dir (folders under --data)")
    return CustomLayout(img_dir, ann_dir, img_suffix, seg_map_suffix, split_file)


def _report(result, out: Path, quiet: bool, shown: Optional[str] = None) -> None:
    from ..engine.eval_report import summary_line, terminal_table, write_reports
    from ..metrics import shifted_label_warning

    if out.exists() and not out.is_dir():
        raise VitsegError(f"--out {out}: exists and is not a folder")
    warning = shifted_label_warning(result.conf)
    if warning:
        result.meta["warning"] = warning
    write_reports(out, result.summary, result.conf, result.per_image, result.meta)
    if warning:  # even with --quiet: a score that is probably wrong must not pass unnoticed
        console.print(warning, markup=False, soft_wrap=True)
    if quiet:
        return
    results_console.print(terminal_table(result.summary, title=f"{result.meta.get('num_images')} images, "
                                                               f"{result.summary['num_classes']} classes (%)"))
    results_console.print(summary_line(result.summary))
    results_console.print(f"reports in {shown or out}/ ({result.elapsed_s:.1f}s)", markup=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
