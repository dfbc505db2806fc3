"""Progress in logs: predict, eval and train print plain periodic lines when stderr is not a terminal; in a
terminal, notes go through the progress bar's console."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from conftest import nano_folder_dataset, nano_train_spec
from vitseg_cli.cli import app
from vitseg_cli.engine.progress import ProgressReporter

runner = CliRunner()


@pytest.fixture(autouse=True)
def every_step(monkeypatch):
    monkeypatch.setenv("VITSEG_PROGRESS_SECONDS", "0")  # a line at every step, not every 30 s


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    return nano_folder_dataset(tmp_path_factory.mktemp("prog"), 3)


LINE = r"^{label} (\d+)/{total} \(\d+%\) \| [\d.]+ {unit}/s \| elapsed \d+:\d\d:\d\d \| ETA \d+:\d\d:\d\d"


def _lines(output: str, label: str, total: int, unit: str) -> list[re.Match]:
    rx = re.compile(LINE.format(label=label, total=total, unit=unit))
    return [m for ln in output.splitlines() if (m := rx.match(ln))]


def test_predict_and_eval_print_plain_lines_in_a_log(tmp_path, data):
    ds, ckpt = data
    res = runner.invoke(app, ["predict", str(ds / "images"), "-w", str(ckpt), "--out", str(tmp_path / "p"),
                              "--device", "cpu", "--workers", "0"])
    assert res.exit_code == 0, res.output
    lines = _lines(res.output, "predict", 3, "img")
    assert [int(m.group(1)) for m in lines] == [1, 2, 3], res.output
    assert "failed 0" in lines[-1].string
    res = runner.invoke(app, ["eval", str(ds), "-w", str(ckpt), "--out", str(tmp_path / "e"), "--device", "cpu",
                              "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert [int(m.group(1)) for m in _lines(res.output, "evaluating", 3, "img")] == [1, 2, 3], res.output


def test_train_prints_loss_lines_in_a_log(tmp_path, data):
    ds, _ = data
    spec = nano_train_spec(tmp_path)
    res = runner.invoke(app, ["train", "--spec", str(spec), "--data", str(ds), "--out", str(tmp_path / "r"),
                              "--iters", "2", "--log-every", "1", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    lines = _lines(res.output, "train", 2, "it")
    assert [int(m.group(1)) for m in lines] == [1, 2], res.output
    assert all(re.search(r"loss \d+\.\d{4}  lr \d\.\d\de-\d\d", m.string) for m in lines), res.output


def test_interval_limits_lines_and_end_is_always_shown(monkeypatch):
    monkeypatch.setenv("VITSEG_PROGRESS_SECONDS", "3600")
    out = io.StringIO()
    monkeypatch.setattr("sys.stderr", out)  # progress goes to stderr, results to stdout
    with ProgressReporter("work", 5, interactive=False) as p:
        for i in range(5):
            p.advance(errors=0)
    printed = out.getvalue().splitlines()
    assert [ln.split(" | ")[0] for ln in printed] == ["work 1/5 (20%)", "work 5/5 (100%)"]


def test_notes_go_through_the_bar_console_in_a_terminal():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    fallback: list[str] = []
    with ProgressReporter("train", 4, console=console, fallback=fallback.append, interactive=True) as p:
        p.update(1, loss="0.5")
        p.print("iteration 1: mIoU 0.5 [x]")
    assert fallback == []  # not printed beside the bar
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "iteration 1: mIoU 0.5 [x]" in shown  # above it, literally
    with ProgressReporter("train", 4, console=console, fallback=fallback.append, enabled=False) as p:
        p.print("note")
    assert fallback == ["note"]
