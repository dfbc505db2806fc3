"""The CLI starts without torch, prints text literally, and turns every usage error into one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vitseg_cli.cli import app
from vitseg_cli.errors import VitsegError

runner = CliRunner()
HEAVY = ("torch", "timm", "torchvision")


def imported_modules(*args: str, cwd: Path) -> set[str]:
    """Top-level names of every module that `python -X importtime -m vitseg_cli ARGS` imported (worker processes
    of the same run included: they inherit the flag and report on the same stderr)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "vitseg_cli", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if line.startswith("import time:") and "|" in line]
    assert len(lines) > 50  # importtime did report
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines}


@pytest.mark.parametrize("args", [["--help"], ["predict", "--help"], ["train", "--help"], ["--version"], ["zoo"],
                                  ["zoo", "--json"], ["data", "synth", "ds", "--num", "2", "--workers", "2"]])
def test_no_torch_for_help_version_zoo_and_synth(args, tmp_path):
    heavy = imported_modules(*args, cwd=tmp_path) & set(HEAVY)
    assert not heavy, f"vitseg {' '.join(args)} imported {heavy}"


def test_the_python_api_still_imports_by_name():
    import vitseg_cli
    from vitseg_cli import build_model, load_model, load_spec, save_model

    assert callable(load_model) and callable(save_model) and callable(build_model) and callable(load_spec)
    assert "load_model" in dir(vitseg_cli)
    with pytest.raises(AttributeError):
        vitseg_cli.no_such_name  # noqa: B018


# ------------------------------------------------------------------------------------------------ one line each


def one_error_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize("args, expected", [
    (["predict", "x.png", "--alpha", "3"], "'--alpha'"),
    (["visualize", "x.png", "--masks", "m", "--alpha", "1.5"], "'--alpha'"),
    (["predict", "x.png", "--wights", "w"], "--weights"),
    (["prdict"], "predict"),
    (["export"], "Missing argument"),
    (["export", "w.pth", "--format", "onxx", "--out", "m.onnx"],
     "--format 'onxx': not one of onnx (did you mean onnx?)"),
    (["eval", "d", "--format", "fodler"], "(did you mean folder?)"),
    (["predict", "x.png", "--mode", "slid"], "(did you mean slide?)"),
    (["predict", "x.png", "--spec", "tinny"], "(did you mean tiny?)"),
    (["data", "synth", "out", "-w", "2"], "No such option: -w"),  # -w means --weights only
])
def test_usage_errors_are_one_line(args, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.png").write_bytes(b"")
    assert expected in one_error_line(runner.invoke(app, args))


def test_existing_output_is_one_line_in_convert_and_export(tmp_path):
    out = tmp_path / "m.out"
    out.write_text("keep")
    for command in ("convert", "export"):
        line = one_error_line(runner.invoke(app, [command, "w.pth", "--out", str(out)]))
        assert line == f"error: --out {out}: exists (use --overwrite)"
    assert out.read_text() == "keep"


def test_brackets_are_printed_literally(tmp_path):
    weird = tmp_path / "a[/b]" / "[bold]x[/bold].pth"
    line = one_error_line(runner.invoke(app, ["info", str(weird)]))
    assert f"{weird}: file not found" in line
    help_text = runner.invoke(app, ["train", "--help"]).output
    assert "mmseg [default: folder]" in " ".join(help_text.split())  # rich markup used to eat '[...]'
    assert "[default: auto]" in " ".join(help_text.split())


def test_device_index_means_cuda():
    from vitseg_cli.engine.device import resolve_device

    if torch.cuda.is_available():
        assert resolve_device("0") == torch.device("cuda:0")
    else:
        with pytest.raises(VitsegError, match="device cuda:0: CUDA is not available"):
            resolve_device("0")
