"""`vitseg export`: write a model as ONNX (spec embedded), for onnxruntime and `vitseg predict --backend onnx`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import VitsegError, not_one_of
from .common import console, friendly_errors, note


@friendly_errors
def export(
    weights: Path = typer.Argument(..., help="A vitseg .safetensors, an official .pth checkpoint, or a zoo name."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="Export format (only onnx)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .onnx file."),
    spec: Optional[str] = typer.Option(None, "--spec", "-s", help="Spec (YAML or preset); inferred if omitted."),
    height: int = typer.Option(512, "--height", help="Input height the graph is built for (fixed)."),
    width: int = typer.Option(512, "--width", help="Input width the graph is built for (fixed)."),
    dynamic: bool = typer.Option(False, "--dynamic", help="Any input height and width (needs onnxscript)."),
    opset: Optional[int] = typer.Option(None, "--opset", min=16,
                                        help="ONNX opset [default: 17, with --dynamic 18]."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Compare onnxruntime with PyTorch afterwards."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Export a segmentor to ONNX (dynamic batch, fixed or --dynamic HxW, normalized float32 NCHW in, logits at 1/4
    out; deformable attention as gather-based sampling, no GridSample)."""
    if fmt.lower() != "onnx":
        raise not_one_of("--format", fmt, ("onnx",))
    if out.exists() and not overwrite:
        raise VitsegError(f"--out {out}: exists (use --overwrite)")
    from ..loading import load_model
    from ..engine.export import DEFAULT_OPSET, DYNAMIC_OPSET, check_export, export_onnx

    opset = opset or (DYNAMIC_OPSET if dynamic else DEFAULT_OPSET)
    model = load_model(weights, spec, device="cpu")
    export_onnx(model, out, height, width, opset, dynamic=dynamic)
    size = "any input size" if dynamic else f"input {width}x{height} (WxH)"
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {size}, dynamic batch, opset {opset})")
    if verify:
        try:
            err = check_export(model, out)
        except ImportError:
            note("onnxruntime not installed: not verified")
        else:
            console.print(f"onnxruntime vs PyTorch: max abs logit difference {err:.2e}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
