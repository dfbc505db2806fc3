"""`vitseg convert` and `vitseg info` from the command line: outputs, one-line errors and exit codes."""

from __future__ import annotations

import subprocess
import sys

import torch
from typer.testing import CliRunner

from vitseg_cli import load_model
from vitseg_cli.cli import app

runner = CliRunner()


def test_convert_then_load_gives_the_official_logits(parity_dir, tmp_path):
    out = tmp_path / "mini.safetensors"
    result = runner.invoke(app, ["convert", str(parity_dir / "mini_full_checkpoint.pth"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    case = torch.load(parity_dir / "mini_full_case.pt", weights_only=True)
    with torch.no_grad():
        logits = load_model(out)(case["input"])
    assert (logits - case["logits"]).abs().max().item() <= 1e-3
    again = runner.invoke(app, ["convert", str(parity_dir / "mini_full_checkpoint.pth"), "--out", str(out)])
    assert again.exit_code != 0 and "--overwrite" in again.output


def test_info_reports_architecture_classes_and_counts(parity_dir):
    result = runner.invoke(app, ["info", str(parity_dir / "mini_full_checkpoint.pth")])
    assert result.exit_code == 0, result.output
    for fragment in ("D96", "depth 4", "UperNet 32", "7: class_0", "total 1.38M", "assumed num_heads=3"):
        assert fragment in result.output


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitseg_cli", *args], capture_output=True, text=True, timeout=120)


def test_errors_are_one_line_with_nonzero_exit(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00" * 100)
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("model: {backbone: {depthh: 3}}\n")
    cases = [
        (["info", str(tmp_path / "missing.pth")], "missing.pth: file not found"),
        (["info", str(garbage)], "garbage.pth: not a readable checkpoint"),
        (["info", str(garbage), "--spec", str(bad_spec)], "model.backbone.depthh: unknown key"),
    ]
    for args, fragment in cases:
        proc = _run(*args)
        assert proc.returncode != 0
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and fragment in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
