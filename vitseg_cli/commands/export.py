"""`vitseg export`: write a model as ONNX (spec embedded), for onnxruntime and `vitseg predict --backend onnx`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..checkpoints import load_model
from ..engine.export import DEFAULT_OPSET, check_export, export_onnx
from .common import console, friendly_errors


@friendly_errors
def export(
    weights: Path = typer.Argument(..., help="A vitseg .safetensors or an official .pth checkpoint."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="Export format (only onnx)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .onnx file."),
    spec: Optional[str] = typer.Option(None, "--spec", "-s", help="Spec (YAML or preset); inferred if omitted."),
    height: int = typer.Option(512, "--height", help="Input height the graph is built for (fixed)."),
    width: int = typer.Option(512, "--width", help="Input width the graph is built for (fixed)."),
    opset: int = typer.Option(DEFAULT_OPSET, "--opset", help="ONNX opset (>= 16)."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Compare onnxruntime with PyTorch afterwards."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Export a segmentor to ONNX (dynamic batch, fixed HxW, normalized float32 NCHW in, logits at 1/4 out)."""
    if fmt.lower() != "onnx":
        raise typer.BadParameter(f"unsupported format {fmt!r} (only onnx)", param_hint="--format")
    if out.exists() and not overwrite:
        raise typer.BadParameter(f"{out} exists (use --overwrite)", param_hint="--out")
    model = load_model(weights, spec)
    export_onnx(model, out, height, width, opset)
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, input Bx3x{height}x{width}, opset {opset})",
                  markup=False)
    if verify:
        try:
            err = check_export(model, out)
        except ImportError:
            console.print("[yellow]note:[/] onnxruntime not installed: not verified")
        else:
            console.print(f"onnxruntime vs PyTorch: max abs logit difference {err:.2e}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
