"""The console conventions: progress, notes and errors on stderr, results and summaries on stdout; nothing wraps when
piped; no rich bar in a pipe; `vitseg zoo` at 80 columns and piped; the report files' title, colour bar and split."""

from __future__ import annotations

import io
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from conftest import nano_folder_dataset, nano_train_spec
from vitseg_cli.cli import app
from vitseg_cli.engine.eval_report import confusion_png, report_md
from vitseg_cli.zoo import as_records

runner = CliRunner()
PROGRESS = re.compile(r"^\w+ \d+/\d+ \(\d+%\) \| ")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(autouse=True)
def plain_pipe(monkeypatch):
    """A pipe, as a script sees it: no forced terminal, a line at every step."""
    for name in ("TTY_COMPATIBLE", "FORCE_COLOR", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VITSEG_PROGRESS_SECONDS", "0")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    return nano_folder_dataset(tmp_path_factory.mktemp("console"), 2)


def _long(tmp_path: Path, name: str) -> Path:
    return tmp_path / ("a_folder_name_long_enough_to_pass_eighty_columns_on_its_own_" * 2) / name


def test_piped_console_never_wraps_and_a_terminal_wraps_at_its_width():
    from vitseg_cli.engine.progress import StreamConsole

    line = "x" * 150 + " " + "y" * 150
    piped = io.StringIO()
    StreamConsole(file=piped).print(line)
    assert piped.getvalue() == line + "\n"
    screen = io.StringIO()
    StreamConsole(file=screen, force_terminal=True, width=80).print(line)
    assert max(len(ANSI.sub("", s)) for s in screen.getvalue().splitlines()) <= 80


def test_predict_progress_on_stderr_summary_on_stdout_unwrapped(tmp_path, data):
    ds, ckpt = data
    out = _long(tmp_path, "pred")
    res = runner.invoke(app, ["predict", str(ds / "images"), "-w", str(ckpt), "--out", str(out), "--device", "cpu",
                              "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert [ln for ln in res.stdout.splitlines() if ln.startswith("processed 2,")][0].endswith(f"-> {out}")
    assert not any(PROGRESS.match(ln) for ln in res.stdout.splitlines()), res.stdout
    assert any(ln.startswith("predict 2/2 (100%)") for ln in res.stderr.splitlines()), res.stderr


def test_eval_table_and_report_folder_on_stdout_progress_on_stderr(tmp_path, data):
    ds, ckpt = data
    out = _long(tmp_path, "eval")
    res = runner.invoke(app, ["eval", str(ds), "-w", str(ckpt), "--out", str(out), "--device", "cpu",
                              "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert f"reports in {out}/" in res.stdout.splitlines()[-1]
    assert "mIoU" in res.stdout and not any(PROGRESS.match(ln) for ln in res.stdout.splitlines())
    assert any(ln.startswith("evaluating 2/2") for ln in res.stderr.splitlines()), res.stderr
    assert "reports in" not in res.stderr


def test_visualize_draws_no_bar_when_piped_and_reports_on_stdout(tmp_path, data):
    ds, _ = data
    out = _long(tmp_path, "viz")
    res = runner.invoke(app, ["visualize", str(ds / "images"), "--pred", str(ds / "masks"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "━" not in res.output and "visualize" not in res.stderr, res.output
    assert res.stdout.strip() == f"drew 2 images, skipped 0 -> {out}"


def test_train_done_line_on_stdout(tmp_path, data):
    ds, _ = data
    spec = nano_train_spec(tmp_path)
    res = runner.invoke(app, ["train", "--spec", str(spec), "--data", str(ds), "--out", str(tmp_path / "r"),
                              "--iters", "1", "--device", "cpu", "--logger", "none", "--crop-size", "32x24"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("done: iteration 1"), res.stdout
    run_spec = yaml.safe_load((tmp_path / "r" / "spec.yaml").read_text())
    assert run_spec["train"]["crop_size"] == [24, 32]  # --crop-size WxH: 32 wide, 24 high
    assert any(ln.startswith("train 1/1") for ln in res.stderr.splitlines()), res.stderr


def test_synth_result_on_stdout(tmp_path):
    res = runner.invoke(app, ["data", "synth", str(tmp_path / "s"), "--num", "200", "--size", "16", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("wrote 200 images (16x16)") and res.stderr == ""  # no bar (not even its blank line)


def test_zoo_at_80_columns_keeps_names_and_key_columns(monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # a terminal 80 columns wide
    monkeypatch.setenv("COLUMNS", "80")
    res = runner.invoke(app, ["zoo"])
    assert res.exit_code == 0, res.output
    shown = ANSI.sub("", res.stdout)
    lines = shown.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    for row in as_records():
        at = lines.index(row["name"])  # each name whole, on its own line
        details = " ".join(lines[at + 1:at + 3])
        ss = "-" if row["miou_ss"] is None else f"{row['miou_ss']:.1f}"
        assert row["dataset"] in details and f"mIoU {ss} SS" in details, details
        assert "download ?" in details or f"download {row['size']}" in details
    assert "None" not in shown


def test_zoo_piped_is_one_unpadded_row_per_release():
    res = runner.invoke(app, ["zoo"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert all(ln == ln.rstrip() for ln in lines)
    for row in as_records():
        found = [ln for ln in lines if ln.split() and ln.split()[0] == row["name"]]
        assert len(found) == 1 and row["dataset"] in found[0] and found[0].split()[-1] in ("?", row["size"])
    assert "None" not in res.stdout
    one = runner.invoke(app, ["zoo", as_records()[0]["name"]])
    assert "size: ?" in one.stdout.splitlines()  # the table knows no size for it


def test_confusion_png_has_its_whole_title_and_a_colour_bar():
    conf = np.array([[9, 1], [0, 10]])
    image = confusion_png(conf, ["a", "b"])
    band = image[:26]  # the title's row
    ink = np.nonzero((band < 128).all(axis=2))[1]
    assert ink.size and ink.max() < image.shape[1] - 4  # the title ends before the right edge
    title = "confusion (rows: label, normalised; columns: prediction)"
    assert image.shape[1] >= cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0]
    # a column right of the map runs through VIRIDIS from 1 (top) to 0 (bottom)
    viridis = cv2.applyColorMap(np.array([[255], [0]], np.uint8), cv2.COLORMAP_VIRIDIS)[:, 0, ::-1].astype(int)
    found = False
    for x in range(image.shape[1]):
        col = image[:, x].astype(int)
        top = np.nonzero((np.abs(col - viridis[0]).sum(1) <= 12))[0]
        bottom = np.nonzero((np.abs(col - viridis[1]).sum(1) <= 12))[0]
        if top.size and bottom.size and bottom.min() - top.max() > 40:
            found = True
            break
    assert found, "no colour bar"


def test_report_names_a_split_only_where_the_dataset_has_it(tmp_path):
    summary = {k: 0.5 for k in ("aAcc", "mIoU", "mAcc", "mDice", "mFscore", "mPrecision", "mRecall", "fwIoU")}
    summary.update(num_classes=1, total_pixels=4, per_class=[])
    (tmp_path / "flat" / "images").mkdir(parents=True)
    (tmp_path / "split" / "images" / "val").mkdir(parents=True)
    flat = report_md(summary, [], {"dataset": str(tmp_path / "flat"), "format": "folder", "split": "val"}).decode()
    assert "- split:" not in flat and "- format: `folder`" in flat
    split = report_md(summary, [], {"dataset": str(tmp_path / "split"), "format": "folder", "split": "val"}).decode()
    assert "- split: `val`" in split
    ade = report_md(summary, [], {"dataset": str(tmp_path / "x"), "format": "ade20k", "split": "val"}).decode()
    assert "- split: `val`" in ade
