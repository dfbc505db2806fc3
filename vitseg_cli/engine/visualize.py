"""`vitseg visualize`: overlays with legends, image | ground truth | prediction | error panels, and an HTML gallery.

Images are found like predict finds them (files, folders, globs, lists); each is matched to `MASKS/<rel>.png` (the
layout predict writes) or, failing that, to the only mask with the same stem. Outputs: `OUT/overlay/<rel>.jpg`,
`OUT/panels/<rel>.jpg` and, with `--gallery`, `OUT/index.html` + `OUT/thumbs/<rel>.jpg`, all written atomically.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import quote

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..data.datasets import load_classes_file
from ..data.io import (atomic_write_bytes, check_output_dir, is_image_path, read_image, read_label,
                       safe_relpath, write_image)
from ..errors import VitsegError
from ..loading import read_spec
from ..metrics import ConfusionMatrix, image_scores, reduce_zero_label
from ..data.classes import default_palette
from ..viz import colorize, error_map, escape_undecodable, overlay, panel, thumbnail, with_legend
from .common import default_weights_path
from .progress import StreamConsole
from ..data.url_inputs import collect_sources


@dataclass
class VisualizeOptions:
    images: list[str]
    masks: Path
    gt: Optional[Path] = None
    out: Path = Path("vitseg-viz")
    classes: Optional[Path] = None
    weights: Optional[Path] = None
    alpha: float = 0.5
    legend: bool = True
    panel: bool = False
    gallery: bool = False
    ignore_index: int = 255
    reduce_zero_label: bool = False
    quiet: bool = False
    shown_out: Optional[str] = None  # how the summary names OUT (a URL whose local stand-in `out` is)


@dataclass
class Entry:
    rel: str
    panel: Optional[Path]
    overlay: Path
    thumb: Optional[Path]
    acc: float = math.nan
    miou: float = math.nan


def class_table(classes: Optional[Path], weights: Optional[Path]) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Class names and palette from a classes file, a checkpoint's spec, the default model, or a generic table."""
    if classes is not None:
        table = load_classes_file(Path(classes))
        names = table["classes"]
        return names, table["palette"] or default_palette(len(names))
    path = weights if weights is not None else default_weights_path()
    if weights is not None or path.exists():
        spec = read_spec(path)
        return spec.class_names, spec.palette
    return [f"class_{i}" for i in range(256)], default_palette(256)


def _match(folder: Path, rel: str, kind: str) -> Path:
    direct = folder / f"{rel}.png"
    if direct.is_file():
        return direct
    stem = Path(rel).name
    found = [p for p in folder.rglob(f"{stem}.*") if is_image_path(p)]
    if len(found) == 1:
        return found[0]
    raise VitsegError(f"{folder / rel}: no {kind} found (looked for {direct.name}"
                      f"{' and found several with that stem' if found else ''})")


def run_visualize(opts: VisualizeOptions, console: Optional[Console] = None) -> tuple[list[Entry], int]:
    """Draw every image; returns the entries drawn and the number of images skipped (reported as they happen)."""
    console = console or StreamConsole(stderr=True)
    for folder, flag in ((opts.masks, "--pred"), (opts.gt, "--gt")):
        if folder is not None and not Path(folder).is_dir():
            raise VitsegError(f"{flag} {folder}: folder not found")
    if not 0.0 <= opts.alpha <= 1.0:
        raise VitsegError(f"--alpha {opts.alpha}: must be between 0 and 1")
    out = Path(opts.out)
    inputs = collect_sources(opts.images, out, tars=False)  # files, or image objects at fsspec URLs
    if not inputs:
        raise VitsegError(f"no images found in {', '.join(opts.images)}")
    names, palette = class_table(opts.classes, opts.weights)
    check_output_dir(out)
    make_panels = opts.panel or opts.gt is not None or opts.gallery
    entries: list[Entry] = []
    failures = 0
    progress = Progress(TextColumn("visualize"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=console, disable=opts.quiet or not console.is_terminal)  # piped: no bar
    with progress:
        task = progress.add_task("visualize", total=len(inputs))
        for item in inputs:
            try:
                entries.append(_draw_one(opts, out, item.path, item.rel, names, palette, make_panels))
            except VitsegError as err:
                failures += 1
                progress.console.print(f"skipped: {err}", style="red", markup=False, soft_wrap=True)
            progress.advance(task)
    if opts.gallery:
        write_gallery(out, entries, has_gt=opts.gt is not None)
    if not opts.quiet:
        StreamConsole().print(f"drew {len(entries)} images, skipped {failures} -> {opts.shown_out or out}")  # the result: stdout
    return entries, failures


def _draw_one(opts: VisualizeOptions, out: Path, image_path: Path, rel: str, names: Sequence[str], palette,
              make_panels: bool) -> Entry:
    image = read_image(image_path)
    mask_path = _match(Path(opts.masks), rel, "mask")
    pred = read_label(mask_path)
    if pred.shape != image.shape[:2]:
        raise VitsegError(f"{mask_path}: mask is {pred.shape[1]}x{pred.shape[0]} but the image is "
                          f"{image.shape[1]}x{image.shape[0]}")
    top = int(pred.max(initial=0))
    if top >= len(names):  # drawing and scoring size their tables by the classes: a stray 60000 would take GBs
        raise VitsegError(f"{mask_path}: mask holds class {top} but there are {len(names)} classes (give --classes "
                          "or --weights for the model that wrote it)")
    blended = overlay(image, pred, palette, opts.alpha)
    rel = safe_relpath(rel)
    entry = Entry(rel, None, out / "overlay" / f"{rel}.jpg", None)
    write_image(entry.overlay, with_legend(blended, pred, names, palette) if opts.legend else blended)
    if not make_panels:
        return entry
    tiles = [("image", image)]
    title = rel
    if opts.gt is not None:
        gt_path = _match(Path(opts.gt), rel, "ground truth")
        gt = read_label(gt_path).astype(np.int64)
        if opts.reduce_zero_label:
            gt = reduce_zero_label(gt, opts.ignore_index)
        if gt.shape != pred.shape:
            raise VitsegError(f"{gt_path}: ground truth is {gt.shape[1]}x{gt.shape[0]} but the mask is "
                              f"{pred.shape[1]}x{pred.shape[0]}")
        conf = ConfusionMatrix.compute(pred, gt, len(names), opts.ignore_index, source=str(gt_path))
        entry.acc, entry.miou = image_scores(conf)
        shown_gt = np.where(gt == opts.ignore_index, 0, gt)
        tiles += [("ground truth", colorize(shown_gt, palette)), ("prediction", colorize(pred, palette)),
                  ("errors", error_map(pred, gt, opts.ignore_index))]
        title = (f"{rel}   pixel acc {100 * entry.acc:.2f}%   mIoU {100 * entry.miou:.2f}%   "
                 "(errors: green ok, red wrong, grey ignored)")
    else:
        tiles.append(("prediction", colorize(pred, palette)))
    present = np.unique(pred)
    if opts.gt is not None:
        present = np.union1d(present, np.unique(shown_gt))
    drawing = panel(tiles, title)
    drawing = with_legend(drawing, present, names, palette) if opts.legend else drawing
    entry.panel = out / "panels" / f"{rel}.jpg"
    write_image(entry.panel, drawing)
    if opts.gallery:
        entry.thumb = out / "thumbs" / f"{rel}.jpg"
        write_image(entry.thumb, thumbnail(drawing))
    return entry


def write_gallery(out: Path, entries: list[Entry], has_gt: bool) -> Path:
    """`OUT/index.html`: a thumbnail per panel (worst mIoU first when there is ground truth), linking to it."""
    if has_gt:
        entries = sorted(entries, key=lambda e: (math.isnan(e.miou), e.miou))
    figures = []
    for e in entries:
        link = quote(os.fsencode(e.panel.relative_to(out).as_posix()))  # a file name's own bytes, even not UTF-8
        thumb = quote(os.fsencode(e.thumb.relative_to(out).as_posix()))
        shown = html.escape(escape_undecodable(e.rel))
        score = (f"<br>acc {100 * e.acc:.2f}% &middot; mIoU {100 * e.miou:.2f}%" if has_gt and not math.isnan(e.miou)
                 else "")
        figures.append(f'<figure><a href="{link}"><img src="{thumb}" alt="{shown}" loading="lazy"></a>'
                       f"<figcaption>{shown}{score}</figcaption></figure>")
    order = "sorted worst first by mIoU" if has_gt else "in input order"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vitseg gallery</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; background: #fafafa; }}
main {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; background: #fff; padding: 6px; border: 1px solid #ddd; }}
figure img {{ display: block; max-width: 320px; }}
figcaption {{ font-size: 12px; margin-top: 4px; }}
</style></head>
<body><h1>vitseg gallery</h1><p>{len(entries)} images, {order}. Click a thumbnail for the full panel.</p>
<main>
{chr(10).join(figures)}
</main></body></html>
"""
    path = out / "index.html"
    atomic_write_bytes(path, page.encode("utf-8"))
    return path
