"""Evaluation reports: metrics.json, per_class.csv, per_image.csv, confusion.csv, confusion.png,
report.md, and the terminal table. Every file is written atomically; NaN is `null` in JSON and empty in CSV. File
names that are not UTF-8 keep their bytes in the CSV files and are escaped in JSON, Markdown and drawn text."""

from __future__ import annotations

import csv
import io as _io
import json
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import cv2
import numpy as np

from ..data.io import atomic_write_bytes, encode_image, remove_stale_parts
from ..metrics import METRIC_KEYS, PER_CLASS_KEYS, nan_to_none
from ..viz import drawable_text, escape_undecodable

REPORT_FILES = ("metrics.json", "per_class.csv", "per_image.csv", "confusion.csv", "confusion.png", "report.md")


def _pct(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def _num(x: Any) -> str:
    if isinstance(x, float):
        return "" if math.isnan(x) else f"{x:.6f}"
    return str(x)


def _csv_bytes(rows: Sequence[Sequence[Any]]) -> bytes:
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for row in rows:
        writer.writerow([_num(v) for v in row])
    return buf.getvalue().encode("utf-8", "surrogateescape")  # a non-UTF-8 file name keeps its bytes


def metrics_json(summary: dict, meta: dict) -> bytes:
    doc = {k: summary[k] for k in METRIC_KEYS}
    doc.update({"num_images": meta.get("num_images"), "num_classes": summary["num_classes"],
                "total_pixels": summary["total_pixels"], "per_class": summary["per_class"]})
    doc["run"] = {k: v for k, v in meta.items() if k != "num_images"}
    return (json.dumps(nan_to_none(doc), indent=2, allow_nan=False) + "\n").encode("utf-8")


def per_class_csv(summary: dict) -> bytes:
    head = ["class", *PER_CLASS_KEYS, "label_pixels", "pred_pixels"]
    return _csv_bytes([head] + [[row[k] for k in head] for row in summary["per_class"]])


def per_image_csv(rows: Sequence[dict]) -> bytes:
    head = ["key", "pixel_acc", "mIoU", "labelled_pixels"]
    return _csv_bytes([head] + [[r[k] for k in head] for r in rows])


def confusion_csv(conf: np.ndarray, names: Sequence[str]) -> bytes:
    rows: list[list[Any]] = [["label \\ pred", *names]]
    rows += [[names[i], *(int(v) for v in conf[i])] for i in range(len(names))]
    return _csv_bytes(rows)


CONFUSION_TITLE = "confusion (rows: label, normalised; columns: prediction)"
COLOUR_BAR_W = 48  # the bar (14 px) and its labels


def _colour_bar(canvas: np.ndarray, x: int, y: int, height: int) -> None:
    """The heat map's scale: VIRIDIS from 1 (top) to 0 (bottom), labelled 1, 0.5 and 0."""
    ramp = np.round(np.linspace(255, 0, height)).astype(np.uint8)[:, None].repeat(14, 1)
    canvas[y:y + height, x:x + 14] = cv2.applyColorMap(ramp, cv2.COLORMAP_VIRIDIS)[..., ::-1]
    font = cv2.FONT_HERSHEY_SIMPLEX
    for value, row in (("1", y + 8), ("0.5", y + height // 2 + 4), ("0", y + height)):
        cv2.putText(canvas, value, (x + 18, row), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)


def confusion_png(conf: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """A row-normalised heat map (rows = label, columns = prediction), class names on both axes and a colour bar,
    as RGB uint8."""
    k = conf.shape[0]
    rows = conf.sum(1, keepdims=True).astype(np.float64)
    norm = np.divide(conf, rows, out=np.zeros(conf.shape, np.float64), where=rows > 0)
    show_names = k <= 300  # up to COCO-Stuff size: one named row per class (small print past ~90 classes)
    cell = int(np.clip(900 // max(k, 1), 10 if show_names else 3, 48))
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, float(np.clip(cell / 30.0, 0.3, 0.5))
    labels = [drawable_text(str(n))[:24] for n in names] if show_names else []
    text_w = max([cv2.getTextSize(s, font, scale, 1)[0][0] for s in labels] + [0]) + 8
    margin = max(text_w, 40)
    size = k * cell
    title_h = 28
    title_w = cv2.getTextSize(CONFUSION_TITLE, font, 0.5, 1)[0][0] + 12
    bar_x = margin + size + 12  # the colour bar, right of the map
    width = max(bar_x + COLOUR_BAR_W, title_w)
    canvas = np.full((title_h + margin + max(size, 60) + 8, width, 3), 255, np.uint8)
    heat = cv2.applyColorMap(np.round(norm * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[..., ::-1]
    heat = cv2.resize(heat, (size, size), interpolation=cv2.INTER_NEAREST)
    empty_rows = np.repeat(rows[:, 0] == 0, cell)
    heat[empty_rows] = 200  # classes absent from the labels: grey rows
    y0, x0 = title_h + margin, margin
    canvas[y0:y0 + size, x0:x0 + size] = heat
    cv2.putText(canvas, CONFUSION_TITLE, (6, 19), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    _colour_bar(canvas, bar_x, y0, max(size, 60))
    if show_names:
        th = cv2.getTextSize("Ag", font, scale, 1)[0][1]
        side = np.full((size, text_w), 255, np.uint8)  # row names, right-aligned
        flat = np.full((size, text_w), 255, np.uint8)  # column names, drawn like rows then turned
        for i, s in enumerate(labels):
            w = cv2.getTextSize(s, font, scale, 1)[0][0]
            yc = i * cell + (cell + th) // 2
            cv2.putText(side, s, (text_w - 4 - w, yc), font, scale, 0, 1, cv2.LINE_AA)
            cv2.putText(flat, s, (4, yc), font, scale, 0, 1, cv2.LINE_AA)
        top = cv2.rotate(flat, cv2.ROTATE_90_COUNTERCLOCKWISE)[..., None]  # (text_w, size): read bottom-up
        canvas[y0:y0 + size, x0 - text_w:x0] = side[..., None]
        canvas[title_h + margin - text_w:title_h + margin, x0:x0 + size] = top
        if cell >= 30:
            for i in range(k):
                for j in range(k):
                    if norm[i, j] >= 0.005:
                        v = f"{norm[i, j]:.2f}"
                        color = (0, 0, 0) if norm[i, j] > 0.6 else (255, 255, 255)
                        tw = cv2.getTextSize(v, font, 0.35, 1)[0][0]
                        cv2.putText(canvas, v, (x0 + j * cell + (cell - tw) // 2, y0 + i * cell + cell // 2 + 4),
                                    font, 0.35, color, 1, cv2.LINE_AA)
    return canvas


def _split_used(meta: dict) -> bool:
    """A folder dataset has a split only when it has images/<split>/ (else every image is read, whatever --split)."""
    if meta.get("format") != "folder":
        return True
    return (Path(str(meta.get("dataset", ""))) / "images" / str(meta["split"])).is_dir()


def report_md(summary: dict, per_image: Sequence[dict], meta: dict) -> bytes:
    lines = ["# vitseg evaluation", ""]
    for key in ("dataset", "format", "split", "weights", "pred", "gt"):
        if meta.get(key) and (key != "split" or _split_used(meta)):
            lines.append(f"- {key}: `{meta[key]}`")
    lines.append(f"- images: {meta.get('num_images')}, classes: {summary['num_classes']}, labelled pixels: "
                 f"{summary['total_pixels']}")
    lines += ["", "## Summary (%)", "", "| " + " | ".join(METRIC_KEYS) + " |",
              "|" + "---:|" * len(METRIC_KEYS), "| " + " | ".join(_pct(summary[k]) for k in METRIC_KEYS) + " |",
              "", "## Per class (%)", "", "| class | " + " | ".join(PER_CLASS_KEYS) + " | label px | pred px |",
              "|---|" + "---:|" * (len(PER_CLASS_KEYS) + 2)]
    for row in summary["per_class"]:
        lines.append(f"| {row['class']} | " + " | ".join(_pct(row[k]) for k in PER_CLASS_KEYS)
                     + f" | {row['label_pixels']} | {row['pred_pixels']} |")
    absent = [r["class"] for r in summary["per_class"] if r["label_pixels"] == 0]
    if absent:
        lines += ["", f"Classes absent from the labels (Acc/Recall undefined, '—'; IoU counts only if predicted): "
                      f"{', '.join(absent)}."]
    scored = [r for r in per_image if not math.isnan(r["mIoU"])]
    if scored:
        worst = sorted(scored, key=lambda r: r["mIoU"])[:10]
        lines += ["", "## Hardest images (lowest per-image mIoU)", "", "| image | pixel acc | mIoU |", "|---|---:|---:|"]
        lines += [f"| {r['key']} | {_pct(r['pixel_acc'])} | {_pct(r['mIoU'])} |" for r in worst]
    lines += ["", "Metrics follow mmseg: NaN (0/0) classes are left out of the means; see metrics.json for fractions.",
              ""]
    return escape_undecodable("\n".join(lines)).encode("utf-8")  # a non-UTF-8 file name's bytes as \xNN


def write_reports(out: Path, summary: dict, conf: np.ndarray, per_image: Sequence[dict], meta: dict) -> list[Path]:
    """Write every report file into `out` (created if needed); returns their paths."""
    names = [r["class"] for r in summary["per_class"]]
    payloads = {
        "metrics.json": metrics_json(summary, meta),
        "per_class.csv": per_class_csv(summary),
        "per_image.csv": per_image_csv(per_image),
        "confusion.csv": confusion_csv(conf, names),
        "confusion.png": encode_image(out / "confusion.png", confusion_png(conf, names)),
        "report.md": report_md(summary, per_image, meta),
    }  # everything is encoded before the first write
    remove_stale_parts(out)  # what a kill during an earlier report left
    paths = []
    for name, payload in payloads.items():
        atomic_write_bytes(out / name, payload)
        paths.append(out / name)
    return paths


def terminal_table(summary: dict, title: Optional[str] = None):
    """A rich Table: per-class rows then the means, in percent with 2 decimals (print it with markup off: class
    names are user text)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", show_footer=False)
    table.add_column("class")
    for k in PER_CLASS_KEYS:
        table.add_column(k, justify="right")
    for row in summary["per_class"]:
        table.add_row(Text(str(row["class"])), *(_pct(row[k]) for k in PER_CLASS_KEYS))  # names are literal text
    table.add_section()
    means = {"IoU": "mIoU", "Acc": "mAcc", "Dice": "mDice", "Fscore": "mFscore", "Precision": "mPrecision",
             "Recall": "mRecall"}
    table.add_row("mean", *(_pct(summary[means[k]]) for k in PER_CLASS_KEYS), style="bold")
    return table


def summary_line(summary: dict) -> str:
    return "  ".join(f"{k} {_pct(summary[k])}" for k in METRIC_KEYS)
